"""The run's processor: a base checkpoint's embodiment configs and processor settings apply, with provenance.

Reads upstream's nvidia/GR00T-N1.6-3B processor files and the gr1.PickNPlace dataset in place under ../shared (the
tests that need them skip when they are absent).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from groot_ft.modality import load_modality_config, parse_embodiment_config
from groot_ft.processor import Gr00tProcessor, ProcessorError, statistics_from_dataset_stats
from groot_ft.run_processor import build_run_processor, modality_config_differences, resolve_modality_configs
from tests.conftest import GR1, GR1_MODALITY, PROJECT_ROOT

SHARED = (PROJECT_ROOT / ".." / "shared").resolve()
CHECKPOINT = SHARED / "reference" / "upstream-checkpoints" / "gr00t-n1.6-3b"
REFERENCE_INPUTS = SHARED / "reference" / "upstream-inputs" / "gr1_episode0_step100.safetensors"
CHECKPOINT_FILES = ("config.json", "processor_config.json", "statistics.json", "embodiment_id.json")
CKPT_JITTER = {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08}
MODEL_3B = SimpleNamespace(max_state_dim=128, max_action_dim=128, action_horizon=50)


def _need(path: Path, what: str) -> None:
    if not path.exists():
        pytest.skip(f"{what} not found at {path}; skipping")


@pytest.fixture(scope="module")
def checkpoint_gr1() -> dict:
    _need(CHECKPOINT / "processor_config.json", "upstream GR00T-N1.6-3B processor files")
    return json.loads((CHECKPOINT / "processor_config.json").read_text())["processor_kwargs"]["modality_configs"]["gr1"]


@pytest.fixture
def base_dir(tmp_path, checkpoint_gr1) -> Path:
    """The checkpoint's processor files (not its weights), as a local base model directory."""
    base = tmp_path / "GR00T-N1.6-3B"
    base.mkdir()
    for name in CHECKPOINT_FILES:
        shutil.copyfile(CHECKPOINT / name, base / name)
    return base


@pytest.fixture(scope="module")
def gr1_stats(checkpoint_gr1) -> dict:
    """gr1.PickNPlace's own statistics (meta/stats.json + relative_stats.json) for the checkpoint's gr1 entry."""
    _need(GR1 / "meta" / "stats.json", "gr1.PickNPlace reference dataset")
    meta = GR1 / "meta"
    return statistics_from_dataset_stats(
        json.loads((meta / "stats.json").read_text()),
        json.loads((meta / "relative_stats.json").read_text()),
        json.loads((meta / "modality.json").read_text()),
        parse_embodiment_config(checkpoint_gr1),
    )


def _build(base, configs, stats, *, jitter=None, rotation=None, override=True, model=MODEL_3B, edge=None):
    return build_run_processor(base, configs, stats, color_jitter_params=jitter, random_rotation_angle=rotation,
                               override_pretraining_statistics=override, model_config=model, shortest_image_edge=edge)


def _line(lines: list[str], prefix: str) -> str:
    found = [x for x in lines if x.startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


# ------------------------------------------------------------------------------------------------ gr1.yaml


def test_gr1_yaml_reproduces_the_checkpoint_entry(checkpoint_gr1):
    ours = load_modality_config(GR1_MODALITY)
    assert ours.to_dict() == parse_embodiment_config(checkpoint_gr1).to_dict()
    assert ours.to_dict() == checkpoint_gr1  # the file's own JSON, not only what the parser makes of it


def test_gr1_yaml_fits_the_dataset(gr1_dataset):
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.data.validate import validate_dataset

    cfg = load_modality_config(GR1_MODALITY)
    modality = json.loads((gr1_dataset / "meta" / "modality.json").read_text())
    for section in ("state", "action", "video"):
        assert set(cfg[section].modality_keys) <= set(modality[section])
    episode = LeRobotDataset(gr1_dataset).load_episode(0, cfg)  # language key `task`: the frame's task_index
    assert set(episode.language) == {"pick the pear from the counter and place it in the plate"}
    assert not validate_dataset(gr1_dataset, cfg).errors


# ------------------------------------------------------------------------------------------------ base checkpoint


def test_base_checkpoint_settings_apply(base_dir, gr1_stats):
    proc, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats})
    assert proc.apply_sincos_state_encoding is True and proc.shortest_image_edge == 256
    assert proc.crop_fraction == 0.95 and proc.use_percentiles is False and proc.clip_outliers is True
    assert (proc.max_state_dim, proc.max_action_dim, proc.max_action_horizon) == (128, 128, 50)
    assert proc.color_jitter_params == CKPT_JITTER  # processor_config.json's, not config.json's 0.1 each
    assert json.loads((base_dir / "config.json").read_text())["color_jitter_params"] != CKPT_JITTER
    assert proc.random_rotation_angle is None and proc.use_relative_action is True
    assert proc.modality_configs["gr1"].to_dict() == load_modality_config(GR1_MODALITY).to_dict()
    assert proc.dims("gr1") == {"state_dim": 58, "action_dim": 29, "action_horizon": 16}
    assert proc.embodiment_id_mapping["gr1"] == 20
    assert _line(lines, "gr1 modality config") == "gr1 modality config: base checkpoint processor_config.json"
    assert _line(lines, "color_jitter_params") == (
        f"color_jitter_params {json.dumps(CKPT_JITTER)}: base checkpoint processor_config.json "
        "(run config left it null)"
    )
    assert _line(lines, "random_rotation_angle").endswith(
        "base checkpoint processor_config.json (run config left it null)"
    )
    settings = _line(lines, "processor settings")
    assert "apply_sincos_state_encoding=True" in settings and "shortest_image_edge=256" in settings
    assert settings.endswith(": base checkpoint processor_config.json")
    assert _line(lines, "statistics for gr1:") == (
        "statistics for gr1: dataset, replacing the base checkpoint's pretraining statistics "
        "(override_pretraining_statistics=true)"
    )
    assert "behavior_r1_pro, robocasa_panda_omron" in _line(lines, "statistics for behavior_r1_pro")


