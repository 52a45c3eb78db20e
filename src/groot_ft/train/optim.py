"""DeepSpeed config resolution and the optimizer/schedule, as upstream's HF-Trainer setup fills them."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from groot_ft.config import ConfigError, FinetuneConfig
from groot_ft.errors import read_json_file
from groot_ft.train.metrics import print0


def resolve_deepspeed_config(path: str | Path, cfg: FinetuneConfig, per_device: int, use_bf16: bool) -> dict:
    """Fill upstream-style "auto" values from the run config so DeepSpeed and our loop agree."""
    ds = read_json_file(path, "the DeepSpeed config (deepspeed_config)")
    if not isinstance(ds, dict):
        raise ConfigError(f"{path}: the DeepSpeed config (deepspeed_config) must be a JSON object")
    fills = {
        "train_micro_batch_size_per_gpu": per_device,
        "train_batch_size": cfg.global_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in fills.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, enabled in (("bf16", use_bf16), ("fp16", False)):
        block = ds.setdefault(key, {})
        if block.get("enabled", "auto") == "auto":
            block["enabled"] = enabled
    if not use_bf16:
        ds.pop("communication_data_type", None)  # bf16 communication needs bf16 weights
    if cpu_offload(ds) and not torch.cuda.is_available():
        # Without CUDA the parameters already live on the CPU, so DeepSpeed's CPU Adam buys nothing; and its
        # constructor probes the CPU through py-cpuinfo, whose busy-wait never returns in some VMs. Let ZeRO-Offload
        # step torch's AdamW instead (same update rule).
        ds["zero_force_ds_cpu_optimizer"] = False
    return ds


def cpu_offload(ds_config: dict) -> bool:
    return ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none") == "cpu"


def fused_adamw_available() -> bool:
    """Whether torch's fused AdamW takes the parameters as the trainer builds them, on the CPU: its CPU kernel arrived
    in torch 2.4 (common GPU images may be older than this project's pin)."""
    from packaging.version import Version

    return Version(torch.__version__.split("+")[0]) >= Version("2.4")


def build_optimizer(model: torch.nn.Module, cfg: FinetuneConfig, ds_config: dict):
    """AdamW over the trainable parameters (no weight decay on biases and 1-D parameters) and the cosine schedule
    with linear warm-up; DeepSpeed's CPU Adam when ZeRO-Offload steps on the CPU of a CUDA machine."""
    from transformers import get_cosine_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cpu_offload(ds_config) and torch.cuda.is_available():
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(groups, lr=cfg.learning_rate, adamw_mode=True)
    else:
        # fused: one kernel reads and writes each element once, where the default multi-tensor (foreach) AdamW makes
        # about a dozen passes over the fp32 partition and allocates a sqrt(v) temporary its size: on n1.6-3b a step
        # 3.0 GiB smaller (memplan.estimate) with several times less memory traffic. Same update rule; results differ
        # from upstream's adamw_torch by float rounding only (docs/model.md).
        fused = fused_adamw_available()
        if not fused:
            print0(f"optimizer: torch {torch.__version__} has no fused AdamW for parameters on the CPU (torch >= 2.4 "
                   "has); using the multi-tensor AdamW, which needs more memory at the optimizer step")
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=fused or None)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps)
    return optimizer, scheduler
