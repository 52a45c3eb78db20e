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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.errors import UserError

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


class DatasetError(UserError, ValueError):
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


def is_count(value: Any) -> bool:
    """An integer >= 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class V3Problem:
    """One problem in a ``meta/episodes`` file. The validator reports it under ``code``; the reader raises on a
    ``blocking`` one (the file or an episode's index, length, data file or row range is unusable)."""

    code: str
    message: str
    field: str | None = None
    episode: int | None = None
    blocking: bool = False


@dataclass(frozen=True)
class V3EpisodeRow:
    """One usable ``meta/episodes`` row: the episode, its tasks and where it lives."""

    index: int
    length: int
    tasks: tuple[str, ...]
    row: int
    location: V3Location


@dataclass
class V3EpisodesFile:
    """A parsed ``meta/episodes`` parquet file (see :func:`read_v3_episodes_file`)."""

    usable: bool = True  # False: unreadable, or no usable episode_index/length column (``rows`` is empty)
    rows: list[V3EpisodeRow | None] = field(default_factory=list)  # None: the row's index/length are unusable
    problems: list[V3Problem] = field(default_factory=list)  # in file order
    absent_videos: list[str] = field(default_factory=list)  # cameras with none of their columns here
    broken_videos: list[str] = field(default_factory=list)  # cameras whose columns are malformed (in problems)


def _is_video_entry(entry: tuple[Any, ...]) -> bool:
    chunk, file, t0, t1 = entry
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (t0, t1))
    return is_count(chunk) and is_count(file) and numbers


def read_v3_episodes_file(path: Path, rel: str, video_keys: list[str]) -> V3EpisodesFile:
    """Parse one ``meta/episodes`` parquet file: every row's episode, tasks and location, and every problem found
    (the reader and the validator both read the v3 episode table through this)."""
    out = V3EpisodesFile()
    problem = out.problems.append
    try:
        schema = pq.read_schema(path)
        names = schema.names
        table = pq.read_table(path, columns=[n for n in names if not n.startswith("stats/")])
    except (pa.ArrowException, OSError, ValueError) as exc:
        problem(V3Problem("PARQUET_UNREADABLE", f"cannot read the episodes metadata: {exc}", blocking=True))
        out.usable = False
        return out
    unusable = set()
    for col in V3_EPISODE_COLUMNS:
        if col not in names:
            problem(V3Problem("V3_EPISODES_SCHEMA", f"column {col!r} is missing", col, blocking=True))
            unusable.add(col)
        elif not pa.types.is_integer(schema.field(col).type):
            message = f"column {col!r} is {schema.field(col).type}, expected integers"
            problem(V3Problem("V3_EPISODES_SCHEMA", message, col, blocking=True))
            unusable.add(col)
    if {"episode_index", "length"} & unusable:
        out.usable = False
        return out
    cols = {c: table.column(c).to_pylist() for c in V3_EPISODE_COLUMNS if c not in unusable}
    tasks = None
    if "tasks" in names:
        tasks = table.column("tasks").to_pylist()
    else:
        problem(V3Problem("EPISODE_TASKS_MISSING", "no tasks column (each episode's task strings)", "tasks"))
    videos: dict[str, list[list[Any]]] = {}
    for key in video_keys:
        wanted = v3_video_columns(key)
        if not any(c in names for c in wanted):
            out.absent_videos.append(key)
            continue
        bad = [c for c in wanted if c not in names]
        bad += [c for c in wanted[:2] if c in names and not pa.types.is_integer(schema.field(c).type)]
        bad += [
            c
            for c in wanted[2:]
            if c in names
            and not (pa.types.is_floating(schema.field(c).type) or pa.types.is_integer(schema.field(c).type))
        ]
        for c in bad:
            what = "is missing" if c not in names else f"is {schema.field(c).type}, expected numbers"
            problem(V3Problem("V3_EPISODES_SCHEMA", f"column {c!r} {what}", c))
        if bad:
            out.broken_videos.append(key)
        else:
            videos[key] = [table.column(c).to_pylist() for c in wanted]
    for row in range(table.num_rows):
        out.rows.append(_parse_v3_row(row, rel, cols, tasks, videos, problem))
    return out


def _pair(
    row: int, cols: dict[str, list[Any]], first: str, second: str, idx: int, problem: Any
) -> tuple[int, int] | None:
    """``(cols[first][row], cols[second][row])`` when both are integers >= 0; None (and a problem) otherwise."""
    if first not in cols or second not in cols:
        return None  # the missing column was reported
    a, b = cols[first][row], cols[second][row]
    if is_count(a) and is_count(b):
        return a, b
    message = f"row {row}: {first} {a!r}, {second} {b!r} (need integers >= 0)"
    field_name = second if first.startswith("data/") else first
    problem(V3Problem("V3_EPISODES_SCHEMA", message, field_name, idx, blocking=True))
    return None


