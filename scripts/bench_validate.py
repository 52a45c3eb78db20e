"""Throughput and peak memory of ``validate_dataset`` (default = fast mode) on demo datasets of 100 and 1,000 episodes.

Run it on ONE core (the numbers in docs/ are taken like this):

    taskset -c 0 .venv/bin/python scripts/bench_validate.py                  # 100 and 1,000 episodes
    taskset -c 0 .venv/bin/python scripts/bench_validate.py --episodes 1000 --repeat 5 --workdir /tmp/bv

(``--cpu 0`` pins the measuring processes with ``os.sched_setaffinity`` instead, where ``taskset`` is missing.)

Datasets are made by ``groot_ft.data.demo.write_demo_dataset`` (real H.264 videos, small frames: ``--image-size``,
default 32 px, since fast mode only reads container metadata) and cached under ``--workdir`` (default
``$TMPDIR/groot-ft-bench-validate``), so later runs skip generation.

Every measurement runs in a fresh child process, so ``ru_maxrss`` (the process's peak resident set) belongs to that
run alone. Per dataset size, three kinds of run:

* ``full``: ``validate_dataset(dataset, demo modality config)`` as ``groot-ft validate`` runs it, timed ``--repeat``
  times (median and best reported);
* ``tabular``: the same with the per-episode video checks replaced by no-ops (a measurement hook on the
  validator's private ``check_episode_videos`` / ``_check_episode_videos``; it has no switch for this), i.e.
  metadata + parquet + stats + modality checks only;
* ``memory``: one ``full`` run under ``tracemalloc`` (Python heap peak; slower, so not timed).

Each child first validates once untimed (lazy imports, first-use caches). Memory columns: ``tracemalloc peak`` is
the Python heap peak during one validation; ``RSS peak - start`` samples the resident set every 2 ms during that
run (memory mode only) and subtracts the RSS when it began, covering native (Arrow, FFmpeg) buffers as well;
``ru_maxrss`` is the child process's lifetime peak (dominated by importing torch via ``groot_ft``). If memory does
not grow with the number of episodes, the 100- and 1,000-episode rows match.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = PROJECT / "config" / "modality" / "demo.yaml"
MIB = 1024 * 1024


def _maxrss_bytes() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------------------ dataset


def ensure_dataset(workdir: Path, episodes: int, image_size: int, codec: str, seed: int) -> tuple[Path, float | None]:
    """The cached demo dataset for these parameters (generated when absent); (path, generation seconds or None)."""
    from groot_ft.data.demo import write_demo_dataset

    path = workdir / f"demo-{episodes}ep-{image_size}px-{codec}-seed{seed}"
    info = path / "meta" / "info.json"
    if info.is_file():
        try:
            if json.loads(info.read_text())["total_episodes"] == episodes:
                return path, None
        except (ValueError, KeyError):
            pass
        shutil.rmtree(path)  # an incomplete cache entry of ours (write_demo_dataset renames into place atomically)
    t0 = time.perf_counter()
    write_demo_dataset(path, episodes=episodes, codec=codec, seed=seed, image_size=image_size)
    return path, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------------ child


def _skip_video_probes(V) -> bool:
    """Measurement hook: replace the validator's per-episode video checks by no-ops (it has no switch for that).

    Patches the layouts' ``check_episode_videos`` methods where they exist and the module-level
    ``_check_episode_videos`` function; returns whether anything was patched.
    """
    patched = False
    base = getattr(V, "_Layout", None)
    for obj in list(vars(V).values()):
        if isinstance(obj, type) and base is not None and issubclass(obj, base) and "check_episode_videos" in vars(obj):
            obj.check_episode_videos = lambda self, *a, **k: None
            patched = True
    if hasattr(V, "_check_episode_videos"):
        V._check_episode_videos = lambda *a, **k: None
        patched = True
    return patched


def child(args: argparse.Namespace) -> None:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import av  # noqa: F401 - imported lazily by the video checks; load it before timing

    import groot_ft.data.video  # noqa: F401
    from groot_ft.data import validate as V
    from groot_ft.modality import load_modality_config

    cfg = None if args.no_config else load_modality_config(DEMO_CONFIG)
    if args.mode == "tabular" and not _skip_video_probes(V):
        print(json.dumps({"mode": args.mode, "skipped": "no per-episode video check found to switch off"}))
        return

    V.validate_dataset(args.dataset, cfg)  # warm-up: lazy imports and first-use caches are not measured
    rss_before = _maxrss_bytes()
    times: list[float] = []
    heap_peak = rss_peak = rss_start = None
    if args.mode == "memory":
        import threading
        import tracemalloc

        rss_start = _current_rss_bytes()
        samples = [rss_start]
        done = threading.Event()

        def sample() -> None:  # untimed mode, so a sampler thread may share the core
            while not done.wait(0.002):
                samples.append(_current_rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tracemalloc.start()
        t0 = time.perf_counter()
        report = V.validate_dataset(args.dataset, cfg)
        times.append(time.perf_counter() - t0)
        heap_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        done.set()
        sampler.join()
        samples.append(_current_rss_bytes())
        rss_peak = max(samples)
    else:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = V.validate_dataset(args.dataset, cfg)
            times.append(time.perf_counter() - t0)
    rss_after = _maxrss_bytes()
    print(
        json.dumps(
            {
                "mode": args.mode,
                "episodes": report.episodes,
                "frames": report.frames,
                "errors": len(report.errors),
                "warnings": len(report.warnings),
                "times": times,
                "heap_peak": heap_peak,
                "rss_start": rss_start,
                "rss_peak": rss_peak,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "affinity": sorted(os.sched_getaffinity(0)),
            }
        )
    )


def run_child(dataset: Path, mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--_dataset", str(dataset), "--_mode", mode]
    cmd += ["--repeat", str(args.repeat)]
    if args.cpu is not None:
        cmd += ["--cpu", str(args.cpu)]
    if args.no_config:
        cmd.append("--no-config")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------ main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeat", type=int, default=3, help="timed runs per mode (median and best are reported)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--codec", choices=["h264", "av1"], default="h264")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "groot-ft-bench-validate")
    p.add_argument("--cpu", type=int, help="pin the measuring processes to this core (alternative to taskset -c)")
    p.add_argument("--no-config", action="store_true", help="validate without the demo modality config")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_dataset", help=argparse.SUPPRESS)
    p.add_argument("--_mode", dest="mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        args.dataset = args._dataset
        child(args)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    affinity = sorted(os.sched_getaffinity(0)) if args.cpu is None else [args.cpu]
    print(f"# validate_dataset benchmark: python {sys.version.split()[0]}, cores allowed {affinity}, "
          f"{os.cpu_count()} online; workdir {args.workdir}")
    if len(affinity) != 1:
        print("# warning: not pinned to one core; run under `taskset -c 0` (or pass --cpu 0)")
    rows = []
    for n in args.episodes:
        dataset, gen = ensure_dataset(args.workdir, n, args.image_size, args.codec, args.seed)
        print(f"# {n} episodes: {dataset} " + (f"(generated in {gen:.1f} s)" if gen is not None else "(cached)"))
        results = {mode: run_child(dataset, mode, args) for mode in ("full", "tabular", "memory")}
        rows.append((n, results))

    print()
    print("| episodes | frames | mode | wall median (best) | episodes/s | frames/s | findings E/W "
          "| tracemalloc peak | RSS peak - start (sampled) | ru_maxrss (process) |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for _n, results in rows:
        mem = results["memory"]
        for mode in ("full", "tabular", "memory"):
            r = results[mode]
            if "skipped" in r:
                print(f"| {_n} | | {mode} | skipped: {r['skipped']} | | | | | | |")
                continue
            med, best = statistics.median(r["times"]), min(r["times"])
            heap = f"{mem['heap_peak'] / MIB:.1f} MiB" if mode == "memory" else ""
            growth = f"{(mem['rss_peak'] - mem['rss_start']) / MIB:.1f} MiB" if mode == "memory" else ""
            timing = f"{med:.3f} s ({best:.3f})" if mode != "memory" else f"{med:.3f} s (traced)"
            rate = f"{r['episodes'] / med:,.0f}" if mode != "memory" else ""
            frate = f"{r['frames'] / med:,.0f}" if mode != "memory" else ""
            print(
                f"| {r['episodes']} | {r['frames']} | {mode} | {timing} | {rate} | {frate} "
                f"| {r['errors']}/{r['warnings']} | {heap} | {growth} | {r['rss_after'] / MIB:.0f} MiB |"
            )


if __name__ == "__main__":
    main()
