"""One reader for GR00T-flavoured LeRobot datasets (v2.0, v2.1 and v3.0), used by every stage.

It resolves ``info.json`` path templates, ``modality.json`` group slices and annotation columns, and reads only the
parquet columns a caller asks for. Path templates are formatted and then checked to stay inside the dataset root.

Layouts (``dataset-formats.md`` §1.2/§1.3), read natively, without a conversion copy:

* **v2.0 / v2.1**: one parquet file per episode (``meta/episodes.jsonl``, ``meta/tasks.jsonl``) and one mp4 per
  episode and camera; frame ``k`` of an episode is the ``k``-th frame of its mp4.
* **v3.0**: many episodes per parquet file and per mp4 file. ``meta/episodes/*.parquet`` locates each episode
  (``data/chunk_index``, ``data/file_index``, ``dataset_from_index``, ``dataset_to_index`` and per camera
  ``videos/<key>/chunk_index``, ``file_index``, ``from_timestamp``, ``to_timestamp``); ``meta/tasks.parquet`` holds the
  task strings (as a ``task`` column or as the stored pandas index ``__index_level_0__``). Frame ``k`` of an episode is
  the frame shown at ``from_timestamp + k / fps`` in the shared mp4 (matched within a quarter frame period), i.e. the
  same frame a v2 reader decodes by index.

Stages use the version-independent accessors :meth:`LeRobotDataset.read_episode_table`,
:meth:`LeRobotDataset.episode_data_file`, :meth:`LeRobotDataset.episode_video_segment` and
:meth:`LeRobotDataset.read_episode_frames`. ``data_path`` remains (on v3 it returns the shared file holding the
episode, fine for messages); ``video_path`` is v2-only and raises on v3, because decoding a shared mp4 by episode
frame index would silently return another episode's frames.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.layout import (  # re-exported: the reader's public names predate data.layout
    DEFAULT_ACTION_COLUMN,
    DEFAULT_STATE_COLUMN,
    PANDAS_INDEX_COLUMN,
    SUPPORTED_VERSIONS,
    V2_VERSIONS,
    V3_DATA_PATH,
    V3_EPISODE_COLUMNS,
    V3_EPISODES_DIR,
    V3_EPISODES_PATH,
    V3_TASKS_FILE,
    V3_VERSIONS,
    V3_VIDEO_PATH,
    DatasetError,
    V3Location,
    episode_spans,
    info_value,
    range_in,
    resolve_inside,
    v3_task_column,
    v3_video_columns,
)
from groot_ft.data import layout
from groot_ft.modality import EmbodimentModalityConfig

__all__ = [
    "DEFAULT_ACTION_COLUMN",
    "DEFAULT_STATE_COLUMN",
    "PANDAS_INDEX_COLUMN",
    "SUPPORTED_VERSIONS",
    "V2_VERSIONS",
    "V3_DATA_PATH",
    "V3_EPISODE_COLUMNS",
    "V3_EPISODES_DIR",
    "V3_EPISODES_PATH",
    "V3_TASKS_FILE",
    "V3_VERSIONS",
    "V3_VIDEO_PATH",
    "DatasetError",
    "Episode",
    "EpisodeArrays",
    "GroupSlice",
    "LeRobotDataset",
    "VideoSegment",
    "column_matrix",
    "decode_frames_at",
    "detect_version",
    "format_template",
    "read_json",
    "read_jsonl",
    "read_v3_tasks",
    "resolve_inside",
    "v3_task_column",
    "v3_video_columns",
]

@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class GroupSlice:
    """Where one state/action group lives: ``column[start:end]``."""

    column: str
    start: int
    end: int

    @property
    def dim(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class VideoSegment:
    """Where one camera's frames of one episode live: ``path`` from ``start_s`` (seconds in the file) on.

    v2: the episode's own mp4, ``start_s = 0`` and ``end_s = None`` (the whole file). v3: the shared mp4 and the
    episode's ``[from_timestamp, to_timestamp)`` window.
    """

    path: Path
    start_s: float
    end_s: float | None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetError(f"{path}:{lineno}: blank line; JSONL needs one JSON object per line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def format_template(root: Path, template: str, what: str, **fields: Any) -> str:
    """Fill an info.json path template, turning a bad placeholder into a DatasetError that names it."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise DatasetError(
            f"{root / 'meta/info.json'}: {what} {template!r} cannot be filled ({exc!r}); allowed placeholders: "
            f"{', '.join('{' + f + '}' for f in fields)}"
        ) from None


