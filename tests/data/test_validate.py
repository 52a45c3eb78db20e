"""Dataset validator: a corruption corpus on the demo dataset, plus the real gr1.PickNPlace reference dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from groot_ft.data.validate import episodes as validate_mod  # where check_semantics lives since the split
from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.validate import CODES, ERROR, WARNING, Finding, ValidationReport, validate_dataset
from groot_ft.modality import load_modality_config, parse_embodiment_config

from . import corruptions as C

PROJECT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = PROJECT / "config" / "modality" / "demo.yaml"
GR1_CONFIG = PROJECT / "config" / "modality" / "gr1.yaml"
# gr1_dataset (skips with "gr1.PickNPlace reference dataset not found at <path>; skipping") comes from tests/conftest.py


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    """The demo dataset, generated once per module; tests copy it before changing anything."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", episodes=4, seed=0)


@pytest.fixture()
def demo(demo_master, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(demo_master, dst)
    return dst


@pytest.fixture(scope="module")
def demo_cfg():
    return load_modality_config(DEMO_CONFIG)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def matching(report: ValidationReport, code: str, file: str | None = None, episode: int | None = None):
    return [
        f
        for f in report.findings
        if f.code == code and (file is None or f.file == file) and (episode is None or f.episode == episode)
    ]


def describe(report: ValidationReport) -> str:
    return "\n" + report.summary_text()


# ------------------------------------------------------------------------------------------------------ clean data


def test_clean_demo_dataset_has_no_errors(demo_master, demo_cfg):
    report = validate_dataset(demo_master, demo_cfg)
    assert report.ok, describe(report)
    assert report.errors == []
    assert report.episodes == 4
    assert report.frames == sum(json.loads(line)["length"] for line in (demo_master / C.EPISODES).open())
    assert report.codebase_version == "v2.1"


def test_clean_demo_dataset_deep_and_without_config(demo_master):
    assert validate_dataset(demo_master, deep=True).ok
    assert validate_dataset(demo_master).ok


def test_validation_does_not_modify_the_dataset(demo, demo_cfg):
    C._nan_state(demo)  # a broken dataset exercises more code paths
    C._delete(C.video_file(0, "wrist"))(demo)
    before = tree_digest(demo)
    validate_dataset(demo, demo_cfg)
    validate_dataset(demo, demo_cfg, deep=True)
    assert tree_digest(demo) == before


# ------------------------------------------------------------------------------------------------------ corpus


def test_corpus_is_large_and_uses_known_codes():
    assert len(C.CORRUPTIONS) >= 25
    assert len({c.id for c in C.CORRUPTIONS}) == len(C.CORRUPTIONS)
    assert {c.code for c in C.CORRUPTIONS} <= set(CODES)


@pytest.mark.parametrize("corruption", C.CORRUPTIONS, ids=[c.id for c in C.CORRUPTIONS])
def test_corruption_is_reported(demo, demo_cfg, corruption):
    corruption.apply(demo)
    report = validate_dataset(demo, demo_cfg, deep=corruption.deep)
    hits = matching(report, corruption.code, corruption.file, corruption.episode)
    assert hits, f"expected {corruption.code} for {corruption.file} episode {corruption.episode}" + describe(report)
    if corruption.field is not None:
        assert any(f.field == corruption.field for f in hits), describe(report)
    severity = CODES[corruption.code][0]
    assert all(f.severity == severity for f in hits)
    if severity == ERROR:
        assert not report.ok
    assert "INTERNAL" not in report.codes(), describe(report)
    for f in report.findings:  # every finding is well formed
        assert f.code in CODES and f.message and f.hint
        assert f.file is None or not Path(f.file).is_absolute()


def test_corrupt_frames_pass_the_fast_mode_but_not_the_deep_mode(demo, demo_cfg):
    C._scramble_middle(C.video_file(1, "front"))(demo)
    assert "VIDEO_DECODE_ERROR" not in validate_dataset(demo, demo_cfg).codes()
    assert "VIDEO_DECODE_ERROR" in validate_dataset(demo, demo_cfg, deep=True).codes()


@pytest.mark.parametrize(
    "ids",
    [
        ("nan-in-state", "missing-video"),
        ("malformed-tasks-jsonl-line-2", "video-wrong-resolution"),
        ("modality-slice-overlap", "non-monotonic-timestamps"),
        ("episode-length-vs-rows", "duplicate-task-string"),
    ],
)
def test_every_problem_is_reported_when_corruptions_combine(demo, demo_cfg, ids):
    chosen = [c for c in C.CORRUPTIONS if c.id in ids]
    assert len(chosen) == len(ids)
    for c in chosen:
        c.apply(demo)
    report = validate_dataset(demo, demo_cfg)
    for c in chosen:
        assert matching(report, c.code, c.file, c.episode), f"{c.id} not reported" + describe(report)


def test_all_errors_across_episodes_are_reported(demo, demo_cfg):
    for ep in range(4):
        C._delete(C.video_file(ep, "front"))(demo)
    C._nan_state(demo)
    C._inf_action(demo)
    report = validate_dataset(demo, demo_cfg)
    assert {f.episode for f in matching(report, "VIDEO_MISSING")} == {0, 1, 2, 3}
    assert {f.episode for f in matching(report, "NON_FINITE_VALUES")} == {0, 2}


def test_malformed_jsonl_reports_every_bad_line(demo, demo_cfg):
    C.replace_line(demo, C.EPISODES, 2, "not json")
    C.replace_line(demo, C.EPISODES, 4, '"a string"')
    report = validate_dataset(demo, demo_cfg)
    assert {f.field for f in matching(report, "JSONL_INVALID", C.EPISODES)} == {"line 2", "line 4"}


# ------------------------------------------------------------------------------------------------------ config


def _config(**overrides):
    data = {
        "video": {"delta_indices": [0], "modality_keys": ["front", "wrist"]},
        "state": {"delta_indices": [0], "modality_keys": ["arm", "gripper"]},
        "action": {"delta_indices": list(range(16)), "modality_keys": ["arm", "gripper"]},
        "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
    }
    for modality, keys in overrides.items():
        data[modality] = {**data[modality], "modality_keys": keys}
    return parse_embodiment_config(data, source="test-config")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"state": ["arm", "elbow"]}, "state.elbow"),
        ({"action": ["arm", "gripper", "wrist_roll"]}, "action.wrist_roll"),
        ({"video": ["front", "top"]}, "video.top"),
        ({"language": ["annotation.human.coarse_action"]}, "language.annotation.human.coarse_action"),
    ],
)
def test_config_keys_must_exist_in_modality_json(demo_master, overrides, field):
    report = validate_dataset(demo_master, _config(**overrides))
    hits = matching(report, "CONFIG_KEY_MISSING", C.MODALITY)
    assert [f.field for f in hits] == [field], describe(report)


