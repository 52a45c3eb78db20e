"""GPU check: the real training step (DeepSpeed ZeRO-2, bf16) and the policy's inference, measured on one GPU.

    # on any machine with an NVIDIA GPU and this repo installed (PyAV, simplejpeg, DeepSpeed, accelerate):
    python scripts/gpu_check.py --dataset ../shared/datasets/gr1.PickNPlace \\
        --modality-config config/modality/gr1.yaml --embodiment-tag gr1 --work /tmp/gpu_check --out results/gpu_check
    # a GPU image without network or this repo installed: --wheels DIR pip-installs the carried wheels first, and
    # the checkout's src/ is used when groot_ft is not importable
    # everything but CUDA, on a CPU (tiny model, a few steps): checks the script itself in about a minute
    python scripts/gpu_check.py --dry-run --dataset ../shared/datasets/gr1.PickNPlace \\
        --modality-config config/modality/gr1.yaml --embodiment-tag gr1 --work /tmp/gpu_check_dry --out /tmp/gpu_out

What it does, in order (results go to ``OUT/gpu_check.json``, rewritten after every stage, so a run cut short still
leaves what it measured):

1. ``prepare``: the dataset's statistics and training shards at the model's image size, with the workflow's own
   commands (``groot-ft stats``, ``groot-ft shards``), into ``WORK`` (skipped when already there; build them
   on a CPU machine and carry them to save GPU time).
2. For each ``--batch``: one ``accelerate launch --use_deepspeed`` process (ZeRO-2 from ``config/deepspeed``, one
   process), running ``groot_ft.train.Trainer``'s own ``setup`` and ``train_step`` on the ``--model`` preset from
   random weights with the default tuning flags (tune_projector and tune_diffusion_model; the LLM's top layers as the
   model config says; vision tower and the rest of the LLM frozen). ``--warmup`` untimed steps, then ``--steps`` timed
   ones, each closed by ``torch.cuda.synchronize``. Reported: median and mean step time, samples/s, peak GPU memory
   (``torch.cuda.max_memory_allocated`` over the timed steps), data-wait fraction (time blocked on the loader over
   step time), host-CPU fraction (the main thread's CPU time over the step's wall time: near 1 when Python and
   kernel launches set the pace, not the GPU), the loss of every step, and MFU. Then ``--phase-steps`` steps split
   into data / forward / backward / optimizer step with a sync between phases (wall and host-CPU seconds of each),
   and with ``--profile N`` N steps under ``torch.profiler``: ``OUT/profile-b<batch>.txt`` holds the per-op tables
   by device time and by host time.
3. In the last batch's process: ``Gr00tPolicy.get_action`` latency at batch 1 on a real observation of the dataset
   (4 denoising steps, the model's default), eager; then with ``torch.compile`` of the action head's DiT
   (``mode="reduce-overhead"``, i.e. CUDA graphs) unless ``--no-compile``.

MFU: model FLOPs per step are counted, not estimated: ``scripts/bench_model.py``'s ``FlopCounter`` hooks every linear
layer and attention call of one forward pass over a real batch and adds the backward FLOPs that pass implies
(``2·n·in·out`` per linear forward; the same again for the weight gradient when the weight trains and for the input
gradient when the input needs one; ``4·B·H·Lq·Lk·d`` per attention forward and twice that backward when q, k or v
needs grad). MFU = FLOPs per step / median step time / peak, peak = 989 TFLOP/s (H100 SXM dense bf16; ``--peak-tflops``
for another card). Norms, activations, embedding lookups and the optimizer update are not counted.

``--host-cost``: the same run on a copy of ``--model`` with the preset's depth, layer types and trainable tensor
count but tiny widths (``NARROW``), so that the arithmetic is negligible and a step costs what the host spends on it:
Python, ATen dispatch, kernel launches on a GPU, DeepSpeed's per-parameter hooks and step. On a GPU, a host-cost step
close to the real one says the real step is bound by its host, not by the GPU; on a CPU it measures the host's share
without a GPU (``--dry-run --host-cost`` for a quick one, batch 4).

Nothing here depends on where it runs beyond a GPU and the paths given: no network, no hub.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H100_BF16_DENSE_TFLOPS = 989.0


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_logged(cmd: list[str], log: Path, env: dict | None = None, timeout: float | None = None) -> float:
    """Run ``cmd`` with its output in ``log``; returns seconds taken, raises with the log's tail on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}; last lines of {log}:\n"
                           + "".join(log.read_text().splitlines(keepends=True)[-40:]))
    return time.perf_counter() - t0


