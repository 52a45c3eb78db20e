"""Upstream's own demo dataset (gr1.PickNPlace) through the whole workflow, read in place and never modified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_workflow

pytestmark = pytest.mark.slow


def _tree_digest(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_gr1_workflow_end_to_end(gr1_dataset, tmp_path):
    before = _tree_digest(gr1_dataset)
    out = tmp_path / "run"
    run_workflow(["--configfile", "config/demo.yaml", "--config", f"dataset={gr1_dataset}",
                  "modality_config_path=config/modality/gr1.yaml", "embodiment_tag=gr1", f"output_dir={out}",
                  "max_steps=10", "save_steps=10", "logging_steps=5", "main_process_port=29535", "eval_episodes=1",
                  "eval_steps=10", "open_loop_eval_episodes=1"], out)

    report = json.loads((out / "validation" / "report.json").read_text())
    assert report["errors"] == [] and {w["code"] for w in report["warnings"]} >= {"UNUSED_VIDEO_MISSING"}

    # our statistics equal the ones upstream ships with the dataset (q01/q99/min/max exactly, mean/std closely)
    ours = json.loads((out / "stats" / "stats.json").read_text())
    shipped = json.loads((gr1_dataset / "meta" / "stats.json").read_text())
    for stat in ("min", "max", "q01", "q99", "mean"):
        np.testing.assert_allclose(ours["action"][stat], shipped["action"][stat], rtol=1e-5, atol=1e-6)

    from groot_ft.policy import Gr00tPolicy

    policy = Gr00tPolicy(out, "gr1")
    rng = np.random.default_rng(0)
    obs = {
        "video": {"ego_view_bg_crop_pad_res256_freq20": rng.integers(0, 255, (2, 1, 256, 256, 3), dtype=np.uint8)},
        "state": {k: rng.normal(size=(2, 1, d)).astype(np.float32)
                  for k, d in (("left_arm", 7), ("left_hand", 6), ("right_arm", 7), ("right_hand", 6), ("waist", 3))},
        "language": {"task": [["pick the pear"], ["pick the meat"]]},  # gr1.yaml: the checkpoint's language key
    }
    action = policy.get_action(obs)
    assert action["left_arm"].shape == (2, 16, 7) and action["waist"].shape == (2, 16, 3)
    assert all(np.isfinite(a).all() for a in action.values())
    assert _tree_digest(gr1_dataset) == before, "the workflow modified the dataset"
