"""Training-step time, peak memory and MFU of a model preset.

    .venv/bin/python scripts/bench_model.py --preset tiny --batch 8 --threads 1
    .venv/bin/python scripts/bench_model.py --preset mid --batch 2 --threads 2 --steps 3 --warmup 1
    python scripts/bench_model.py --preset n1.6-3b --device cuda --dtype bf16 --batch 16

Samples are shaped like the demo's processor output: ``--cameras`` images x 1 frame at the preset's image size, state
1 x max_state_dim, action chunk action_horizon x max_action_dim, a 43-byte instruction (43 byte tokens). A step is
forward + backward (+ an AdamW step with ``--optimizer adamw``) with the preset's default trainable flags (frozen
vision tower and lower LLM layers). The first ``--warmup`` steps are not timed.

``--dtype bf16``: on CUDA, upstream's ``load_bf16`` + ``backbone_trainable_params_fp32`` (frozen backbone weights
bf16, trainable parameters fp32; ``Gr00tN1d6.apply_bf16_weights``) under ``torch.autocast(bfloat16)``, as a
non-DeepSpeed trainer would run it; on CPU only the autocast (slow, for checking the path).

Peak memory: ``torch.cuda.max_memory_allocated`` over the timed steps on CUDA; the process's ``ru_maxrss`` (peak
resident set, model construction included) on CPU.

FLOPs per step are counted, not estimated from a formula, by hooks during one untimed forward pass: every linear
layer (``nn.Linear`` and the per-embodiment ``CategorySpecificLinear``) that multiplies ``n`` input rows by an
``in x out`` weight costs ``2 n in out`` forward, plus ``2 n in out`` backward for the weight gradient if the weight is
trainable, plus ``2 n in out`` for the input gradient if its input requires grad; each attention call costs
``4 B H Lq Lk d`` forward (QK^T and AV) and twice that backward if any of q/k/v requires grad. With every parameter
trainable this is the usual ``6 x params x tokens`` (each weight weighted by the tokens that pass through it);
frozen modules below the trainable ones cost forward only. Norms, activations, embeddings lookups and the optimizer
are not counted; gradient-checkpointing recomputation is not counted (model FLOPs). MFU = counted FLOPs / median step
time / peak, with peak 989 TFLOP/s (H100 SXM dense bf16) for ``--device cuda --dtype bf16`` or ``--peak-tflops``;
on CPU only the achieved FLOP rate is reported unless ``--peak-tflops`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import groot_ft.model as gm
from groot_ft.model.layers import CategorySpecificLinear

H100_BF16_DENSE_TFLOPS = 989.0
TEXT = "move the arm to the red target and grasp it"


def make_samples(config, batch: int, cameras: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    # native-aspect presets (n1.6-3b) have no square image_size: frames of the processor's shortest edge, which
    # the collator's smart_resize brings to the model's geometry (256 -> 252 px, 81 tokens), as in training
    side = config.image_size or config.shortest_image_edge
    out = []
    for _ in range(batch):
        out.append({
            "state": rng.uniform(-1, 1, (1, config.max_state_dim)).astype(np.float32),
            "action": rng.uniform(-1, 1, (config.action_horizon, config.max_action_dim)).astype(np.float32),
            "action_mask": np.ones((config.action_horizon, config.max_action_dim), np.float32),
            "images": rng.integers(0, 256, (cameras, 3, side, side), dtype=np.uint8),
            "text": TEXT,
            "embodiment_id": 10,
        })
    return out


class FlopCounter:
    """Counts matmul FLOPs of one forward pass (and the backward FLOPs it implies) with module hooks."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.forward = 0
        self.backward = 0
        self._handles = []
        self._real_sdpa = None

    def _linear_hook(self, module, args, _output):
        x = args[0]
        if isinstance(module, torch.nn.Linear):
            w_in, w_out, trainable = module.in_features, module.out_features, module.weight.requires_grad
        else:
            w_in, w_out, trainable = module.in_features, module.out_features, module.W.requires_grad
        rows = x.numel() // w_in
        flops = 2 * rows * w_in * w_out
        self.forward += flops
        self.backward += flops * (int(trainable) + int(x.requires_grad))

    def _sdpa(self, q, k, v, *args, **kwargs):
        *batch, lq, d = q.shape
        lk = k.shape[-2]
        flops = 4 * int(np.prod(batch)) * lq * lk * d
        self.forward += flops
        if q.requires_grad or k.requires_grad or v.requires_grad:
            self.backward += 2 * flops
        return self._real_sdpa(q, k, v, *args, **kwargs)

    def __enter__(self):
        for module in self.model.modules():
            if isinstance(module, (torch.nn.Linear, CategorySpecificLinear)):
                self._handles.append(module.register_forward_hook(self._linear_hook))
        self._real_sdpa = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = self._sdpa  # transformers' SDPA path and our DiT both call it through F
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        F.scaled_dot_product_attention = self._real_sdpa

    @property
    def total(self) -> int:
        return self.forward + self.backward


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(gm.PRESETS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--bf16-weights", default="auto", choices=["auto", "on", "off"],
                   help="frozen backbone weights in bf16 (apply_bf16_weights); auto: on for cuda + bf16")
    p.add_argument("--optimizer", default="none", choices=["none", "adamw"], help="include an AdamW step per step")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: 989 on cuda bf16)")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    bf16_weights = {"on": True, "off": False, "auto": cuda and args.dtype == "bf16"}[args.bf16_weights]
    with device:
        model, tokenizer = gm.create_model(args.preset, bf16_weights=bf16_weights)
    model.train()
    if args.gradient_checkpointing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renamed it activation_checkpointing_*
            model.gradient_checkpointing_enable()
    batch = gm.Gr00tCollator(tokenizer, model.config)(make_samples(model.config, args.batch, args.cameras))
    batch = {k: v.to(device) for k, v in batch.items()}
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()
    )
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4) if args.optimizer == "adamw" else None

    def step(counter: FlopCounter | None = None) -> None:
        with autocast:
            if counter is None:
                loss = model(**batch).loss
            else:
                with counter:
                    loss = model(**batch).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)

    counter = FlopCounter(model)
    step(counter)  # untimed: counts FLOPs (and warms up)
    times = []
    for i in range(max(args.warmup - 1, 0) + args.steps):
        if cuda and i == max(args.warmup - 1, 0):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup - 1:
            times.append(time.perf_counter() - t0)

    median = statistics.median(times)
    if cuda:
        peak_mem = torch.cuda.max_memory_allocated()
        mem_note = "torch.cuda.max_memory_allocated"
    else:
        peak_mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        mem_note = "ru_maxrss (whole process)"
    peak = args.peak_tflops
    if peak is None and cuda and args.dtype == "bf16":
        peak = H100_BF16_DENSE_TFLOPS
    achieved = counter.total / median
    n_params = sum(q.numel() for q in model.parameters())
    n_trainable = sum(q.numel() for q in params)
    result = {
        "preset": args.preset,
        "device": str(device) if not cuda else torch.cuda.get_device_name(device),
        "dtype": args.dtype,
        "bf16_weights": bf16_weights,
        "batch": args.batch,
        "cameras": args.cameras,
        "threads": args.threads,
        "tokens_per_sample": int(batch["input_ids"].shape[1]),
        "params": n_params,
        "trainable_params": n_trainable,
        "optimizer": args.optimizer,
        "gradient_checkpointing": args.gradient_checkpointing,
        "step_s_median": median,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "timed_steps": len(times),
        "samples_per_s": args.batch / median,
        "flops_per_step": counter.total,
        "forward_flops_per_step": counter.forward,
        "achieved_tflops": achieved / 1e12,
        "mfu": None if peak is None else achieved / (peak * 1e12),
        "peak_tflops": peak,
        "peak_memory_bytes": int(peak_mem),
        "peak_memory_source": mem_note,
    }
    print(f"preset={args.preset} params={n_params:,} trainable={n_trainable:,} device={result['device']} "
          f"dtype={args.dtype} bf16_weights={bf16_weights} batch={args.batch} cameras={args.cameras} "
          f"threads={args.threads} "
          f"tokens={result['tokens_per_sample']} optimizer={args.optimizer}")
    print(f"step: median {median * 1e3:.1f} ms ({median / args.batch * 1e3:.2f} ms/sample, "
          f"{result['samples_per_s']:.2f} samples/s; min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f} "
          f"over {len(times)} steps)")
    mfu = "n/a (no peak given)" if peak is None else f"{result['mfu'] * 100:.2f}% of {peak:g} TFLOP/s"
    print(f"FLOPs/step {counter.total / 1e9:.2f} GFLOP (forward {counter.forward / 1e9:.2f}); achieved "
          f"{achieved / 1e9:.2f} GFLOP/s; MFU {mfu}")
    print(f"peak memory {peak_mem / 2**20:.0f} MiB ({mem_note})")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
