"""Where a run's numbers go: stdout (rank 0), training_log.jsonl, TensorBoard and, if asked, Weights & Biases.

One :class:`MetricsSinks` takes every record (training windows and eval losses alike), so each destination is
written in one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

WANDB_PROJECT = "finetune-gr00t-n1d6"


def print0(*args: Any, **kwargs: Any) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(*args, **kwargs, flush=True)


class MetricsSinks:
    """Rank 0 writes; other ranks hold no sinks and ``log`` does nothing there."""

    def __init__(self, output_dir: Path, *, main_process: bool, run_name: str, config: dict[str, Any],
                 use_wandb: bool):
        self.output_dir = output_dir
        self.main = main_process
        self.writer = None
        self.wandb_run = None
        if not main_process:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(output_dir / "runs"))
        if use_wandb:
            import wandb  # optional dependency

            self.wandb_run = wandb.init(project=WANDB_PROJECT, name=run_name, id=run_name, resume="allow",
                                        dir=str(output_dir), config=config)

    def log(self, record: dict[str, Any], section: str) -> None:
        """``record`` has a ``step`` and scalars; TensorBoard/W&B see them as ``{section}/{name}`` (an eval
        record's ``eval_loss`` becomes ``eval/loss``)."""
        if not self.main:
            return
        step = record["step"]
        print0(json.dumps(record))
        with open(self.output_dir / "training_log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        scalars = {f"{section}/{k.removeprefix(section + '_')}": v for k, v in record.items()
                   if k != "step" and v is not None}
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_profiler(output_dir: Path, rank: int):
    """torch.profiler over steps 11-15 (after warm-up), Chrome traces into ``output_dir/profiling``."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    out = output_dir / "profiling"
    out.mkdir(parents=True, exist_ok=True)

    def on_ready(prof):
        prof.export_chrome_trace(str(out / f"trace_rank_{rank}_iter_{prof.step_num}.json"))

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    prof = profile(activities=activities, schedule=schedule(skip_first=10, wait=1, warmup=1, active=3, repeat=1),
                   on_trace_ready=on_ready, with_stack=True)
    prof.start()
    return prof
