#!/usr/bin/env python
"""Benchmark shard building and the shard loader against upstream GR00T's way of loading, on the same data.

    taskset -c 0 .venv/bin/python scripts/bench_loader.py --workdir /tmp/groot_ft_bench_loader

Datasets: the demo (``groot-ft demo-data``, 24 episodes, two 96x96 cameras, generated once under ``--workdir``) and
``../shared/datasets/gr1.PickNPlace`` (5 episodes, one 256x256 camera; skipped with a message when absent). Both
use the workflow's defaults: ``base_model_path: tiny`` (frames stored at a 48-pixel shortest edge),
``shard_size: 1024``, ``episode_sampling_rate: 0.1``, no colour jitter or rotation.

Measured per dataset, alternating the contenders ``--repeat`` times; rates are medians over the runs and ratios the
median of the per-run ratios. Rates are per CPU second of this process (the per-worker cost, which other jobs on a
shared machine barely move); the wall-clock ratios are printed beside them.

* loader, samples/s in one process (one worker): ``ours`` iterates ``groot_ft.data.loader``'s dataset over the
  shards, calling the real ``Gr00tProcessor`` per sample as training does (no collate, no model). ``upstream-style``
  does what upstream's ``ShardedSingleStepDataset.get_shard`` does for the same shard plan: per (episode, steps)
  piece, load the whole episode (parquet and a full PyAV decode of every frame of every camera), then cut the
  steps and run the same processor on each. The two take turns 10 times a run (``--samples`` / 10 and
  ``--baseline-samples`` / 10 samples a turn), so drift in the machine's speed hits both alike. Target: ours >= 10x.
* shard build, frames/s with one thread: stage 1 (decode, scale, JPEG-encode and store every needed frame, plus the
  parquet columns) against plain PyAV decoding of the same frames to RGB arrays (``groot_ft.data.video.read_frames``,
  what any loader must do at least once), and against bare decoding (frames left as YUV, no conversion at all).
  The three take turns 3 times a run, each turn one pass over the dataset with stage 1 as one call over all its
  episodes, as the workflow makes it (a call has fixed costs, such as the last commit: calls of 8 episodes cost
  3-5% more on the demo), so drift in the machine's speed hits all of them alike.
  Target: >= 0.7x of plain decoding.

Prints a Markdown table (paste it into docs/benchmarks.md) and writes ``bench_loader.json`` under ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GR1 = (ROOT / ".." / "shared" / "datasets" / "gr1.PickNPlace").resolve()
TAG = "new_embodiment"
LOADER_ROUNDS = 10  # turns each loader contender takes per run


class Clock:
    """Wall and CPU seconds of a block. CPU time (this process, all its threads) is the per-worker cost and is
    barely moved by other people's jobs on a shared machine; wall time is reported beside it."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def make_processor(dataset: Path, cfg, edge: int):
    """The processor exactly as the trainer builds it for the tiny model (statistics computed from the dataset)."""
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.model import preset
    from groot_ft.processor import Gr00tProcessor, statistics_from_dataset_stats
    from groot_ft.stats import compute_stats

    mcfg = preset("tiny")
    stats, relative = compute_stats(dataset, cfg)
    statistics = {TAG: statistics_from_dataset_stats(stats, relative, LeRobotDataset(dataset).modality, cfg)}
    processor = Gr00tProcessor(
        modality_configs={TAG: cfg},
        statistics=statistics,
        max_state_dim=mcfg.max_state_dim,
        max_action_dim=mcfg.max_action_dim,
        max_action_horizon=mcfg.action_horizon,
        shortest_image_edge=edge,
        color_jitter_params=None,
        random_rotation_angle=None,
        use_relative_action=True,
    )
    processor.train()
    return processor


def ours_samples(shard_dir: Path, cfg, processor) -> Iterator:
    """Our loader's samples, endlessly (``processor=None``: the raw steps, no processor)."""
    from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset
    from groot_ft.shards import ShardSet

    def process(step, rng):
        return step if processor is None else processor(step, TAG, rng=rng)

    stream = ShardedMixtureDataset([MixtureSource(ShardSet.open(shard_dir), cfg, process)], lambda b: b, 8, seed=0)
    for batch in stream:
        yield from batch


