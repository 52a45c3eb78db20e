# finetune: `accelerate launch` with DeepSpeed, num_gpus processes (CPU processes on gloo where there is no CUDA).
# Checkpoints are not declared outputs, so a failed or killed run keeps them and re-running resumes.


# run_config also checks that every dataset fits the model (horizon, dims, embodiment id) once they validated,
# and the shards wait for it, so a misfit stops the run before any frame is decoded.
rule run_config:
    input:
        validation=[f"{OUT}/validation{sub}/report.json" for sub in SPEC],
        base_model=base_model_input(),
        # the mappings kept outside the datasets (modality_json_path): the fit check reads them
        mappings=sorted({spec.modality_json_path for spec in SPECS if spec.modality_json_path}),
    output:
        config=f"{OUT}/experiment_cfg/config.yaml",
        run=RUN_JSON,
    log:
        f"{OUT}/logs/run_config.log",
    params:
        run_config=config,
        specs=SPECS,
        dirs=run_dirs(),
        output_dir=lambda wildcards, output: str(Path(output.config).parent.parent),
    conda:
        "../../envs/groot-ft.yaml"
    script:
        "../scripts/write_run_config.py"


rule finetune:
    input:
        config=f"{OUT}/experiment_cfg/config.yaml",
        run=RUN_JSON,
        modality=sorted({spec.modality_config_path for spec in SPECS}),
        # the statistics are cut per group with these (modality_json_path; run.json names them)
        mappings=sorted({spec.modality_json_path for spec in SPECS if spec.modality_json_path}),
        deepspeed=config["deepspeed_config"],
        shards=shard_manifests(),
        stats=training_stats(),
        base_model=base_model_input(),
        memory_plan=f"{OUT}/experiment_cfg/memory_plan.json",  # rules/plan.smk: stops a run that cannot fit the card
    output:
        model=f"{OUT}/model.safetensors",
        model_config=f"{OUT}/config.json",
    log:
        f"{OUT}/logs/finetune.log",
    params:
        processes=config["num_gpus"],
        port=config["main_process_port"],
        launcher=finetune_launcher(),
    threads: GPUS_PER_NODE * CPUS_PER_GPU
    resources:
        **finetune_resources(),
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        # the base model was fetched on the submit node (rule fetch_base_model): the job never needs the network
        "export HF_HUB_OFFLINE=1; "
        "{params.launcher} --use_deepspeed --deepspeed_config_file {input.deepspeed:q} "
        "--num_processes {params.processes} --main_process_port {params.port} "
        "-m groot_ft.train --config {input.config:q} --run {input.run:q} > {log:q} 2>&1"