def _parse_v3_row(
    row: int,
    rel: str,
    cols: dict[str, list[Any]],
    tasks: list[Any] | None,
    videos: dict[str, list[list[Any]]],
    problem: Any,
) -> V3EpisodeRow | None:
    where = f"row {row}"
    idx, length = cols["episode_index"][row], cols["length"][row]
    if not is_count(idx) or not is_count(length):
        episode = idx if isinstance(idx, int) and not isinstance(idx, bool) else None
        message = f"{where}: episode_index {idx!r}, length {length!r} (need integers >= 0)"
        problem(V3Problem("EPISODE_ENTRY_INVALID", message, where, episode, blocking=True))
        return None
    ep_tasks = tasks[row] if tasks is not None else []
    if not isinstance(ep_tasks, list) or not all(isinstance(t, str) for t in ep_tasks):
        message = f"{where}: tasks must be a list of strings, got {ep_tasks!r}"
        problem(V3Problem("EPISODE_ENTRY_INVALID", message, where, idx))
        ep_tasks = [t for t in ep_tasks if isinstance(t, str)] if isinstance(ep_tasks, list) else []
    if length == 0:
        problem(V3Problem("ZERO_LENGTH_EPISODE", f"episode {idx} has length 0", where, idx))
    data = _pair(row, cols, "data/chunk_index", "data/file_index", idx, problem)
    rows = _pair(row, cols, "dataset_from_index", "dataset_to_index", idx, problem)
    locs: dict[str, tuple[int, int, float, float] | None] = {}
    for key, (chunks, files, starts, ends) in videos.items():
        entry = (chunks[row], files[row], starts[row], ends[row])
        if all(v is None for v in entry):
            locs[key] = None  # no video of this camera for this episode
        elif _is_video_entry(entry):
            locs[key] = (entry[0], entry[1], float(entry[2]), float(entry[3]))
        else:
            message = (
                f"{where}: videos/{key}/... entry {entry!r} needs chunk_index, file_index >= 0 and finite "
                "from_timestamp, to_timestamp"
            )
            problem(V3Problem("V3_EPISODES_SCHEMA", message, f"videos/{key}/from_timestamp", idx))
            locs[key] = None
    return V3EpisodeRow(idx, length, tuple(ep_tasks), row, V3Location(data, rows, locs, rel))


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


# ================================================================================== per-element feature names
#
# LeRobot writers store a feature's ``names`` in several shapes, and all of them are in the wild:
#   * a flat list, one name per element (LeRobot v2.1+ ``hw_to_dataset_features``): ``["x", "y", "z"]``;
#   * a one-level nested list (Unitree's exports): ``[["kLeftShoulderPitch", ..., "kRightHandPinky"]]``;
#   * a mapping of category -> list (LeRobot's v1->v2 converter writes ``{"motors": [...]}``, ports such as DROID
#     ``{"axes": [...]}``); several categories are read in key order, as LeRobot's own tools do;
#   * a mapping of name -> element index (LeRobot's gamepad/keyboard teleoperators: ``{"delta_x": 0, ...}``);
#   * null (no names).
# Names only label elements: training never reads them, so a problem with them is never fatal. Everyone who reads
# names (the validator, the reader, ``modality init``) goes through :func:`feature_names`, so they agree on them.

NAMES_FORMS = ("flat list", "nested list", "category mapping", "name-to-index mapping", "null")


@dataclass(frozen=True)
class FeatureNames:
    """The per-element names of a 1-D feature as read from ``meta/info.json``.

    ``names`` holds one name per element, or None when there are none or they cannot label the elements; ``form``
    says how they were stored (one of :data:`NAMES_FORMS`, or ``"unreadable"``); ``problem`` (None when fine) says
    why stored names cannot be used, and ``unreadable`` whether that is their form (True) or their count (False).
    """

    names: tuple[str, ...] | None
    form: str
    problem: str | None = None
    unreadable: bool = False


def _name_list(values: Any) -> list[str] | None:
    """``values`` as a list of non-empty strings, or None if any item is something else."""
    if not isinstance(values, (list, tuple)):
        return None
    if not all(isinstance(v, str) and v.strip() for v in values):
        return None
    return [str(v) for v in values]


def _read_names(raw: Any) -> tuple[list[str] | None, str]:
    """(names in element order, form); names None and form "unreadable" when the value is no known form."""
    if isinstance(raw, (list, tuple)):
        flat = _name_list(raw)
        if flat is not None:
            return flat, "flat list"
        if raw and all(isinstance(v, (list, tuple)) for v in raw):
            inner = [_name_list(v) for v in raw]
            if all(part is not None for part in inner):
                return [n for part in inner for n in part], "nested list"  # type: ignore[union-attr]
        return None, "unreadable"
    if isinstance(raw, dict) and raw:
        values = list(raw.values())
        if all(isinstance(v, (list, tuple)) for v in values):
            parts = [_name_list(v) for v in values]
            if all(part is not None for part in parts):
                return [n for part in parts for n in part], "category mapping"  # type: ignore[union-attr]
            return None, "unreadable"
        # bool is an int in Python: {"a": True} is not an index map
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            keys = _name_list(list(raw))
            if keys is not None and sorted(values) == list(range(len(values))):
                return [name for name, _ in sorted(raw.items(), key=lambda kv: kv[1])], "name-to-index mapping"
        return None, "unreadable"
    return None, "unreadable"


def _describe(raw: Any, limit: int = 80) -> str:
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def feature_names(feature: Any) -> FeatureNames:
    """The per-element names of one ``meta/info.json`` feature (any form LeRobot writers use; see above).

    Only 1-D features have per-element names; for others (images, videos, matrices) ``names`` label axes, and the
    result has ``names`` None, form ``"axes"`` and no problem.
    """
    if not isinstance(feature, dict):
        return FeatureNames(None, "unreadable", f"the feature is {type(feature).__name__}, not an object", True)
    raw = feature.get("names")
    if raw is None:
        return FeatureNames(None, "null")
    shape = feature.get("shape")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 1 and isinstance(shape[0], int)):
        return FeatureNames(None, "axes")
    dim = int(shape[0])
    names, form = _read_names(raw)
    if names is None:
        return FeatureNames(
            None,
            form,
            f"names {_describe(raw)} are not one of LeRobot's forms ({', '.join(NAMES_FORMS)}) of non-empty strings",
            True,
        )
    if len(names) != dim:
        return FeatureNames(None, form, f"names ({form}) hold {len(names)} names for shape [{dim}]")
    return FeatureNames(tuple(names), form)
