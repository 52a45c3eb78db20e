"""finetune: the training entry point that ``accelerate launch`` starts on every process.

    accelerate launch --use_deepspeed --deepspeed_config_file config/deepspeed/zero2.json --num_processes 2 \
        -m groot_ft.train --config results/demo/experiment_cfg/config.yaml --run results/demo/experiment_cfg/run.json

(by hand, instead of --run: ``--dataset DATASET --stats results/demo/stats --shards results/demo/shards`` per dataset)

One process per GPU (on a machine without CUDA: CPU processes on gloo, which runs the same DeepSpeed code).
Re-running the same command resumes from the newest complete ``checkpoint-N``.

The package, one job a module: ``entry`` (command line, clean errors), ``trainer`` (setup, one step, the recipe),
``optim`` (DeepSpeed config, AdamW and schedule), ``checkpoints`` (resume rules, atomic checkpoint and best-model
directories), ``metrics`` (stdout, training_log.jsonl, TensorBoard, W&B, profiler), ``run_files`` (experiment_cfg/).
"""

from groot_ft.train.trainer import SourceDirs, StepStats, Trainer

__all__ = ["SourceDirs", "StepStats", "Trainer", "main"]


def main(argv: list[str] | None = None) -> int:
    from groot_ft.train.entry import main as entry_main

    return entry_main(argv)