def test_color_jitter_and_rotation_overrides(base_dir, gr1_stats):
    proc, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, jitter={}, rotation=0)
    assert not proc.color_jitter_params and not proc.image_transform.jitter_ranges
    assert not proc.random_rotation_angle and proc.image_transform.random_rotation_angle == 0
    assert _line(lines, "color_jitter_params") == "color_jitter_params none: run config ({} disables it)"
    assert _line(lines, "random_rotation_angle") == "random_rotation_angle none: run config (0 disables it)"

    mine = {"brightness": 0.1, "hue": 0.02}
    proc, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, jitter=mine, rotation=5)
    assert proc.color_jitter_params == mine and proc.random_rotation_angle == 5.0
    assert _line(lines, "color_jitter_params") == f"color_jitter_params {json.dumps(mine)}: run config"
    assert _line(lines, "random_rotation_angle") == "random_rotation_angle 5 degrees: run config"


def test_override_pretraining_statistics(base_dir, gr1_stats):
    pretraining = json.loads((base_dir / "statistics.json").read_text())
    proc, _ = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, override=True)
    assert proc.statistics["gr1"] == gr1_stats
    assert proc.statistics["gr1"] != pretraining["gr1"]
    assert proc.statistics["behavior_r1_pro"] == pretraining["behavior_r1_pro"]  # other tags untouched

    proc, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, override=False)
    assert proc.statistics["gr1"] == pretraining["gr1"]
    assert _line(lines, "statistics for gr1:") == (
        "statistics for gr1: base checkpoint statistics.json, pretraining statistics kept; the dataset's are not "
        "used (override_pretraining_statistics=false)"
    )
    proc.validate("gr1")  # the pretraining statistics fit the checkpoint's own entry


def test_a_tag_the_checkpoint_lacks_needs_a_modality_config(base_dir, gr1_stats):
    with pytest.raises(ProcessorError) as exc:
        _build(base_dir, {"new_embodiment": None}, {"new_embodiment": gr1_stats})
    msg = str(exc.value)
    assert "'new_embodiment'" in msg and "behavior_r1_pro, gr1, robocasa_panda_omron" in msg
    assert "modality_config_path" in msg
    with pytest.raises(ProcessorError, match="preset"):
        _build(None, {"gr1": None}, {"gr1": gr1_stats}, edge=48)


def test_a_new_tag_uses_the_run_config_and_dataset_statistics(base_dir, gr1_stats):
    cfg = load_modality_config(GR1_MODALITY)
    proc, lines = _build(base_dir, {"new_embodiment": cfg}, {"new_embodiment": gr1_stats}, override=False)
    assert proc.statistics["new_embodiment"] == gr1_stats
    assert proc.dims("new_embodiment")["state_dim"] == 58  # the checkpoint's sin/cos setting applies to it too
    assert _line(lines, "new_embodiment modality config") == (
        f"new_embodiment modality config: run config ({cfg.source}); new to the base checkpoint"
    )
    assert _line(lines, "statistics for new_embodiment") == (
        "statistics for new_embodiment: dataset (new to the base checkpoint)"
    )


