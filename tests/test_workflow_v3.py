"""A LeRobot v3.0 dataset (many episodes per parquet and mp4 file) through the whole workflow, read natively."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_workflow

pytestmark = pytest.mark.slow


def test_v3_demo_workflow_end_to_end(tmp_path):
    out = tmp_path / "run"
    run_workflow(["--config", f"output_dir={out}", "demo_version=v3.0", "demo_episodes=8", "max_steps=10",
                  "save_steps=10", "logging_steps=5", "eval_episodes=1", "eval_steps=10",
                  "open_loop_eval_episodes=1", "main_process_port=29538"], out)
    dataset = tmp_path / "demo_dataset"
    assert json.loads((dataset / "meta" / "info.json").read_text())["codebase_version"] == "v3.0"
    assert not list(dataset.glob("meta/episodes.jsonl")) and list(dataset.glob("meta/episodes/*/*.parquet"))
    report = json.loads((out / "validation" / "report.json").read_text())
    assert report["codebase_version"] == "v3.0" and report["ok"] and report["errors"] == []
    train = json.loads((out / "shards" / "train" / "manifest.json").read_text())
    assert len(train["episode_indices"]) == 7 and train["samples"] > 0
    assert (out / "model.safetensors").is_file() and (out / "eval" / "open_loop" / "metrics.json").is_file()
