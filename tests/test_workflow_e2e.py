"""The demo workflow end to end, as `make demo` runs it: 2 DeepSpeed training processes on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_workflow

pytestmark = pytest.mark.slow

MAX_STEPS = 120


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("e2e")
    out = root / "run"
    proc = run_workflow([
        "--config", f"output_dir={out}", "demo_episodes=12", f"max_steps={MAX_STEPS}", "save_steps=50",
        "logging_steps=10", "save_total_limit=2", "main_process_port=29533", "eval_steps=50",
    ], out)
    return out, proc


def test_output_tree_is_complete(demo_run):
    from groot_ft.package import check_tree

    out, _ = demo_run
    assert check_tree(out) == []
    for rel in ("validation/report.json", "stats/stats.json", "stats/relative_stats.json",
                "shards/train/manifest.json", "shards/eval/manifest.json", "experiment_cfg/config.yaml",
                "processor/statistics.json", "manifest.json", "plots/loss.png", "plots/dataset_stats.png",
                "processor_config.json", "eval/open_loop/metrics.json"):
        assert (out / rel).is_file(), rel
    assert "!!python" not in (out / "experiment_cfg" / "config.yaml").read_text()
    checkpoints = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if "best" not in p.name)
    assert checkpoints == [100, MAX_STEPS]  # save_total_limit=2 dropped checkpoint-50
    best = list(out.glob("checkpoint-*-best-eval_loss_*"))
    assert len(best) == 1 and (best[0] / "model.safetensors").is_file()
    assert not list(out.glob(".checkpoint-*"))  # no half-written checkpoint left behind
    manifest = json.loads((out / "manifest.json").read_text())
    assert "model.safetensors" in manifest["artifacts"]
    assert "eval/open_loop/metrics.json" in manifest["artifacts"]  # package runs after the open-loop eval
    assert (out / "README.md").is_file() and (out / "release" / "model.safetensors").is_file()
    from groot_ft.manifest import verify_output

    assert verify_output(out).ok, verify_output(out).summary()


def test_training_used_two_deepspeed_processes(demo_run):
    out, _ = demo_run
    log = (out / "logs" / "finetune.log").read_text()
    assert "2 process(es)" in log
    ds = json.loads((out / "experiment_cfg" / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["train_micro_batch_size_per_gpu"] * 2 == ds["train_batch_size"]


def test_held_out_episodes_never_train(demo_run):
    out, _ = demo_run
    train = json.loads((out / "shards" / "train" / "manifest.json").read_text())["episode_indices"]
    held = json.loads((out / "shards" / "eval" / "manifest.json").read_text())["episode_indices"]
    assert len(held) == 2 and not set(train) & set(held) and len(train) + len(held) == 12
    metrics = json.loads((out / "eval" / "open_loop" / "metrics.json").read_text())
    assert [e["episode_index"] for e in metrics["episodes"]] == held
    assert np.isfinite(metrics["mean_mse"]) and metrics["mean_mae"] > 0
    for ep in held:
        assert (out / "eval" / "open_loop" / "plots" / f"traj_{ep:06d}.png").is_file()
    evals = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines() if "eval_loss" in x]
    assert [r["step"] for r in evals] == [50, 100, MAX_STEPS]


def test_loss_falls(demo_run):
    out, _ = demo_run
    records = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in records][-1] == MAX_STEPS
    first = np.mean([r["loss"] for r in records[:2]])
    last = np.mean([r["loss"] for r in records[-2:]])
    assert all(np.isfinite(r["loss"]) for r in records)
    assert last < 0.7 * first, f"loss did not fall enough: {first:.4f} -> {last:.4f}"


def test_final_model_loads_with_automodel(demo_run):
    import groot_ft  # noqa: F401
    from transformers import AutoModel

    out, _ = demo_run
    model = AutoModel.from_pretrained(out)
    assert type(model).__name__ == "Gr00tN1d6"


def test_policy_returns_finite_actions(demo_run):
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.data.video import read_frames
    from groot_ft.modality import load_modality_config
    from groot_ft.policy import Gr00tPolicy

    out, _ = demo_run
    dataset = LeRobotDataset(out.parent / "demo_dataset")
    cfg = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    episode = dataset.load_episode(0, cfg)
    t = 3
    obs = {
        "video": {k: read_frames(dataset.video_path(0, dataset.video_original_key(k)), [t])[None]
                  for k in cfg.video.modality_keys},
        "state": {k: v[t : t + 1][None] for k, v in episode.state.items()},
        "language": {cfg.language.modality_keys[0]: [[episode.language[t]]]},
    }
    for path in (out, sorted(out.glob("checkpoint-*"))[-1]):
        policy = Gr00tPolicy(path, "new_embodiment", device="cpu")
        action = policy.get_action(obs)
        assert set(action) == {"arm", "gripper"}
        assert action["arm"].shape == (1, 16, 3) and action["gripper"].shape == (1, 16, 1)
        assert all(np.isfinite(a).all() for a in action.values())
    unbatched = {
        "video": {k: v[0] for k, v in obs["video"].items()},
        "state": {k: v[0] for k, v in obs["state"].items()},
        "language": {k: v[0][0] for k, v in obs["language"].items()},
    }
    assert policy.get_action(unbatched)["arm"].shape == (16, 3)


def test_second_run_has_nothing_to_do(demo_run):
    out, _ = demo_run
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    proc = subprocess.run(
        [snakemake, "--cores", "2", "--snakefile", "workflow/Snakefile", "--dry-run", "--config", f"output_dir={out}",
         "demo_episodes=12", f"max_steps={MAX_STEPS}", "save_steps=50", "logging_steps=10", "save_total_limit=2",
         "main_process_port=29533", "eval_steps=50"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_holds_validation_statistics_loss_and_open_loop_plots(demo_run, tmp_path):
    """`snakemake --report` on the finished run: one HTML file with every report() output, filed by category."""
    import base64
    import re

    out, proc = demo_run
    report = tmp_path / "report.html"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    made = subprocess.run([*proc.args, "--report", str(report)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    html = report.read_text()
    assert "groot-ft fine-tunes" in html  # workflow/report/workflow.rst
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    names = {c: {Path(p).name for group in v.values() for p in group} for c, v in categories.items()}
    held = json.loads((out / "shards" / "eval" / "manifest.json").read_text())["episode_indices"]
    assert names["1. Dataset"] == {"summary.txt"}
    assert {"dataset_stats.png", "histograms.png", "state_action_ranges.png"} <= names["2. Statistics"]
    assert "loss.png" in names["3. Training"]
    assert names["4. Open-loop evaluation"] == {f"traj_{ep:06d}.png" for ep in held}
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    summary = results[str(out / "validation" / "summary.txt")]["data_uri"].split(",", 1)[1]
    assert "0 error(s)" in base64.b64decode(summary).decode()