def _old_gr1_config():
    """The gr1.yaml this project shipped before: groups in modality.json order, min/max only."""
    data = yaml.safe_load(GR1_MODALITY.read_text())
    order = ["left_arm", "left_hand", "right_arm", "right_hand", "waist"]
    data["state"] = {"delta_indices": [0], "modality_keys": order}
    data["action"]["modality_keys"] = order
    data["action"]["action_configs"] = [{"rep": "RELATIVE"}] * 4 + [{"rep": "ABSOLUTE"}]
    return parse_embodiment_config(data, source="old-gr1.yaml")


def test_a_run_config_replaces_the_checkpoint_entry_and_says_what_differs(base_dir, gr1_stats, checkpoint_gr1):
    old = _old_gr1_config()
    proc, lines = _build(base_dir, {"gr1": old}, {"gr1": gr1_stats})
    assert proc.modality_configs["gr1"] == old
    assert proc.dims("gr1")["state_dim"] == 29  # no sin/cos keys in this config
    line = _line(lines, "gr1 modality config")
    assert line.startswith("gr1 modality config: run config (old-gr1.yaml), replacing the base checkpoint's entry")
    assert ("state group order ['left_arm', 'left_hand', 'right_arm', 'right_hand', 'waist'] "
            "(base ['left_arm', 'right_arm', 'left_hand', 'right_hand', 'waist'])") in line
    assert "state sin_cos_embedding_keys none (base ['left_arm'" in line
    assert "action group order" in line
    assert "mean_std" not in line and "delta_indices" not in line

    same = parse_embodiment_config(checkpoint_gr1, source="copy.yaml")
    _, lines = _build(base_dir, {"gr1": same}, {"gr1": gr1_stats})
    assert _line(lines, "gr1 modality config").endswith("identical to the base checkpoint's entry")

    longer = dataclasses.replace(same, action=dataclasses.replace(same.action, delta_indices=tuple(range(8))))
    diffs = modality_config_differences(longer, same)
    assert diffs == ["action delta_indices [0..7] (base [0..15])"]
    meanstd = dataclasses.replace(same, state=dataclasses.replace(same.state, mean_std_embedding_keys=("waist",)))
    assert modality_config_differences(meanstd, same) == ["state mean_std_embedding_keys ['waist'] (base none)"]


def test_kept_pretraining_statistics_that_do_not_fit_the_run_config_are_a_clear_error(base_dir, gr1_stats):
    data = yaml.safe_load(GR1_MODALITY.read_text())
    data["state"]["modality_keys"].append("neck")  # the pretraining statistics have no neck
    cfg = parse_embodiment_config(data, source="gr1-neck.yaml")
    meta = GR1 / "meta"
    stats = statistics_from_dataset_stats(json.loads((meta / "stats.json").read_text()),
                                          json.loads((meta / "relative_stats.json").read_text()),
                                          json.loads((meta / "modality.json").read_text()), cfg)
    with pytest.raises(ProcessorError, match="override_pretraining_statistics.*neck"):
        _build(base_dir, {"gr1": cfg}, {"gr1": stats}, override=False)
    proc, _ = _build(base_dir, {"gr1": cfg}, {"gr1": stats}, override=True)
    assert proc.dims("gr1")["state_dim"] == 29 * 2 + 3  # neck (3 dims) is min/max: not a sin/cos key


def test_model_config_and_shard_size_are_checked(base_dir, gr1_stats):
    with pytest.raises(ProcessorError, match="max_state_dim 128 \\(model config 64\\)"):
        _build(base_dir, {"gr1": None}, {"gr1": gr1_stats},
               model=SimpleNamespace(max_state_dim=64, max_action_dim=128, action_horizon=50))
    with pytest.warns(UserWarning, match="shortest edge 48"):
        _, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, edge=48)
    assert any(x.startswith("note: the shards hold frames at shortest edge 48") for x in lines)
    _, lines = _build(base_dir, {"gr1": None}, {"gr1": gr1_stats}, edge=256)
    assert not any(x.startswith("note:") for x in lines)


def test_resolve_modality_configs(base_dir, checkpoint_gr1):
    mine = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    out = resolve_modality_configs(base_dir, {"GR1": None, "new_embodiment": mine})
    assert out["gr1"] == parse_embodiment_config(checkpoint_gr1) and out["new_embodiment"] is mine


# ------------------------------------------------------------------------------------------------ presets


def _demo_stats():
    from tests.test_processor import _stats

    return _stats()["new_embodiment"]


