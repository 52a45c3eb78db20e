"""Tests for groot_ft.data.demo (synthetic GR00T-flavoured LeRobot v2.1 dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groot_ft.data.demo import (
    COLOURS,
    FRONT_HALF_EXTENT,
    TARGET_RADIUS,
    front_world_to_pixel,
    instruction_for,
    make_episode,
    write_demo_dataset,
)
from groot_ft.data.video import probe_video, read_frames

VIDEO_KEYS = ["observation.images.front", "observation.images.wrist"]
META_FILES = ["episodes.jsonl", "episodes_stats.jsonl", "info.json", "modality.json", "tasks.jsonl"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def data_file(root: Path, info: dict, ep: int) -> Path:
    return root / info["data_path"].format(episode_chunk=ep // info["chunks_size"], episode_index=ep)


def video_file(root: Path, info: dict, key: str, ep: int) -> Path:
    return root / info["video_path"].format(
        episode_chunk=ep // info["chunks_size"], video_key=key, episode_index=ep
    )


def nearest_colour(rgb) -> str:
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(COLOURS, key=lambda c: np.sum((np.asarray(COLOURS[c], dtype=np.float64) - rgb) ** 2))


@pytest.fixture(scope="module")
def default_ds(tmp_path_factory) -> Path:
    """The default dataset (24 episodes, h264, 96 px). Its generation time is in docs/benchmarks.md."""
    out = tmp_path_factory.mktemp("demo") / "ds"
    assert write_demo_dataset(out) == out
    return out


@pytest.fixture(scope="module")
def info(default_ds) -> dict:
    return json.loads((default_ds / "meta" / "info.json").read_text())


def test_files_present(default_ds, info):
    assert sorted(p.name for p in (default_ds / "meta").iterdir()) == META_FILES
    n = info["total_episodes"]
    expected = {data_file(default_ds, info, ep) for ep in range(n)}
    expected |= {video_file(default_ds, info, key, ep) for ep in range(n) for key in VIDEO_KEYS}
    expected |= {default_ds / "meta" / name for name in META_FILES}
    actual = {p for p in default_ds.rglob("*") if p.is_file()}
    assert actual == expected
    # no temporary sibling left behind
    assert [p.name for p in default_ds.parent.iterdir()] == ["ds"]


def test_info_consistent_with_files(default_ds, info):
    episodes = read_jsonl(default_ds / "meta" / "episodes.jsonl")
    tasks = read_jsonl(default_ds / "meta" / "tasks.jsonl")
    assert info["codebase_version"] == "v2.1"
    assert info["robot_type"] == "groot_ft_demo_arm"
    assert info["total_episodes"] == 24 == len(episodes)
    assert [e["episode_index"] for e in episodes] == list(range(24))
    assert info["total_frames"] == sum(e["length"] for e in episodes)
    assert info["total_tasks"] == len(tasks)
    assert [t["task_index"] for t in tasks] == list(range(len(tasks)))
    assert len({t["task"] for t in tasks}) == len(tasks)
    assert {t["task"] for t in tasks} == {task for e in episodes for task in e["tasks"]}
    assert info["total_videos"] == 48 == len(list((default_ds / "videos").rglob("*.mp4")))
    assert info["total_chunks"] == 1 and info["chunks_size"] == 1000
    assert info["fps"] == 15 and isinstance(info["fps"], int)
    assert info["splits"] == {"train": "0:24"}
    assert all(40 <= e["length"] <= 70 for e in episodes)
    assert len({e["length"] for e in episodes}) > 5

    feats = info["features"]
    assert feats["observation.state"] == {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]}
    assert feats["action"]["dtype"] == "float32" and feats["action"]["shape"] == [4]
    assert feats["timestamp"]["dtype"] == "float32"
    for key in ("frame_index", "episode_index", "index", "task_index", "annotation.human.task_description"):
        assert feats[key]["dtype"] == "int64" and feats[key]["shape"] == [1]
    assert feats["next.done"]["dtype"] == "bool"
    for key in VIDEO_KEYS:
        f = feats[key]
        assert f["dtype"] == "video" and f["shape"] == [96, 96, 3]
        assert f["names"] == ["height", "width", "channels"]
        assert f["info"]["video.codec"] == "h264" and f["info"]["video.pix_fmt"] == "yuv420p"
        assert f["info"]["video.fps"] == 15 and f["info"]["has_audio"] is False
        assert f["info"]["video.is_depth_map"] is False
        assert (f["info"]["video.height"], f["info"]["video.width"], f["info"]["video.channels"]) == (96, 96, 3)

    modality = json.loads((default_ds / "meta" / "modality.json").read_text())
    arm_gripper = {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}}
    assert modality["state"] == arm_gripper and modality["action"] == arm_gripper
    assert modality["video"] == {
        "front": {"original_key": "observation.images.front"},
        "wrist": {"original_key": "observation.images.wrist"},
    }
    assert modality["annotation"] == {"human.task_description": {}}


def test_parquet_rows_videos_and_indices(default_ds, info):
    episodes = read_jsonl(default_ds / "meta" / "episodes.jsonl")
    task_of = {t["task"]: t["task_index"] for t in read_jsonl(default_ds / "meta" / "tasks.jsonl")}
    non_video = [k for k, f in info["features"].items() if f["dtype"] != "video"]
    next_index = 0
    for ep in episodes:
        e, n = ep["episode_index"], ep["length"]
        table = pq.read_table(data_file(default_ds, info, e))
        assert table.column_names == non_video
        assert table.schema.field("observation.state").type == pa.list_(pa.float32(), 4)
        assert table.schema.field("action").type == pa.list_(pa.float32(), 4)
        assert table.schema.field("timestamp").type == pa.float32()
        assert table.schema.field("next.done").type == pa.bool_()
        assert table.num_rows == n
        scalars = [name for name in non_video if name not in ("observation.state", "action")]
        cols = {name: table.column(name).to_numpy() for name in scalars}
        np.testing.assert_array_equal(cols["frame_index"], np.arange(n))
        np.testing.assert_array_equal(cols["episode_index"], np.full(n, e))
        np.testing.assert_array_equal(cols["index"], np.arange(next_index, next_index + n))
        np.testing.assert_array_equal(cols["timestamp"], (np.arange(n) / info["fps"]).astype(np.float32))
        np.testing.assert_array_equal(cols["next.done"], np.arange(n) == n - 1)
        np.testing.assert_array_equal(cols["task_index"], np.full(n, task_of[ep["tasks"][0]]))
        np.testing.assert_array_equal(cols["annotation.human.task_description"], cols["task_index"])
        next_index += n
        for key in VIDEO_KEYS:
            probe = probe_video(video_file(default_ds, info, key, e))
            assert probe.num_frames == n and probe.codec == "h264"
            assert (probe.width, probe.height, probe.fps) == (96, 96, 15.0)
            assert probe.duration_s == pytest.approx(n / info["fps"], abs=1 / info["fps"])
    assert next_index == info["total_frames"]


def test_values_plausible_and_stats_match(default_ds, info):
    stats = read_jsonl(default_ds / "meta" / "episodes_stats.jsonl")
    assert [s["episode_index"] for s in stats] == list(range(info["total_episodes"]))
    for row in stats:
        table = pq.read_table(data_file(default_ds, info, row["episode_index"]))
        state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
        action = np.stack(table.column("action").to_numpy(zero_copy_only=False))
        for arr in (state, action):
            assert np.all(np.abs(arr[:, :2]) <= 1) and np.all((arr[:, 2:] >= 0) & (arr[:, 2:] <= 1))
        # action = commanded next absolute pose: close to the next state
        assert np.abs(action[:-1] - state[1:]).max() < 0.2
        ts = table.column("timestamp").to_numpy()[:, None]
        assert set(row["stats"]) == {"observation.state", "action", "timestamp"}
        for name, values in (("observation.state", state), ("action", action), ("timestamp", ts)):
            s = row["stats"][name]
            v = values.astype(np.float64)
            np.testing.assert_allclose(s["min"], v.min(0), rtol=0, atol=1e-7)
            np.testing.assert_allclose(s["max"], v.max(0), rtol=0, atol=1e-7)
            np.testing.assert_allclose(s["mean"], v.mean(0), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(s["std"], v.std(0), rtol=1e-9, atol=1e-9)
            assert s["count"] == [len(v)]


def _colour_centroid(frame: np.ndarray, colour: str) -> tuple[float, float]:
    """Centroid (row, col) of the pixels whose nearest palette/scene colour is ``colour``."""
    rgb = frame.astype(np.float64)
    target = np.asarray(COLOURS[colour], dtype=np.float64)
    dist = np.sqrt(((rgb - target) ** 2).sum(-1))
    rows, cols = np.nonzero(dist < 60)
    assert rows.size > 20, f"{colour} target not visible"
    return rows.mean(), cols.mean()


def test_named_target_rendered_and_reached(default_ds, info):
    """From the pixels alone: the instructed colour is a disc in the front view, and the arm ends on top of it."""
    size = 96
    px_per_unit = size / (2 * FRONT_HALF_EXTENT)
    episodes = read_jsonl(default_ds / "meta" / "episodes.jsonl")
    for ep in episodes:
        e = ep["episode_index"]
        (task,) = ep["tasks"]
        colour = next(c for c in COLOURS if instruction_for(c) == task)
        spec = make_episode(0, e)
        assert spec.instruction == task and spec.target_colour == colour
        table = pq.read_table(data_file(default_ds, info, e))
        state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(state, spec.state)

        front = read_frames(video_file(default_ds, info, "observation.images.front", e), [0, ep["length"] - 1])
        # frame 0: both target discs are where the episode says, in their colours
        for name, (tx, ty) in spec.targets:
            r, c = front_world_to_pixel(tx, ty, size)
            assert nearest_colour(front[0, round(r), round(c)]) == name
        # the named target, located from pixels only
        r0, c0 = _colour_centroid(front[0], colour)
        goal_x = (c0 + 0.5) / px_per_unit - FRONT_HALF_EXTENT
        goal_y = FRONT_HALF_EXTENT - (r0 + 0.5) / px_per_unit
        x, y, z, grip = state[-1]
        assert np.hypot(x - goal_x, y - goal_y) < TARGET_RADIUS / 2, "arm did not reach the named target"
        assert z < 0.1 and grip > 0.9, "arm did not lower and grasp"
        other = [xy for name, xy in spec.targets if name != colour][0]
        assert np.hypot(x - other[0], y - other[1]) > 0.4
        # last frame: the named colour surrounds the effector at the position the state gives
        samples = []
        for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            r, c = front_world_to_pixel(x + 0.095 * np.cos(angle), y + 0.095 * np.sin(angle), size)
            samples.append(front[1, round(r), round(c)])
        assert nearest_colour(np.median(samples, axis=0)) == colour
        # and the wrist camera, centred on the effector, looks at the named colour (upper half, between fingers)
        wrist = read_frames(video_file(default_ds, info, "observation.images.wrist", e), [ep["length"] - 1])[0]
        centre = wrist[size // 4 : size // 2, 3 * size // 8 : 5 * size // 8].reshape(-1, 3)
        assert nearest_colour(np.median(centre, axis=0)) == colour


def test_arm_starts_away_and_moves(default_ds, info):
    for e in range(info["total_episodes"]):
        spec = make_episode(0, e)
        gx, gy = spec.goal_xy
        d = np.hypot(spec.state[:, 0] - gx, spec.state[:, 1] - gy)
        assert d[0] > 0.4 and d[-1] < 0.05
        assert spec.state[0, 3] == 0.0 and spec.state[0, 2] > 0.5
        # smooth: bounded speed and acceleration (world units per frame)
        assert np.abs(np.diff(spec.state[:, :3], axis=0)).max() < 0.25
        assert np.abs(np.diff(spec.state[:, :3], n=2, axis=0)).max() < 0.12


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(episodes=3, image_size=32)
    a = write_demo_dataset(tmp_path / "a", seed=7, **kw)
    b = write_demo_dataset(tmp_path / "b", seed=7, **kw)
    c = write_demo_dataset(tmp_path / "c", seed=8, **kw)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix in (".parquet", ".json", ".jsonl"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "meta/episodes.jsonl").read_bytes() != (c / "meta/episodes.jsonl").read_bytes()
    ep0 = "data/chunk-000/episode_000000.parquet"
    assert (a / ep0).read_bytes() != (c / ep0).read_bytes()
    # episode content does not depend on how many episodes are written
    d = write_demo_dataset(tmp_path / "d", seed=7, episodes=1, image_size=32)
    assert (d / ep0).read_bytes() == (a / ep0).read_bytes()


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="non-empty"):
        write_demo_dataset(out, episodes=1, image_size=32)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FileExistsError):
        write_demo_dataset(afile, episodes=1, image_size=32)
    # an empty directory is fine; no temporary siblings remain
    empty = tmp_path / "empty"
    empty.mkdir()
    write_demo_dataset(empty, episodes=1, image_size=32)
    assert (empty / "meta" / "info.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "empty", "file"]


def test_bad_arguments(tmp_path):
    for kwargs in ({"codec": "vp9"}, {"episodes": 0}, {"fps": 0}, {"image_size": 33}):
        with pytest.raises(ValueError):
            write_demo_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_av1_dataset(tmp_path):
    out = write_demo_dataset(tmp_path / "av1", episodes=2, codec="av1", image_size=48, fps=10)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 10
    for key in VIDEO_KEYS:
        assert info["features"][key]["info"]["video.codec"] == "av1"
        assert info["features"][key]["shape"] == [48, 48, 3]
    for ep in read_jsonl(out / "meta" / "episodes.jsonl"):
        for key in VIDEO_KEYS:
            path = video_file(out, info, key, ep["episode_index"])
            probe = probe_video(path)
            assert probe.codec == "av1" and probe.num_frames == ep["length"] and probe.fps == 10.0
            assert read_frames(path).shape == (ep["length"], 48, 48, 3)
