"""`groot-ft modality init`: proposing meta/modality.json and a modality config from meta/info.json."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from groot_ft.data.demo import MODALITY as DEMO_MODALITY
from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.modality_init import (
    ModalityInitError,
    add_modality_parser,
    main_modality_init,
    propose_modality,
    write_proposal,
)
from groot_ft.data.validate import validate_dataset
from groot_ft.modality import load_modality_config, parse_embodiment_config

PROJECT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = PROJECT / "config" / "modality" / "demo.yaml"
# gr1_dataset (skips with "gr1.PickNPlace reference dataset not found at <path>; skipping") comes from tests/conftest.py


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file under ``root`` (to prove nothing was written there)."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def modality_findings(report) -> list:
    return [f for f in report.findings if f.code.startswith(("MODALITY_", "CONFIG_"))]


def groups(section: dict) -> dict[str, tuple[int, int]]:
    return {k: (v["start"], v["end"]) for k, v in section.items()}


def write_info(root: Path, features: dict) -> Path:
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": "v2.1", "fps": 10, "features": features}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


def vec(names, dtype="float32"):
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


VIDEO = {"dtype": "video", "shape": [64, 64, 3], "names": ["height", "width", "channels"]}
SCALAR_INT = {"dtype": "int64", "shape": [1], "names": None}


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", episodes=3, seed=0)


@pytest.fixture()
def demo_bare(demo_master, tmp_path) -> Path:
    """The demo dataset with its meta/modality.json removed."""
    dst = tmp_path / "ds"
    shutil.copytree(demo_master, dst)
    (dst / "meta" / "modality.json").unlink()
    return dst


# ------------------------------------------------------------------------------------------------------ demo


def test_demo_proposal_equals_the_original_groups(demo_bare):
    proposal = propose_modality(demo_bare)
    assert proposal.modality_json == DEMO_MODALITY
    assert groups(proposal.modality_json["state"]) == {"arm": (0, 3), "gripper": (3, 4)}
    assert groups(proposal.modality_json["action"]) == {"arm": (0, 3), "gripper": (3, 4)}
    cfg = parse_embodiment_config(proposal.modality_config)
    assert cfg.video.modality_keys == ("front", "wrist")
    assert cfg.state.modality_keys == ("arm", "gripper")
    assert cfg.action.delta_indices == tuple(range(16))
    assert cfg.relative_action_keys() == []  # x, y, z are no arm-joint names: everything ABSOLUTE
    assert cfg.language.modality_keys == ("annotation.human.task_description",)


def test_demo_all_mirrored_reproduces_the_shipped_config(demo_bare):
    proposal = propose_modality(demo_bare, relative=["all-mirrored"])
    cfg = parse_embodiment_config(proposal.modality_config)
    assert cfg.to_dict() == load_modality_config(DEMO_CONFIG).to_dict()  # arm RELATIVE, gripper ABSOLUTE


def test_demo_proposal_validates_without_modality_errors(demo_bare, tmp_path):
    proposal = propose_modality(demo_bare, relative=["arm"])
    config_path = tmp_path / "proposed.yaml"
    write_proposal(proposal, modality_json_out=demo_bare / "meta" / "modality.json", config_out=config_path)
    cfg = load_modality_config(config_path)  # the written YAML (with its comment header) loads
    assert cfg.relative_action_keys() == ["arm"]
    report = validate_dataset(demo_bare, cfg)
    assert modality_findings(report) == []
    assert report.ok, report.summary_text()
    report_no_cfg = validate_dataset(demo_bare)
    assert modality_findings(report_no_cfg) == [] and report_no_cfg.ok


def test_action_horizon_option(demo_bare):
    proposal = propose_modality(demo_bare, action_horizon=8)
    assert proposal.modality_config["action"]["delta_indices"] == list(range(8))
    with pytest.raises(ModalityInitError, match="action_horizon"):
        propose_modality(demo_bare, action_horizon=0)


# ------------------------------------------------------------------------------------------------------ gr1


def test_gr1_info_gives_one_44_dim_group(gr1_dataset, tmp_path):
    proposal = propose_modality(gr1_dataset)  # reads only meta/info.json and meta/episodes.jsonl
    mj = proposal.modality_json
    assert groups(mj["state"]) == {"state": (0, 44)}
    assert groups(mj["action"]) == {"action": (0, 44)}
    # "egoview" is declared but has no files; only ego_view is proposed
    assert mj["video"] == {"ego_view": {"original_key": "observation.images.ego_view"}}
    assert set(mj["annotation"]) == {"human.action.task_description", "human.validity"}
    assert proposal.modality_config["language"]["modality_keys"] == ["annotation.human.action.task_description"]

    # RELATIVE on the whole-vector group refers to the state group through state_key
    cfg = parse_embodiment_config(propose_modality(gr1_dataset, relative="all-mirrored").modality_config)
    assert cfg.relative_action_keys() == ["action"] and cfg.reference_state_key("action") == "state"

    # on a copy without modality.json (and the stale relative_stats.json), the proposal validates cleanly
    copy = tmp_path / "gr1"
    shutil.copytree(gr1_dataset, copy)
    (copy / "meta" / "modality.json").unlink()
    (copy / "meta" / "relative_stats.json").unlink()
    proposal = propose_modality(copy, relative="all-mirrored")
    write_proposal(proposal, modality_json_out=copy / "meta" / "modality.json", config_out=tmp_path / "gr1.yaml")
    report = validate_dataset(copy, load_modality_config(tmp_path / "gr1.yaml"))
    assert modality_findings(report) == []
    assert report.ok, report.summary_text()


# ------------------------------------------------------------------------------------------------------ synthetic


def test_prefixed_names_give_one_group_per_prefix(tmp_path):
    names = [f"left_arm_{i}" for i in range(7)] + [f"left_hand_{i}" for i in range(6)]
    names += [f"right_arm_{i}" for i in range(7)]
    root = write_info(
        tmp_path / "ds",
        {"observation.images.head": VIDEO, "observation.state": vec(names), "action": vec(names)},
    )
    proposal = propose_modality(root)
    expected = {"left_arm": (0, 7), "left_hand": (7, 13), "right_arm": (13, 20)}
    assert groups(proposal.modality_json["state"]) == expected
    assert groups(proposal.modality_json["action"]) == expected
    assert proposal.modality_json["video"] == {"head": {"original_key": "observation.images.head"}}
    # no annotation.* column: task_index is the language source
    assert proposal.modality_json["annotation"] == {"human.task_description": {"original_key": "task_index"}}
    assert proposal.modality_config["language"]["modality_keys"] == ["annotation.human.task_description"]
    cfg = parse_embodiment_config(proposal.modality_config)
    assert cfg.state.modality_keys == cfg.action.modality_keys == ("left_arm", "left_hand", "right_arm")

    rel = parse_embodiment_config(propose_modality(root, relative=["left_arm", "right_arm"]).modality_config)
    assert rel.relative_action_keys() == ["left_arm", "right_arm"]
    assert parse_embodiment_config(
        propose_modality(root, relative="all-mirrored").modality_config
    ).relative_action_keys() == ["left_arm", "left_hand", "right_arm"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
             "gripper.pos"],
            {"arm": (0, 5), "gripper": (5, 6)},
        ),
        (
            ["left_waist", "left_shoulder", "left_elbow", "left_gripper", "right_waist", "right_shoulder",
             "right_elbow", "right_gripper"],
            {"left_arm": (0, 3), "left_gripper": (3, 4), "right_arm": (4, 7), "right_gripper": (7, 8)},
        ),
        ([f"motor_{i}" for i in range(10)], {"state": (0, 10)}),
        (["x", "y", "z", "roll", "pitch", "yaw"], {"state": (0, 6)}),
        ([f"joint_{i}" for i in range(6)] + ["gripper"], {"joint": (0, 6), "gripper": (6, 7)}),
    ],
)
def test_name_grouping(tmp_path, names, expected):
    root = write_info(
        tmp_path / "ds", {"observation.images.cam": VIDEO, "observation.state": vec(names), "action": vec(names)}
    )
    proposal = propose_modality(root)
    assert groups(proposal.modality_json["state"]) == expected
    parse_embodiment_config(proposal.modality_config)


H1_LEGS = [
    f"{side}_{j}_joint" for side in ("left", "right") for j in ("hip_yaw", "hip_roll", "hip_pitch", "knee", "ankle")
]


@pytest.mark.parametrize(
    ("names", "expected", "relative"),
    [
        (  # Unitree H1 (URDF joint names): legs, torso, arms; the legs are not RELATIVE candidates
            H1_LEGS + ["torso_joint"] + [f"{side}_{j}_joint" for side in ("left", "right")
                                         for j in ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow")],
            {"left_leg": (0, 5), "right_leg": (5, 10), "torso": (10, 11), "left_arm": (11, 15),
             "right_arm": (15, 19)},
            ["left_arm", "right_arm"],
        ),
        (  # Unitree G1 with Dex3 hands and waist, enum names with indexed fingers
            ["kWaistYaw", "kWaistRoll", "kWaistPitch", "kLeftShoulderPitch", "kLeftElbow", "kLeftWristYaw",
             "kLeftHandThumb0", "kLeftHandThumb1", "kLeftHandIndex0", "kLeftHandMiddle0"],
            {"waist": (0, 3), "left_arm": (3, 6), "left_hand": (6, 10)},
            ["left_arm"],
        ),
        (  # Fourier GR1-style prefixes, head and grippers
            ["l_arm_shoulder_pitch", "l_arm_elbow", "l_gripper", "r_arm_shoulder_pitch", "r_arm_elbow",
             "r_gripper", "head_yaw", "head_pitch", "neck_roll"],
            {"left_arm": (0, 2), "left_gripper": (2, 3), "right_arm": (3, 5), "right_gripper": (5, 6),
             "head": (6, 8), "neck": (8, 9)},
            ["left_arm", "right_arm"],
        ),
        (  # CamelCase sides and NAO's one-letter side prefix
            ["LeftHandIndex", "LeftHandThumb", "RShoulderPitch", "RElbowRoll", "RightGripper"],
            {"left_hand": (0, 2), "right_arm": (2, 4), "right_gripper": (4, 5)},
            ["right_arm"],
        ),
        (  # one arm named by its joints keeps its name (no whole-vector 'state')
            ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"],
            {"arm": (0, 5)},
            ["arm"],
        ),
        (  # a group that comes back after another is a second contiguous group
            ["left_shoulder", "left_elbow", "left_hand_a", "left_wrist"],
            {"left_arm": (0, 2), "left_hand": (2, 3), "left_arm_2": (3, 4)},
            ["left_arm", "left_arm_2"],
        ),
    ],
    ids=["h1", "g1-dex3", "gr1-style", "camel-nao", "one-arm", "interleaved"],
)
def test_joint_name_schemes(tmp_path, names, expected, relative):
    root = write_info(
        tmp_path / "ds", {"observation.images.cam": VIDEO, "observation.state": vec(names), "action": vec(names)}
    )
    proposal = propose_modality(root)
    assert groups(proposal.modality_json["state"]) == expected
    assert groups(proposal.modality_json["action"]) == expected
    cfg = parse_embodiment_config(proposal.modality_config)
    assert cfg.relative_action_keys() == relative  # arm-joint groups, by default
    assert [row["group"] for row in proposal.table] == list(expected)
    assert all(row["why"] for row in proposal.table)
    assert parse_embodiment_config(propose_modality(root, relative="none").modality_config).relative_action_keys() == []


def test_unnamed_or_different_action_gives_one_action_group(tmp_path):
    root = write_info(
        tmp_path / "ds",
        {
            "observation.images.front": VIDEO,
            "observation.state": {"dtype": "float32", "shape": [5], "names": None},
            "observation.velocity": vec([f"v{i}" for i in range(5)]),
            "observation.state.ee_pose": vec(["x", "y", "z"], "float64"),
            "observation.environment_state": {"dtype": "float32", "shape": [2, 2], "names": None},
            "action": vec(["a", "b", "c"]),
            "annotation.human.validity": SCALAR_INT,
            "annotation.human.action.task_description": SCALAR_INT,
            "task_index": SCALAR_INT,
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        },
    )
    proposal = propose_modality(root)
    state = proposal.modality_json["state"]
    assert state == {
        "state": {"start": 0, "end": 5},
        "velocity": {"start": 0, "end": 5, "original_key": "observation.velocity"},
        "ee_pose": {"start": 0, "end": 3, "original_key": "observation.state.ee_pose"},
    }
    assert proposal.modality_json["action"] == {"action": {"start": 0, "end": 3}}
    # the table lists every group: the whole-vector state and action, then the extra state columns
    assert [(r["group"], r["slice"], r["relative?"]) for r in proposal.table] == [
        ("state", "observation.state[0:5]", "- (state only)"),
        ("action", "action[0:3]", "ABSOLUTE"),
        ("velocity", "observation.velocity[0:5]", "- (state only)"),
        ("ee_pose", "observation.state.ee_pose[0:3]", "- (state only)"),
    ]
    # the annotation naming a task is the language key; every int annotation column is mapped
    assert proposal.modality_json["annotation"] == {"human.validity": {}, "human.action.task_description": {}}
    assert proposal.modality_config["language"]["modality_keys"] == ["annotation.human.action.task_description"]
    assert any("environment_state" in n for n in proposal.notes)  # 2-D: skipped, with a note
    parse_embodiment_config(proposal.modality_config)
    # an action group that mirrors no state group cannot be RELATIVE; unknown names are refused
    with pytest.raises(ModalityInitError, match="does not mirror"):
        propose_modality(root, relative=["action"])
    with pytest.raises(ModalityInitError, match="not a proposed action group"):
        propose_modality(root, relative=["nope"])
    assert parse_embodiment_config(
        propose_modality(root, relative="all-mirrored").modality_config
    ).relative_action_keys() == []


def test_missing_pieces_are_clear_errors(tmp_path):
    with pytest.raises(ModalityInitError, match="does not exist"):
        propose_modality(tmp_path / "absent")
    no_video = write_info(tmp_path / "a", {"observation.state": vec(["x"]), "action": vec(["x"])})
    with pytest.raises(ModalityInitError, match="camera"):
        propose_modality(no_video)
    no_action = write_info(tmp_path / "b", {"observation.images.c": VIDEO, "observation.state": vec(["x"])})
    with pytest.raises(ModalityInitError, match="action"):
        propose_modality(no_action)


# ------------------------------------------------------------------------------------------------------ writing


def test_refuses_to_overwrite_unless_forced(demo_bare, tmp_path):
    proposal = propose_modality(demo_bare)
    config_path = tmp_path / "out" / "cfg.yaml"
    json_path = tmp_path / "out" / "modality.json"
    config_path.parent.mkdir()
    config_path.write_text("keep me\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_proposal(proposal, modality_json_out=json_path, config_out=config_path)
    assert config_path.read_text() == "keep me\n"
    assert not json_path.exists()  # nothing is written when any target is refused
    assert sorted(p.name for p in config_path.parent.iterdir()) == ["cfg.yaml"]  # no temp files left

    written = write_proposal(proposal, modality_json_out=json_path, config_out=config_path, force=True)
    assert written == [json_path, config_path]
    assert json.loads(json_path.read_text()) == proposal.modality_json
    assert yaml.safe_load(config_path.read_text()) == proposal.modality_config
    assert sorted(p.name for p in config_path.parent.iterdir()) == ["cfg.yaml", "modality.json"]

    # the CLI reports the refusal as a usage/IO error (exit 2) and leaves the file alone
    config_path.write_text("keep me\n")
    assert main_modality_init([str(demo_bare), "--out-config", str(config_path)]) == 2
    assert config_path.read_text() == "keep me\n"
    assert main_modality_init([str(demo_bare), "--out-config", str(config_path), "--force"]) == 0
    assert yaml.safe_load(config_path.read_text()) == proposal.modality_config


def test_never_writes_into_the_dataset_by_default(demo_bare, tmp_path, capsys):
    before = tree_state(demo_bare)
    assert main_modality_init([str(demo_bare)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["modality_json"] == DEMO_MODALITY
    parse_embodiment_config(printed["modality_config"])
    assert isinstance(printed["notes"], list) and printed["notes"]

    out = tmp_path / "elsewhere" / "cfg.yaml"
    assert main_modality_init([str(demo_bare), "--out-config", str(out), "--relative", "arm"]) == 0
    assert load_modality_config(out).relative_action_keys() == ["arm"]
    assert tree_state(demo_bare) == before
    assert not (demo_bare / "meta" / "modality.json").exists()


def test_add_modality_parser_wires_the_init_subcommand(demo_bare, tmp_path):
    parser = argparse.ArgumentParser(prog="groot-ft")
    sub = parser.add_subparsers(dest="command", required=True)
    add_modality_parser(sub)
    json_out = tmp_path / "modality.json"
    cfg_out = tmp_path / "cfg.yaml"
    args = parser.parse_args(
        [
            "modality",
            "init",
            str(demo_bare),
            "--out-config",
            str(cfg_out),
            "--out-modality-json",
            str(json_out),
            "--action-horizon",
            "4",
            "--relative",
            "all-mirrored",
        ]
    )
    assert args.func(args) == 0
    assert json.loads(json_out.read_text()) == DEMO_MODALITY
    cfg = load_modality_config(cfg_out)
    assert cfg.action_horizon == 4 and cfg.relative_action_keys() == ["arm"]
    with pytest.raises(SystemExit):
        parser.parse_args(["modality"])  # the init subcommand is required


def test_v3_dataset_proposal_matches_and_validates(tmp_path):
    root = write_demo_dataset(tmp_path / "v3", episodes=3, seed=0, version="v3.0")
    (root / "meta" / "modality.json").unlink()
    proposal = propose_modality(root)
    assert proposal.modality_json == DEMO_MODALITY
    (root / "meta" / "modality.json").write_text(json.dumps(proposal.modality_json))
    report = validate_dataset(root, parse_embodiment_config(proposal.modality_config))
    assert report.errors == []