def upstream_samples(dataset: Path, cfg, processor, plan) -> Iterator:
    """Upstream's get_shard approach over the same plan, endlessly: per (episode, steps) piece, load the whole
    episode (parquet and a decode of every frame of every camera), then cut the steps."""
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.data.video import read_frames

    ds = LeRobotDataset(dataset)
    rng = np.random.default_rng(0)
    lang_key = cfg.language.modality_keys[0]
    while True:
        for shard in plan:
            for episode, steps in shard:
                arrays = ds.load_episode(episode, cfg)
                videos = {
                    k: read_frames(ds.video_path(episode, ds.video_original_key(k))) for k in cfg.video.modality_keys
                }
                n = arrays.length
                for s in steps.tolist():
                    step = {"video": {}, "state": {}, "action": {}}
                    rows = np.clip(s + np.asarray(cfg.video.delta_indices), 0, n - 1)
                    for k, frames in videos.items():
                        step["video"][k] = frames[rows]
                    rows = np.clip(s + np.asarray(cfg.state.delta_indices), 0, n - 1)
                    for k, v in arrays.state.items():
                        step["state"][k] = v[rows]
                    rows = s + np.asarray(cfg.action.delta_indices)
                    for k, v in arrays.action.items():
                        step["action"][k] = v[rows]
                    step["language"] = {lang_key: arrays.language[s]}
                    yield step if processor is None else processor(step, TAG, rng=rng)


class Tally:
    """Summed CPU and wall seconds of many timed blocks."""

    def __init__(self):
        self.cpu = self.wall = 0.0

    def add(self, clock: Clock) -> None:
        self.cpu += clock.cpu
        self.wall += clock.wall


def race(streams: dict[str, tuple[Iterator, int]], rounds: int) -> dict[str, tuple[int, Tally]]:
    """(samples, time) per stream, the streams taking turns ``rounds`` times, ``chunk`` samples a turn each, so a
    machine whose speed drifts affects every stream alike."""
    out = {name: (0, Tally()) for name in streams}
    for _ in range(rounds):
        for name, (samples, chunk) in streams.items():
            with Clock() as clock:
                for _ in range(chunk):
                    next(samples)
            count, tally = out[name]
            tally.add(clock)
            out[name] = (count + chunk, tally)
    return out


def build_vs_decode(dataset: Path, cfg, edge: int, workdir: Path, passes: int = 3) -> tuple[int, dict[str, Tally]]:
    """(frames stored, time per contender) of stage 1 against plain decoding of the same frames.

    The three contenders take turns ``passes`` times, each turn one pass over the whole dataset: stage 1 from
    scratch on one thread as one call, as the workflow makes it, then decoding the same frames to RGB, then bare
    decoding. A machine that speeds up or slows down during the round affects all three alike.
    """
    import av

    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.data.video import read_frames
    from groot_ft.shards import _refresh_caches, needed_frames

    ds = LeRobotDataset(dataset)
    episodes = [e.index for e in ds.episodes]
    work = [
        (needed_frames(e.length, cfg), ds.video_path(e.index, ds.video_original_key(k)))
        for e in ds.episodes
        for k in cfg.video.modality_keys
    ]
    tally = {k: Tally() for k in ("stage1", "decode_rgb", "decode_bare")}
    for _ in range(passes):
        out = Path(tempfile.mkdtemp(dir=workdir))
        try:
            with Clock() as clock:
                _refresh_caches(ds, episodes, cfg, edge, out, threads=1, progress=False)
            tally["stage1"].add(clock)
        finally:
            shutil.rmtree(out)
        with Clock() as clock:
            for wanted, path in work:
                read_frames(path, wanted)
        tally["decode_rgb"].add(clock)
        with Clock() as clock:
            for wanted, path in work:
                with av.open(str(path)) as container:
                    for i, _ in enumerate(container.decode(video=0)):
                        if i >= wanted[-1]:
                            break
        tally["decode_bare"].add(clock)
    return passes * sum(len(wanted) for wanted, _ in work), tally


