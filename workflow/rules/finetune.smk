# finetune: `accelerate launch` with DeepSpeed, num_gpus processes (CPU processes on gloo where there is no CUDA).
# Checkpoints are not declared outputs, so a failed or killed run keeps them and re-running resumes.
from snakemake.exceptions import WorkflowError


# run_config also checks that every dataset fits the model (horizon, dims, embodiment id) once they validated,
# and the shards wait for it, so a misfit stops the run before any frame is decoded.
rule run_config:
    input:
        validation=[f"{OUT}/validation{sub}/report.json" for sub in SPEC],
    output:
        config=f"{OUT}/experiment_cfg/config.yaml",
    log:
        f"{OUT}/logs/run_config.log",
    params:
        run_config=config,
        specs=SPECS,
    conda:
        "../../envs/groot-ft.yaml"
    script:
        "../scripts/write_run_config.py"


# Where the processes run. num_gpus counts training processes in total (the trainer checks WORLD_SIZE against it),
# so each of num_machines nodes runs num_gpus / num_machines of them.
NUM_MACHINES = config["num_machines"]
if config["num_gpus"] % NUM_MACHINES:
    raise WorkflowError(
        f"num_gpus={config['num_gpus']} is not a multiple of num_machines={NUM_MACHINES}: num_gpus counts training "
        f"processes over all machines and every machine runs the same number; change num_gpus or num_machines"
    )
GPUS_PER_NODE = config["num_gpus"] // NUM_MACHINES
CPUS_PER_GPU = config["finetune_resources"]["cpus_per_gpu"]


def finetune_resources():
    """sbatch resources for the SLURM executor (ignored locally, apart from gpu)."""
    res = {"mem_mb": config["finetune_resources"]["mem_mb"], "runtime": config["finetune_resources"]["runtime"]}
    if NUM_MACHINES == 1:
        # --gpus=N --cpus-per-gpu=C; the job step runs the shell command (one launcher) once
        return {**res, "gpu": GPUS_PER_NODE, "cpus_per_gpu": CPUS_PER_GPU}
    # The `mpi` resource makes the job step run the shell command itself instead of inside `srun -n1`, so our
    # own srun can start one launcher per node. gres is per node (--gpus would be a job total, maybe spread
    # unevenly); tasks_per_gpu=0 keeps the plugin from turning `tasks` into --ntasks-per-gpu.
    return {
        **res, "nodes": NUM_MACHINES, "tasks": NUM_MACHINES, "mpi": "srun", "tasks_per_gpu": 0,
        "gres": f"gpu:{GPUS_PER_NODE}", "cpus_per_task": GPUS_PER_NODE * CPUS_PER_GPU,
    }


def finetune_launcher():
    """`accelerate launch` with its machine flags; on several nodes, one launcher per node through srun."""
    if NUM_MACHINES == 1:
        return "accelerate launch --num_machines 1 --machine_rank 0"
    # Single quotes: $SLURM_NODEID and the node list are read on each node. Node 0 of the step hosts rank 0.
    # DeepSpeed's default multi-node launcher is pdsh; "standard" makes accelerate run torch's launcher per node.
    return (
        f"srun --nodes={NUM_MACHINES} --ntasks={NUM_MACHINES} --ntasks-per-node=1 "
        f"--cpus-per-task={GPUS_PER_NODE * CPUS_PER_GPU} --gres=gpu:{GPUS_PER_NODE} bash -c "
        f"'exec accelerate launch --num_machines {NUM_MACHINES} --machine_rank \"$SLURM_NODEID\" "
        f"--main_process_ip \"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\" "
        f"--deepspeed_multinode_launcher standard --same_network \"$@\"' accelerate-on-node"
    )


rule finetune:
    input:
        config=f"{OUT}/experiment_cfg/config.yaml",
        modality=sorted({spec.modality_config_path for spec in SPECS}),
        deepspeed=config["deepspeed_config"],
        shards=shard_manifests(),
        stats=training_stats(),
    output:
        model=f"{OUT}/model.safetensors",
        model_config=f"{OUT}/config.json",
    log:
        f"{OUT}/logs/finetune.log",
    params:
        sources=finetune_sources(),
        processes=config["num_gpus"],
        port=config["main_process_port"],
        launcher=finetune_launcher(),
    threads: GPUS_PER_NODE * CPUS_PER_GPU
    resources:
        **finetune_resources(),
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "{params.launcher} --use_deepspeed --deepspeed_config_file {input.deepspeed} "
        "--num_processes {params.processes} --main_process_port {params.port} "
        "-m groot_ft.train --config {input.config} {params.sources} > {log} 2>&1"
