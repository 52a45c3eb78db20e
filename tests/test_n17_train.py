"""GR00T N1.7 through the project's trainer: `base_model_path: n1.7-tiny` fine-tunes on the demo dataset (one
DeepSpeed ZeRO-2 process on CPU) with a finite, falling loss, and `Gr00tPolicy` serves the output directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from groot_ft.config import FinetuneConfig
from groot_ft.modality import load_modality_config
from groot_ft.shards import build_shards
from groot_ft.stats import compute_stats, write_stats
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

MAX_STEPS = 40
TAG = "new_embodiment"


@pytest.fixture(scope="module")
def trained(demo_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("n17")
    cfg = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    stats, relative = compute_stats(demo_dataset, cfg)
    write_stats(root / "stats", stats, relative)
    # n1.7-tiny's processor works at a 48-px shortest edge (cli.image_edge_for gives the same for the preset)
    build_shards(demo_dataset, cfg, root / "shards", image_edge=48, shard_size=256, progress=False)
    out = root / "out"
    (out / "experiment_cfg").mkdir(parents=True)
    settings = {"output_dir": str(out), "base_model_path": "n1.7-tiny", "max_steps": MAX_STEPS, "save_steps": 1000,
                "logging_steps": 5, "global_batch_size": 8, "num_gpus": 1, "dataloader_num_workers": 0,
                "main_process_port": 29571, "learning_rate": 1e-3, "warmup_ratio": 0.0}
    config = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml",
                                      PROJECT_ROOT / "config" / "demo.yaml").replace(**settings)
    config.save_yaml(out / "experiment_cfg" / "config.yaml")
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "accelerate"), "launch", "--use_deepspeed", "--deepspeed_config_file",
           str(PROJECT_ROOT / "config" / "deepspeed" / "zero2.json"), "--num_processes", "1", "--num_machines", "1",
           "--machine_rank", "0", "--main_process_port", "29571", "-m", "groot_ft.train",
           "--config", str(out / "experiment_cfg" / "config.yaml"), "--dataset", str(demo_dataset),
           "--stats", str(root / "stats"), "--shards", str(root / "shards")]
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return out, log


def test_n17_tiny_trains_with_falling_loss(trained):
    out, log = trained
    assert "tokenizer: N1.7 tiny byte tokenizer (preset n1.7-tiny)" in log
    assert "processor class: Gr00tN1d7Processor" in log
    # state_dropout_prob null (config.yaml): upstream's N1.7 fine-tuning value, said in the log and saved
    assert "state_dropout_prob: 0.2 (upstream's GR00T N1.7 fine-tuning default (state_dropout_prob null))" in log
    losses = [r["loss"] for r in map(json.loads, (out / "training_log.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == MAX_STEPS // 5 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.9 * np.mean(losses[:2]), losses  # 1.32 -> 1.06 when written
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "Gr00tN1d7" and saved["state_dropout_prob"] == 0.2
    processor = json.loads((out / "processor" / "processor_config.json").read_text())
    assert processor["processor_class"] == "Gr00tN1d7Processor"
    assert processor["processor_kwargs"]["use_percentiles"] is True


def test_policy_serves_the_trained_n17(trained):
    from groot_ft.policy import Gr00tPolicy

    out, _ = trained
    policy = Gr00tPolicy(out / f"checkpoint-{MAX_STEPS}", TAG, device="cpu")  # weights + processor files
    assert type(policy.model).__name__ == "Gr00tN1d7"
    rng = np.random.default_rng(0)
    observation = {
        "video": {cam: rng.integers(0, 255, (2, 1, 96, 96, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": rng.normal(size=(2, 1, 3)).astype(np.float32),
                  "gripper": rng.uniform(size=(2, 1, 1)).astype(np.float32)},
        "language": {"annotation.human.task_description": [["move the arm to the red target"], [""]]},
    }
    actions = policy.get_action(observation)
    assert actions["arm"].shape == (2, 16, 3) and actions["gripper"].shape == (2, 16, 1)
    assert all(np.isfinite(a).all() for a in actions.values())


def test_policy_rtc_on_the_trained_n17(trained):
    """Real-time chunking on the trained checkpoint: the next chunk's frozen rows are the kept chunk's rows
    [action_horizon - rtc_overlap_steps, ...) in physical units. With the demo's per-step RELATIVE arm statistics and
    an unmoved state, some of them lie outside row 0-3's normalisation range: the model's chunk clips those, and the
    policy returns the committed values (last_info counts them); the ABSOLUTE gripper is reproduced by the model."""
    from groot_ft.policy import Gr00tPolicy

    out, _ = trained
    policy = Gr00tPolicy(out / f"checkpoint-{MAX_STEPS}", TAG, device="cpu")
    rng = np.random.default_rng(1)
    observation = {
        "video": {cam: rng.integers(0, 255, (1, 1, 96, 96, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": rng.normal(size=(1, 1, 3)).astype(np.float32), "gripper": np.full((1, 1, 1), 0.5, np.float32)},
        "language": {"annotation.human.task_description": [["move the arm to the red target"]]},
    }
    options = {"action_horizon": 16, "rtc_overlap_steps": 10, "rtc_frozen_steps": 4, "rtc_ramp_rate": 5.0}
    first = policy.get_action(observation, options=options)
    second = policy.get_action(observation, options=options)
    for key in first:
        np.testing.assert_allclose(second[key][:, :4], first[key][:, 6:10], rtol=0, atol=1e-5, err_msg=key)
    assert policy.last_info["rtc_applied"] and policy.last_info["frozen_values_replaced"] <= 4 * 3  # arm only
