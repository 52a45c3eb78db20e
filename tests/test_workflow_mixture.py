"""A `datasets` mixture through the whole workflow: per-dataset stages, merged statistics, one mixed training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.conftest import DEMO_MODALITY, run_workflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    from groot_ft.data.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("mixture")
    a = write_demo_dataset(root / "arm_a", episodes=6, seed=1)
    b = write_demo_dataset(root / "arm_b", episodes=5, seed=2, version="v3.0")
    c = write_demo_dataset(root / "front_only", episodes=5, seed=3)
    # a second embodiment: the same robot seen by its front camera only, trained on absolute actions
    front_only = yaml.safe_load(DEMO_MODALITY.read_text())
    front_only["video"]["modality_keys"] = ["front"]
    front_only["action"]["action_configs"][0]["rep"] = "ABSOLUTE"
    (root / "front_only.yaml").write_text(yaml.safe_dump(front_only))
    out = root / "run"
    config = {
        "output_dir": str(out),
        "datasets": [
            {"path": str(a), "mix_ratio": 3.0, "eval_episodes": 1},
            {"path": str(b), "mix_ratio": 1.0, "eval_episodes": 0},
            {"path": str(c), "name": "front", "embodiment_tag": "oxe_widowx", "eval_episodes": 0,
             "modality_config_path": str(root / "front_only.yaml")},
        ],
        "max_steps": 10, "save_steps": 10, "logging_steps": 5, "eval_steps": 10, "open_loop_eval_episodes": 1,
        "global_batch_size": 8, "main_process_port": 29561,
    }
    (root / "mixture.yaml").write_text(yaml.safe_dump(config))
    run_workflow(["--configfile", "config/demo.yaml", str(root / "mixture.yaml")], out)
    return out, (a, b, c)


def test_every_dataset_gets_its_own_stages(mixture_run):
    out, _ = mixture_run
    for name in ("arm_a", "arm_b", "front"):
        assert json.loads((out / "validation" / name / "report.json").read_text())["ok"]
        assert (out / "stats" / name / "stats.json").is_file()
        assert json.loads((out / "shards" / name / "train" / "manifest.json").read_text())["samples"] > 0
        assert (out / "eval" / "open_loop" / name / "metrics.json").is_file()
    assert (out / "shards" / "arm_a" / "eval" / "manifest.json").is_file()
    assert not (out / "shards" / "arm_b" / "eval").exists()  # eval_episodes: 0 for that entry
    assert (out / "stats" / "arm_a" / "relative_stats.json").is_file()
    assert not (out / "stats" / "front" / "relative_stats.json").exists()  # absolute actions only


def test_statistics_are_merged_per_embodiment_with_the_mix_ratios(mixture_run):
    out, _ = mixture_run
    merged = json.loads((out / "stats_mixture" / "new_embodiment" / "stats.json").read_text())
    a = json.loads((out / "stats" / "arm_a" / "stats.json").read_text())
    b = json.loads((out / "stats" / "arm_b" / "stats.json").read_text())
    for feature in ("observation.state", "action"):
        expected = 0.75 * np.asarray(a[feature]["mean"]) + 0.25 * np.asarray(b[feature]["mean"])
        np.testing.assert_allclose(merged[feature]["mean"], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(merged[feature]["max"], np.maximum(a[feature]["max"], b[feature]["max"]))
    assert (out / "stats_mixture" / "new_embodiment" / "relative_stats.json").is_file()
    assert not (out / "stats_mixture" / "oxe_widowx").exists()  # one dataset: its own statistics are used
    processor_stats = json.loads((out / "processor" / "statistics.json").read_text())
    assert {"new_embodiment", "oxe_widowx"} <= set(processor_stats)
    np.testing.assert_allclose(processor_stats["new_embodiment"]["state"]["arm"]["max"],
                               merged["observation.state"]["max"][:3])


def test_one_training_run_mixes_both_embodiments(mixture_run):
    out, _ = mixture_run
    log = (out / "logs" / "finetune.log").read_text()
    assert "shard(s) of 3 dataset(s)" in log
    records = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 10 and all(np.isfinite(r.get("loss", r.get("eval_loss"))) for r in records)
    assert any("eval_loss" in r for r in records)
    conf = yaml.safe_load((out / "experiment_cfg" / "conf.yaml").read_text())
    assert [d["mix_ratio"] for d in conf["data"]["datasets"]] == [3.0, 1.0, 1.0]
    ids = json.loads((out / "processor" / "embodiment_id.json").read_text())
    assert ids["new_embodiment"] != ids["oxe_widowx"]


def test_policy_serves_each_embodiment(mixture_run):
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.data.video import read_frames
    from groot_ft.modality import load_modality_config
    from groot_ft.policy import Gr00tPolicy

    out, (a, _, c) = mixture_run
    for dataset_root, tag, config in ((a, "new_embodiment", DEMO_MODALITY), (c, "oxe_widowx", None)):
        dataset = LeRobotDataset(dataset_root)
        cfg = load_modality_config(config or out.parent / "front_only.yaml")
        episode = dataset.load_episode(0, cfg)
        obs = {
            "video": {k: read_frames(dataset.video_path(0, dataset.video_original_key(k)), [2])[None]
                      for k in cfg.video.modality_keys},
            "state": {k: v[2:3][None] for k, v in episode.state.items()},
            "language": {cfg.language.modality_keys[0]: [[episode.language[2]]]},
        }
        action = Gr00tPolicy(out, tag, device="cpu").get_action(obs)
        assert action["arm"].shape == (1, 16, 3) and np.isfinite(action["arm"]).all()