# --- stage 1: statistics and shards -------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    if not (work / "stats" / "stats.json").is_file():
        timings["stats_s"] = run_logged(
            [sys.executable, "-m", "groot_ft.cli", "stats", args.dataset, "--modality-config", args.modality_config,
             "--out", str(work / "stats"), "--no-cache", "--no-report"], work / "stats.log")
    if not (work / "shards" / "manifest.json").is_file():
        timings["shards_s"] = run_logged(
            [sys.executable, "-m", "groot_ft.cli", "shards", args.dataset, "--modality-config", args.modality_config,
             "--out", str(work / "shards"), "--base-model-path", args.model, "--episode-sampling-rate", "1.0",
             "--threads", str(min(8, os.cpu_count() or 1))], work / "shards.log")
    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    return {**timings, "samples": manifest["samples"], "image_edge": manifest["image_edge"]}


# --- stage 2: one training process --------------------------------------------------------------------------------
def train_config(args: argparse.Namespace, batch: int) -> Path:
    import yaml

    work = Path(args.work)
    cfg = {
        "dataset": args.dataset,
        "base_model_path": args.model,
        "embodiment_tag": args.embodiment_tag,
        "modality_config_path": args.modality_config,
        "output_dir": str(work / f"run-b{batch}"),
        "max_steps": args.warmup + args.steps + 1,  # +1: the batch the FLOP count uses is a step's worth
        "save_steps": 10**6,
        "logging_steps": 10**6,
        "global_batch_size": batch,
        "gradient_accumulation_steps": 1,
        "num_gpus": 1,
        "dataloader_num_workers": args.workers,
        "eval_episodes": 0,
        "deepspeed_config": str(Path(args.deepspeed_config).resolve()),
        "seed": 42,
    }
    path = work / f"config-b{batch}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def launch_worker(args: argparse.Namespace, batch: int, policy: bool) -> dict:
    work = Path(args.work)
    result = work / f"result-b{batch}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed", "--deepspeed_config_file",
           str(Path(args.deepspeed_config).resolve()), "--num_processes", "1", "--num_machines", "1",
           "--machine_rank", "0", "--main_process_port", str(free_port()),
           str(Path(__file__).resolve()), "worker", "--config", str(train_config(args, batch)),
           "--dataset", args.dataset, "--stats", str(work / "stats"), "--shards", str(work / "shards"),
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--result", str(result),
           "--peak-tflops", str(args.peak_tflops), "--phase-steps", str(args.phase_steps)]
    if args.profile:
        cmd += ["--profile", str(args.profile), "--profile-table", str(Path(args.out) / f"profile-b{batch}.txt")]
    if args.host_cost:
        cmd += ["--host-cost"]
    if policy:
        cmd += ["--policy-calls", str(args.policy_calls)] + ([] if args.compile else ["--no-compile"])
    seconds = run_logged(cmd, work / f"worker-b{batch}.log", timeout=args.worker_timeout)
    out = json.loads(result.read_text())
    out["process_wall_s"] = seconds
    return out