#: parquet files up to this size are read into memory in one go rather than through Arrow's file layer
_READ_WHOLE_BYTES = 8 << 20


def detect_version(root: Path, info: dict[str, Any]) -> str:
    """``codebase_version`` of info.json, cross-checked against the files on disk (§1.5); raises on a mismatch."""
    version = info.get("codebase_version")
    where = root / "meta/info.json"
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{where}: codebase_version {version!r} is not supported; supported: {', '.join(SUPPORTED_VERSIONS)}"
        )
    has_v3_meta = (root / V3_EPISODES_DIR).is_dir()
    has_v2_meta = (root / "meta/episodes.jsonl").is_file()
    data_path = info.get("data_path")
    if version in V3_VERSIONS:
        if not has_v3_meta and has_v2_meta:
            raise DatasetError(
                f"{where}: codebase_version is {version} but the dataset has meta/episodes.jsonl and no "
                f"{V3_EPISODES_DIR}/ (a v2 layout); fix codebase_version"
            )
        if isinstance(data_path, str) and "{file_index" not in data_path:
            raise DatasetError(
                f"{where}: codebase_version is {version} but data_path {data_path!r} has no {{file_index}} "
                "placeholder (a v2 template); fix codebase_version or data_path"
            )
    else:
        if not has_v2_meta and has_v3_meta:
            raise DatasetError(
                f"{where}: codebase_version is {version} but the dataset has {V3_EPISODES_DIR}/ and no "
                "meta/episodes.jsonl (a v3.0 layout); fix codebase_version"
            )
        if isinstance(data_path, str) and "{file_index" in data_path:
            raise DatasetError(
                f"{where}: codebase_version is {version} but data_path {data_path!r} is a v3.0 template "
                "({file_index}); fix codebase_version or data_path"
            )
    return version


