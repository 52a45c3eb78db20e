"""One model of the LeRobot layout (``groot_ft.data.layout``): validate, stats and the reader judge a dataset alike.

For each info.json key the reader used to default while the validator rejected it: a key with a format default
(chunks_size, v3.0 data_path/video_path) is a warning naming the default, and stats/the reader read the dataset with
that same default; a key without one (fps) is an error for all three.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.layout import V3_DATA_PATH, V3_VIDEO_PATH, info_defaults
from groot_ft.data.lerobot import DatasetError, LeRobotDataset
from groot_ft.data.validate import ERROR, WARNING, validate_dataset
from groot_ft.modality import load_modality_config
from groot_ft.stats import compute_stats
from tests.conftest import DEMO_MODALITY

CFG = load_modality_config(DEMO_MODALITY)
INFO = "meta/info.json"


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("layout") / "v3", episodes=2, seed=1, image_size=32,
                              version="v3.0")


def _without(src: Path, dst: Path, key: str) -> Path:
    shutil.copytree(src, dst)
    info = json.loads((dst / INFO).read_text())
    del info[key]
    (dst / INFO).write_text(json.dumps(info, indent=2))
    return dst


def test_defaults_are_lerobots():
    assert info_defaults("v3.0") == {"chunks_size": 1000, "data_path": V3_DATA_PATH, "video_path": V3_VIDEO_PATH}
    assert info_defaults("v2.1") == {"chunks_size": 1000}


@pytest.mark.parametrize("key", ["data_path", "video_path", "chunks_size"])
def test_missing_key_with_a_default_is_one_warning_everywhere(v3, tmp_path, key):
    root = _without(v3, tmp_path / "ds", key)
    report = validate_dataset(root, CFG)
    assert report.ok, report.summary_text()
    found = [f for f in report.findings if f.code == "INFO_KEY_DEFAULTED"]
    assert [(f.severity, f.field, f.file) for f in found] == [(WARNING, key, INFO)]
    assert repr(info_defaults("v3.0")[key]) in found[0].message
    # the reader and stats use that same default: the dataset reads as it did with the key written out
    assert compute_stats(root, CFG) == compute_stats(v3, CFG)
    a, b = LeRobotDataset(root), LeRobotDataset(v3)
    assert a.episode_data_file(1).relative_to(root) == b.episode_data_file(1).relative_to(v3)
    key_cam = "observation.images.wrist"
    assert a.episode_video_segment(1, key_cam).path.relative_to(root) == b.episode_video_segment(1, key_cam).path.relative_to(v3)


def test_missing_fps_is_an_error_everywhere(v3, tmp_path):
    root = _without(v3, tmp_path / "ds", "fps")
    report = validate_dataset(root, CFG)
    assert [(f.severity, f.field) for f in report.findings if f.code == "INFO_KEY_MISSING"] == [(ERROR, "fps")]
    with pytest.raises(DatasetError, match="'fps' is missing"):
        LeRobotDataset(root)
    with pytest.raises(DatasetError, match="'fps' is missing"):
        compute_stats(root, CFG)
