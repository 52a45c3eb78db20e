"""Corruption corpus for the dataset validator: each entry breaks one thing in a copy of the demo dataset.

Every corruption is a function ``apply(root)`` plus the finding the validator must produce (code, file relative to
the dataset root, episode). The demo dataset (``groot_ft.data.demo.write_demo_dataset``) is a LeRobot v2.1 dataset
with episodes of 40-70 frames, two cameras (front, wrist), float32 4-D state/action and one annotation column.

:data:`V3_CORRUPTIONS` break the LeRobot v3.0 version of it (``version="v3.0"`` with small file-size limits, so that
data and video files hold several episodes and there are several of each). Their expected file and episode may be
functions of the (uncorrupted) dataset root, because which file holds an episode depends on the encoder's output
sizes; the test resolves them before applying the corruption.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.video import encode_video, read_frames

INFO = "meta/info.json"
EPISODES = "meta/episodes.jsonl"
TASKS = "meta/tasks.jsonl"
MODALITY = "meta/modality.json"
EP_STATS = "meta/episodes_stats.jsonl"


def data_file(ep: int) -> str:
    return f"data/chunk-000/episode_{ep:06d}.parquet"


def video_file(ep: int, cam: str) -> str:
    return f"videos/chunk-000/observation.images.{cam}/episode_{ep:06d}.mp4"


# ------------------------------------------------------------------------------------------------------- helpers


def edit_json(root: Path, rel: str, fn: Callable[[Any], Any]) -> None:
    path = root / rel
    obj = json.loads(path.read_text())
    out = fn(obj)
    path.write_text(json.dumps(obj if out is None else out, indent=4) + "\n")


def read_jsonl(root: Path, rel: str) -> list[dict]:
    return [json.loads(line) for line in (root / rel).read_text().splitlines() if line.strip()]


def write_jsonl(root: Path, rel: str, rows: list[dict]) -> None:
    (root / rel).write_text("".join(json.dumps(r) + "\n" for r in rows))


def replace_line(root: Path, rel: str, lineno: int, text: str) -> None:
    path = root / rel
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def edit_episode(root: Path, ep: int, fn: Callable[[dict], None]) -> None:
    rows = read_jsonl(root, EPISODES)
    for row in rows:
        if row["episode_index"] == ep:
            fn(row)
    write_jsonl(root, EPISODES, rows)


def rewrite_parquet(root: Path, ep: int, fn: Callable[[pa.Table], pa.Table]) -> None:
    path = root / data_file(ep)
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def set_column(table: pa.Table, name: str, array: pa.Array | np.ndarray, type_: pa.DataType | None = None) -> pa.Table:
    i = table.schema.get_field_index(name)
    arr = array if isinstance(array, (pa.Array, pa.ChunkedArray)) else pa.array(array, type=type_)
    return table.set_column(i, pa.field(name, arr.type), arr)


def map_numpy(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[pa.Table], pa.Table]:
    """Apply ``fn`` to a scalar column's numpy values, keeping the arrow type."""

    def apply(table: pa.Table) -> pa.Table:
        col = table.column(name)
        values = fn(col.to_numpy().copy())
        return set_column(table, name, values, col.type)

    return apply


def map_matrix(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[pa.Table], pa.Table]:
    """Apply ``fn`` to a fixed-size-list column as a (rows, dim) matrix, keeping the arrow type."""

    def apply(table: pa.Table) -> pa.Table:
        col = table.column(name).combine_chunks()
        dim = col.type.list_size
        matrix = col.flatten().to_numpy().reshape(len(col), dim).copy()
        matrix = fn(matrix)
        flat = pa.array(matrix.reshape(-1), type=col.type.value_type)
        return set_column(table, name, pa.FixedSizeListArray.from_arrays(flat, dim))

    return apply