def read_v3_tasks(path: Path) -> dict[int, str]:
    """``task_index -> task`` from a v3 ``meta/tasks.parquet`` (task string as a column or as the pandas index)."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: cannot read tasks: {exc}") from None
    column = v3_task_column(table.schema)
    if column is None or "task_index" not in table.column_names:
        raise DatasetError(
            f"{path}: needs a task_index column and the task strings as a 'task' column or pandas index "
            f"(columns: {', '.join(table.column_names)})"
        )
    indices = table.column("task_index").to_pylist()
    texts = table.column(column).to_pylist()
    out: dict[int, str] = {}
    for row, (idx, text) in enumerate(zip(indices, texts, strict=True)):
        if not isinstance(idx, int) or isinstance(idx, bool) or not isinstance(text, str):
            raise DatasetError(f"{path}: row {row}: needs integer task_index and string task, got {idx!r}, {text!r}")
        if idx in out:
            raise DatasetError(f"{path}: row {row}: task_index {idx} appears twice")
        out[idx] = text
    return out


class LeRobotDataset:
    """Read-only view of a LeRobot v2.0/v2.1/v3.0 dataset with GR00T's ``meta/modality.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset directory does not exist")
        self.info: dict[str, Any] = read_json(self.root / "meta" / "info.json")
        if not isinstance(self.info, dict):
            raise DatasetError(f"{self.root / 'meta/info.json'}: must hold a JSON object")
        self.version: str = detect_version(self.root, self.info)
        # the keys without a format default that the reader needs (data.layout.required_info; totals are the
        # validator's business); a missing fps used to read as 30 here and as an error in the validator
        for key in ("fps", "features"):
            if key not in self.info:
                raise DatasetError(f"{self.root / 'meta/info.json'}: required key {key!r} is missing")
        # v3: the last data file read (path, columns, table, episode -> rows), so that iterating episodes in order
        # reads every shared file once
        self._file_cache: tuple[Path, tuple[str, ...] | None, pa.Table, dict[int, Any]] | None = None
        # filled template -> checked absolute path: resolving walks every path component with lstat, and stage 1
        # asks for each episode's files several times
        self._resolved: dict[tuple[str, str], Path] = {}
        self._resolved_root = self.root.resolve()

    def _inside(self, relative: str, what: str) -> Path:
        key = (relative, what)
        if key not in self._resolved:
            self._resolved[key] = resolve_inside(self.root, relative, what, self._resolved_root)
        return self._resolved[key]

    # --- metadata -------------------------------------------------------------------------------------------
    @property
    def is_v3(self) -> bool:
        return self.version in V3_VERSIONS

    @property
    def fps(self) -> float:
        value = self.info["fps"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise DatasetError(f"{self.root / 'meta/info.json'}: fps must be a positive number, got {value!r}")
        return float(value)

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info.get("features", {})

    @property
    def chunks_size(self) -> int:
        value = info_value(self.info, "chunks_size", self.version)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DatasetError(f"{self.root / 'meta/info.json'}: chunks_size must be a positive integer, got {value!r}")
        return value

    @property
    def episodes_file(self) -> Path:
        """The episodes metadata: ``meta/episodes.jsonl`` (v2) or the ``meta/episodes/`` directory (v3)."""
        return self.root / layout.episodes_file(self.version)

    @property
    def tasks_file(self) -> Path:
        return self.root / layout.tasks_file(self.version)

    @cached_property
    def episodes(self) -> list[Episode]:
        if self.is_v3:
            return [ep for ep, _ in self._v3_episodes]
        rows = read_jsonl(self.root / "meta" / "episodes.jsonl")
        out = []
        for lineno, row in enumerate(rows, start=1):
            try:
                out.append(Episode(int(row["episode_index"]), int(row["length"]), tuple(row.get("tasks", []))))
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{self.root / 'meta/episodes.jsonl'}:{lineno}: needs integer episode_index and length ({exc})"
                ) from None
        return out

    @cached_property
    def _episode_map(self) -> dict[int, Episode]:
        return {e.index: e for e in self.episodes}

    def episode(self, episode_index: int) -> Episode:
        try:
            return self._episode_map[episode_index]
        except KeyError:
            raise DatasetError(f"{self.episodes_file}: episode {episode_index} is not listed") from None

    @cached_property
    def tasks(self) -> dict[int, str]:
        if self.is_v3:
            return read_v3_tasks(self.root / V3_TASKS_FILE)
        rows = read_jsonl(self.root / "meta" / "tasks.jsonl")
        try:
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{self.root / 'meta/tasks.jsonl'}: every line needs task_index and task ({exc})") from None

    @cached_property
    def modality(self) -> dict[str, Any]:
        return read_json(self.root / "meta" / "modality.json")

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def video_keys(self) -> list[str]:
        """Original (info.json) keys of every declared video feature."""
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    # --- v3 episodes metadata -------------------------------------------------------------------------------
    def v3_episode_files(self) -> list[Path]:
        """The ``meta/episodes/chunk-*/file-*.parquet`` files of a v3 dataset, in (chunk, file) order."""
        base = self.root / V3_EPISODES_DIR
        if not base.is_dir():
            raise DatasetError(f"{base}: directory is missing (a v3.0 dataset lists its episodes there)")
        files = sorted(p for p in base.rglob("*.parquet") if p.is_file())
        if not files:
            raise DatasetError(f"{base}: holds no parquet files")
        return files

    @cached_property
    def _v3_episodes(self) -> list[tuple[Episode, V3Location]]:
        video_keys = self.video_keys()
        found: dict[int, tuple[Episode, V3Location]] = {}
        for path in self.v3_episode_files():
            parsed = layout.read_v3_episodes_file(path, path.relative_to(self.root).as_posix(), video_keys)
            for problem in parsed.problems:
                if problem.blocking:
                    raise DatasetError(f"{path}: {problem.message}")
            for row in parsed.rows:
                assert row is not None  # an unusable row is a blocking problem
                if row.index in found:
                    raise DatasetError(
                        f"{path}: row {row.row}: episode {row.index} is listed twice in {V3_EPISODES_DIR}/"
                    )
                found[row.index] = (Episode(row.index, row.length, row.tasks), row.location)
        return [found[i] for i in sorted(found)]

    @cached_property
    def _v3_locations(self) -> dict[int, V3Location]:
        return {ep.index: loc for ep, loc in self._v3_episodes}

    def _v3_location(self, episode_index: int) -> V3Location:
        try:
            return self._v3_locations[episode_index]
        except KeyError:
            raise DatasetError(f"{self.root / V3_EPISODES_DIR}: episode {episode_index} is not listed") from None

    # --- paths ----------------------------------------------------------------------------------------------
    def episode_chunk(self, episode_index: int) -> int:
        return episode_index // self.chunks_size

    def _template(self, key: str) -> str:
        """An info.json path template, or the format's default for it (v3.0: data.layout.info_defaults)."""
        template = info_value(self.info, key, self.version)
        if not template:
            what = "is missing" if key == "data_path" else "is missing but videos are needed"
            raise DatasetError(f"{self.root / 'meta/info.json'}: {key} {what}")
        if not isinstance(template, str):
            raise DatasetError(f"{self.root / 'meta/info.json'}: {key} must be a string, got {template!r}")
        return template

    def _fill(self, key: str, episode_index: int, **where: Any) -> Path:
        """The ``key`` template filled for one episode (v2: from its index; v3: ``where``, from its
        ``meta/episodes`` row) and checked to stay inside the dataset root."""
        if not self.is_v3:
            where = {"episode_chunk": self.episode_chunk(episode_index), "episode_index": episode_index, **where}
        return self._inside(format_template(self.root, self._template(key), key, **where), key)

    def episode_data_file(self, episode_index: int) -> Path:
        """The parquet file holding the episode's rows (its own file in v2, a shared one in v3)."""
        if self.is_v3:
            loc = self._v3_location(episode_index)
            return self._fill("data_path", episode_index, chunk_index=loc.data[0], file_index=loc.data[1])
        return self._fill("data_path", episode_index)

    def episode_rows(self, episode_index: int) -> tuple[int, int] | None:
        """v3: the episode's global ``[dataset_from_index, dataset_to_index)`` row range; v2: None (own file)."""
        if not self.is_v3:
            return None
        loc = self._v3_location(episode_index)
        return loc.rows

    def episode_video_segment(self, episode_index: int, original_key: str) -> VideoSegment:
        """The mp4 holding one camera's frames of the episode and where in it they are."""
        if self.is_v3:
            loc = self._v3_location(episode_index)
            entry = loc.videos.get(original_key)
            if entry is None:
                cameras = sorted(k for k, v in loc.videos.items() if v is not None)
                raise DatasetError(
                    f"{self.root / loc.meta_file}: episode {episode_index} has no videos/{original_key}/... entry "
                    f"(cameras with one: {', '.join(cameras) or 'none'})"
                )
            chunk, file, t0, t1 = entry
            path = self._fill("video_path", episode_index, chunk_index=chunk, file_index=file, video_key=original_key)
            return VideoSegment(path, t0, t1)
        return VideoSegment(self._fill("video_path", episode_index, video_key=original_key), 0.0, None)

    def episode_video_file(self, episode_index: int, original_key: str) -> Path:
        return self.episode_video_segment(episode_index, original_key).path

    def data_path(self, episode_index: int) -> Path:
        """Parquet file of the episode (v2 layout name; on v3 the shared file, see :meth:`read_episode_table`)."""
        return self.episode_data_file(episode_index)

    def video_path(self, episode_index: int, original_key: str) -> Path:
        """The episode's own mp4 (v2 layouts only).

        A v3 mp4 holds many episodes, so decoding it by frame index would silently return another episode's frames;
        this raises for v3 instead. Use :meth:`read_episode_frames` (or :meth:`episode_video_segment`).
        """
        if self.is_v3:
            raise DatasetError(
                f"{self.root}: a {self.version} mp4 holds many episodes; use read_episode_frames(episode, key, "
                "indices) or episode_video_segment(episode, key) instead of video_path"
            )
        return self.episode_video_file(episode_index, original_key)

    # --- modality.json resolution ---------------------------------------------------------------------------
    def group_slice(self, modality: str, key: str) -> GroupSlice:
        """Column and slice of a state/action group, per ``modality.json``."""
        groups = self.modality.get(modality, {})
        if key not in groups:
            raise DatasetError(
                f"{self.root / 'meta/modality.json'}: {modality}.{key} is not defined "
                f"(defined: {', '.join(groups) or 'none'}); add it or fix the modality config"
            )
        entry = groups[key]
        default = DEFAULT_STATE_COLUMN if modality == "state" else DEFAULT_ACTION_COLUMN
        return GroupSlice(entry.get("original_key", default), int(entry["start"]), int(entry["end"]))

    def video_original_key(self, key: str) -> str:
        entry = self.modality.get("video", {}).get(key)
        if entry is None:
            raise DatasetError(
                f"{self.root / 'meta/modality.json'}: video.{key} is not defined "
                f"(defined: {', '.join(self.modality.get('video', {})) or 'none'})"
            )
        return entry.get("original_key", f"observation.images.{key}")

    def language_column(self, key: str) -> str:
        """Parquet column holding task indices for a language key such as ``annotation.human.task_description``.

        ``task`` (upstream's key in the N1.6 base checkpoint's configs) is the frame's LeRobot ``task_index``."""
        if key == "task":
            return "task_index"
        if not key.startswith("annotation."):
            raise DatasetError(f"language key {key!r}: only `task` and annotation.<source>.<type> keys are supported")
        name = key[len("annotation.") :]
        annotations = self.modality.get("annotation", {})
        if name not in annotations:
            raise DatasetError(
                f"{self.root / 'meta/modality.json'}: annotation.{name} is not defined "
                f"(defined: {', '.join(annotations) or 'none'})"
            )
        return (annotations[name] or {}).get("original_key", key)

    # --- data -----------------------------------------------------------------------------------------------
    def read_episode_table(self, episode_index: int, columns: list[str] | None = None) -> pa.Table:
        """The episode's rows (only ``columns`` if given), in file order, whatever the layout.

        v3: the shared file is read once (the columns asked for plus ``episode_index``) and kept until a call needs
        another file or other columns, so iterating episodes in order reads each file once.
        """
        if self.is_v3:
            return self._read_v3_episode_table(episode_index, columns)
        path = self.episode_data_file(episode_index)
        try:
            # one file, no dataset discovery: read_table's dataset layer costs as much as reading a short episode,
            # and no reader threads (callers parallelise over episodes). An episode file is usually small: one
            # read into memory costs less than Arrow's file-system layer and its seeks
            source = pa.BufferReader(path.read_bytes()) if path.stat().st_size <= _READ_WHOLE_BYTES else path
            with pq.ParquetFile(source) as file:
                table = file.read(columns=columns, use_threads=False)
        except FileNotFoundError:
            raise DatasetError(f"{path}: parquet file of episode {episode_index} is missing") from None
        except (pa.ArrowException, KeyError, OSError) as exc:
            raise DatasetError(f"{path}: cannot read episode {episode_index}: {exc}") from None
        missing = sorted(set(columns or ()) - set(table.column_names))
        if missing:  # ParquetFile.read skips unknown names silently
            raise DatasetError(
                f"{path}: episode {episode_index} has no column {', '.join(missing)} "
                f"(has: {', '.join(table.column_names)})"
            )
        return table

    def _read_v3_episode_table(self, episode_index: int, columns: list[str] | None) -> pa.Table:
        loc = self._v3_location(episode_index)
        path = self.episode_data_file(episode_index)
        key = None if columns is None else tuple(columns)
        cache = self._file_cache
        if cache is None or cache[0] != path or cache[1] != key:
            cache = self._load_v3_file(path, key)
            self._file_cache = cache
        _, _, table, rows = cache
        where = rows.get("episodes")
        if where is not None:
            span = where.get(episode_index)
        else:  # no episode_index column: select by the global index range
            span = range_in(rows["index"], *loc.rows)
        if span is None:
            raise DatasetError(
                f"{path}: holds no rows of episode {episode_index}, which {self.root / loc.meta_file} places there"
            )
        out = table.slice(span[0], span[1] - span[0]) if isinstance(span, tuple) else table.take(pa.array(span))
        if columns is not None:
            out = out.select(list(columns))
        return out

    def _load_v3_file(
        self, path: Path, columns: tuple[str, ...] | None
    ) -> tuple[Path, tuple[str, ...] | None, pa.Table, dict[str, Any]]:
        try:
            names = pq.read_schema(path).names
        except FileNotFoundError:
            raise DatasetError(f"{path}: parquet data file is missing") from None
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(f"{path}: cannot read: {exc}") from None
        if "episode_index" in names:
            helper = "episode_index"
        elif "index" in names:
            helper = "index"
        else:
            raise DatasetError(f"{path}: has neither an episode_index nor an index column; cannot locate episodes")
        read = None if columns is None else list(dict.fromkeys([*columns, helper]))
        try:
            table = pq.read_table(path, columns=read)
        except (pa.ArrowInvalid, KeyError, OSError) as exc:
            raise DatasetError(f"{path}: cannot read: {exc}") from None
        column = table.column(helper)
        if column.null_count or not pa.types.is_integer(column.type):
            raise DatasetError(f"{path}: column {helper} must hold integers without nulls to locate episodes")
        values = column.to_numpy()
        rows: dict[str, Any] = {}
        if helper == "episode_index":
            rows["episodes"] = episode_spans(values)
        else:
            rows["index"] = values
        return path, columns, table, rows

    def read_episode_frames(
        self, episode_index: int, original_key: str, frame_indices: Any, *, tolerance_s: float | None = None
    ) -> np.ndarray:
        """Frames ``frame_indices`` (0-based within the episode, any order) of one camera as ``(K, H, W, 3)`` uint8.

        v2: decoded by index from the episode's mp4 (as GR00T does). v3: the frames shown at ``from_timestamp +
        k / fps`` in the shared mp4, each matched within ``tolerance_s`` (default a quarter frame period).
        """
        from groot_ft.data.video import read_frames

        idx = np.asarray(frame_indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"frame_indices must be a 1-D sequence of integers, got {idx!r:.80}")
        idx = idx.astype(np.int64)
        length = self.episode(episode_index).length
        if idx.size and (idx.min() < 0 or idx.max() >= length):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise DatasetError(f"episode {episode_index} has {length} frames; frame index {bad} is outside it")
        segment = self.episode_video_segment(episode_index, original_key)
        if not self.is_v3:
            return read_frames(segment.path, idx)
        tol = 0.25 / self.fps if tolerance_s is None else float(tolerance_s)
        return decode_frames_at(segment.path, segment.start_s + idx / self.fps, tol)

    def load_episode(self, episode_index: int, cfg: EmbodimentModalityConfig) -> EpisodeArrays:
        """State/action groups as float32 arrays and the language strings, for every frame of one episode."""
        state_slices = {k: self.group_slice("state", k) for k in cfg.state.modality_keys}
        action_slices = {k: self.group_slice("action", k) for k in cfg.action.modality_keys}
        lang_key = cfg.language.modality_keys[0]
        lang_col = self.language_column(lang_key)
        columns = sorted({s.column for s in (*state_slices.values(), *action_slices.values())} | {lang_col})
        table = self.read_episode_table(episode_index, columns)
        length = min(table.num_rows, self.episode(episode_index).length)
        path = self.episode_data_file(episode_index)
        matrices = {c: column_matrix(table, c, path)[:length] for c in columns if c != lang_col}
        tasks = self.tasks
        task_ids = column_matrix(table, lang_col, path, dtype=None)[:length, 0].tolist()
        try:
            language = [tasks[int(t)] for t in task_ids]
        except KeyError as exc:
            raise DatasetError(
                f"{path}: {lang_col} value {exc.args[0]} is not a task_index in {self.tasks_file.name}"
            ) from None
        return EpisodeArrays(
            episode_index=episode_index,
            length=length,
            state={k: matrices[s.column][:, s.start : s.end] for k, s in state_slices.items()},
            action={k: matrices[s.column][:, s.start : s.end] for k, s in action_slices.items()},
            language=language,
        )


