"""The workflow's memory_plan step: written for every run, and stopping a run that cannot fit the stated card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import PROJECT_ROOT


def _snakemake(out: Path, *extra: str) -> subprocess.CompletedProcess:
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    cmd = [snakemake, "--cores", "1", "--snakefile", "workflow/Snakefile", "--until", "memory_plan",
           "--config", f"output_dir={out}", "demo_episodes=4", *extra]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_memory_plan_is_written_and_stops_a_run_that_cannot_fit(tmp_path):
    out = tmp_path / "run"
    # no card size (the demo, on a CPU): the plan is written and nothing blocks
    proc = _snakemake(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((out / "experiment_cfg" / "memory_plan.json").read_text())
    assert plan["fits"] is None and plan["bytes"]["peak"] > 0 and plan["trainable_parameters"] > 0
    assert "memory plan per GPU" in (out / "logs" / "memory_plan.log").read_text()

    # a card too small for even the tiny model plus the CUDA reserve: the step fails before any training
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump({"finetune_resources": {"gpu_memory_gb": 1}}))
    proc = _snakemake(out, "--configfile", str(card))
    assert proc.returncode != 0
    log = (out / "logs" / "memory_plan.log").read_text()
    assert "does NOT fit a 1 GiB card" in log and "cannot fit a 1 GiB card" in log
    assert "activation_checkpointing: true" in log and "lora_rank: 16" in log
    assert "cannot fit a 1 GiB card" in proc.stderr  # the rule shows its log in Snakemake's own output
    assert not (out / "experiment_cfg" / "memory_plan.json").exists()  # a failed step leaves no plan behind
    assert not (out / "model.safetensors").exists()
