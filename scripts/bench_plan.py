"""The memory plan against a measured training step, on the CPU.

    PYTHONPATH=src .venv/bin/python scripts/bench_plan.py --preset tiny --batch 8 --dtype bf16
    PYTHONPATH=src .venv/bin/python scripts/bench_plan.py --preset mid --batch 4 --tune-visual --json out.json

One process runs the trainer's own pieces: ``create_model`` with the run's tune flags, ``resolve_deepspeed_config``
and ``build_optimizer`` (``groot_ft.train.optim``), then ``deepspeed.initialize`` on a one-process gloo group with the
chosen ``config/deepspeed`` file, exactly as ``accelerate launch`` would hand it over. The batch comes from the real
collator (``Gr00tCollator``) over samples shaped like the demo's (``scripts/bench_model.py``'s ``make_samples``).

Measured: ``memplan.tracker.LiveBytes`` counts every tensor storage ATen allocates from before the model is built,
and reports the high-water mark of live bytes during the second training step (forward, backward, optimizer step;
the first step allocates AdamW's moments, the second is the steady state every later step repeats), split into the
backward pass and the optimizer step, and the bytes the forward pass left alive (the kept activations).

``--lora-rank`` puts peft's LoRA layers on the Linear layers the plan adapts and ``--checkpointing`` turns on the
model's own non-reentrant gradient checkpointing: stand-ins with the run config's semantics until the trainer
implements both. ``--dtype bf16`` enables DeepSpeed's bf16 mode on the CPU (the CUDA path's dtypes; the CPU's own
kernels for dropout and AdamW).

Planned: ``memplan.estimate.plan_memory`` for the same model, flags, DeepSpeed config, batch and sequence, with
``device=cpu``. Prints both and the error; ``--json`` writes them.

On a GPU (``--device cuda --dtype bf16``) the same step runs on CUDA and is measured with the caching allocator's
counters instead (``torch.cuda.max_memory_allocated`` per phase), against the plan for CUDA:

    python scripts/bench_plan.py --device cuda --dtype bf16 --preset n1.6-3b --batch 64 --cameras 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


class CudaBytes:
    """``LiveBytes``' interface over the CUDA caching allocator's own counters (``torch.cuda.memory_allocated`` and
    ``max_memory_allocated``, what docs/benchmarks.md's GPU numbers report)."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda
        self.at_mark = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @property
    def current(self) -> int:
        return self.cuda.memory_allocated()

    @property
    def peak(self) -> int:
        return self.cuda.max_memory_allocated()

    def track(self, tensors) -> None:  # the allocator sees every CUDA tensor already
        return None

    def mark(self) -> None:
        self.cuda.synchronize()
        self.cuda.reset_peak_memory_stats()
        self.at_mark = self.current


def measure(args) -> dict:
    import torch

    from bench_model import make_samples
    from groot_ft.config import FinetuneConfig
    from groot_ft.memplan.tracker import LiveBytes
    from groot_ft.model import Gr00tCollator, create_model
    from groot_ft.model.lora import LoraSettings, add_lora
    from groot_ft.train.optim import build_optimizer, resolve_deepspeed_config

    torch.set_num_threads(args.threads)
    cfg = FinetuneConfig.from_dict({
        "dataset": "bench", "modality_config_path": "bench", "base_model_path": args.preset,
        "global_batch_size": args.batch, "gradient_accumulation_steps": 1, "num_gpus": 1,
        "tune_visual": args.tune_visual, "tune_llm": args.tune_llm,
    })
    from gpu_check import free_port

    # the OS picks the port, so runs side by side (the test suite's two workers) never meet on one
    port = args.port or free_port()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    import deepspeed

    cuda = args.device == "cuda"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    timeline = {}
    with (CudaBytes() if cuda else LiveBytes()) as live:
        model, tokenizer = create_model(args.preset, bf16_weights=False, tune_llm=args.tune_llm,
                                        tune_visual=args.tune_visual)
        if args.lora_rank:
            # what a run does: peft's layers on the model's LoRA parts, their own weights frozen (model/lora.py)
            add_lora(model, LoraSettings(args.lora_rank, 32, 0.0, tuple(args.lora_targets)))
            model.train()
        if args.checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ds = resolve_deepspeed_config(ROOT / "config" / "deepspeed" / f"{args.zero}.json", cfg, args.batch,
                                      use_bf16=args.dtype == "bf16")
        if args.reduce_bucket_size:
            ds["zero_optimization"]["reduce_bucket_size"] = args.reduce_bucket_size
        optimizer, _ = build_optimizer(model, cfg, ds)
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
        # upstream's geometry (image_size null, the n1.6-3b preset): square frames at shortest_image_edge
        shape = SimpleNamespace(**{k: getattr(model.config, k) for k in ("max_state_dim", "max_action_dim",
                                                                         "action_horizon")},
                                image_size=model.config.image_size or model.config.shortest_image_edge)
        batch = Gr00tCollator(tokenizer, model.config)(make_samples(shape, args.batch, args.cameras))
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        live.track(batch.values())
        engine.train()
        for step in (1, 2):
            live.mark()
            t0 = time.perf_counter()
            loss = engine(**batch).loss
            forward = live.current
            engine.backward(loss)
            del loss
            start, backward = live.at_mark, live.peak
            live.mark()
            engine.step()
            timeline[step] = {"start": start, "after_forward": forward, "backward_peak": backward,
                              "step_peak": live.peak, "peak": max(backward, live.peak), "end": live.current,
                              "seconds": time.perf_counter() - t0}
    geometry = {"seq_len": int(batch["input_ids"].shape[1]), "images": args.cameras}
    return {"timeline": timeline, "geometry": geometry, "config": model.config}


def planned(args, config, seq_len: int) -> dict:
    from groot_ft.memplan.estimate import RunSetup, ZeroSetup, geometry_for, plan_memory
    from groot_ft.memplan.shapes import model_shapes

    shapes = model_shapes(config, lora_rank=args.lora_rank, lora_targets=args.lora_targets)
    geo = geometry_for(config, batch=args.batch, images=args.cameras, text_tokens=0)
    geo = replace(geo, seq_len=seq_len)
    zero = ZeroSetup.from_file(ROOT / "config" / "deepspeed" / f"{args.zero}.json")
    zero = replace(zero, bf16=args.dtype == "bf16",
                   reduce_bucket_size=args.reduce_bucket_size or zero.reduce_bucket_size)
    setup = RunSetup(geometry=geo, zero=zero, device=args.device, checkpointing=args.checkpointing,
                     lora_rank=args.lora_rank, lora_targets=args.lora_targets)
    return plan_memory(shapes, setup).to_dict()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: measure with torch.cuda.max_memory_allocated on GPU 0 (NCCL, one process) and plan "
                   "for CUDA; use --dtype bf16 there, as the trainer does")
    p.add_argument("--zero", default="zero2", help="a config/deepspeed/*.json stem")
    p.add_argument("--tune-visual", action="store_true")
    p.add_argument("--tune-llm", action="store_true")
    p.add_argument("--reduce-bucket-size", type=int,
                   help="replace the DeepSpeed config's reduce_bucket_size (elements), e.g. 5000000 so that the "
                   "buckets do not dwarf a small model's other memory")
    p.add_argument("--lora-rank", type=int, default=0, help="peft LoRA adapters of this rank (0: none)")
    p.add_argument("--lora-targets", default="llm,dit", type=lambda t: tuple(t.split(",")),
                   help="comma list of llm, visual, dit")
    p.add_argument("--checkpointing", action="store_true",
                   help="the model's non-reentrant gradient checkpointing (its GradientCheckpointingLayer blocks)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--port", type=int, help="gloo's rendezvous port (default: one the OS has free)")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    got = measure(args)
    plan = planned(args, got.pop("config"), got["geometry"]["seq_len"])
    measured = got["timeline"][2]["peak"]
    error = (plan["bytes"]["peak"] - measured) / measured
    # the activations alone: what the forward pass kept (measured after it, against the plan without the workspace)
    step2 = got["timeline"][2]
    act_measured = step2["after_forward"] - step2["start"]
    act_planned = sum(v for k, v in plan["bytes"].items() if k.startswith("activations_") and "workspace" not in k)
    result = {
        "args": vars(args), "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores", "measured_peak": measured, "planned_peak": plan["bytes"]["peak"],
        "error": error, "activations_measured": act_measured, "activations_planned": act_planned, "plan": plan,
        **got, "seconds": time.perf_counter() - t0,
    }
    mib = 2**20
    print(f"{args.preset} batch {args.batch} {args.dtype} {args.zero} tune_visual={args.tune_visual} "
          f"tune_llm={args.tune_llm} lora={args.lora_rank}{list(args.lora_targets) if args.lora_rank else ''} "
          f"checkpointing={args.checkpointing} L={got['geometry']['seq_len']}: measured {measured / mib:.1f} MiB, "
          f"planned "
          f"{plan['bytes']['peak'] / mib:.1f} MiB ({plan['peak_phase']}), error {100 * error:+.1f}%")
    print(f"  kept activations: measured {act_measured / mib:.1f} MiB, planned {act_planned / mib:.1f} MiB")
    for key, value in got["timeline"][2].items():
        print(f"  measured {key}: {value / mib if key != 'seconds' else value:.1f}")
    for key, value in plan["bytes"].items():
        print(f"  planned {key}: {value / mib:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
