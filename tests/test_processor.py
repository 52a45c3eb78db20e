"""Gr00tProcessor: normalisation numbers, relative actions, padding, decode round trips, images, text, persistence."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from groot_ft.modality import load_modality_config, parse_embodiment_config
from groot_ft.processor import (
    Gr00tProcessor,
    ProcessorError,
    formalize_language,
    statistics_from_dataset_stats,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO_CFG = ROOT / "config" / "modality" / "demo.yaml"
GR1_CFG = ROOT / "config" / "modality" / "gr1.yaml"
GR1_DATA = ROOT / ".." / "shared" / "datasets" / "gr1.PickNPlace"
TAG = "new_embodiment"
LANG = "annotation.human.task_description"
H = 16  # demo action horizon
JITTER = {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08}


def _rel_stats(scale: float = 1.0) -> dict[str, list]:
    # per-step bounds that widen with the horizon step t: [-0.1 (t+1), 0.1 (t+1)] for each of 3 dims
    steps = np.arange(1, H + 1, dtype=np.float64)[:, None] * np.ones((1, 3))
    return {
        "min": (-0.1 * steps * scale).tolist(),
        "max": (0.1 * steps * scale).tolist(),
        "q01": (-0.05 * steps * scale).tolist(),
        "q99": (0.05 * steps * scale).tolist(),
        "mean": (0.01 * steps).tolist(),
        "std": (0.02 * steps).tolist(),
    }


def _stats() -> dict:
    arm = {"min": [-1.0, -1.0, 0.0], "max": [1.0, 1.0, 2.0], "mean": [0.0, 0.5, 1.0], "std": [0.5, 0.25, 2.0],
           "q01": [-0.5, -0.8, 0.2], "q99": [0.5, 0.8, 1.8]}  # fmt: skip
    gripper = {"min": [0.0], "max": [0.08], "mean": [0.04], "std": [0.02], "q01": [0.01], "q99": [0.07]}
    return {TAG: {"state": {"arm": arm, "gripper": gripper},
                  "action": {"arm": copy.deepcopy(arm), "gripper": copy.deepcopy(gripper)},
                  "relative_action": {"arm": _rel_stats()}}}  # fmt: skip


def _proc(cfg=None, stats=None, **kw) -> Gr00tProcessor:
    kw = {"max_state_dim": 8, "max_action_dim": 8, "max_action_horizon": 20, "shortest_image_edge": 48,
          "seed": 0, **kw}  # fmt: skip
    return Gr00tProcessor({TAG: cfg or load_modality_config(DEMO_CFG)}, _stats() if stats is None else stats, **kw)


def _step(seed: int = 0, t_video: int = 1, size: int = 96, with_action: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    step = {
        "video": {cam: rng.integers(0, 256, (t_video, size, size, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": np.array([[0.5, -1.0, 1.5]], np.float32), "gripper": np.array([[0.02]], np.float32)},
        "language": {LANG: "Pick up the RED cube, please!!"},
    }
    if with_action:
        # relative arm action within the per-step [min, max] relative bounds; gripper within [0, 0.08]
        t = np.arange(1, H + 1)[:, None]
        rel = rng.uniform(-0.1, 0.1, (H, 3)) * t
        step["action"] = {
            "arm": (step["state"]["arm"][-1] + rel).astype(np.float32),
            "gripper": rng.uniform(0.0, 0.08, (H, 1)).astype(np.float32),
        }
    return step


def _cfg(**overrides) -> dict:
    base = {
        "video": {"delta_indices": [0], "modality_keys": ["front", "wrist"]},
        "state": {"delta_indices": [0], "modality_keys": ["arm", "gripper"]},
        "action": {"delta_indices": list(range(H)), "modality_keys": ["arm", "gripper"],
                   "action_configs": [{"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT"},
                                      {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT"}]},
        "language": {"delta_indices": [0], "modality_keys": [LANG]},
    }  # fmt: skip
    for modality, patch in overrides.items():
        base[modality] = {**base[modality], **patch}
    return parse_embodiment_config(base)


# ------------------------------------------------------------------------------------------------ normalisation


def test_output_keys_shapes_and_dtypes() -> None:
    out = _proc()(_step(), TAG)
    assert list(out) == ["state", "action", "action_mask", "images", "text", "embodiment_id"]
    assert out["state"].shape == (1, 8) and out["state"].dtype == np.float32
    assert out["action"].shape == (20, 8) and out["action"].dtype == np.float32
    assert out["action_mask"].shape == (20, 8) and out["action_mask"].dtype == np.float32
    assert out["images"].shape == (2, 3, 48, 48) and out["images"].dtype == np.uint8
    assert out["text"] == "pick up the red cube please"
    assert out["embodiment_id"] == 10 and isinstance(out["embodiment_id"], int)


def test_state_min_max_hand_computed_and_padding() -> None:
    out = _proc()(_step(), TAG)
    # arm: 2(x-min)/(max-min)-1 with min [-1,-1,0], max [1,1,2]; gripper 2*0.02/0.08-1 = -0.5
    np.testing.assert_allclose(out["state"][0], [0.5, -1.0, 0.5, -0.5, 0, 0, 0, 0], atol=1e-6)


def test_state_clipping_and_no_clip() -> None:
    step = _step()
    step["state"]["arm"] = np.array([[3.0, -5.0, 1.0]])
    np.testing.assert_allclose(_proc()(step, TAG)["state"][0, :3], [1.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(_proc(clip_outliers=False)(step, TAG)["state"][0, :3], [3.0, -5.0, 0.0], atol=1e-6)


def test_constant_dims_normalise_to_zero_and_decode_to_min() -> None:
    stats = _stats()
    stats[TAG]["state"]["gripper"].update(min=[0.3], max=[0.3])
    stats[TAG]["action"]["gripper"].update(min=[0.3], max=[0.3 + 1e-12])
    proc = _proc(stats=stats)
    step = _step()
    step["action"]["gripper"][:] = 0.3
    out = proc(step, TAG)
    assert out["state"][0, 3] == 0.0
    assert np.all(out["action"][:H, 3] == 0.0)
    decoded = proc.decode_action(out["action"], TAG, step["state"])
    np.testing.assert_allclose(decoded["gripper"], 0.3, atol=1e-9)


def test_percentiles_use_q01_q99() -> None:
    out = _proc(use_percentiles=True, clip_outliers=False)(_step(), TAG)
    # arm q01 [-0.5,-0.8,0.2], q99 [0.5,0.8,1.8]: [0.5, -1, 1.5] -> [1.0, -1.25, 0.625]
    np.testing.assert_allclose(out["state"][0, :3], [1.0, -1.25, 0.625], atol=1e-6)
    # gripper q01 0.01 q99 0.07: 2*(0.02-0.01)/0.06-1 = -2/3
    assert out["state"][0, 3] == pytest.approx(-2.0 / 3.0, abs=1e-6)


def test_mean_std_state_not_clipped_action_clipped() -> None:
    cfg = _cfg(state={"mean_std_embedding_keys": ["arm"]}, action={"mean_std_embedding_keys": ["gripper"]})
    step = _step()
    step["action"]["gripper"][0, 0] = 0.2  # (0.2-0.04)/0.02 = 8 -> clipped to 1 (upstream quirk)
    step["action"]["gripper"][1, 0] = 0.05  # 0.5
    out = _proc(cfg)(step, TAG)
    # arm mean [0,0.5,1] std [0.5,0.25,2]: [0.5,-1,1.5] -> [1, -6, 0.25]; z-scored states are not clipped
    np.testing.assert_allclose(out["state"][0, :3], [1.0, -6.0, 0.25], atol=1e-6)
    assert out["action"][0, 3] == pytest.approx(1.0)
    assert out["action"][1, 3] == pytest.approx(0.5)


def test_sincos_state_encoding_doubles_dims() -> None:
    cfg = _cfg(state={"sin_cos_embedding_keys": ["arm"]})
    step = _step()
    x = step["state"]["arm"][0].astype(np.float64)
    out = _proc(cfg, apply_sincos_state_encoding=True)(step, TAG)
    np.testing.assert_allclose(out["state"][0, :6], np.concatenate([np.sin(x), np.cos(x)]), atol=1e-6)
    assert out["state"][0, 6] == pytest.approx(-0.5)  # gripper follows
    # flag off: the key is min/max normalised as usual
    np.testing.assert_allclose(_proc(cfg)(step, TAG)["state"][0, :3], [0.5, -1.0, 0.5], atol=1e-6)
    with pytest.raises(ProcessorError, match="max_state_dim"):
        _proc(cfg, apply_sincos_state_encoding=True, max_state_dim=6)


def test_relative_action_uses_last_state_row_and_per_step_stats() -> None:
    cfg = _cfg(state={"delta_indices": [-1, 0]})  # two state rows; the reference is the last one
    step = _step()
    step["state"] = {"arm": np.array([[9.0, 9.0, 9.0], [0.5, -1.0, 1.5]]), "gripper": np.array([[0.0], [0.02]])}
    arm = np.tile([0.5, -1.0, 1.5], (H, 1))
    arm[0] += [0.05, 0.0, -0.1]  # step 0 bounds +-0.1: -> [0.5, 0, -1]
    arm[9] += [0.5, -0.25, 2.0]  # step 9 bounds +-1.0: -> [0.5, -0.25, 1 (clipped from 2)]
    step["action"]["arm"] = arm
    out = _proc(cfg)(step, TAG)
    assert out["state"].shape == (2, 8)
    np.testing.assert_allclose(out["action"][0, :3], [0.5, 0.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(out["action"][9, :3], [0.5, -0.25, 1.0], atol=1e-6)
    np.testing.assert_allclose(out["action"][5, :3], 0.0, atol=1e-6)  # action == reference -> relative 0 -> 0
    # gripper (ABSOLUTE) uses the action stats
    np.testing.assert_allclose(out["action"][:H, 3], 2 * step["action"]["gripper"][:, 0] / 0.08 - 1, atol=1e-5)


def test_use_relative_action_false_treats_relative_keys_as_absolute() -> None:
    stats = _stats()
    del stats[TAG]["relative_action"]
    step = _step()
    out = _proc(stats=stats, use_relative_action=False)(step, TAG)
    expected = np.clip(2 * (step["action"]["arm"] - [-1, -1, 0]) / [2, 2, 2] - 1, -1, 1)
    np.testing.assert_allclose(out["action"][:H, :3], expected, atol=1e-6)


def test_action_padding_and_mask() -> None:
    out = _proc(max_action_horizon=20, max_action_dim=8)(_step(), TAG)
    mask = out["action_mask"]
    assert mask[:H, :4].min() == 1.0 and mask[H:].max() == 0.0 and mask[:, 4:].max() == 0.0
    assert np.all(out["action"][H:] == 0.0) and np.all(out["action"][:, 4:] == 0.0)


def test_eval_without_action_and_train_requires_it() -> None:
    proc = _proc()
    with pytest.raises(ProcessorError, match="training mode needs actions"):
        proc(_step(with_action=False), TAG)
    out = proc.eval()(_step(with_action=False), TAG)
    assert "action" not in out and "action_mask" not in out
    assert "action" in proc(_step(), TAG)  # eval still encodes actions when given


# ------------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize(
    "kwargs, cfg_patch",
    [
        ({}, {}),  # min/max + relative arm
        ({"use_percentiles": True}, {}),
        ({"use_relative_action": False}, {}),  # everything absolute
        ({}, {"action": {"mean_std_embedding_keys": ["gripper"]}}),
        ({}, {"action": {"mean_std_embedding_keys": ["arm", "gripper"]}}),  # z-scored relative stats
    ],
)
def test_decode_round_trip(kwargs: dict, cfg_patch: dict) -> None:
    proc = _proc(_cfg(**cfg_patch), **kwargs)
    rng = np.random.default_rng(1)
    step = _step()
    t = np.arange(1, H + 1)[:, None]
    ref = step["state"]["arm"][-1].astype(np.float64)
    if kwargs.get("use_percentiles"):
        rel = rng.uniform(-0.05, 0.05, (H, 3)) * t
        grip = rng.uniform(0.01, 0.07, (H, 1))
    else:
        rel = rng.uniform(-0.1, 0.1, (H, 3)) * t
        grip = rng.uniform(0.0, 0.08, (H, 1))
    arm = ref + rel
    if kwargs.get("use_relative_action") is False:
        arm = rng.uniform([-1, -1, 0], [1, 1, 2], (H, 3))
    if "arm" in cfg_patch.get("action", {}).get("mean_std_embedding_keys", []):
        arm = ref + 0.01 * t + rng.uniform(-0.9, 0.9, (H, 3)) * 0.02 * t  # within mean +- std per step
    if "gripper" in cfg_patch.get("action", {}).get("mean_std_embedding_keys", []):
        grip = rng.uniform(0.021, 0.059, (H, 1))
    step["action"] = {"arm": arm, "gripper": grip}
    out = proc(step, TAG)
    decoded = proc.decode_action(out["action"], TAG, step["state"])  # unbatched
    assert decoded["arm"].shape == (H, 3) and decoded["gripper"].shape == (H, 1)
    np.testing.assert_allclose(decoded["arm"], arm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decoded["gripper"], grip, rtol=1e-5, atol=1e-6)


def test_decode_batched_and_torch_input() -> None:
    proc = _proc()
    steps = [_step(seed=s) for s in range(3)]
    for i, s in enumerate(steps):
        s["state"]["arm"] = s["state"]["arm"] + i * 0.1
        s["action"]["arm"] = s["action"]["arm"] + i * 0.1
    outs = [proc(s, TAG) for s in steps]
    batch = np.stack([o["action"] for o in outs])  # (3, 20, 8)
    state = {k: np.stack([s["state"][k] for s in steps]) for k in ("arm", "gripper")}  # (3, 1, D)
    for action in (batch, torch.from_numpy(batch)):
        decoded = proc.decode_action(action, TAG, state)
        assert decoded["arm"].shape == (3, H, 3) and decoded["gripper"].shape == (3, H, 1)
        assert decoded["arm"].dtype == np.float32
        for i, s in enumerate(steps):
            np.testing.assert_allclose(decoded["arm"][i], s["action"]["arm"], atol=1e-5)
            np.testing.assert_allclose(decoded["gripper"][i], s["action"]["gripper"], atol=1e-6)


def test_decode_clips_and_needs_state_for_relative() -> None:
    proc = _proc()
    action = np.full((20, 8), 5.0, np.float32)
    decoded = proc.decode_action(action, TAG, {"arm": np.zeros((1, 3))})
    np.testing.assert_allclose(decoded["gripper"], 0.08, atol=1e-7)  # clipped to 1 -> max
    np.testing.assert_allclose(decoded["arm"][3], [0.4, 0.4, 0.4], atol=1e-7)  # step 3 relative max = 0.4
    with pytest.raises(ProcessorError, match="RELATIVE.*needs state\\['arm'\\]"):
        proc.decode_action(action, TAG)
    with pytest.raises(ProcessorError, match="smaller than"):
        proc.decode_action(np.zeros((8, 8)), TAG, {"arm": np.zeros((1, 3))})
    absolute = _proc(use_relative_action=False)
    assert set(absolute.decode_action(action, TAG)) == {"arm", "gripper"}  # no state needed


# ------------------------------------------------------------------------------------------------ language


def test_language_formalisation() -> None:
    assert formalize_language("Pick up the RED cube, please!!") == "pick up the red cube please"
    assert formalize_language("Move-to (x=3); done.") == "moveto x3 done"
    step = _step()
    assert _proc(formalize_language=False)(step, TAG)["text"] == "Pick up the RED cube, please!!"
    step["language"] = {LANG: [["Nested Text."]]}
    assert _proc()(step, TAG)["text"] == "nested text"
    step["language"] = {"other": "x"}
    with pytest.raises(ProcessorError, match=LANG):
        _proc()(step, TAG)


# ------------------------------------------------------------------------------------------------ images


def _constant_video(t: int, values: dict[str, list[int]], size: int = 96) -> dict:
    return {cam: np.stack([np.full((size, size, 3), v, np.uint8) for v in vals]) for cam, vals in values.items()}


def test_images_time_major_cameras_interleaved() -> None:
    cfg = _cfg(video={"delta_indices": [-2, 0]})
    step = _step()
    step["video"] = _constant_video(2, {"front": [10, 20], "wrist": [30, 40]})
    out = _proc(cfg).eval()(step, TAG)
    assert out["images"].shape == (4, 3, 48, 48)
    assert [int(img[0, 0, 0]) for img in out["images"]] == [10, 30, 20, 40]  # t0 front, t0 wrist, t1 front, ...


def test_same_augmentation_for_all_frames_and_cameras() -> None:
    cfg = _cfg(video={"delta_indices": [-2, -1, 0]})
    proc = _proc(cfg, random_rotation_angle=20, color_jitter_params=JITTER)
    base = np.random.default_rng(0).integers(0, 200, (96, 96, 3), dtype=np.uint8)
    step = _step()
    step["video"] = {"front": np.stack([base] * 3), "wrist": np.stack([base] * 3)}
    images = proc(step, TAG)["images"]
    for img in images[1:]:
        assert np.array_equal(img, images[0])
    # geometry only (crop + rotation are linear): frames offset by a constant give outputs offset by that constant
    proc = _proc(cfg, random_rotation_angle=20)
    step["video"] = {"front": np.stack([base + 10 * k for k in range(3)]),
                     "wrist": np.stack([base + 5 + 10 * k for k in range(3)])}  # fmt: skip
    images = proc(step, TAG)["images"].astype(np.int32)
    offsets = [0, 5, 10, 15, 20, 25]
    for img, off in zip(images, offsets, strict=True):
        assert np.abs(img - images[0] - off).max() <= 1


def test_train_augmentation_varies_between_samples_and_is_seeded() -> None:
    kw = {"random_rotation_angle": 10, "color_jitter_params": JITTER}
    a, b = _proc(seed=7, **kw), _proc(seed=7, **kw)
    step = _step()
    first = [a(step, TAG)["images"] for _ in range(3)]
    assert not np.array_equal(first[0], first[1])
    assert all(np.array_equal(x, b(step, TAG)["images"]) for x in first)
    # an explicit rng gives the same result whatever the processor's own RNG state is
    r1 = a(step, TAG, rng=np.random.default_rng(3))["images"]
    r2 = b(step, TAG, rng=np.random.default_rng(3))["images"]
    assert np.array_equal(r1, r2)


def test_eval_is_deterministic_centre_crop() -> None:
    proc = _proc(random_rotation_angle=30, color_jitter_params=JITTER).eval()
    step = _step()
    outs = [proc(step, TAG)["images"] for _ in range(3)]
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[1], outs[2])
    # equal to the plain pipeline with a centre crop and no rotation/jitter
    plain = _proc().image_transform
    frames = np.concatenate([step["video"]["front"], step["video"]["wrist"]])
    expected = plain.apply(frames, plain.sample_params(np.random.default_rng(), train=False))
    assert np.array_equal(outs[0], expected)


def test_jitter_changes_pixels_only_when_enabled() -> None:
    step = _step()
    reference = _proc(crop_fraction=1.0).eval()(step, TAG)["images"]
    no_jitter = _proc(crop_fraction=1.0)(step, TAG)["images"]  # train mode, nothing random left
    assert np.array_equal(no_jitter, reference)
    jittered = _proc(crop_fraction=1.0, color_jitter_params=JITTER)(step, TAG)["images"]
    assert not np.array_equal(jittered, reference)
    assert np.array_equal(_proc(crop_fraction=1.0, color_jitter_params={})(step, TAG)["images"], reference)


def test_image_input_errors() -> None:
    step = _step()
    step["video"]["front"] = step["video"]["front"].astype(np.float32)
    with pytest.raises(ProcessorError, match="uint8"):
        _proc()(step, TAG)
    step = _step()
    del step["video"]["wrist"]
    with pytest.raises(ProcessorError, match="video key 'wrist'"):
        _proc()(step, TAG)


# ------------------------------------------------------------------------------------------------ validation errors


def test_error_horizon_too_long() -> None:
    with pytest.raises(ProcessorError, match="16 steps but max_action_horizon is 8"):
        _proc(max_action_horizon=8)


def test_error_dims_too_big() -> None:
    with pytest.raises(ProcessorError, match="action groups need 4 dims.*max_action_dim is 3"):
        _proc(max_action_dim=3)
    with pytest.raises(ProcessorError, match="state groups need 4 dims.*max_state_dim is 2"):
        _proc(max_state_dim=2)


def test_error_missing_relative_stats_names_key() -> None:
    stats = _stats()
    del stats[TAG]["relative_action"]
    with pytest.raises(ProcessorError, match="missing relative_action statistics for key 'arm'"):
        _proc(stats=stats)


def test_error_relative_stats_wrong_horizon() -> None:
    stats = _stats()
    stats[TAG]["relative_action"]["arm"] = {k: v[:8] for k, v in _rel_stats().items()}
    with pytest.raises(ProcessorError, match=r"shape \(8, 3\), expected \(16, 3\)"):
        _proc(stats=stats)


def test_error_missing_stats_for_key_and_tag() -> None:
    stats = _stats()
    del stats[TAG]["state"]["gripper"]
    with pytest.raises(ProcessorError, match="missing state statistics for key 'gripper'"):
        _proc(stats=stats)
    proc = Gr00tProcessor({TAG: load_modality_config(DEMO_CFG)}, None, max_state_dim=8, max_action_dim=8,
                          max_action_horizon=16, shortest_image_edge=48)  # fmt: skip
    with pytest.raises(ProcessorError, match="has no statistics"):
        proc(_step(), TAG)


def test_error_unknown_tag_and_embodiment_ids() -> None:
    with pytest.raises(ProcessorError, match="unknown embodiment_tag 'gr1'"):
        _proc()(_step(), "gr1")
    with pytest.raises(ProcessorError, match=r"\[0, 32\)"):
        _proc(embodiment_id_mapping={TAG: 40})
    with pytest.raises(ProcessorError, match="unknown embodiment_tag 'my_robot'"):
        Gr00tProcessor({"my_robot": load_modality_config(DEMO_CFG)}, None)
    proc = Gr00tProcessor({"MY_ROBOT": load_modality_config(DEMO_CFG)}, {"my_robot": _stats()[TAG]},
                          embodiment_id_mapping={"my_robot": 31}, max_state_dim=8, max_action_dim=8,
                          max_action_horizon=16, shortest_image_edge=48)  # fmt: skip
    assert proc(_step(), "MY_ROBOT")["embodiment_id"] == 31


def test_error_bad_step_shapes() -> None:
    step = _step()
    step["action"]["arm"] = step["action"]["arm"][:10]
    with pytest.raises(ProcessorError, match=r"action.arm has shape \(10, 3\), expected \(16, 3\)"):
        _proc()(step, TAG)
    step = _step()
    step["state"]["arm"] = np.zeros((1, 4))
    with pytest.raises(ProcessorError, match="state.arm"):
        _proc()(step, TAG)
    step = _step()
    step["state"]["gripper"] = np.array([[np.nan]])
    with pytest.raises(ProcessorError, match="NaN"):
        _proc()(step, TAG)
    step = _step()
    del step["state"]["gripper"]
    with pytest.raises(ProcessorError, match="lacks state key 'gripper'"):
        _proc()(step, TAG)


def test_unsupported_representations_fail_on_use() -> None:
    cfg = _cfg(action={"action_configs": [{"rep": "RELATIVE", "type": "EEF", "format": "DEFAULT"},
                                          {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT"}]})  # fmt: skip
    proc = _proc(cfg)  # constructing (e.g. loading a checkpoint with such a tag) is fine
    with pytest.raises(ProcessorError, match="EEF"):
        proc(_step(), TAG)


# ------------------------------------------------------------------------------------------------ statistics


def test_set_statistics_override_and_rollback() -> None:
    proc = _proc()
    new = _stats()
    new[TAG]["state"]["arm"]["max"] = [3.0, 3.0, 4.0]
    proc.set_statistics(new, override=False)
    assert proc.statistics[TAG]["state"]["arm"]["max"] == [1.0, 1.0, 2.0]
    proc.set_statistics(new, override=True)
    assert proc.statistics[TAG]["state"]["arm"]["max"] == [3.0, 3.0, 4.0]
    assert proc(_step(), TAG)["state"][0, 0] == pytest.approx(2 * 1.5 / 4 - 1)
    broken = _stats()
    del broken[TAG]["action"]["gripper"]
    with pytest.raises(ProcessorError, match="gripper"):
        proc.set_statistics(broken)
    assert proc.statistics[TAG]["state"]["arm"]["max"] == [3.0, 3.0, 4.0]  # unchanged
    proc.set_statistics({"gr1": {"state": {}}})  # tags without a config are stored verbatim
    assert "gr1" in proc.statistics


def test_statistics_from_dataset_stats_synthetic() -> None:
    names = ("mean", "std", "min", "max", "q01", "q99")
    column = {s: [float(10 * i + j) for j in range(5)] for i, s in enumerate(names)}
    extra = {s: [100.0, 200.0] for s in names}
    stats_json = {"observation.state": column, "action": column, "observation.gripper": extra}
    modality_json = {
        "state": {
            "arm": {"start": 0, "end": 3},
            "gripper": {"start": 1, "end": 2, "original_key": "observation.gripper"},
        },
        "action": {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}},
    }
    rel = {"arm": _rel_stats(), "unused": _rel_stats()}
    result = statistics_from_dataset_stats(stats_json, rel, modality_json, load_modality_config(DEMO_CFG))
    assert result["state"]["arm"]["min"] == [20.0, 21.0, 22.0]
    assert result["state"]["gripper"]["max"] == [200.0]
    assert result["action"]["gripper"]["q99"] == [53.0]
    assert list(result["relative_action"]) == ["arm"]
    assert Gr00tProcessor.statistics_from_dataset_stats is statistics_from_dataset_stats
    assert "relative_action" not in statistics_from_dataset_stats(stats_json, None, modality_json, _cfg())
    modality_json["action"]["gripper"] = {"start": 4, "end": 6}
    with pytest.raises(ProcessorError, match=r"slice \[4:6\] is outside"):
        statistics_from_dataset_stats(stats_json, rel, modality_json, _cfg())
    del modality_json["action"]["gripper"]
    with pytest.raises(ProcessorError, match="no action group 'gripper'"):
        statistics_from_dataset_stats(stats_json, rel, modality_json, _cfg())


def test_statistics_from_gr1_dataset() -> None:
    meta = GR1_DATA / "meta"
    if not (meta / "stats.json").is_file():
        pytest.skip(f"gr1.PickNPlace reference dataset not found at {GR1_DATA}; skipping")
    stats_json = json.loads((meta / "stats.json").read_text())
    rel_json = json.loads((meta / "relative_stats.json").read_text())
    modality_json = json.loads((meta / "modality.json").read_text())
    cfg = load_modality_config(GR1_CFG)
    result = statistics_from_dataset_stats(stats_json, rel_json, modality_json, cfg)
    state_col, action_col = stats_json["observation.state"], stats_json["action"]
    for key, (start, end) in {"left_arm": (0, 7), "left_hand": (7, 13), "right_arm": (22, 29),
                              "right_hand": (29, 35), "waist": (41, 44)}.items():  # fmt: skip
        for stat in ("min", "max", "mean", "std", "q01", "q99"):
            assert result["state"][key][stat] == pytest.approx(state_col[stat][start:end])
            assert result["action"][key][stat] == pytest.approx(action_col[stat][start:end])
    assert set(result["state"]) == set(cfg.state.modality_keys)  # legs/neck not in the config
    assert set(result["relative_action"]) == {"left_arm", "left_hand", "right_arm", "right_hand"}
    assert np.asarray(result["relative_action"]["left_arm"]["max"]).shape == (16, 7)

    proc = Gr00tProcessor({"gr1": cfg}, {"gr1": result}, shortest_image_edge=48, seed=0)
    assert proc.dims("gr1") == {"state_dim": 29, "action_dim": 29, "action_horizon": 16}
    state = {k: np.asarray(result["state"][k]["mean"])[None] for k in cfg.state.modality_keys}
    action = {}
    for k in cfg.action.modality_keys:
        if k in result["relative_action"]:  # reference + per-step relative mean (inside [min, max])
            action[k] = state[k][-1] + np.asarray(result["relative_action"][k]["mean"])
        else:
            action[k] = np.tile(result["action"][k]["mean"], (16, 1))
    step = {"video": {cfg.video.modality_keys[0]: np.zeros((1, 64, 64, 3), np.uint8)}, "state": state,
            "action": action, "language": {cfg.language.modality_keys[0]: "Pick the pear."}}  # fmt: skip
    out = proc(step, "gr1")
    assert out["embodiment_id"] == 20 and out["action_mask"].sum() == 16 * 29
    decoded = proc.decode_action(out["action"], "gr1", state)
    for k in cfg.action.modality_keys:
        np.testing.assert_allclose(decoded[k], action[k], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------ persistence


def test_save_load_round_trip(tmp_path: Path) -> None:
    proc = _proc(random_rotation_angle=10, color_jitter_params=JITTER, use_percentiles=True,
                 model_name="groot-ft/test")  # fmt: skip
    written = proc.save_pretrained(tmp_path / "proc")
    assert sorted(p.name for p in written) == ["embodiment_id.json", "processor_config.json", "statistics.json"]
    assert sorted(p.name for p in (tmp_path / "proc").iterdir()) == sorted(p.name for p in written)  # no temp files
    config = json.loads((tmp_path / "proc" / "processor_config.json").read_text())
    assert config["processor_class"] == "Gr00tN1d6Processor"
    kwargs = config["processor_kwargs"]
    assert list(kwargs) == [
        "modality_configs", "image_crop_size", "image_target_size", "use_albumentations", "random_rotation_angle",
        "color_jitter_params", "shortest_image_edge", "crop_fraction", "model_name", "model_type",
        "formalize_language", "max_state_dim", "max_action_dim", "max_action_horizon", "use_percentiles",
        "clip_outliers", "apply_sincos_state_encoding", "use_relative_action",
    ]  # fmt: skip
    assert kwargs["image_crop_size"] is None and kwargs["use_albumentations"] is True
    assert kwargs["model_name"] == "groot-ft/test" and kwargs["model_type"] == "eagle"
    assert kwargs["modality_configs"][TAG]["action"]["action_configs"][0]["rep"] == "RELATIVE"
    assert json.loads((tmp_path / "proc" / "embodiment_id.json").read_text())[TAG] == 10
    assert json.loads((tmp_path / "proc" / "statistics.json").read_text()) == proc.statistics

    loaded = Gr00tProcessor.from_pretrained(tmp_path / "proc", seed=0)
    assert loaded.processor_kwargs() == proc.processor_kwargs()
    proc.reseed(0)
    for _ in range(2):  # train mode, same seed: identical augmentation and encodings
        a, b = proc(_step(), TAG), loaded(_step(), TAG)
        for key in a:
            assert np.array_equal(a[key], b[key]) if isinstance(a[key], np.ndarray) else a[key] == b[key]
    a, b = proc.eval()(_step(), TAG), loaded.eval()(_step(), TAG)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["action"], b["action"])


def test_from_pretrained_overrides(tmp_path: Path) -> None:
    _proc(random_rotation_angle=10, color_jitter_params=JITTER).save_pretrained(tmp_path)
    loaded = Gr00tProcessor.from_pretrained(tmp_path, color_jitter_params=None, random_rotation_angle=0,
                                            embodiment_id_mapping={TAG: 12})  # fmt: skip
    assert loaded.color_jitter_params == JITTER  # None keeps the saved value (upstream semantics)
    assert loaded.random_rotation_angle == 0.0
    assert loaded(_step(), TAG)["embodiment_id"] == 12
    with pytest.raises(TypeError, match="unexpected overrides"):
        Gr00tProcessor.from_pretrained(tmp_path, not_a_setting=1)


def test_from_pretrained_upstream_style_files(tmp_path: Path) -> None:
    # upstream writes enum names, may omit optional keys, and saves extra tags/stats
    modality = {
        "video": {"delta_indices": [0], "modality_keys": ["front", "wrist"]},
        "state": {"delta_indices": [0], "modality_keys": ["arm", "gripper"], "sin_cos_embedding_keys": None},
        "action": {"delta_indices": list(range(H)), "modality_keys": ["arm", "gripper"],
                   "action_configs": [{"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT", "state_key": None},
                                      {"rep": "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT"}]},
        "language": {"delta_indices": [0], "modality_keys": [LANG]},
    }  # fmt: skip
    kwargs = {
        "modality_configs": {"NEW_EMBODIMENT": modality, "gr1": modality}, "image_crop_size": None, "image_target_size": None,
        "use_albumentations": True, "random_rotation_angle": None,
        "color_jitter_params": {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08},
        "shortest_image_edge": 48, "crop_fraction": 0.95, "model_name": "nvidia/Eagle-Block2A-2B-v2",
        "model_type": "eagle", "formalize_language": True, "max_state_dim": 128, "max_action_dim": 128,
        "max_action_horizon": 50, "use_percentiles": False, "clip_outliers": True,
        "apply_sincos_state_encoding": False, "use_relative_action": True, "some_future_key": 1,
    }  # fmt: skip
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"processor_class": "Gr00tN1d6Processor", "processor_kwargs": kwargs})
    )
    stats = _stats()
    stats["gr1"] = {"state": {"left_arm": _stats()[TAG]["state"]["arm"]}}
    (tmp_path / "statistics.json").write_text(json.dumps(stats))
    (tmp_path / "embodiment_id.json").write_text(json.dumps({"gr1": 20, "new_embodiment": 10, "unitree_g1": 8}))
    with pytest.warns(UserWarning) as record:
        proc = Gr00tProcessor.from_pretrained(tmp_path)
    messages = " | ".join(str(w.message) for w in record)
    assert "some_future_key" in messages
    assert "embodiment 'gr1' cannot be used" in messages  # a tag with unusable stats does not block loading
    with pytest.raises(ProcessorError, match="missing state statistics for key 'arm'"):
        proc(_step(), "gr1")
    assert proc.model_name == "nvidia/Eagle-Block2A-2B-v2" and proc.max_action_horizon == 50
    assert proc.modality_configs[TAG] == load_modality_config(DEMO_CFG)
    assert proc.embodiment_id_mapping["unitree_g1"] == 8 and "gr1" in proc.statistics
    out = proc(_step(), TAG)
    assert out["action"].shape == (50, 128) and out["state"].shape == (1, 128)
    assert out["images"].shape == (2, 3, 48, 48)
