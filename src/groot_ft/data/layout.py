"""The LeRobot v2.0/v2.1/v3.0 on-disk layout, defined once for the reader and the validator.

:mod:`groot_ft.data.lerobot` (the reader) and :mod:`groot_ft.data.validate` (the validator) both read the layout
from here, so that they give one answer about a dataset: which ``meta/info.json`` keys are required, which have a
default the format defines (and which default), the path templates and their placeholders, the episodes/tasks
metadata files and the v3 ``meta/episodes`` columns.

Defaults (LeRobot's own: ``DEFAULT_CHUNK_SIZE`` and, for v3.0, ``DEFAULT_DATA_PATH``/``DEFAULT_VIDEO_PATH``): a
missing ``chunks_size`` is 1000 and a v3.0 dataset without ``data_path``/``video_path`` uses the v3.0 templates. The
reader uses them silently; the validator reports ``INFO_KEY_DEFAULTED`` (a warning naming the default). ``fps`` has no
format default: both reject a dataset without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

V2_VERSIONS = ("v2.0", "v2.1")
V3_VERSIONS = ("v3.0",)
SUPPORTED_VERSIONS = V2_VERSIONS + V3_VERSIONS
DEFAULT_STATE_COLUMN = "observation.state"
DEFAULT_ACTION_COLUMN = "action"

INFO_FILE = "meta/info.json"
V2_EPISODES_FILE = "meta/episodes.jsonl"
V2_TASKS_FILE = "meta/tasks.jsonl"
V2_EPISODES_STATS_FILE = "meta/episodes_stats.jsonl"

#: LeRobot's DEFAULT_CHUNK_SIZE: episodes (v2) or files (v3) per chunk folder when info.json does not say
DEFAULT_CHUNKS_SIZE = 1000
#: LeRobot v3.0 default path templates (used when info.json lacks them) and the episodes-metadata layout.
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_EPISODES_DIR = "meta/episodes"
V3_TASKS_FILE = "meta/tasks.parquet"
V3_EPISODE_COLUMNS = (
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)
PANDAS_INDEX_COLUMN = "__index_level_0__"

#: info.json keys every supported version needs (no default exists for them)
REQUIRED_INFO = ("fps", "features", "total_episodes", "total_frames", "total_tasks")
#: the placeholders a path template must use, per layout family
V2_PLACEHOLDERS = {"data_path": ("episode_index",), "video_path": ("episode_index", "video_key")}
V3_PLACEHOLDERS = {"data_path": ("chunk_index", "file_index"), "video_path": ("video_key", "chunk_index", "file_index")}


def is_v3(version: str | None) -> bool:
    return version in V3_VERSIONS


def required_info(version: str | None) -> tuple[str, ...]:
    """info.json keys without a default: v2 has no default ``data_path`` template."""
    return REQUIRED_INFO if is_v3(version) else (*REQUIRED_INFO[:2], "data_path", *REQUIRED_INFO[2:])


def info_defaults(version: str | None) -> dict[str, Any]:
    """info.json keys the format defines a default for, and that default."""
    out: dict[str, Any] = {"chunks_size": DEFAULT_CHUNKS_SIZE}
    if is_v3(version):
        out.update(data_path=V3_DATA_PATH, video_path=V3_VIDEO_PATH)
    return out


def info_value(info: dict[str, Any], key: str, version: str | None) -> Any:
    """``info[key]``, or the format's default when the key is absent (None when neither)."""
    if key in info:
        return info[key]
    return info_defaults(version).get(key)


def episodes_file(version: str | None) -> str:
    """The episodes metadata: ``meta/episodes.jsonl`` (v2) or the ``meta/episodes/`` directory (v3)."""
    return V3_EPISODES_DIR if is_v3(version) else V2_EPISODES_FILE


def tasks_file(version: str | None) -> str:
    return V3_TASKS_FILE if is_v3(version) else V2_TASKS_FILE


def format_path(template: str, version: str | None, chunks_size: int, **where: Any) -> str:
    """Fill a path template. v2: ``episode_index`` (and ``video_key``) give ``episode_chunk``; v3: ``chunk_index``,
    ``file_index`` (and ``video_key``) come from the episode's ``meta/episodes`` row."""
    if not is_v3(version):
        where = {"episode_chunk": where["episode_index"] // chunks_size, **where}
    return template.format(**where)


def v3_video_columns(video_key: str) -> tuple[str, str, str, str]:
    """The four ``meta/episodes`` columns locating one camera's frames of an episode."""
    return (
        f"videos/{video_key}/chunk_index",
        f"videos/{video_key}/file_index",
        f"videos/{video_key}/from_timestamp",
        f"videos/{video_key}/to_timestamp",
    )


def v3_task_column(schema: pa.Schema) -> str | None:
    """Name of the column holding task strings in a v3 tasks table: ``task``, the stored pandas index, or None."""
    names = schema.names
    if "task" in names:
        return "task"
    if PANDAS_INDEX_COLUMN in names:
        return PANDAS_INDEX_COLUMN
    meta = schema.pandas_metadata or {}
    for col in meta.get("index_columns", []):
        if isinstance(col, str) and col in names and col != "task_index":
            return col
    return None


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and what to do."""


def resolve_inside(root: Path, relative: str, what: str, resolved_root: Path | None = None) -> Path:
    """Join a templated path to the dataset root, refusing anything that escapes it (``resolved_root``: the root
    already resolved, to save resolving it again)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(resolved_root or root.resolve()):
        raise DatasetError(f"{root / INFO_FILE}: {what} {relative!r} escapes the dataset root; fix the template")
    return candidate


@dataclass(frozen=True)
class V3Location:
    """Where a v3 episode lives, from its ``meta/episodes`` row; None where the row's entry is unusable."""

    data: tuple[int, int] | None  # (data/chunk_index, data/file_index)
    rows: tuple[int, int] | None  # (dataset_from_index, dataset_to_index)
    # camera -> (chunk_index, file_index, from_timestamp, to_timestamp); None when the row has no entry for it
    videos: dict[str, tuple[int, int, float, float] | None]
    meta_file: str = ""  # the meta/episodes parquet file (relative), for messages


def episode_spans(values: np.ndarray) -> dict[int, tuple[int, int] | np.ndarray]:
    """episode index -> (start, stop) row span, or the row positions when its rows are not contiguous."""
    spans: dict[int, Any] = {}
    n = len(values)
    if n == 0:
        return spans
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [n]])
    for s, e in zip(starts.tolist(), stops.tolist(), strict=True):
        ep = int(values[s])
        if ep in spans:  # rows of one episode in several runs: fall back to positions
            spans[ep] = np.flatnonzero(values == ep)
        else:
            spans[ep] = (s, e)
    return spans


def range_in(index: np.ndarray, lo: int, hi: int) -> tuple[int, int] | np.ndarray | None:
    """Rows whose global ``index`` lies in ``[lo, hi)``: a (start, stop) span, the positions, or None."""
    pos = np.flatnonzero((index >= lo) & (index < hi))
    if pos.size == 0:
        return None
    if pos[-1] - pos[0] + 1 == pos.size:
        return int(pos[0]), int(pos[-1]) + 1
    return pos