def worker(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py worker")
    p.add_argument("--config", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--shards", required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--peak-tflops", type=float, required=True)
    p.add_argument("--policy-calls", type=int, default=0)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--profile", type=int, default=0)
    p.add_argument("--profile-table", default=None)
    p.add_argument("--phase-steps", type=int, default=0)
    p.add_argument("--host-cost", action="store_true")
    args = p.parse_args(argv)

    import torch

    from groot_ft.config import FinetuneConfig
    from groot_ft.train import SourceDirs, Trainer

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_model import FlopCounter

    cuda = torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    cfg = FinetuneConfig.from_yaml(args.config)
    if args.host_cost:
        narrow_preset(cfg.base_model_path)
    spec = cfg.dataset_specs(args.dataset)[0]
    trainer = Trainer(cfg, [SourceDirs(spec, Path(args.dataset), Path(args.stats), Path(args.shards))])
    t0 = time.perf_counter()
    if trainer.setup():
        return 2
    sync()
    out: dict = {"setup_s": time.perf_counter() - t0, "batch": trainer.per_device}
    model = trainer.engine.module
    out["parameters"] = sum(p.numel() for p in model.parameters())
    out["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out["trainable_tensors"] = sum(1 for p in model.parameters() if p.requires_grad)
    out["parameter_dtypes"] = sorted({str(p.dtype) for p in model.parameters()})

    # FLOPs of one training step, counted on a real batch (the forward's graph is dropped, nothing is updated)
    batch = {k: v.to(trainer.acc.device) if torch.is_tensor(v) else v for k, v in next(trainer.batches).items()}
    out["sequence_length"] = int(batch["input_ids"].shape[1])
    out["image_tensor_shape"] = list(batch["pixel_values"].shape) if batch.get("pixel_values") is not None else None
    model.train()
    with FlopCounter(model) as counter:
        model(**batch)
    out["flops_per_step"] = counter.total
    out["flops_per_sample"] = counter.total / trainer.per_device
    del batch

    trainer.engine.train()
    for _ in range(args.warmup):
        trainer.train_step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    steps = []
    for _ in range(args.steps):
        t, cpu = time.perf_counter(), time.thread_time()
        stats = trainer.train_step()
        sync()
        steps.append({"seconds": time.perf_counter() - t, "host_cpu_s": time.thread_time() - cpu,
                      "data_wait_s": stats.data_wait, "loss": stats.loss_sum / stats.micro_batches})
    seconds = [s["seconds"] for s in steps]
    median = statistics.median(seconds)
    losses = [s["loss"] for s in steps]
    third = max(1, len(losses) // 3)
    out.update({
        "timed_steps": len(steps),
        "step_s_median": median,
        "step_s_mean": statistics.fmean(seconds),
        "samples_per_s": trainer.per_device * len(steps) / sum(seconds),
        "data_wait_fraction": sum(s["data_wait_s"] for s in steps) / sum(seconds),
        # the main thread's CPU time over the step's wall time: near 1 means the GPU waits on Python and kernel
        # launches (a step time that does not grow with the batch), well below 1 means the GPU (or a sync) sets the pace
        "host_cpu_fraction": sum(s["host_cpu_s"] for s in steps) / sum(seconds),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "achieved_tflops": counter.total / median / 1e12,
        "mfu": counter.total / median / (args.peak_tflops * 1e12) if cuda else None,
        "losses": losses,
        "step_seconds": seconds,
        "loss_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
        "loss_first_third_mean": statistics.fmean(losses[:third]),
        "loss_last_third_mean": statistics.fmean(losses[-third:]),
    })
    out["loss_falling"] = out["loss_last_third_mean"] < out["loss_first_third_mean"]
    write_json(Path(args.result), out)  # training numbers are safe even if inference fails below
    if args.phase_steps:
        out["phases"] = step_phases(trainer, args.phase_steps, sync)
        write_json(Path(args.result), out)

    if args.profile:  # where a step's time goes: torch.profiler's per-op table, CPU and CUDA
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(args.profile):
                trainer.train_step()
            sync()
        table = Path(args.profile_table)
        # by the device's own time (kernels), then by the host's (Python, dispatch, launches); each table's footer
        # gives the step's total CPU and CUDA time, the first answer to "is the GPU or the host the bottleneck?"
        averages = prof.key_averages()
        tables = [averages.table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=70)] if cuda \
            else []
        tables.append(averages.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70))
        table.write_text(f"{args.profile} steps after the timed ones\n\n" + "\n\n".join(tables) + "\n")

    if args.policy_calls:
        out["policy"] = policy_latency(trainer, cfg, args, sync, cuda)
        write_json(Path(args.result), out)
    return 0


# Widths of the host-cost model: the preset's depth, layer types and tensor count (so the same kernels, launches,
# hooks and per-parameter work), at widths where the arithmetic is negligible.
NARROW = {
    "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4},
    "text_config": {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "head_dim": 32},
    "backbone_embedding_dim": 128,
    "hidden_size": 64,
    "input_embedding_dim": 96,
    "diffusion_model_cfg": {"num_attention_heads": 4, "attention_head_dim": 24, "output_dim": 64},
}


def narrow_preset(name: str) -> None:
    """Replace the N1.6 preset ``name`` in this process's preset table by its narrow copy (``--host-cost``)."""
    from groot_ft.model import presets

    if name not in presets.PRESETS:
        raise SystemExit(f"--host-cost narrows an N1.6 preset ({', '.join(presets.PRESETS)}), not {name!r}")
    full = presets.PRESETS[name]

    def narrow() -> dict:
        kwargs = full()
        for key, value in NARROW.items():
            # a sub-config the preset leaves to the config class's defaults (the DiT's) is merged with them there
            kwargs[key] = {**kwargs.get(key, {}), **value} if isinstance(value, dict) else value
        return kwargs

    presets.PRESETS[name] = narrow


def step_phases(trainer, steps: int, sync) -> dict:
    """Where a step's time goes: ``steps`` more steps with the GPU synchronised between the phases (the syncs cost a
    little overlap, so their sum can exceed the free-running step). Each phase: median wall and main-thread CPU
    seconds. The same calls as ``Trainer.train_step`` (one micro-batch): accelerate's DeepSpeed ``backward`` is the
    engine's backward followed by its step, called here one at a time."""
    from groot_ft.train.trainer import _to_device

    engine = trainer.engine
    names = ("data", "forward", "backward", "optimizer_step")
    record: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for _ in range(steps):
        marks = [(time.perf_counter(), time.thread_time())]
        batch = _to_device(next(trainer.batches), trainer.acc.device)
        sync()
        marks.append((time.perf_counter(), time.thread_time()))
        loss = engine(**batch).loss
        sync()
        marks.append((time.perf_counter(), time.thread_time()))
        engine.backward(loss)
        sync()
        marks.append((time.perf_counter(), time.thread_time()))
        engine.step()
        trainer.scheduler.step()
        sync()
        marks.append((time.perf_counter(), time.thread_time()))
        for name, (a, b) in zip(names, zip(marks, marks[1:])):
            record[name].append((b[0] - a[0], b[1] - a[1]))
    return {name: {"wall_s_median": statistics.median(w for w, _ in values),
                   "host_cpu_s_median": statistics.median(c for _, c in values)}
            for name, values in record.items()} | {"steps": steps}


# --- stage 3: inference latency -----------------------------------------------------------------------------------
def policy_latency(trainer, cfg, args, sync, cuda: bool) -> dict:
    import copy

    import torch

    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.evaluate import observation_at
    from groot_ft.policy import Gr00tPolicy

    model = trainer.engine.module
    trainer.optimizer = None  # the policy needs none of the optimizer's memory
    trainer.batches = None  # shuts the DataLoader workers down: they would compete with the policy for the CPU
    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    device = trainer.acc.device
    policy = Gr00tPolicy.from_model(model, trainer.tokenizer, copy.copy(trainer.processor), cfg.embodiment_tag, device)
    ds = LeRobotDataset(args.dataset)
    mcfg = policy.modality_config
    episode_index = ds.episodes[0].index
    episode = ds.load_episode(episode_index, mcfg)
    t = min(100, episode.length - 1)
    frames = {k: ds.read_episode_frames(episode_index, ds.video_original_key(k), range(episode.length))
              for k in mcfg.video.modality_keys}
    observation = observation_at(ds, episode, mcfg, t, frames)

    def timed(calls: int) -> list[float]:
        times = []
        for _ in range(calls):
            sync()
            t0 = time.perf_counter()
            action = policy.get_action(observation)
            sync()
            times.append(time.perf_counter() - t0)
        assert all(v.shape[0] == len(mcfg.action.delta_indices) for v in action.values())
        return times

    result = {"denoising_steps": model.config.num_inference_timesteps, "observation_step": t,
              "model_dtype": str(policy.model.dtype)}
    timed(3)
    eager = timed(args.policy_calls)
    result["eager_ms_median"] = 1e3 * statistics.median(eager)
    result["eager_ms_min"] = 1e3 * min(eager)
    # the same call split: how much is the model, how much the processor + collator on the CPU
    steps, _ = policy._split(observation)
    samples = [policy.processor(step, policy.embodiment_tag) for step in steps]
    batch = policy.collator(samples)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    batch = {k: v.to(policy.model.dtype) if torch.is_tensor(v) and v.is_floating_point() else v
             for k, v in batch.items()}
    model_times = []
    for _ in range(args.policy_calls):
        sync()
        t0 = time.perf_counter()
        policy.model.get_action(**batch, generator=policy.generator)
        sync()
        model_times.append(time.perf_counter() - t0)
    result["model_only_ms_median"] = 1e3 * statistics.median(model_times)

    if args.compile and cuda:
        head = policy.model.action_head
        eager_dit = head.model
        try:
            head.model = torch.compile(eager_dit, mode="reduce-overhead", dynamic=False)
            t0 = time.perf_counter()
            timed(3)  # compiles (and records the CUDA graphs)
            result["compile_s"] = time.perf_counter() - t0
            compiled = timed(args.policy_calls)
            result["compiled_dit_ms_median"] = 1e3 * statistics.median(compiled)
            result["compiled_dit_ms_min"] = 1e3 * min(compiled)
        except Exception as exc:  # report, keep the eager numbers
            result["compile_error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        finally:
            head.model = eager_dit
    return result


# --- the driver ---------------------------------------------------------------------------------------------------
def versions() -> dict:
    import importlib.metadata as md

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "cpus": os.cpu_count()}
    for name in ("deepspeed", "accelerate", "transformers", "av", "simplejpeg"):
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            info[name] = None
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True).stdout.strip() or None
    except OSError:
        info["commit"] = None
    return info