def test_missing_camera_is_an_error_only_when_used(demo):
    for ep in range(4):
        C._delete(C.video_file(ep, "wrist"))(demo)
    used = validate_dataset(demo, _config())
    assert len(matching(used, "VIDEO_MISSING")) == 4 and not used.ok
    unused = validate_dataset(demo, _config(video=["front"]))
    assert unused.ok, describe(unused)
    [warning] = matching(unused, "UNUSED_VIDEO_MISSING")
    assert warning.severity == WARNING and "observation.images.wrist" in warning.message
    # without a config, modality.json's video section decides: it maps wrist, so it is used
    assert len(matching(validate_dataset(demo), "VIDEO_MISSING")) == 4


def test_relative_action_needs_same_dimension_state(demo, demo_cfg):
    C.edit_json(demo, C.MODALITY, lambda d: d["state"]["arm"].update(end=2))  # arm state 2-D, arm action 3-D
    report = validate_dataset(demo, demo_cfg)
    assert matching(report, "CONFIG_RELATIVE_DIM_MISMATCH", C.MODALITY)
    assert matching(report, "MODALITY_SLICE_GAP", C.MODALITY)


def test_short_episodes_warn_about_the_action_horizon(demo_master):
    cfg = parse_embodiment_config(
        {
            "video": {"delta_indices": [0], "modality_keys": ["front"]},
            "state": {"delta_indices": [0], "modality_keys": ["arm"]},
            "action": {"delta_indices": list(range(60)), "modality_keys": ["arm"]},
            "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
        }
    )
    report = validate_dataset(demo_master, cfg)
    assert report.ok
    assert matching(report, "EPISODE_SHORTER_THAN_HORIZON")