def bench_dataset(name: str, dataset: Path, modality: Path, workdir: Path, repeat: int, samples: dict) -> dict:
    from groot_ft.cli import image_edge_for
    from groot_ft.modality import load_modality_config
    from groot_ft.shards import build_shards, plan_shards, read_cache_info

    cfg = load_modality_config(modality)
    edge = image_edge_for("tiny")
    shard_dir = workdir / f"shards_{name}"
    manifest = json.loads(build_shards(dataset, cfg, shard_dir, image_edge=edge, seed=42, progress=False).read_text())
    caches = shard_dir / "episodes"
    lengths = {e: read_cache_info(caches / f"episode_{e:06d}.arrow").length for e in manifest["episode_indices"]}
    plan = plan_shards(lengths, cfg, manifest["shard_size"], manifest["episode_sampling_rate"], manifest["seed"])
    processor = make_processor(dataset, cfg, edge)

    runs: dict[str, dict[str, list[float]]] = {
        k: {"cpu": [], "wall": []}
        for k in ("ours", "upstream", "ours_no_processor", "upstream_no_processor", "stage1", "decode_rgb",
                  "decode_bare")
    }
    frames = 0
    # warm-up, not recorded: first calls pay one-off costs (imports, allocator growth, FFmpeg and torch set-up)
    race({"ours": (ours_samples(shard_dir, cfg, processor), 100),
          "upstream": (upstream_samples(dataset, cfg, processor, plan), 10)}, 1)
    build_vs_decode(dataset, cfg, edge, workdir, passes=1)
    for r in range(repeat):
        for suffix, proc in (("", processor), ("_no_processor", None)):
            chunks = {"ours": samples["ours"] // LOADER_ROUNDS, "upstream": samples["upstream"] // LOADER_ROUNDS}
            streams = {
                "ours": (ours_samples(shard_dir, cfg, proc), chunks["ours"]),
                "upstream": (upstream_samples(dataset, cfg, proc, plan), chunks["upstream"]),
            }
            for k, (count, tally) in race(streams, LOADER_ROUNDS).items():
                runs[k + suffix]["cpu"].append(count / tally.cpu)
                runs[k + suffix]["wall"].append(count / tally.wall)
        frames, tally = build_vs_decode(dataset, cfg, edge, workdir)
        for k, t in tally.items():  # the decoders handle exactly the frames stage 1 stores
            runs[k]["cpu"].append(frames / t.cpu)
            runs[k]["wall"].append(frames / t.wall)
        print(f"  {name} run {r + 1}/{repeat} (per CPU second): "
              + ", ".join(f"{k} {v['cpu'][-1]:.0f}" for k, v in runs.items()), flush=True)
    med = {k: {m: statistics.median(v[m]) for m in ("cpu", "wall")} for k, v in runs.items()}
    pairs = {
        "loader": ("ours", "upstream"),
        "loader_no_processor": ("ours_no_processor", "upstream_no_processor"),
        "build_vs_decode_rgb": ("stage1", "decode_rgb"),
        "build_vs_decode_bare": ("stage1", "decode_bare"),
    }
    # ratios within each run (measured seconds apart), then their median: robust to load that drifts between runs
    ratio = {
        m: {
            name: statistics.median(x / y for x, y in zip(runs[a][m], runs[b][m], strict=True))
            for name, (a, b) in pairs.items()
        }
        for m in ("cpu", "wall")
    }
    return {
        "dataset": name,
        "episodes": manifest["episodes"],
        "samples_in_shards": manifest["samples"],
        "shards": len(manifest["shards"]),
        "cameras": len(cfg.video.modality_keys),
        "frames_stored": frames,
        "runs": runs,
        "median": med,
        "ratio": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "groot_ft_bench_loader")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--demo-episodes", type=int, default=24)
    p.add_argument("--samples", type=int, default=1000, help="samples per loader measurement (ours)")
    p.add_argument("--baseline-samples", type=int, default=200, help="samples per upstream-style measurement")
    p.add_argument("--gr1", type=Path, default=GR1)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # per-worker numbers: a DataLoader worker runs its processor on one thread
    from groot_ft.data.demo import write_demo_dataset

    args.workdir.mkdir(parents=True, exist_ok=True)
    demo = args.workdir / f"demo{args.demo_episodes}"
    if not (demo / "meta" / "info.json").is_file():
        write_demo_dataset(demo, episodes=args.demo_episodes, seed=0)
    samples = {"ours": args.samples, "upstream": args.baseline_samples}
    results = [bench_dataset("demo", demo, ROOT / "config/modality/demo.yaml", args.workdir, args.repeat, samples)]
    if (args.gr1 / "meta" / "info.json").is_file():
        results.append(
            bench_dataset("gr1.PickNPlace", args.gr1, ROOT / "config/modality/gr1.yaml", args.workdir, args.repeat,
                          samples)
        )
    else:
        print(f"gr1.PickNPlace not found at {args.gr1}; benchmarking the demo only")

    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} CPUs visible, Python {platform.python_version()}, "
          f"repeat {args.repeat} (medians); rates per CPU second (wall-clock ratio in brackets)\n")
    print("| dataset | loader ours (samples/s) | upstream-style (samples/s) | ratio | ratio without processor "
          "| stage 1 build (frames/s) | PyAV decode to RGB (frames/s) | ratio | bare decode (frames/s) | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        m, c, w = r["median"], r["ratio"]["cpu"], r["ratio"]["wall"]
        print(f"| {r['dataset']} ({r['episodes']} ep, {r['cameras']} cam) | {m['ours']['cpu']:.0f} | "
              f"{m['upstream']['cpu']:.1f} | {c['loader']:.1f}x ({w['loader']:.1f}x) | "
              f"{c['loader_no_processor']:.0f}x ({w['loader_no_processor']:.0f}x) | {m['stage1']['cpu']:.0f} | "
              f"{m['decode_rgb']['cpu']:.0f} | {c['build_vs_decode_rgb']:.2f}x ({w['build_vs_decode_rgb']:.2f}x) | "
              f"{m['decode_bare']['cpu']:.0f} | {c['build_vs_decode_bare']:.2f}x ({w['build_vs_decode_bare']:.2f}x) |")
    (args.workdir / "bench_loader.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
