#!/usr/bin/env python
"""Time a no-op ``snakemake`` and a no-op ``dvc repro`` on a finished run over a large tracked dataset.

    .venv/bin/python scripts/bench_noop.py --episodes 1000 --workdir /tmp/groot-ft-bench-noop

The demo dataset (real H.264 videos, two cameras) is generated once with ``groot-ft demo-data`` and kept under
``--workdir``. A git + DVC repository is set up beside it, holding a copy of the project's dvc.yaml, .dvcignore,
workflow/, config/, envs/ and src/ and a hard-linked copy of the dataset (``dvc add``-ed). ``dvc repro`` runs the
workflow once with minimal training (max_steps 2); later invocations reuse it after copying the current code
in and running `dvc repro` again. Then each no-op command runs ``--repeats`` times and the median wall time is
reported, next to baselines measured in the same session:

* ``snakemake`` and ``dvc repro`` on a one-rule / one-stage project whose single output exists (their fixed cost:
  interpreter start-up, imports, lock files);
* ``python -c pass`` with this interpreter.

Each no-op is checked to really be one: Snakemake must say "Nothing to be done", DVC that the stage did not change.
Prints a JSON summary; ``--json FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATASET = "data/demo_dataset"  # dvc.yaml's vars
RUN = "results/dvc"
TRAINING = {"max_steps": 2, "save_steps": 2, "eval_steps": 2, "logging_steps": 1, "save_total_limit": 1,
            "num_gpus": 1, "global_batch_size": 4, "eval_episodes": 2, "open_loop_eval_episodes": 1,
            "main_process_port": 29713}
SNAKEMAKE_NOOP = ["snakemake", "--cores", "all", "--snakefile", "workflow/Snakefile",
                  "--config", f"dataset={DATASET}", f"output_dir={RUN}"]


def sh(cwd: Path, *cmd: str) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: `{' '.join(cmd)}` in {cwd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return elapsed, proc.stdout + proc.stderr


def median_time(cwd: Path, cmd: list[str], must_say: str, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        elapsed, out = sh(cwd, *cmd)
        if must_say not in out:
            sys.exit(f"error: `{' '.join(cmd)}` was not a no-op (no {must_say!r} in its output):\n{out[-3000:]}")
        times.append(elapsed)
    return {"command": " ".join(cmd), "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}


def make_dataset(workdir: Path, episodes: int) -> tuple[Path, float | None]:
    path = workdir / f"demo_{episodes}"
    if (path / "meta" / "info.json").is_file():
        return path, None
    elapsed, _ = sh(ROOT, "groot-ft", "demo-data", str(path), "--episodes", str(episodes), "--seed", "0")
    return path, elapsed


def make_project(workdir: Path, dataset: Path, episodes: int) -> tuple[Path, float | None]:
    """The DVC project after its first full `dvc repro`; reused when an earlier invocation finished it."""
    import yaml

    repo = workdir / f"project_{episodes}"
    done = repo / ".bench-first-run-done"
    if done.is_file():
        # bring the code up to date; `dvc repro` then reruns only what the changes touch
        for name in ("workflow", "src", "envs"):
            shutil.rmtree(repo / name)
            shutil.copytree(ROOT / name, repo / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("dvc.yaml", ".dvcignore"):
            shutil.copy2(ROOT / name, repo / name)
        sh(repo, "dvc", "repro")
        return repo, None
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("workflow", "config", "src", "envs"):
        shutil.copytree(ROOT / name, repo / name, symlinks=True, ignore=skip)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(dataset, repo / DATASET, copy_function=os.link)  # DVC caches its own copy
    cfg_path = repo / "config" / "config.yaml"
    cfg_path.write_text(yaml.safe_dump({**yaml.safe_load(cfg_path.read_text()), **TRAINING}, sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "add", "-q", DATASET)
    elapsed, _ = sh(repo, "dvc", "repro")
    done.write_text("")
    return repo, elapsed


def make_baselines(workdir: Path) -> Path:
    base = workdir / "baseline"
    if (base / "out.txt").is_file():
        return base
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    (base / "Snakefile").write_text(
        'rule all:\n    output:\n        "out.txt",\n    shell:\n        "echo done > {output}"\n'
    )
    (base / "dvc.yaml").write_text("stages:\n  one:\n    cmd: snakemake --cores 1\n    outs:\n      - out.txt\n")
    sh(base, "git", "init", "-q")
    sh(base, "dvc", "init", "-q")
    sh(base, "dvc", "repro")
    return base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/groot-ft-bench-noop"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    dataset, generated_s = make_dataset(args.workdir, args.episodes)
    repo, first_run_s = make_project(args.workdir, dataset, args.episodes)
    base = make_baselines(args.workdir)
    n_files = sum(1 for p in (repo / DATASET).rglob("*") if p.is_file())

    result = {
        "episodes": args.episodes,
        "dataset_files": n_files,
        "dataset_generation_s": generated_s and round(generated_s, 1),
        "first_dvc_repro_s": first_run_s and round(first_run_s, 1),
        "noop_snakemake": median_time(repo, SNAKEMAKE_NOOP, "Nothing to be done", args.repeats),
        "noop_dvc_repro": median_time(repo, ["dvc", "repro"], "didn't change, skipping", args.repeats),
        "baseline_snakemake_one_rule": median_time(base, ["snakemake", "--cores", "1"], "Nothing to be done",
                                                   args.repeats),
        "baseline_dvc_repro_one_stage": median_time(base, ["dvc", "repro"], "didn't change, skipping", args.repeats),
        "baseline_python_pass": median_time(ROOT, [sys.executable, "-c", "pass"], "", args.repeats),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_after": os.getloadavg()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