def decode_frames_at(path: str | Path, times_s: Any, tolerance_s: float) -> np.ndarray:
    """Frames of ``path`` shown at ``times_s`` (seconds from the file start) as ``(K, H, W, 3)`` uint8 RGB.

    Seeks to the keyframe before the earliest time, decodes forward to the latest one and takes, per query, the
    frame whose presentation time is nearest (it must be within ``tolerance_s``). If the seek lands past a query
    (odd containers), decoding restarts from the beginning of the file. Raises
    :class:`~groot_ft.data.video.VideoError` naming the file otherwise.
    """
    from groot_ft.data.video import VideoError, first_video_stream, open_video

    path = Path(path)
    queries = np.asarray(times_s, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(queries)):
        raise ValueError("frame times must be finite")
    order = np.argsort(queries, kind="stable")
    sorted_q = queries[order].tolist()
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        if not sorted_q:
            return np.empty((0, int(stream.codec_context.height), int(stream.codec_context.width), 3), np.uint8)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        best = _scan(container, stream, sorted_q, tolerance_s, start, seek=sorted_q[0] > tolerance_s, path=path)
        if any(slot is None for slot in best):
            best = _scan(container, stream, sorted_q, tolerance_s, start, seek=False, path=path, restart=True)
    missing = [sorted_q[j] for j, slot in enumerate(best) if slot is None]
    if missing:
        raise VideoError(path, f"no frame within {tolerance_s:g} s of time {missing[0]:.6f} s")
    shapes = {b[1].shape for b in best}
    if len(shapes) > 1:
        raise VideoError(path, f"frame size changes inside the stream: {sorted(shapes)}")
    out = np.empty((len(sorted_q),) + best[0][1].shape, dtype=np.uint8)
    for j, (_, frame) in enumerate(best):
        out[order[j]] = frame
    return out


