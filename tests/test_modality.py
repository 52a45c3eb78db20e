import json

import pytest

from groot_ft.modality import (
    ActionRepresentation,
    ModalityConfigError,
    load_modality_config,
    parse_embodiment_config,
)
from tests.conftest import DEMO_MODALITY, GR1_MODALITY


def _base():
    return {
        "video": {"delta_indices": [0], "modality_keys": ["front"]},
        "state": {"delta_indices": [0], "modality_keys": ["arm"]},
        "action": {
            "delta_indices": list(range(16)),
            "modality_keys": ["arm"],
            "action_configs": [{"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT"}],
        },
        "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
    }


def test_demo_and_gr1_configs_load():
    demo = load_modality_config(DEMO_MODALITY)
    assert demo.action_horizon == 16
    assert demo.relative_action_keys() == ["arm"]
    assert demo.action_config_for("gripper").rep is ActionRepresentation.ABSOLUTE
    gr1 = load_modality_config(GR1_MODALITY)
    assert gr1.relative_action_keys() == ["left_arm", "right_arm", "left_hand", "right_hand"]  # the checkpoint's order


def test_json_and_yaml_give_the_same_config(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_base()))
    cfg = load_modality_config(path)
    assert parse_embodiment_config(cfg.to_dict()) == cfg


def test_enum_values_and_names_are_both_accepted():
    data = _base()
    data["action"]["action_configs"] = [{"rep": "relative", "type": "non_eef", "format": "xyz+rot6d"}]
    cfg = parse_embodiment_config(data)
    assert cfg.action.action_configs[0].to_dict()["format"] == "XYZ_ROT6D"


def test_every_problem_is_reported_at_once():
    data = _base()
    data["video"]["delta_indices"] = []
    data["state"]["modality_keys"] = "arm"
    data["action"]["action_configs"] = [{"rep": "SIDEWAYS"}]
    data["extra"] = {}
    with pytest.raises(ModalityConfigError) as exc:
        parse_embodiment_config(data, source="cfg.yaml")
    msg = str(exc.value)
    for needle in ("video.delta_indices", "state.modality_keys", "SIDEWAYS", "unknown modalities"):
        assert needle in msg, msg


def test_relative_action_needs_matching_state_key_and_offsets():
    data = _base()
    data["action"]["action_configs"][0]["state_key"] = "torso"
    with pytest.raises(ModalityConfigError, match="torso"):
        parse_embodiment_config(data)
    data = _base()
    data["action"]["delta_indices"] = list(range(1, 17))
    with pytest.raises(ModalityConfigError, match="delta_indices"):
        parse_embodiment_config(data)


def test_python_is_never_imported(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ModalityConfigError, match="not valid YAML"):
        load_modality_config(path)