# ------------------------------------------------------------------------------------------------------ robustness


def test_missing_root_and_file_root(tmp_path):
    report = validate_dataset(tmp_path / "nope")
    assert report.codes() == {"DATASET_NOT_FOUND"} and not report.ok
    (tmp_path / "file").write_text("x")
    assert validate_dataset(tmp_path / "file").codes() == {"DATASET_NOT_FOUND"}


def test_empty_directory_reports_missing_info(tmp_path):
    report = validate_dataset(tmp_path)
    assert matching(report, "META_MISSING", C.INFO)


def test_info_missing_still_checks_other_meta_files(demo):
    C._delete(C.INFO)(demo)
    C.replace_line(demo, C.TASKS, 3, "{oops")
    report = validate_dataset(demo)
    assert matching(report, "META_MISSING", C.INFO)
    assert [f.field for f in matching(report, "JSONL_INVALID", C.TASKS)] == ["line 3"]


def test_unexpected_exception_becomes_internal_finding(demo, demo_cfg, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(validate_mod, "check_semantics", boom)
    report = validate_dataset(demo, demo_cfg)
    internal = matching(report, "INTERNAL")
    assert len(internal) == 4  # one per episode, and validation carried on
    assert {f.file for f in internal} == {C.data_file(ep) for ep in range(4)}
    assert all("kaboom" in f.message for f in internal)


def test_garbage_everywhere_never_raises(demo):
    (demo / C.INFO).write_text(
        json.dumps(
            {
                "codebase_version": "v2.1",
                "fps": "fast",
                "features": [1, 2],
                "data_path": 5,
                "chunks_size": 0,
                "total_episodes": -1,
            }
        )
    )
    (demo / C.MODALITY).write_text(json.dumps({"state": [], "video": {"x": 3}, "annotation": {"y": {}}}))
    (demo / C.TASKS).write_text('{"task_index": "a", "task": 1}\n')
    report = validate_dataset(demo)
    assert not report.ok
    assert "INTERNAL" not in report.codes(), describe(report)
    assert {"FPS_INVALID", "INFO_INVALID_VALUE", "MODALITY_INVALID", "TASK_ENTRY_INVALID"} <= report.codes()


def test_timestamp_tolerance_is_configurable(demo, demo_cfg):
    jitter = lambda ts: (ts + (np.arange(len(ts)) % 2) * 2e-5).astype(ts.dtype)  # noqa: E731
    C.rewrite_parquet(demo, 0, C.map_numpy("timestamp", jitter))
    strict = validate_dataset(demo, demo_cfg, timestamp_tolerance_s=1e-5)
    assert matching(strict, "TIMESTAMP_STEP_MISMATCH", C.data_file(0), 0)
    assert validate_dataset(demo, demo_cfg).ok


# ------------------------------------------------------------------------------------------------------ report


def test_report_json_and_summary(demo, demo_cfg, tmp_path):
    C._nan_state(demo)
    C._duplicate_task(demo)
    report = validate_dataset(demo, demo_cfg)
    d = report.to_dict()
    assert set(d) == {"dataset", "codebase_version", "modality_json", "modality_json_external", "ok", "errors",
                      "warnings", "summary"}
    assert d["ok"] is False and d["codebase_version"] == "v2.1" and d["dataset"] == str(demo)
    assert d["modality_json"] == str(demo / "meta" / "modality.json") and d["modality_json_external"] is False
    assert d["summary"]["errors"] == len(d["errors"]) >= 2
    assert d["summary"]["episodes"] == 4 and d["summary"]["frames"] > 0
    for entry in d["errors"] + d["warnings"]:
        assert set(entry) == {"code", "message", "file", "episode", "field", "hint"}
    out = report.write_json(tmp_path / "reports" / "validation.json")
    assert json.loads(out.read_text()) == json.loads(json.dumps(d))
    assert [p.name for p in out.parent.iterdir()] == ["validation.json"]  # no temp file left behind
    text = report.summary_text()
    assert (
        text.startswith("FAILED")
        and "ERROR NON_FINITE_VALUES data/chunk-000/episode_000002.parquet [episode 2] observation.state:" in text
    )
    assert "-> " in text


def test_summary_groups_hundreds_of_repeats():
    findings = [
        Finding("VIDEO_MISSING", ERROR, f"video of episode {i} is missing", f"videos/e{i}.mp4", i, "cam", "restore")
        for i in range(300)
    ] + [Finding("FPS_NOT_INTEGER", WARNING, "fps is 20.0", "meta/info.json", None, "fps", "int")]
    report = ValidationReport(dataset="x", codebase_version="v2.1", findings=findings, episodes=300, frames=9000)
    text = report.summary_text()
    assert len(text.splitlines()) < 20
    assert "... and 295 more ERROR VIDEO_MISSING (episodes 5-299)" in text
    assert "WARNING FPS_NOT_INTEGER meta/info.json fps: fps is 20.0 -> int" in text
    assert report.to_dict()["summary"]["by_code"] == {"FPS_NOT_INTEGER": 1, "VIDEO_MISSING": 300}


# ------------------------------------------------------------------------------------------------------ gr1


GR1_QUIRK_WARNINGS = {
    "DEFAULT_COLUMN_MISSING",  # no frame_index
    "TIMESTAMP_START_NONZERO",  # timestamps start at 1/fps
    "UNUSED_VIDEO_MISSING",  # observation.images.egoview declared, no files, unused
    "VIDEO_INFO_LEGACY_KEY",  # "video_info" instead of "info"
    "FPS_NOT_INTEGER",  # fps 20.0
    "SPLIT_OUT_OF_RANGE",  # "0:100" for 5 episodes
    "TOTAL_CHUNKS_MISMATCH",  # total_chunks 0
}


def test_gr1_reference_dataset_is_valid_with_quirk_warnings(gr1_dataset):
    report = validate_dataset(gr1_dataset, load_modality_config(GR1_CONFIG))
    assert report.ok, describe(report)
    assert report.errors == []
    assert GR1_QUIRK_WARNINGS <= report.codes(WARNING), describe(report)
    assert report.episodes == 5 and report.frames == 2096
    assert report.codebase_version == "v2.0"
    [frame_index] = matching(report, "DEFAULT_COLUMN_MISSING")
    assert frame_index.field == "frame_index"
    [unused] = matching(report, "UNUSED_VIDEO_MISSING")
    assert "observation.images.egoview" in unused.message
    [start] = matching(report, "TIMESTAMP_START_NONZERO")
    assert "5 of 5 episodes" in start.message


def test_gr1_without_config_and_deep(gr1_dataset):
    assert validate_dataset(gr1_dataset).ok
    deep = validate_dataset(gr1_dataset, load_modality_config(GR1_CONFIG), deep=True)
    assert deep.ok, describe(deep)
    assert "VIDEO_SPARSE_KEYFRAMES" in deep.codes(WARNING)  # 2 keyframes per file


# ------------------------------------------------------------------------------------------------------ LeRobot v3.0


@pytest.fixture(scope="module")
def v3_master(tmp_path_factory) -> Path:
    """The demo dataset in the v3.0 layout with small file limits: several data and video files, several episodes
    per file."""
    return write_demo_dataset(
        tmp_path_factory.mktemp("demo3") / "ds",
        episodes=4,
        seed=0,
        version="v3.0",
        data_files_size_in_mb=0.01,
        video_files_size_in_mb=0.05,
    )


@pytest.fixture()
def v3(v3_master, tmp_path) -> Path:
    dst = tmp_path / "ds3"
    shutil.copytree(v3_master, dst)
    return dst


def test_clean_v3_demo_dataset_has_no_findings(v3_master, demo_cfg):
    report = validate_dataset(v3_master, demo_cfg)
    assert report.ok and report.findings == [], describe(report)
    assert report.codebase_version == "v3.0" and report.episodes == 4
    assert report.frames == sum(r["length"] for r in C.v3_rows(v3_master))
    deep = validate_dataset(v3_master, demo_cfg, deep=True)
    assert deep.ok and deep.findings == [], describe(deep)
    assert validate_dataset(v3_master).findings == []


def test_v3_corpus_uses_known_codes():
    assert len(C.V3_CORRUPTIONS) >= 15
    assert len({c.id for c in C.V3_CORRUPTIONS} | {c.id for c in C.CORRUPTIONS}) == len(C.V3_CORRUPTIONS) + len(
        C.CORRUPTIONS
    )
    codes = {c.code for c in C.V3_CORRUPTIONS}
    assert codes <= set(CODES)
    assert {"V3_INDEX_GAP", "V3_TIMESTAMP_CHAIN", "V3_EPISODE_ROWS", "PARQUET_MISSING", "VIDEO_MISSING"} <= codes


@pytest.mark.parametrize("corruption", C.V3_CORRUPTIONS, ids=[c.id for c in C.V3_CORRUPTIONS])
def test_v3_corruption_is_reported(v3, demo_cfg, corruption):
    file, episode = corruption.expected(v3)
    corruption.apply(v3)
    report = validate_dataset(v3, demo_cfg, deep=corruption.deep)
    hits = matching(report, corruption.code, file, episode)
    assert hits, f"expected {corruption.code} for {file} episode {episode}" + describe(report)
    if corruption.field is not None:
        assert any(f.field == corruption.field for f in hits), describe(report)
    severity = CODES[corruption.code][0]
    assert all(f.severity == severity for f in hits)
    assert report.ok == (severity == WARNING and not report.errors)
    assert "INTERNAL" not in report.codes(), describe(report)
    for f in report.findings:
        assert f.code in CODES and f.message and f.hint
        assert f.file is None or not Path(f.file).is_absolute()


def test_v3_validation_does_not_modify_the_dataset(v3, demo_cfg):
    C._v3_index_gap(v3)
    before = tree_digest(v3)
    validate_dataset(v3, demo_cfg, deep=True)
    assert tree_digest(v3) == before


def test_v3_tasks_stored_as_pandas_index_validate(v3, demo_cfg):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(v3 / C.TASKS_PQ)
    legacy = pa.table({"task_index": table.column("task_index"), "__index_level_0__": table.column("task")})
    pq.write_table(legacy, v3 / C.TASKS_PQ)
    report = validate_dataset(v3, demo_cfg)
    assert report.ok and report.findings == [], describe(report)


def test_v3_unused_camera_without_video_columns_is_a_warning(v3):
    import pyarrow.parquet as pq

    path = v3 / C.META_EP
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([c for c in table.column_names if "observation.images.wrist" in c]), path)
    for p in (v3 / "videos" / "observation.images.wrist").rglob("*.mp4"):
        p.unlink()
    unused = validate_dataset(v3, _config(video=["front"]))
    assert unused.ok, describe(unused)
    [warning] = matching(unused, "UNUSED_VIDEO_MISSING")
    assert "none of the 4 episodes" in warning.message
    used = validate_dataset(v3, _config())
    assert matching(used, "V3_EPISODES_SCHEMA", C.META_EP) and not used.ok