def _scan(container, stream, sorted_q, tolerance_s, start, *, seek, path, restart=False):
    import av

    from groot_ft.data.video import VideoError

    best: list[Any] = [None] * len(sorted_q)  # (|dt|, frame) per query
    horizon = sorted_q[-1] + tolerance_s
    try:
        if seek:
            target = (sorted_q[0] - tolerance_s + start) / float(stream.time_base)
            container.seek(max(0, int(np.floor(target))), stream=stream, backward=True, any_frame=False)
        elif restart:
            container.seek(0, stream=stream, backward=True, any_frame=False)
        fallback_fps = float(stream.average_rate or stream.guessed_rate or 1)
        for k, frame in enumerate(container.decode(stream)):
            t = float(frame.time) - start if frame.time is not None else k / fallback_fps
            lo = bisect.bisect_left(sorted_q, t - tolerance_s)
            hi = bisect.bisect_right(sorted_q, t + tolerance_s)
            if hi > lo:
                rgb = None
                for j in range(lo, hi):
                    dt = abs(sorted_q[j] - t)
                    if best[j] is None or dt < best[j][0]:
                        if rgb is None:
                            rgb = frame.to_ndarray(format="rgb24")
                        best[j] = (dt, rgb)
            if t > horizon:
                break
    except av.FFmpegError as exc:
        raise VideoError(path, f"decoding failed ({exc})") from exc
    return best