def reencode(
    root: Path, ep: int, cam: str, *, keep: int | None = None, size: int | None = None, fps: int | None = None
) -> None:
    """Re-encode one episode video keeping its first ``keep`` frames, at ``size`` x ``size`` and ``fps``."""
    path = root / video_file(ep, cam)
    frames = read_frames(path)
    if keep is not None:
        frames = frames[:keep]
    if size is not None:
        # nearest-neighbour resize: good enough to change the resolution
        rows = (np.arange(size) * frames.shape[1] / size).astype(int)
        cols = (np.arange(size) * frames.shape[2] / size).astype(int)
        frames = np.ascontiguousarray(frames[:, rows][:, :, cols])
    info = json.loads((root / INFO).read_text())
    encode_video(frames, path, fps or int(info["fps"]), "h264")


# ------------------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Corruption:
    id: str
    apply: Callable[[Path], None]
    code: str
    file: str | Callable[[Path], str] | None  # a function of the uncorrupted root where the layout decides
    episode: int | Callable[[Path], int] | None = None
    field: str | None = None
    deep: bool = False

    def expected(self, root: Path) -> tuple[str | None, int | None]:
        """(file, episode) the finding must name; call on the dataset before applying the corruption."""
        file = self.file(root) if callable(self.file) else self.file
        episode = self.episode(root) if callable(self.episode) else self.episode
        return file, episode


def _truncate(rel: str, fraction: float = 0.5) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return apply


