"""LeRobot v3.0: our writer (v2.x -> v3.0 conversion, the v3 demo) and the one reader on both layouts.

The v3 demo here is written with small file-size limits, so several episodes share each data/video file and there
are several files of each kind; ``v2`` is the same demo content in the v2.1 layout (the demo is a deterministic
function of the seed), so the two must read identically (video within codec tolerance: v3 frames are re-encoded).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groot_ft.data import lerobot as lerobot_mod
from groot_ft.data.convert import v3_file_counts, write_v3_dataset
from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.lerobot import DatasetError, LeRobotDataset, VideoSegment
from groot_ft.modality import load_modality_config
from tests.conftest import DEMO_MODALITY, GR1_MODALITY

from . import corruptions as C

CFG = load_modality_config(DEMO_MODALITY)
CAMERAS = ("observation.images.front", "observation.images.wrist")
SMALL = {"data_files_size_in_mb": 0.01, "video_files_size_in_mb": 0.05}


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("v3pair")
    v2 = write_demo_dataset(base / "v2", episodes=4, seed=0)
    v3 = write_demo_dataset(base / "v3", episodes=4, seed=0, version="v3.0", **SMALL)
    return v2, v3


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ------------------------------------------------------------------------------------------------------ writer


def test_v3_demo_layout_spans_several_files(pair):
    _, v3 = pair
    info = json.loads((v3 / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert "total_chunks" not in info and "total_videos" not in info
    assert info["data_files_size_in_mb"] == 0.01 and info["video_files_size_in_mb"] == 0.05
    counts = v3_file_counts(v3)
    assert counts["data"] >= 2, counts
    assert all(counts[cam] >= 2 for cam in CAMERAS), counts
    rows = C.v3_rows(v3)
    assert [r["episode_index"] for r in rows] == [0, 1, 2, 3]
    data_files = [C.v3_data_file(v3, e) for e in range(4)]
    assert len(set(data_files)) < 4  # some data file holds several episodes
    for cam in ("front", "wrist"):
        C.v3_second_in_video_file(v3, cam)  # some video file holds several episodes
    assert not (v3 / "meta/episodes.jsonl").exists() and not (v3 / "meta/tasks.jsonl").exists()
    assert (v3 / "meta/modality.json").is_file() and (v3 / C.TASKS_PQ).is_file()
    # chained ranges, as LeRobot writes them
    assert rows[0]["dataset_from_index"] == 0
    for a, b in zip(rows, rows[1:], strict=False):
        assert b["dataset_from_index"] == a["dataset_to_index"]
    for r in rows:
        assert r["dataset_to_index"] - r["dataset_from_index"] == r["length"]
        assert r["stats/action/count"] == [r["length"]]
    # nothing but the dataset is left in the parent directory (the v2 staging copy and temp dirs are gone)
    assert sorted(p.name for p in v3.parent.iterdir()) == ["v2", "v3"]


def test_tasks_parquet_is_pandas_indexed_by_task(pair):
    _, v3 = pair
    table = pq.read_table(v3 / C.TASKS_PQ)
    assert table.column_names == ["task_index", "task"]
    assert table.schema.pandas_metadata["index_columns"] == ["task"]
    assert table.schema.field("task").type == pa.string()


def test_converter_reads_only_the_source_and_is_atomic(tmp_path):
    src = write_demo_dataset(tmp_path / "src", episodes=2, seed=3, image_size=32)
    before = tree_digest(src)
    out = write_v3_dataset(src, tmp_path / "out", **SMALL, episodes_per_meta_file=1)
    assert tree_digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp dir left behind
    assert len(list((out / "meta/episodes").rglob("*.parquet"))) == 2  # metadata split over files reads fine
    assert [e.index for e in LeRobotDataset(out).episodes] == [0, 1]
    with pytest.raises(FileExistsError, match="non-empty"):
        write_v3_dataset(src, out)
    with pytest.raises(ValueError, match="inside the source"):
        write_v3_dataset(src, src / "v3")
    with pytest.raises(DatasetError, match="already a v3.0"):
        write_v3_dataset(out, tmp_path / "again")
    with pytest.raises(ValueError, match="data_files_size_in_mb"):
        write_v3_dataset(src, tmp_path / "x", data_files_size_in_mb=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_converter_refuses_inconsistent_source(tmp_path):
    src = write_demo_dataset(tmp_path / "src", episodes=2, seed=3, image_size=32)
    C.rewrite_parquet(src, 1, lambda t: t.slice(0, 10))
    with pytest.raises(DatasetError, match="has 10 rows"):
        write_v3_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_demo_version_argument(tmp_path):
    with pytest.raises(ValueError, match="unsupported version"):
        write_demo_dataset(tmp_path / "a", episodes=1, version="v2.0")
    with pytest.raises(ValueError, match="v3.0"):
        write_demo_dataset(tmp_path / "b", episodes=1, data_files_size_in_mb=1)
    one = write_demo_dataset(tmp_path / "c", episodes=1, image_size=32, version="v3.0")
    assert v3_file_counts(one) == {"data": 1, "observation.images.front": 1, "observation.images.wrist": 1}


# ------------------------------------------------------------------------------------------------------ reader


def test_reader_metadata_is_the_same(pair):
    a, b = (LeRobotDataset(p) for p in pair)
    assert (a.version, b.version) == ("v2.1", "v3.0") and b.is_v3 and not a.is_v3
    assert a.episodes == b.episodes and a.tasks == b.tasks and a.modality == b.modality
    assert a.fps == b.fps and a.video_keys() == b.video_keys() == list(CAMERAS)
    assert a.num_frames == b.num_frames
    assert a.group_slice("state", "arm") == b.group_slice("state", "arm")
    assert b.language_column("annotation.human.task_description") == "annotation.human.task_description"
    assert b.episode_rows(1) == (a.episode(0).length, a.episode(0).length + a.episode(1).length)
    assert a.episode_rows(1) is None


def test_load_episode_is_identical(pair):
    a, b = (LeRobotDataset(p) for p in pair)
    for ep in a.episodes:
        x, y = a.load_episode(ep.index, CFG), b.load_episode(ep.index, CFG)
        assert x.length == y.length == ep.length
        for k in x.state:
            np.testing.assert_array_equal(x.state[k], y.state[k])
        for k in x.action:
            np.testing.assert_array_equal(x.action[k], y.action[k])
        assert x.language == y.language


def test_read_episode_table_matches_and_reads_each_file_once(pair, monkeypatch):
    a, b = (LeRobotDataset(p) for p in pair)
    calls: list[str] = []
    real = pq.read_table

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(lerobot_mod.pq, "read_table", counting)
    columns = ["observation.state", "action", "timestamp", "episode_index", "index"]
    _ = b.episodes  # metadata reads are not data reads
    calls.clear()
    for ep in b.episodes:
        got = b.read_episode_table(ep.index, columns)
        assert got.column_names == columns
        assert got.equals(a.read_episode_table(ep.index, columns))
    data_reads = [c for c in calls if c.startswith("file-")]
    assert len(data_reads) == v3_file_counts(pair[1])["data"]
    whole = b.read_episode_table(2)  # all columns
    assert whole.num_rows == b.episode(2).length and set(whole.column_names) >= set(columns)
    assert b.data_path(2) == b.episode_data_file(2) and b.episode_data_file(2).name.startswith("file-")


def test_frames_match_the_v2_source(pair):
    a, b = (LeRobotDataset(p) for p in pair)
    for ep in a.episodes:
        n = ep.length
        for cam in CAMERAS:
            fa = a.read_episode_frames(ep.index, cam, range(n))
            fb = b.read_episode_frames(ep.index, cam, range(n))
            assert fb.shape == fa.shape == (n, 96, 96, 3) and fb.dtype == np.uint8
            aligned = psnr(fa, fb)
            assert aligned > 30, (ep.index, cam, aligned)
            assert aligned > psnr(fa[1:], fb[:-1]) + 3  # frame k is frame k, not a neighbour
            picks = [n - 1, 0, 7, 7]  # any order, duplicates, seeking into the shared file
            np.testing.assert_array_equal(b.read_episode_frames(ep.index, cam, picks), fb[picks])
    seg = b.episode_video_segment(1, CAMERAS[0])
    assert isinstance(seg, VideoSegment) and seg.path.name.startswith("file-")
    assert seg.end_s - seg.start_s == pytest.approx(b.episode(1).length / b.fps)


def test_frame_accessor_refuses_out_of_episode_indices(pair):
    b = LeRobotDataset(pair[1])
    with pytest.raises(DatasetError, match="outside"):
        b.read_episode_frames(0, CAMERAS[0], [b.episode(0).length])
    with pytest.raises(DatasetError, match="outside"):
        b.read_episode_frames(0, CAMERAS[0], [-1])
    assert b.read_episode_frames(0, CAMERAS[0], []).shape == (0, 96, 96, 3)


def test_video_path_is_v2_only(pair):
    a, b = (LeRobotDataset(p) for p in pair)
    assert a.video_path(0, CAMERAS[0]) == a.episode_video_file(0, CAMERAS[0])
    with pytest.raises(DatasetError, match="read_episode_frames"):
        b.video_path(0, CAMERAS[0])


def test_tasks_as_pandas_index_column(pair, tmp_path):
    v3 = tmp_path / "v3"
    shutil.copytree(pair[1], v3)
    table = pq.read_table(v3 / C.TASKS_PQ)
    legacy = pa.table({"task_index": table.column("task_index"), "__index_level_0__": table.column("task")})
    pq.write_table(legacy, v3 / C.TASKS_PQ)
    assert LeRobotDataset(v3).tasks == LeRobotDataset(pair[0]).tasks


def test_version_is_cross_checked_with_the_layout(pair, tmp_path):
    v2, v3 = tmp_path / "v2", tmp_path / "v3"
    shutil.copytree(pair[0], v2)
    shutil.copytree(pair[1], v3)
    C.edit_json(v2, C.INFO, lambda d: d.__setitem__("codebase_version", "v3.0"))
    with pytest.raises(DatasetError, match="v2 layout"):
        LeRobotDataset(v2)
    C.edit_json(v3, C.INFO, lambda d: d.__setitem__("codebase_version", "v2.1"))
    with pytest.raises(DatasetError, match="v3.0 layout"):
        LeRobotDataset(v3)


def test_missing_rows_and_files_are_clear_errors(pair, tmp_path):
    v3 = tmp_path / "v3"
    shutil.copytree(pair[1], v3)
    C._v3_wrong_episode_index(v3)  # episode e's rows now claim e + 1
    ep = C.v3_first_of_second_data_file(pair[1])
    with pytest.raises(DatasetError, match=f"holds no rows of episode {ep}"):
        LeRobotDataset(v3).read_episode_table(ep)
    (v3 / C.TASKS_PQ).unlink()
    with pytest.raises(DatasetError, match="tasks.parquet: file is missing"):
        _ = LeRobotDataset(v3).tasks


def test_stats_are_the_same_on_v3(pair):
    from groot_ft.stats import compute_stats

    assert compute_stats(pair[1], CFG) == compute_stats(pair[0], CFG)


def test_gr1_reads_the_same_after_conversion(gr1_dataset, tmp_path):
    from groot_ft.stats import compute_stats

    cfg = load_modality_config(GR1_MODALITY)
    out = write_v3_dataset(gr1_dataset, tmp_path / "gr1", data_files_size_in_mb=1, video_files_size_in_mb=4)
    a, b = LeRobotDataset(gr1_dataset), LeRobotDataset(out)
    assert v3_file_counts(out)["data"] >= 2 and v3_file_counts(out)["observation.images.ego_view"] >= 2
    for ep in a.episodes:
        x, y = a.load_episode(ep.index, cfg), b.load_episode(ep.index, cfg)
        for k in x.state:
            np.testing.assert_array_equal(x.state[k], y.state[k])
        assert x.language == y.language
    # timestamps start at 1/fps in gr1: frames are located by position, so frame k is still frame k
    picks = [0, 100, a.episode(3).length - 1]
    fa = a.read_episode_frames(3, "observation.images.ego_view", picks)
    fb = b.read_episode_frames(3, "observation.images.ego_view", picks)
    assert psnr(fa, fb) > 30
    assert compute_stats(out, cfg) == compute_stats(gr1_dataset, cfg)
    # and it validates: the v2 quirks carry over; the declared-but-never-recorded egoview camera gets no columns
    from groot_ft.data.validate import WARNING, validate_dataset

    report = validate_dataset(out, cfg)
    assert report.ok, report.summary_text()
    assert report.codebase_version == "v3.0" and report.episodes == 5 and report.frames == 2096
    quirks = {"DEFAULT_COLUMN_MISSING", "TIMESTAMP_START_NONZERO", "UNUSED_VIDEO_MISSING", "VIDEO_INFO_LEGACY_KEY"}
    assert quirks | {"FPS_NOT_INTEGER", "SPLIT_OUT_OF_RANGE"} <= report.codes(WARNING), report.summary_text()


def test_files_roll_over_into_new_chunks(tmp_path):
    from groot_ft.data.validate import validate_dataset

    src = write_demo_dataset(tmp_path / "src", episodes=2, seed=3, image_size=32)
    out = write_v3_dataset(src, tmp_path / "out", data_files_size_in_mb=0.001, video_files_size_in_mb=0.001, chunks_size=1)
    assert (out / "data/chunk-001/file-000.parquet").is_file()
    assert (out / "videos/observation.images.wrist/chunk-001/file-000.mp4").is_file()
    report = validate_dataset(out, CFG)
    assert report.ok and report.findings == [], report.summary_text()
    a, b = LeRobotDataset(src), LeRobotDataset(out)
    np.testing.assert_array_equal(a.load_episode(1, CFG).action["arm"], b.load_episode(1, CFG).action["arm"])
