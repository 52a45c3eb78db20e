# shards: decode every needed frame once and write training-sample shard files; held-out episodes get their own set.
rule shards:
    input:
        dataset=DATASET_LISTING,
        modality=lambda wildcards: SPEC[wildcards.sub].modality_config_path,
        # read through run.json (`--run` names it), an input so that editing it rebuilds the shards
        mapping=modality_json,
        validation=f"{OUT}/validation{{sub}}/report.json",
        run_config=f"{OUT}/experiment_cfg/config.yaml",
        run=RUN_JSON,
        base_model=base_model_input(),
    output:
        manifest=f"{OUT}/shards{{sub}}/{{split}}/manifest.json",
    log:
        f"{OUT}/logs/shards{{sub}}_{{split}}.log",
    wildcard_constraints:
        split="train|eval",
    params:
        dataset=lambda wildcards: SPEC[wildcards.sub].path,
        out=lambda wildcards, output: str(Path(output.manifest).parent),
        base_model=config["base_model_path"],
        revision=["--base-model-revision", config["base_model_revision"]] if config["base_model_revision"] else [],
        shard_size=config["shard_size"],
        rate=config["episode_sampling_rate"],
        seed=config["seed"],
    # episodes decode in parallel; Snakemake lowers this to --cores, and the shards do not depend on it
    threads: 4
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "export HF_HUB_OFFLINE=1; "
        "groot-ft shards {params.dataset:q} --modality-config {input.modality:q} --out {params.out:q} "
        "--base-model-path {params.base_model:q} {params.revision:q} --shard-size {params.shard_size} "
        "--episode-sampling-rate {params.rate} --seed {params.seed} "
        "--split {wildcards.split} --run {input.run:q} --threads {threads} > {log:q} 2>&1"