@dataclass
class EpisodeArrays:
    episode_index: int
    length: int
    state: dict[str, np.ndarray]
    action: dict[str, np.ndarray]
    language: list[str]


_NUMPY_TYPES = {
    pa.float16(): np.float16, pa.float32(): np.float32, pa.float64(): np.float64,
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
}  # fmt: skip


def _primitive(arr: pa.Array) -> np.ndarray | None:
    """A null-free numeric arrow array's values, zero-copy (read-only), or None for other arrays."""
    dtype = _NUMPY_TYPES.get(arr.type)
    if dtype is None or arr.null_count:
        return None
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)]


def _buffer_matrix(col: pa.ChunkedArray) -> np.ndarray | None:
    """The common layout (one chunk, no nulls, numeric values, equal row widths) read straight from the arrow
    buffers, or None for anything else."""
    if col.num_chunks != 1 or col.null_count:
        return None
    arr = col.chunk(0)
    kind = arr.type
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
        values = _primitive(arr.values.slice(arr.offset * width, len(arr) * width))
        return None if values is None else values.reshape(len(arr), width)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_list(kind) else np.int32)
        offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
        widths = np.diff(offsets)
        if not len(arr) or (widths != widths[0]).any():
            return None
        values = _primitive(arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
        return None if values is None else values.reshape(len(arr), int(widths[0]))
    values = _primitive(arr)
    return None if values is None else values.reshape(-1, 1)


def _arrow_matrix(col: pa.ChunkedArray, column: str, path: Path | str) -> np.ndarray:
    """Any layout through Arrow's own conversions, with an error naming what is wrong."""
    col = col.combine_chunks()
    if col.null_count:
        raise DatasetError(f"{path}: column {column} has {col.null_count} null rows")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise DatasetError(f"{path}: column {column} has rows of different lengths {sorted(set(lengths.tolist()))}")
        dim = int(lengths[0]) if len(lengths) else 0
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    return col.to_numpy(zero_copy_only=False).reshape(-1, 1)


def column_matrix(
    table: pa.Table, column: str, path: Path | str = "<table>", dtype: np.dtype | type | None = np.float32
) -> np.ndarray:
    """A list/fixed-size-list (or scalar) numeric column as a (rows, dim) matrix.

    ``dtype`` defaults to float32, as upstream casts state and action; ``None`` keeps the parquet dtype (statistics
    of differences are taken in the stored precision before any cast). Parquet columns as LeRobot writes them are
    read straight from the arrow buffers: Arrow's ``flatten``/``to_numpy`` cost more than the rest of reading a
    short episode and load compute kernels and pandas (some 50 MiB of resident memory) for nothing.
    """
    col = table.column(column)
    out = _buffer_matrix(col)
    if out is None:
        out = _arrow_matrix(col, column, path)
    if out.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: column {column} has dtype {out.dtype}; expected numbers")
    return out if dtype is None else out.astype(dtype, copy=False)