def _garbage(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / rel
        rng = random.Random(7)
        path.write_bytes(bytes(rng.randrange(256) for _ in range(path.stat().st_size)))

    return apply


def _scramble_middle(rel: str) -> Callable[[Path], None]:
    """Overwrite the middle of the file (frame data) while keeping the container's header and index intact."""

    def apply(root: Path) -> None:
        path = root / rel
        data = bytearray(path.read_bytes())
        rng = random.Random(3)
        for i in range(len(data) // 4, len(data) // 2):
            data[i] = rng.randrange(256)
        path.write_bytes(bytes(data))

    return apply


def _delete(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def _set_info(key: str, value: Any) -> Callable[[Path], None]:
    return lambda root: edit_json(root, INFO, lambda d: d.__setitem__(key, value))


def _set_names(feature: str, names: Any) -> Callable[[Path], None]:
    return lambda root: edit_json(root, INFO, lambda d: d["features"][feature].__setitem__("names", names))


def _set_modality(section: str, key: str, **entry: Any) -> Callable[[Path], None]:
    return lambda root: edit_json(root, MODALITY, lambda d: d[section][key].update(entry))


def _nan_state(root: Path) -> None:
    def poison(m: np.ndarray) -> np.ndarray:
        m[5, 1] = np.nan
        return m

    rewrite_parquet(root, 2, map_matrix("observation.state", poison))


def _inf_action(root: Path) -> None:
    def poison(m: np.ndarray) -> np.ndarray:
        m[-1, 0] = np.inf
        return m

    rewrite_parquet(root, 0, map_matrix("action", poison))


def _swap_timestamps(root: Path) -> None:
    def swap(ts: np.ndarray) -> np.ndarray:
        ts[10], ts[11] = ts[11], ts[10]
        return ts

    rewrite_parquet(root, 1, map_numpy("timestamp", swap))


def _stretch_timestamps(root: Path) -> None:
    rewrite_parquet(root, 3, map_numpy("timestamp", lambda ts: (ts * 1.01).astype(ts.dtype)))


def _renumber_episode(root: Path) -> None:
    edit_episode(root, 3, lambda row: row.__setitem__("episode_index", 5))


def _duplicate_episode_line(root: Path) -> None:
    rows = read_jsonl(root, EPISODES)
    rows[3] = dict(rows[2])  # line 4 repeats episode 2; episode 3 disappears from the metadata
    write_jsonl(root, EPISODES, rows)


def _length_plus_three(root: Path) -> None:
    edit_episode(root, 1, lambda row: row.__setitem__("length", row["length"] + 3))


def _task_index_out_of_range(root: Path) -> None:
    rewrite_parquet(root, 2, map_numpy("task_index", lambda v: np.full_like(v, 99)))


def _annotation_out_of_range(root: Path) -> None:
    rewrite_parquet(root, 1, map_numpy("annotation.human.task_description", lambda v: np.full_like(v, 42)))


def _empty_dataset(root: Path) -> None:
    (root / EPISODES).write_text("")
    edit_json(root, INFO, lambda d: d.update(total_episodes=0, total_frames=0, total_videos=0, splits={}))


def _zero_length_episode(root: Path) -> None:
    rewrite_parquet(root, 3, lambda t: t.slice(0, 0))
    edit_episode(root, 3, lambda row: row.__setitem__("length", 0))


def _zero_row_parquet(root: Path) -> None:
    rewrite_parquet(root, 3, lambda t: t.slice(0, 0))


def _state_as_float64(root: Path) -> None:
    def cast(table: pa.Table) -> pa.Table:
        col = table.column("observation.state").combine_chunks()
        return set_column(table, "observation.state", col.cast(pa.list_(pa.float64(), 4)))

    rewrite_parquet(root, 1, cast)


def _task_index_as_float(root: Path) -> None:
    def cast(table: pa.Table) -> pa.Table:
        return set_column(table, "task_index", table.column("task_index").combine_chunks().cast(pa.float64()))

    rewrite_parquet(root, 0, cast)


def _ragged_state(root: Path) -> None:
    def ragged(table: pa.Table) -> pa.Table:
        col = table.column("observation.state").combine_chunks()
        rows = col.to_pylist()
        rows[7] = rows[7][:3]  # one row with 3 values instead of 4
        return set_column(table, "observation.state", pa.array(rows, type=pa.list_(pa.float32())))

    rewrite_parquet(root, 2, ragged)


def _duplicate_task(root: Path) -> None:
    rows = read_jsonl(root, TASKS)
    rows.insert(1, {"task_index": len(rows), "task": rows[0]["task"]})  # line 2 repeats line 1's string
    write_jsonl(root, TASKS, rows)
    edit_json(root, INFO, lambda d: d.__setitem__("total_tasks", len(rows)))


def _drop_column(root: Path) -> None:
    rewrite_parquet(root, 0, lambda t: t.drop_columns(["next.done"]))


def _null_action(root: Path) -> None:
    def nullify(table: pa.Table) -> pa.Table:
        rows = table.column("action").to_pylist()
        rows[4] = None
        return set_column(table, "action", pa.array(rows, type=table.schema.field("action").type))

    rewrite_parquet(root, 3, nullify)


def _wrong_episode_index_column(root: Path) -> None:
    rewrite_parquet(root, 2, map_numpy("episode_index", lambda v: np.full_like(v, 1)))


def _wrong_frame_index(root: Path) -> None:
    rewrite_parquet(root, 1, map_numpy("frame_index", lambda v: v + 1))


def _gap_in_global_index(root: Path) -> None:
    rewrite_parquet(root, 2, map_numpy("index", lambda v: v + 5))


def _stats_count(root: Path) -> None:
    rows = read_jsonl(root, EP_STATS)
    rows[1]["stats"]["action"]["count"] = [rows[1]["stats"]["action"]["count"][0] + 1]
    write_jsonl(root, EP_STATS, rows)


def _stats_min_above_max(root: Path) -> None:
    rows = read_jsonl(root, EP_STATS)
    s = rows[2]["stats"]["observation.state"]
    s["min"][0], s["max"][0] = s["max"][0] + 1.0, s["min"][0]
    write_jsonl(root, EP_STATS, rows)


def _stats_json_unknown_feature(root: Path) -> None:
    stats = {"observation.effort": {"min": [0.0], "max": [1.0], "mean": [0.5], "std": [0.1]}}
    (root / "meta/stats.json").write_text(json.dumps(stats))


CORRUPTIONS: list[Corruption] = [
    # meta files
    Corruption("missing-info", _delete(INFO), "META_MISSING", INFO),
    Corruption("missing-episodes", _delete(EPISODES), "META_MISSING", EPISODES),
    Corruption("missing-tasks", _delete(TASKS), "META_MISSING", TASKS),
    Corruption("missing-modality", _delete(MODALITY), "META_MISSING", MODALITY),
    Corruption("v21-without-episodes-stats", _delete(EP_STATS), "VERSION_LAYOUT_MISMATCH", INFO),
    Corruption(
        "malformed-info-json",
        lambda r: (r / INFO).write_text('{\n  "codebase_version": "v2.1",\n  "fps": 15,\n  "features": {\n'),
        "JSON_INVALID",
        INFO,
        field="line 5",
    ),
    Corruption(
        "malformed-episodes-jsonl-line-3",
        lambda r: replace_line(r, EPISODES, 3, '{"episode_index": 2, "len'),
        "JSONL_INVALID",
        EPISODES,
        field="line 3",
    ),
    Corruption(
        "malformed-tasks-jsonl-line-2",
        lambda r: replace_line(r, TASKS, 2, "[1, 2]"),
        "JSONL_INVALID",
        TASKS,
        field="line 2",
    ),
    Corruption(
        "malformed-modality-json",
        lambda r: (r / MODALITY).write_text('{"state": {"arm": {"start": 0,}}}'),
        "JSON_INVALID",
        MODALITY,
        field="line 1",
    ),
    Corruption(
        "unsupported-version",
        _set_info("codebase_version", "v1.6"),
        "UNSUPPORTED_VERSION",
        INFO,
        field="codebase_version",
    ),
    Corruption(
        "version-v3-on-v2-layout",
        _set_info("codebase_version", "v3.0"),
        "VERSION_LAYOUT_MISMATCH",
        INFO,
        field="codebase_version",
    ),
    # episodes / tasks metadata
    Corruption("episode-indices-gap", _renumber_episode, "EPISODE_INDICES_INVALID", EPISODES),
    Corruption(
        "episode-index-duplicate",
        _duplicate_episode_line,
        "EPISODE_INDICES_INVALID",
        EPISODES,
        episode=2,
        field="line 4",
    ),
    Corruption("episode-length-vs-rows", _length_plus_three, "EPISODE_LENGTH_MISMATCH", data_file(1), episode=1),
    Corruption("total-frames", _set_info("total_frames", 7), "TOTAL_FRAMES_MISMATCH", INFO, field="total_frames"),
    Corruption("empty-dataset", _empty_dataset, "EMPTY_DATASET", EPISODES),
    Corruption("zero-length-episode", _zero_length_episode, "ZERO_LENGTH_EPISODE", EPISODES, episode=3),
    Corruption("zero-row-parquet", _zero_row_parquet, "ZERO_LENGTH_EPISODE", data_file(3), episode=3),
    Corruption("duplicate-task-string", _duplicate_task, "DUPLICATE_TASK", TASKS, field="line 2"),
    Corruption("fps-not-integral", _set_info("fps", 15.5), "FPS_INVALID", INFO, field="fps"),
    # names only label elements: a wrong count or an unreadable form is a warning (training never reads names)
    Corruption(
        "state-names-count",
        _set_names("observation.state", [["x", "y", "z"]]),
        "FEATURE_NAMES_MISMATCH",
        INFO,
        field="features.observation.state.names",
    ),
    Corruption(
        "action-names-unreadable",
        _set_names("action", {"motors": ["x", "y", "z"], "gripper": 1}),
        "FEATURE_NAMES_UNSTRUCTURED",
        INFO,
        field="features.action.names",
    ),
    # path templates
    Corruption(
        "data-path-escapes-root",
        _set_info("data_path", "../outside/episode_{episode_index:06d}.parquet"),
        "PATH_ESCAPES_ROOT",
        INFO,
        field="data_path",
    ),
    Corruption(
        "video-path-escapes-root",
        _set_info("video_path", "/tmp/{video_key}/episode_{episode_index:06d}.mp4"),
        "PATH_ESCAPES_ROOT",
        INFO,
        field="video_path",
    ),
    Corruption(
        "data-path-unknown-placeholder",
        _set_info("data_path", "data/{chunk_index}/{episode_index}.parquet"),
        "PATH_TEMPLATE_INVALID",
        INFO,
        field="data_path",
    ),
    # parquet content
    Corruption("missing-parquet", _delete(data_file(2)), "PARQUET_MISSING", data_file(2), episode=2),
    Corruption("truncated-parquet", _truncate(data_file(1)), "PARQUET_UNREADABLE", data_file(1), episode=1),
    Corruption("nan-in-state", _nan_state, "NON_FINITE_VALUES", data_file(2), episode=2, field="observation.state"),
    Corruption("inf-in-action", _inf_action, "NON_FINITE_VALUES", data_file(0), episode=0, field="action"),
    Corruption("null-action-row", _null_action, "NULL_VALUES", data_file(3), episode=3, field="action"),
    Corruption(
        "non-monotonic-timestamps",
        _swap_timestamps,
        "TIMESTAMPS_NOT_INCREASING",
        data_file(1),
        episode=1,
        field="timestamp",
    ),
    Corruption(
        "timestamps-drift-from-fps",
        _stretch_timestamps,
        "TIMESTAMP_STEP_MISMATCH",
        data_file(3),
        episode=3,
        field="timestamp",
    ),
    Corruption(
        "wrong-dtype-state", _state_as_float64, "DTYPE_MISMATCH", data_file(1), episode=1, field="observation.state"
    ),
    Corruption(
        "wrong-dtype-task-index", _task_index_as_float, "DTYPE_MISMATCH", data_file(0), episode=0, field="task_index"
    ),
    Corruption(
        "list-length-vs-shape", _ragged_state, "SHAPE_MISMATCH", data_file(2), episode=2, field="observation.state"
    ),
    Corruption("declared-column-missing", _drop_column, "COLUMN_MISSING", data_file(0), episode=0, field="next.done"),
    Corruption(
        "episode-index-column", _wrong_episode_index_column, "EPISODE_INDEX_COLUMN_MISMATCH", data_file(2), episode=2
    ),
    Corruption("frame-index-column", _wrong_frame_index, "FRAME_INDEX_MISMATCH", data_file(1), episode=1),
    Corruption("global-index-gap", _gap_in_global_index, "GLOBAL_INDEX_MISMATCH", data_file(2), episode=2),
    Corruption(
        "task-index-out-of-range",
        _task_index_out_of_range,
        "TASK_INDEX_OUT_OF_RANGE",
        data_file(2),
        episode=2,
        field="task_index",
    ),
    Corruption(
        "annotation-index-out-of-range",
        _annotation_out_of_range,
        "ANNOTATION_INDEX_OUT_OF_RANGE",
        data_file(1),
        episode=1,
        field="annotation.human.task_description",
    ),
    # video
    Corruption("missing-video", _delete(video_file(3, "wrist")), "VIDEO_MISSING", video_file(3, "wrist"), episode=3),
    Corruption(
        "truncated-mp4", _truncate(video_file(1, "wrist")), "VIDEO_UNREADABLE", video_file(1, "wrist"), episode=1
    ),
    Corruption("garbage-mp4", _garbage(video_file(2, "front")), "VIDEO_UNREADABLE", video_file(2, "front"), episode=2),
    Corruption(
        "corrupt-frames-deep",
        _scramble_middle(video_file(1, "front")),
        "VIDEO_DECODE_ERROR",
        video_file(1, "front"),
        episode=1,
        deep=True,
    ),
    Corruption(
        "video-frame-count",
        lambda r: reencode(r, 2, "front", keep=30),
        "VIDEO_FRAME_COUNT_MISMATCH",
        video_file(2, "front"),
        episode=2,
    ),
    Corruption(
        "video-wrong-resolution",
        lambda r: reencode(r, 0, "front", size=64),
        "VIDEO_RESOLUTION_MISMATCH",
        video_file(0, "front"),
        episode=0,
    ),
    Corruption(
        "video-wrong-fps",
        lambda r: reencode(r, 1, "wrist", fps=30),
        "VIDEO_FPS_MISMATCH",
        video_file(1, "wrist"),
        episode=1,
    ),
    # modality.json
    Corruption(
        "modality-slice-out-of-bounds",
        _set_modality("state", "gripper", end=9),
        "MODALITY_SLICE_OUT_OF_BOUNDS",
        MODALITY,
        field="state.gripper",
    ),
    Corruption(
        "modality-slice-overlap",
        _set_modality("action", "gripper", start=2),
        "MODALITY_SLICE_OVERLAP",
        MODALITY,
        field="action.gripper",
    ),
    Corruption(
        "modality-unknown-column",
        _set_modality("state", "arm", original_key="observation.effort"),
        "MODALITY_UNKNOWN_COLUMN",
        MODALITY,
        field="state.arm.original_key",
    ),
    Corruption(
        "modality-video-not-a-feature",
        _set_modality("video", "front", original_key="observation.images.top"),
        "MODALITY_VIDEO_NOT_A_FEATURE",
        MODALITY,
        field="video.front.original_key",
    ),
    Corruption(
        "modality-annotation-column-missing",
        _set_modality("annotation", "human.task_description", original_key="annotation.nope"),
        "MODALITY_ANNOTATION_COLUMN_MISSING",
        MODALITY,
        field="annotation.human.task_description",
    ),
    # stats
    Corruption("episodes-stats-count", _stats_count, "STATS_COUNT_MISMATCH", EP_STATS, episode=1, field="action.count"),
    Corruption(
        "episodes-stats-min-above-max",
        _stats_min_above_max,
        "STATS_ORDER_VIOLATION",
        EP_STATS,
        episode=2,
        field="observation.state",
    ),
    Corruption(
        "stats-json-unknown-feature",
        _stats_json_unknown_feature,
        "STATS_UNKNOWN_FEATURE",
        "meta/stats.json",
        field="observation.effort",
    ),
]


# ======================================================================================================== LeRobot v3.0

META_EP = "meta/episodes/chunk-000/file-000.parquet"
TASKS_PQ = "meta/tasks.parquet"
V3_CAMERAS = ("front", "wrist")


def v3_rows(root: Path) -> list[dict]:
    return pq.read_table(root / META_EP).to_pylist()


def v3_data_file(root: Path, ep: int) -> str:
    row = v3_rows(root)[ep]
    return f"data/chunk-{row['data/chunk_index']:03d}/file-{row['data/file_index']:03d}.parquet"


def v3_video_file(root: Path, ep: int, cam: str) -> str:
    row = v3_rows(root)[ep]
    key = f"observation.images.{cam}"
    return f"videos/{key}/chunk-{row[f'videos/{key}/chunk_index']:03d}/file-{row[f'videos/{key}/file_index']:03d}.mp4"


def v3_second_in_video_file(root: Path, cam: str) -> int:
    """The first episode that is not the first of its video file (the demo fixture has one for each camera)."""
    for ep in range(1, len(v3_rows(root))):
        if v3_video_file(root, ep, cam) == v3_video_file(root, ep - 1, cam):
            return ep
    raise AssertionError(f"no video file of camera {cam} holds two episodes; lower the file-size limits")


def v3_first_of_second_data_file(root: Path) -> int:
    first = v3_data_file(root, 0)
    for ep in range(1, len(v3_rows(root))):
        if v3_data_file(root, ep) != first:
            return ep
    raise AssertionError("the dataset has a single data file; lower data_files_size_in_mb")


def v3_first_of_second_video_file(root: Path, cam: str) -> int:
    first = v3_video_file(root, 0, cam)
    for ep in range(1, len(v3_rows(root))):
        if v3_video_file(root, ep, cam) != first:
            return ep
    raise AssertionError("the dataset has a single video file per camera; lower video_files_size_in_mb")


def set_v3_meta(root: Path, column: str, fn: Callable[[int, Any], Any]) -> None:
    """Replace ``column`` of the episodes metadata by ``fn(episode_index, old_value)``, keeping its arrow type."""
    path = root / META_EP
    table = pq.read_table(path)
    episodes = table.column("episode_index").to_pylist()
    values = [fn(e, v) for e, v in zip(episodes, table.column(column).to_pylist(), strict=True)]
    i = table.schema.get_field_index(column)
    table = table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))
    pq.write_table(table, path)


def rewrite_v3_data(root: Path, rel: str, fn: Callable[[pa.Table], pa.Table]) -> None:
    path = root / rel
    pq.write_table(fn(pq.read_table(path)), path)


def _v3_index_gap(root: Path) -> None:
    """Episodes >= 2 are moved 5 rows further: a gap between episodes 1 and 2 in dataset_from_index."""
    for col in ("dataset_from_index", "dataset_to_index"):
        set_v3_meta(root, col, lambda e, v: v + 5 if e >= 2 else v)


def _v3_first_from_nonzero(root: Path) -> None:
    for col in ("dataset_from_index", "dataset_to_index"):
        set_v3_meta(root, col, lambda e, v: v + 3)


def _v3_index_length(root: Path) -> None:
    set_v3_meta(root, "dataset_to_index", lambda e, v: v + 1 if e == 3 else v)


def _v3_timestamp_chain(root: Path) -> None:
    """The second episode of a front video file is moved half a second later (from and to): the chain breaks."""
    ep = v3_second_in_video_file(root, "front")
    for col in ("from_timestamp", "to_timestamp"):
        set_v3_meta(root, f"videos/observation.images.front/{col}", lambda e, v: v + 0.5 if e == ep else v)


def _v3_video_span(root: Path) -> None:
    set_v3_meta(root, "videos/observation.images.wrist/to_timestamp", lambda e, v: v + 1.0 if e == 2 else v)


def _v3_drop_rows(root: Path) -> None:
    """Three rows of episode 1 disappear from its data file."""

    def drop(table: pa.Table) -> pa.Table:
        ep = table.column("episode_index").to_numpy()
        keep = np.flatnonzero(ep != 1)
        last = np.flatnonzero(ep == 1)[:-3]
        return table.take(pa.array(np.sort(np.concatenate([keep, last]))))

    rewrite_v3_data(root, v3_data_file(root, 1), drop)


def _v3_wrong_episode_index(root: Path) -> None:
    """The first episode of the second data file gets its neighbour's episode_index."""
    ep = v3_first_of_second_data_file(root)
    rewrite_v3_data(root, v3_data_file(root, ep), map_numpy("episode_index", lambda v: np.where(v == ep, ep + 1, v)))


def _v3_drop_meta_column(root: Path) -> None:
    path = root / META_EP
    pq.write_table(pq.read_table(path).drop_columns(["dataset_to_index"]), path)


def _v3_stats_count(root: Path) -> None:
    set_v3_meta(root, "stats/action/count", lambda e, v: [v[0] + 1] if e == 1 else v)


def _v3_duplicate_task(root: Path) -> None:
    path = root / TASKS_PQ
    table = pq.read_table(path)
    tasks = table.column("task").to_pylist()
    indices = table.column("task_index").to_pylist()
    # row 1 repeats row 0's string under a new index
    rows = {"task_index": [indices[0], len(tasks), *indices[1:]], "task": [tasks[0], tasks[0], *tasks[1:]]}
    pq.write_table(pa.table(rows, schema=pa.schema([("task_index", pa.int64()), ("task", pa.string())])), path)
    edit_json(root, INFO, lambda d: d.__setitem__("total_tasks", len(tasks) + 1))


def _v3_short_video(root: Path) -> None:
    """The second front video file is re-encoded without its last 10 frames."""
    rel = v3_video_file(root, v3_first_of_second_video_file(root, "front"), "front")
    frames = read_frames(root / rel)
    info = json.loads((root / INFO).read_text())
    encode_video(frames[:-10], root / rel, int(info["fps"]), "h264")


def _v3_extra_file(root: Path) -> None:
    src = root / v3_data_file(root, 0)
    (src.parent / "file-099.parquet").write_bytes(src.read_bytes())


def _delete_tree(rel: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        import shutil

        shutil.rmtree(root / rel)

    return apply


def _deferred_delete(fn: Callable[[Path], str]) -> Callable[[Path], None]:
    return lambda root: (root / fn(root)).unlink()


V3_CORRUPTIONS: list[Corruption] = [
    Corruption("v3-missing-tasks-parquet", _delete(TASKS_PQ), "META_MISSING", TASKS_PQ),
    Corruption("v3-missing-episodes-meta", _delete_tree("meta/episodes"), "META_MISSING", "meta/episodes"),
    Corruption(
        "v3-declared-as-v21", _set_info("codebase_version", "v2.1"), "VERSION_LAYOUT_MISMATCH", INFO,
        field="codebase_version",
    ),
    Corruption(
        "v3-data-path-v2-template",
        _set_info("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"),
        "VERSION_LAYOUT_MISMATCH",
        INFO,
        field="data_path",
    ),
    Corruption(
        "v3-info-size-key-missing",
        lambda r: edit_json(r, INFO, lambda d: {k: v for k, v in d.items() if k != "data_files_size_in_mb"}),
        "V3_INFO_KEY_MISSING",
        INFO,
        field="data_files_size_in_mb",
    ),
    Corruption(
        "v3-episodes-column-missing", _v3_drop_meta_column, "V3_EPISODES_SCHEMA", META_EP, field="dataset_to_index"
    ),
    Corruption("v3-index-gap", _v3_index_gap, "V3_INDEX_GAP", META_EP, episode=2, field="dataset_from_index"),
    Corruption(
        "v3-index-first-nonzero", _v3_first_from_nonzero, "V3_INDEX_GAP", META_EP, episode=0, field="dataset_from_index"
    ),
    Corruption(
        "v3-index-length", _v3_index_length, "V3_INDEX_LENGTH_MISMATCH", META_EP, episode=3, field="dataset_to_index"
    ),
    Corruption(
        "v3-timestamp-chain",
        _v3_timestamp_chain,
        "V3_TIMESTAMP_CHAIN",
        META_EP,
        episode=lambda r: v3_second_in_video_file(r, "front"),
        field="videos/observation.images.front/from_timestamp",
    ),
    Corruption(
        "v3-video-span",
        _v3_video_span,
        "V3_VIDEO_SPAN_MISMATCH",
        META_EP,
        episode=2,
        field="videos/observation.images.wrist/to_timestamp",
    ),
    Corruption(
        "v3-episode-rows-dropped",
        _v3_drop_rows,
        "V3_EPISODE_ROWS",
        lambda r: v3_data_file(r, 1),
        episode=1,
    ),
    Corruption(
        "v3-episode-index-column",
        _v3_wrong_episode_index,
        "V3_EPISODE_ROWS",
        lambda r: v3_data_file(r, v3_first_of_second_data_file(r)),
        episode=v3_first_of_second_data_file,
        field="episode_index",
    ),
    Corruption(
        "v3-missing-data-file",
        _deferred_delete(lambda r: v3_data_file(r, v3_first_of_second_data_file(r))),
        "PARQUET_MISSING",
        lambda r: v3_data_file(r, v3_first_of_second_data_file(r)),
        episode=v3_first_of_second_data_file,
    ),
    Corruption(
        "v3-missing-video-file",
        _deferred_delete(lambda r: v3_video_file(r, 0, "wrist")),
        "VIDEO_MISSING",
        lambda r: v3_video_file(r, 0, "wrist"),
        episode=0,
    ),
    Corruption(
        "v3-video-frame-count",
        _v3_short_video,
        "VIDEO_FRAME_COUNT_MISMATCH",
        lambda r: v3_video_file(r, v3_first_of_second_video_file(r, "front"), "front"),
        episode=lambda r: v3_first_of_second_video_file(r, "front"),
    ),
    Corruption(
        "v3-episode-stats-count", _v3_stats_count, "STATS_COUNT_MISMATCH", META_EP, episode=1, field="action.count"
    ),
    Corruption("v3-duplicate-task", _v3_duplicate_task, "DUPLICATE_TASK", TASKS_PQ, field="row 1"),
    Corruption(
        "v3-unreferenced-data-file",
        _v3_extra_file,
        "V3_FILE_UNREFERENCED",
        lambda r: str(Path(v3_data_file(r, 0)).parent / "file-099.parquet"),
    ),
]
