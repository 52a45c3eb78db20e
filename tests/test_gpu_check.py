"""scripts/gpu_check.py's CPU dry run: everything the GPU session runs but CUDA (statistics and shards with the
workflow's commands, a DeepSpeed ZeRO-2 process under ``accelerate launch`` driving the trainer's own step, the phase
split, the profiler table, and the policy's latency), so the one prepared device call does not fail on a broken
script; with ``--host-cost``, the mode that measures what a step of the 3 B structure costs the host."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from groot_ft.model import create_model
from tests.conftest import DEMO_MODALITY, PROJECT_ROOT, tools_env


@pytest.mark.slow
def test_dry_run_measures_every_stage_and_writes_results_under_out(demo_dataset, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "scripts/gpu_check.py", "--dry-run", "--dataset", str(demo_dataset),
           "--modality-config", str(DEMO_MODALITY), "--embodiment-tag", "new_embodiment",
           "--work", str(work), "--out", str(out), "--profile", "1",
           "--host-cost"]  # the n1.6-3b preset's depth at tiny widths: its 3 B structure, CPU-sized
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=tools_env(), capture_output=True, text=True, timeout=600)
    worker_logs = "".join(p.read_text()[-3000:] for p in work.glob("worker-*.log"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + worker_logs

    results = json.loads((out / "gpu_check.json").read_text())
    assert results["model"] == "n1.6-3b" and results["host_cost"] and results["prepare"]["samples"] > 0
    assert results["prepare"]["image_edge"] == 256  # shards at the preset's own image size
    (run,) = results["runs"]
    assert "error" not in run
    assert run["batch"] == 4 and run["timed_steps"] == 3
    assert len(run["losses"]) == 3 and run["loss_finite"] and all(math.isfinite(x) for x in run["losses"])
    assert run["samples_per_s"] > 0 and 0 <= run["data_wait_fraction"] < 1
    assert 0 < run["host_cpu_fraction"] <= 1.05  # thread CPU time over wall time (a little clock slack)
    assert run["flops_per_sample"] > 0 and run["sequence_length"] > 0
    # the preset's trainable tensors (what DeepSpeed's per-parameter work scales with), at a fraction of its size
    assert run["parameters"] < 50_000_000 and run["image_tensor_shape"][-2:] == [252, 252]
    with torch.device("meta"):
        full, _ = create_model("n1.6-3b")
    assert run["trainable_tensors"] == sum(1 for p in full.parameters() if p.requires_grad) == 517
    phases = run["phases"]
    assert set(phases) == {"data", "forward", "backward", "optimizer_step", "steps"}
    assert all(phases[p]["wall_s_median"] > 0 for p in ("forward", "backward", "optimizer_step"))
    policy = run["policy"]
    assert policy["denoising_steps"] > 0 and policy["eager_ms_median"] > 0 and policy["model_only_ms_median"] > 0
    # the profiler's table comes back with the results (a device call returns only what is under OUT)
    table = (out / "profile-b4.txt").read_text()
    assert "aten::" in table and "Self CPU time total" in table
