"""The demo workflow with one switch, `--config base_model_path=n1.7-tiny`: every rule runs for a GR00T N1.7 model
(2 DeepSpeed processes on CPU), and the packaged output serves actions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

MAX_STEPS = 20


@pytest.fixture(scope="module")
def n17_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wf-n17") / "run"
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    cmd = [snakemake, "--cores", "2", "--snakefile", "workflow/Snakefile", "--configfile", "config/demo.yaml",
           "--config", "base_model_path=n1.7-tiny", f"output_dir={out}", "demo_episodes=6", f"max_steps={MAX_STEPS}",
           "save_steps=10", "logging_steps=5", "save_total_limit=2", "main_process_port=29579", "eval_steps=10"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted((out / "logs").glob("*.log")))
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{logs}")
    return out


def test_every_rule_runs_for_n17(n17_run):
    from groot_ft.manifest import verify_output

    out = n17_run
    assert json.loads((out / "config.json").read_text())["model_type"] == "Gr00tN1d7"
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Gr00tN1d7Processor"
    assert "tokenizer: N1.7 tiny byte tokenizer (preset n1.7-tiny)" in (out / "logs" / "finetune.log").read_text()
    package_log = (out / "logs" / "package.log").read_text()
    assert "is not 'Gr00tN1d6Processor'" not in package_log and "ignoring unknown" not in package_log
    metrics = json.loads((out / "eval" / "open_loop" / "metrics.json").read_text())
    assert np.isfinite(metrics["mean_mse"])
    result = verify_output(out)
    assert result.ok, result.summary()


def test_the_packaged_n17_serves_actions(n17_run):
    from groot_ft.policy import Gr00tPolicy

    policy = Gr00tPolicy(n17_run, "new_embodiment", device="cpu")
    rng = np.random.default_rng(1)
    observation = {
        "video": {cam: rng.integers(0, 255, (1, 96, 96, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": rng.normal(size=(1, 3)).astype(np.float32), "gripper": np.full((1, 1), 0.5, np.float32)},
        "language": {"annotation.human.task_description": ["move the arm to the blue target"]},
    }
    actions = policy.get_action(observation)  # unbatched in, unbatched out
    assert actions["arm"].shape == (16, 3) and actions["gripper"].shape == (16, 1)
