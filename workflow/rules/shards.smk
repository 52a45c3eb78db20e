# shards: decode every needed frame once and write training-sample shard files.
rule shards:
    input:
        dataset=dataset_files(),
        modality=config["modality_config_path"],
        validation=f"{OUT}/validation/report.json",
    output:
        manifest=f"{OUT}/shards/manifest.json",
    log:
        f"{OUT}/logs/shards.log",
    params:
        dataset=DATASET,
        out=f"{OUT}/shards",
        base_model=config["base_model_path"],
        shard_size=config["shard_size"],
        rate=config["episode_sampling_rate"],
        seed=config["seed"],
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft shards {params.dataset} --modality-config {input.modality} --out {params.out} "
        "--base-model-path {params.base_model} --shard-size {params.shard_size} "
        "--episode-sampling-rate {params.rate} --seed {params.seed} > {log} 2>&1"