def test_preset_path_matches_a_direct_processor():
    cfg = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    model = SimpleNamespace(max_state_dim=16, max_action_dim=8, action_horizon=20)
    stats = {"new_embodiment": _demo_stats()}
    for jitter, rotation in ((None, None), (CKPT_JITTER, 3.0), ({}, 0)):
        proc, lines = _build(None, {"new_embodiment": cfg}, stats, jitter=jitter, rotation=rotation, model=model,
                             edge=48)
        direct = Gr00tProcessor({"new_embodiment": cfg}, stats, max_state_dim=16, max_action_dim=8,
                                max_action_horizon=20, shortest_image_edge=48, color_jitter_params=jitter,
                                random_rotation_angle=rotation, use_relative_action=True)
        assert proc.processor_kwargs() == direct.processor_kwargs()
        assert proc.statistics == direct.statistics
    proc, lines = _build(None, {"new_embodiment": cfg}, stats, model=model, edge=48, override=False)
    assert lines[0] == "base model: a preset (no processor files)"
    assert _line(lines, "new_embodiment modality config") == (
        f"new_embodiment modality config: run config ({cfg.source})"
    )
    assert _line(lines, "color_jitter_params") == "color_jitter_params none: preset default (run config left it null)"
    assert _line(lines, "statistics for new_embodiment") == "statistics for new_embodiment: dataset"
    assert _line(lines, "shortest_image_edge=48").endswith("shards' image size (the preset's)")


def test_a_previous_runs_processor_files_are_a_base(tmp_path):
    """Fine-tuning from a run's output: its jitter (here set by that run) is kept when this run leaves it null."""
    cfg = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    stats = {"new_embodiment": _demo_stats()}
    first = Gr00tProcessor({"new_embodiment": cfg}, stats, max_state_dim=16, max_action_dim=8, max_action_horizon=20,
                           shortest_image_edge=48, color_jitter_params={"brightness": 0.2}, use_relative_action=True)
    first.save_pretrained(tmp_path)
    model = SimpleNamespace(max_state_dim=16, max_action_dim=8, action_horizon=20)
    proc, lines = _build(tmp_path, {"new_embodiment": cfg}, stats, model=model, edge=48)
    assert proc.color_jitter_params == {"brightness": 0.2} and proc.shortest_image_edge == 48
    assert _line(lines, "new_embodiment modality config").endswith("identical to the base checkpoint's entry")
    assert _line(lines, "statistics for new_embodiment").startswith("statistics for new_embodiment: dataset, replacing")


# ------------------------------------------------------------------------------------------------ ground truth


def test_gr1_step_matches_upstream_processor_output(base_dir, gr1_stats):
    """Episode 0 step 100 of gr1.PickNPlace through the checkpoint's gr1 processor (eval mode, the dataset's own
    statistics) gives exactly the state/action upstream's data path fed its model."""
    _need(REFERENCE_INPUTS, "upstream reference inputs")
    from safetensors.numpy import load_file

    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.evaluate import observation_at

    ref = load_file(str(REFERENCE_INPUTS))
    proc, _ = _build(base_dir, {"gr1": load_modality_config(GR1_MODALITY)}, {"gr1": gr1_stats})
    proc.eval()
    cfg = proc.modality_configs["gr1"]
    ds = LeRobotDataset(GR1)
    episode = ds.load_episode(0, cfg)
    t = 100
    frames = {k: ds.read_episode_frames(0, ds.video_original_key(k), [t]) for k in cfg.video.modality_keys}
    np.testing.assert_array_equal(frames[cfg.video.modality_keys[0]][0], ref["raw_frame"])  # same decoded pixels
    frames = {k: _at(v, t, episode.length) for k, v in frames.items()}
    step = observation_at(ds, episode, cfg, t, frames)
    rows = np.clip(t + np.asarray(cfg.action.delta_indices), 0, episode.length - 1)
    step["action"] = {k: episode.action[k][rows] for k in cfg.action.modality_keys}
    out = proc(step, "gr1")

    assert out["state"].shape == (1, 128) and ref["state"].shape == (1, 128)
    np.testing.assert_allclose(out["state"], ref["state"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["action"], ref["action"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(out["action_mask"], ref["action_mask"])
    assert out["embodiment_id"] == int(ref["embodiment_id"][0]) == 20
    assert out["text"] == "pick the pear from the counter and place it in the plate"


def _at(frame_rows: np.ndarray, t: int, length: int) -> np.ndarray:
    """A (length, H, W, 3) stand-in whose row t is the decoded frame (observation_at indexes frames by step)."""
    out = np.zeros((length, *frame_rows.shape[1:]), dtype=frame_rows.dtype)
    out[t] = frame_rows[0]
    return out