def install_wheels(directory: Path, log: Path) -> float:
    """pip-install every wheel in ``directory`` with no index (a machine without network gets its missing packages
    carried as wheels: DeepSpeed, PyAV, simplejpeg, a newer transformers)."""
    wheels = sorted(str(w) for w in directory.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"error: --wheels {directory}: no .whl files there")
    return run_logged([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(directory), *wheels],
                      log)


def use_repo_sources() -> str:
    """Where groot_ft comes from; this checkout's src/ (for this process and the ones it starts) when it is not
    installed, as on a bare GPU image."""
    import importlib.util

    spec = importlib.util.find_spec("groot_ft")
    if spec is not None:
        return str(Path(spec.origin).parent)
    src = str(ROOT / "src")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    print(f"groot_ft is not installed in {sys.executable}: using {src}", flush=True)
    return src


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="LeRobot dataset (read only)")
    p.add_argument("--modality-config", required=True)
    p.add_argument("--embodiment-tag", required=True)
    p.add_argument("--work", required=True, help="statistics, shards, configs and logs (reused when present)")
    p.add_argument("--out", required=True, help="directory for gpu_check.json")
    p.add_argument("--model", default="n1.6-3b", help="model preset (random weights)")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32], help="per-GPU batch sizes, one process each")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    p.add_argument("--policy-calls", type=int, default=20, help="timed get_action calls (0: skip inference)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile latency")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    p.add_argument("--profile", type=int, default=0,
                   help="profile this many steps after the timed ones: OUT/profile-b<batch>.txt, per-op tables")
    p.add_argument("--phase-steps", type=int, default=5,
                   help="steps after the timed ones split into data / forward / backward / optimizer step (0: skip)")
    p.add_argument("--deepspeed-config", default=str(ROOT / "config" / "deepspeed" / "zero2.json"),
                   help="DeepSpeed config of the training processes (default: the workflow's ZeRO-2)")
    p.add_argument("--worker-timeout", type=float, default=600, help="seconds one training process may take")
    p.add_argument("--wheels", help="first pip-install every wheel in this directory, offline (logged to WORK/pip.log)")
    p.add_argument("--prepare-only", action="store_true",
                   help="build statistics and shards into --work and stop (on a CPU machine, to carry them)")
    p.add_argument("--host-cost", action="store_true",
                   help="the --model preset's depth at tiny widths: what a step costs the host (Python, dispatch, "
                        "launches, DeepSpeed's per-parameter work) when the arithmetic is negligible; runs on a CPU")
    p.add_argument("--dry-run", action="store_true",
                   help="on a CPU: the --model family's tiny preset (with --host-cost: the narrow --model), batch 4, "
                        "2+3 steps, 2 policy calls (everything but CUDA)")
    args = p.parse_args(argv)
    install_s = None
    if args.wheels:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        install_s = install_wheels(Path(args.wheels), Path(args.work) / "pip.log")
    groot_ft_from = use_repo_sources()
    if args.dry_run:
        # the family's tiny preset, or with --host-cost the narrow copy of --model (its depth is what that mode is
        # about)
        if not args.host_cost:
            args.model = "n1.7-tiny" if args.model.startswith("n1.7") else "tiny"
        args.batch, args.warmup, args.steps, args.workers = [4], 2, 3, 1
        args.policy_calls, args.compile, args.phase_steps = 2, False, min(args.phase_steps, 2)
    elif not args.prepare_only and not args.host_cost:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device; use --dry-run to check the script on a CPU", file=sys.stderr)
            return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / "gpu_check.json"
    results: dict = {"command": " ".join([Path(sys.argv[0]).name, *argv]), "versions": versions(),
                     "model": args.model, "host_cost": args.host_cost, "deepspeed_config": args.deepspeed_config,
                     "peak_tflops": args.peak_tflops, "install_s": install_s, "groot_ft_from": groot_ft_from,
                     "runs": []}
    write_json(result_path, results)
    t0 = time.perf_counter()
    results["prepare"] = prepare(args)
    print(f"prepared in {time.perf_counter() - t0:.1f} s: {results['prepare']}", flush=True)
    write_json(result_path, results)
    if args.prepare_only:
        return 0
    status = 0
    for i, batch in enumerate(args.batch):
        try:
            run = launch_worker(args, batch, policy=i == len(args.batch) - 1 and args.policy_calls > 0)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            run, status = {"batch": batch, "error": str(exc)[-4000:]}, 1
        results["runs"].append(run)
        write_json(result_path, results)
        summary = {k: run.get(k) for k in ("batch", "step_s_median", "samples_per_s", "data_wait_fraction",
                                           "host_cpu_fraction", "peak_gpu_memory_gib", "mfu", "loss_falling",
                                           "error")}
        print(json.dumps(summary), flush=True)
    results["total_s"] = time.perf_counter() - t0
    write_json(result_path, results)
    print(f"wrote {result_path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
