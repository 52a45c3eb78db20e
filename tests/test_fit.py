"""The data-fits-the-model check that runs before any stage trains (upstream finds these mid-training)."""

from __future__ import annotations

import dataclasses
import json

from groot_ft.fit import ModelLimits, fit_problems
from groot_ft.modality import load_modality_config
from tests.conftest import DEMO_MODALITY

CFG = load_modality_config(DEMO_MODALITY)
MODALITY_JSON = {
    "state": {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}},
    "action": {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}},
}


def test_limits_of_a_preset_and_of_a_model_directory(tmp_path):
    tiny = ModelLimits.of("tiny")
    assert (tiny.max_state_dim, tiny.max_action_dim, tiny.action_horizon) == (32, 32, 16)
    assert tiny.embodiment_ids["new_embodiment"] == 10
    (tmp_path / "config.json").write_text(json.dumps({"max_state_dim": 29, "max_action_dim": 30, "action_horizon": 40}))
    (tmp_path / "embodiment_id.json").write_text(json.dumps({"My_Robot": 5}))
    local = ModelLimits.of(str(tmp_path))
    assert (local.max_state_dim, local.max_action_dim, local.action_horizon) == (29, 30, 40)
    assert local.embodiment_ids["my_robot"] == 5 and local.embodiment_ids["gr1"] == 20


def test_the_demo_fits_the_tiny_model():
    assert fit_problems("demo", "new_embodiment", CFG, MODALITY_JSON, ModelLimits.of("tiny")) == []


def test_every_misfit_is_reported_at_once():
    small = dataclasses.replace(ModelLimits.of("tiny"), max_state_dim=3, max_action_dim=2, action_horizon=8)
    modality_json = {"state": MODALITY_JSON["state"], "action": {"arm": {"start": 0, "end": 3}}}
    problems = fit_problems("/data/robot", "no_such_robot", CFG, modality_json, small)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "action horizon is 16 steps" in text and "at most 8" in text
    assert "state groups arm, gripper add up to 4 dimensions" in text and "max_state_dim=3" in text
    assert "no action.gripper" in text  # the missing group is named ...
    assert "action groups arm, gripper add up to 3 dimensions" in text  # ... and the rest still counted
    assert "unknown embodiment_tag 'no_such_robot'" in text
    assert all(p.startswith("/data/robot: ") for p in problems)


def test_embodiment_ids_must_stay_below_32():
    limits = dataclasses.replace(ModelLimits.of("tiny"), embodiment_ids={"big": 40})
    (problem,) = fit_problems("d", "big", CFG, MODALITY_JSON, limits)
    assert "must be in [0, 32)" in problem


def test_sin_cos_state_groups_count_twice_when_the_base_processor_encodes_them(tmp_path):
    """A checkpoint whose processor_config.json turns on sin/cos encoding (nvidia/GR00T-N1.6-3B does) doubles every
    sin/cos state group: 4 raw dims of which 3 are sin/cos keys fill 7 of the padded state."""
    cfg = dataclasses.replace(CFG, state=dataclasses.replace(CFG.state, sin_cos_embedding_keys=("arm",)))
    (tmp_path / "config.json").write_text(json.dumps({"max_state_dim": 6, "max_action_dim": 32, "action_horizon": 16}))
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"processor_kwargs": {"apply_sincos_state_encoding": True}}))
    limits = ModelLimits.of(str(tmp_path))
    assert limits.sincos_state
    (problem,) = fit_problems("d", "new_embodiment", cfg, MODALITY_JSON, limits)
    assert "add up to 7 dimensions" in problem and "max_state_dim=6" in problem
    assert fit_problems("d", "new_embodiment", cfg, MODALITY_JSON, dataclasses.replace(limits, sincos_state=False)) == []
