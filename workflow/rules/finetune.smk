# finetune: `accelerate launch` with DeepSpeed, num_gpus processes (CPU processes on gloo where there is no CUDA).
# Checkpoints are not declared outputs, so a failed or killed run keeps them and re-running resumes.
rule run_config:
    output:
        config=f"{OUT}/experiment_cfg/config.yaml",
    log:
        f"{OUT}/logs/run_config.log",
    params:
        run_config=config,
    conda:
        "../../envs/groot-ft.yaml"
    script:
        "../scripts/write_run_config.py"


rule finetune:
    input:
        config=f"{OUT}/experiment_cfg/config.yaml",
        modality=config["modality_config_path"],
        deepspeed=config["deepspeed_config"],
        **shard_manifests(),
        **stats_outputs(),
    output:
        model=f"{OUT}/model.safetensors",
        model_config=f"{OUT}/config.json",
    log:
        f"{OUT}/logs/finetune.log",
    params:
        dataset=DATASET,
        stats=lambda wildcards, input: str(Path(input.stats).parent),
        shards=lambda wildcards, input: str(Path(input.manifest).parent),
        eval_shards=lambda wildcards, input: (
            f"--eval-shards {Path(input.eval_manifest).parent}" if HAS_EVAL else ""
        ),
        processes=config["num_gpus"],
        port=config["main_process_port"],
    threads: max(1, config["num_gpus"])
    resources:
        gpu=config["num_gpus"],
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "accelerate launch --use_deepspeed --deepspeed_config_file {input.deepspeed} "
        "--num_processes {params.processes} --num_machines 1 --machine_rank 0 "
        "--main_process_port {params.port} "
        "-m groot_ft.train --config {input.config} --dataset {params.dataset} "
        "--stats {params.stats} --shards {params.shards} {params.eval_shards} > {log} 2>&1"
