"""Feature ``names`` in every form LeRobot writers produce, read alike by the validator, the reader and
``modality init``; and a plain LeRobot v2.1 export of a Unitree G1 (nested names, 26-D, no modality.json) from
``validate`` to a split ``modality init`` proposal."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.layout import feature_names
from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.data.modality_init import main_modality_init, propose_modality, write_proposal
from groot_ft.data.validate import WARNING, validate_dataset
from groot_ft.modality import load_modality_config, parse_embodiment_config

from .g1_export import G1_GROUPS, G1_JOINTS, NAMES_FORMS, write_g1_export

NAMES_CODES = ("FEATURE_NAMES_MISMATCH", "FEATURE_NAMES_UNSTRUCTURED")


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", episodes=2, seed=0)


@pytest.fixture(scope="module")
def g1_master(demo_master, tmp_path_factory) -> Path:
    """The G1-shaped export with nested names; tests that write anything work on a copy."""
    return write_g1_export(demo_master, tmp_path_factory.mktemp("g1") / "g1")


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def groups(section: dict) -> dict[str, tuple[int, int]]:
    return {k: (v["start"], v["end"]) for k, v in section.items()}


def names_findings(report) -> list:
    return [f for f in report.findings if f.code in NAMES_CODES]


# ------------------------------------------------------------------------------------------------ the G1 export


def test_g1_export_validates_with_only_the_missing_mapping(g1_master):
    before = tree_digest(g1_master)
    report = validate_dataset(g1_master)
    assert [(f.code, f.file) for f in report.findings] == [("META_MISSING", "meta/modality.json")], (
        report.summary_text()
    )
    hint = report.findings[0].hint
    assert f"groot-ft modality init {g1_master} --out-config " in hint and "--out-modality-json " in hint
    assert "outside the dataset" in hint
    assert "re-export" not in hint and "Restore" not in hint
    assert tree_digest(g1_master) == before


def test_g1_export_modality_init_splits_arms_and_hands(g1_master, tmp_path, capsys):
    before = tree_digest(g1_master)
    proposal = propose_modality(g1_master)
    assert groups(proposal.modality_json["state"]) == G1_GROUPS
    assert groups(proposal.modality_json["action"]) == G1_GROUPS
    cfg = parse_embodiment_config(proposal.modality_config)
    assert cfg.state.modality_keys == cfg.action.modality_keys == tuple(G1_GROUPS)
    # arm joints are proposed RELATIVE (as upstream's gr1 arms), the hands ABSOLUTE
    assert cfg.relative_action_keys() == ["left_arm", "right_arm"]
    assert [row["relative?"] for row in proposal.table] == [
        "RELATIVE (arm joints)", "RELATIVE (arm joints)", "ABSOLUTE", "ABSOLUTE"
    ]
    all_absolute = propose_modality(g1_master, relative="none").modality_config
    assert parse_embodiment_config(all_absolute).relative_action_keys() == []

    # the CLI prints the table (group, slice, width, joints, why, relative?) and writes only where it is told
    out_cfg, out_json = tmp_path / "g1.yaml", tmp_path / "g1.modality.json"
    assert main_modality_init([str(g1_master), "--out-config", str(out_cfg), "--out-modality-json", str(out_json)]) == 0
    err = capsys.readouterr().err
    header = next(line for line in err.splitlines() if line.startswith("group"))
    assert header.split() == ["group", "slice", "width", "joints", "why", "relative?"]
    left_arm = next(line for line in err.splitlines() if line.startswith("left_arm "))
    for text in ("observation.state[0:7]", " 7 ", "kLeftShoulderPitch .. kLeftWristYaw", "shoulder/elbow/wrist",
                 "RELATIVE"):
        assert text in left_arm, left_arm
    right_hand = next(line for line in err.splitlines() if line.startswith("right_hand "))
    assert "kRightHandPinky .. kRightHandThumbRotation" in right_hand and "ABSOLUTE" in right_hand
    assert "# left_arm " in out_cfg.read_text()  # the written config repeats the table for review
    assert load_modality_config(out_cfg).relative_action_keys() == ["left_arm", "right_arm"]
    assert json.loads(out_json.read_text()) == proposal.modality_json
    assert tree_digest(g1_master) == before  # the dataset is never written


def test_g1_proposal_validates_cleanly_on_a_copy(g1_master, tmp_path):
    copy = tmp_path / "g1"
    shutil.copytree(g1_master, copy)
    proposal = propose_modality(copy)
    write_proposal(proposal, modality_json_out=copy / "meta" / "modality.json", config_out=tmp_path / "g1.yaml")
    report = validate_dataset(copy, load_modality_config(tmp_path / "g1.yaml"))
    assert report.findings == [], report.summary_text()


# ------------------------------------------------------------------------------------------------ names forms


@pytest.mark.parametrize("form", list(NAMES_FORMS))
def test_every_names_form_is_read_alike(demo_master, tmp_path, form):
    root = write_g1_export(demo_master, tmp_path / "g1", names=NAMES_FORMS[form])
    expected = None if NAMES_FORMS[form] is None else tuple(G1_JOINTS)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert feature_names(info["features"]["observation.state"]).names == expected
    ds = LeRobotDataset(root)  # the reader
    assert ds.feature_names("observation.state").names == expected
    assert ds.feature_names("action").names == expected
    report = validate_dataset(root)  # the validator
    assert names_findings(report) == [], report.summary_text()
    assert report.codes("error") == {"META_MISSING"}
    proposal = propose_modality(root)  # modality init
    if expected is None:
        assert groups(proposal.modality_json["state"]) == {"state": (0, 26)}
        assert groups(proposal.modality_json["action"]) == {"action": (0, 26)}
    else:
        assert groups(proposal.modality_json["state"]) == G1_GROUPS
        assert groups(proposal.modality_json["action"]) == G1_GROUPS


@pytest.mark.parametrize(
    ("names", "code", "problem"),
    [
        ([G1_JOINTS[:25]], "FEATURE_NAMES_MISMATCH", "hold 25 names for shape [26]"),
        ({"motors": G1_JOINTS + ["extra"]}, "FEATURE_NAMES_MISMATCH", "hold 27 names for shape [26]"),
        ("kLeftShoulderPitch", "FEATURE_NAMES_UNSTRUCTURED", "are not one of LeRobot's forms"),
        ([[G1_JOINTS]], "FEATURE_NAMES_UNSTRUCTURED", "are not one of LeRobot's forms"),
        ({"motors": G1_JOINTS, "count": 26}, "FEATURE_NAMES_UNSTRUCTURED", "are not one of LeRobot's forms"),
        ({name: i + 1 for i, name in enumerate(G1_JOINTS)}, "FEATURE_NAMES_UNSTRUCTURED", "not one of LeRobot"),
        (list(range(26)), "FEATURE_NAMES_UNSTRUCTURED", "are not one of LeRobot's forms"),
    ],
    ids=["nested-short", "motors-long", "string", "nested-twice", "mixed-dict", "index-from-1", "numbers"],
)
def test_unusable_names_are_a_warning_everywhere(demo_master, tmp_path, names, code, problem):
    root = write_g1_export(demo_master, tmp_path / "g1", names=names)
    read = LeRobotDataset(root).feature_names("observation.state")
    assert read.names is None and problem in read.problem
    report = validate_dataset(root)
    found = names_findings(report)
    assert sorted((f.code, f.field) for f in found) == [
        (code, "features.action.names"), (code, "features.observation.state.names")
    ]
    assert all(f.severity == WARNING and read.problem in f.message for f in found)
    assert report.codes("error") == {"META_MISSING"}  # names never stop training
    proposal = propose_modality(root)
    assert groups(proposal.modality_json["state"]) == {"state": (0, 26)}
    assert any(read.problem in note for note in proposal.notes)


def test_feature_names_forms_in_detail():
    def read(names, dim=3):
        return feature_names({"dtype": "float32", "shape": [dim], "names": names})

    assert read(["x", "y", "z"]).form == "flat list"
    assert read([["x", "y", "z"]]).form == "nested list"
    assert read({"axes": ["x", "y", "z"]}).names == ("x", "y", "z")
    assert read({"delta_x": 0, "delta_y": 1, "gripper": 2}).names == ("delta_x", "delta_y", "gripper")
    assert read({"delta_y": 1, "delta_x": 0, "gripper": 2}).names == ("delta_x", "delta_y", "gripper")
    assert read({"a": True, "b": False, "c": True}).unreadable  # bools are not indices
    assert read(None).form == "null" and read(None).problem is None
    assert read(["x", "", "z"]).unreadable  # an empty name labels nothing
    # images, videos and matrices name their axes: nothing to check per element
    video = {"dtype": "video", "shape": [64, 64, 3], "names": ["height", "width", "channels"]}
    assert feature_names(video).form == "axes" and feature_names(video).problem is None
    assert feature_names({"dtype": "float32", "shape": [2, 2], "names": {"rows": ["a", "b"]}}).problem is None
