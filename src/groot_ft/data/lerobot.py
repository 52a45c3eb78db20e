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

Metadata file readers live in :mod:`groot_ft.data.meta_files`, time-based frame decoding in
:mod:`groot_ft.data.frame_times` and the episode arrays and column reader in :mod:`groot_ft.data.episode_arrays`;
``__all__`` re-exports their public names.
"""

from __future__ import annotations

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
    FeatureNames,
    V3Location,
    episode_spans,
    feature_names,
    info_value,
    range_in,
    resolve_inside,
    v3_task_column,
    v3_video_columns,
)
from groot_ft.data import layout
from groot_ft.data.episode_arrays import EpisodeArrays, column_matrix
from groot_ft.data.frame_times import decode_frames_at
from groot_ft.data.meta_files import detect_version, format_template, read_json, read_jsonl, read_v3_tasks
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
    "FeatureNames",
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


#: parquet files up to this size are read into memory in one go rather than through Arrow's file layer
_READ_WHOLE_BYTES = 8 << 20


class LeRobotDataset:
    """Read-only view of a LeRobot v2.0/v2.1/v3.0 dataset with GR00T's ``meta/modality.json``.

    ``modality_json``: the GR00T modality mapping kept outside the dataset (config key ``modality_json_path``), for
    a dataset that has none and must not be written into; it replaces the dataset's own ``meta/modality.json``.
    """

    def __init__(self, root: str | Path, modality_json: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset directory does not exist")
        self.modality_json_external = modality_json is not None
        own = self.root / "meta" / "modality.json"
        self.modality_json: Path = Path(modality_json) if modality_json is not None else own
        if self.modality_json_external and not self.modality_json.is_file():
            what = "does not exist" if not self.modality_json.exists() else "is not a file"
            raise DatasetError(f"{self.modality_json}: the modality mapping given for {self.root} (modality_json_path "
                               f"/ --modality-json) {what}; point it at a GR00T meta/modality.json file "
                               f"(`groot-ft modality init` proposes one)")
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

    def feature_names(self, key: str) -> FeatureNames:
        """Per-element names of feature ``key``, read from any form LeRobot writers store them in (flat or nested
        list, ``{"motors": [...]}``, ``{"name": index}``, null); the validator and ``modality init`` read them the
        same way (:func:`groot_ft.data.layout.feature_names`). Names that cannot label the elements come back with
        ``names`` None and a ``problem``; they never stop reading, as training does not use them."""
        if key not in self.features:
            raise DatasetError(
                f"{self.root / 'meta/info.json'}: no feature {key!r} (features: {', '.join(self.features) or 'none'})"
            )
        return feature_names(self.features[key])

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

    @property
    def modality_source(self) -> str:
        """Which modality mapping this view reads, for logs: every stage says it, so an external mapping given by
        mistake (or forgotten) is visible."""
        if self.modality_json_external:
            return (f"modality mapping: {self.modality_json} (modality_json_path; "
                    f"{self.root}/meta/modality.json is not read)")
        return f"modality mapping: {self.modality_json} (the dataset's own)"

    @cached_property
    def modality(self) -> dict[str, Any]:
        if not self.modality_json_external and not self.modality_json.is_file():
            raise DatasetError(f"{self.modality_json}: file is missing; a plain LeRobot dataset has no GR00T modality "
                               f"mapping: propose one with `groot-ft modality init {self.root} --out-modality-json "
                               f"FILE` and give it with --modality-json FILE (config: modality_json_path), which "
                               f"leaves the dataset untouched, or copy it into meta/")
        mapping = read_json(self.modality_json)
        if not isinstance(mapping, dict):
            raise DatasetError(f"{self.modality_json}: a modality mapping must hold a JSON object, got "
                               f"{type(mapping).__name__}")
        return mapping

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
                f"{self.modality_json}: {modality}.{key} is not defined "
                f"(defined: {', '.join(groups) or 'none'}); add it or fix the modality config"
            )
        entry = groups[key]
        default = DEFAULT_STATE_COLUMN if modality == "state" else DEFAULT_ACTION_COLUMN
        return GroupSlice(entry.get("original_key", default), int(entry["start"]), int(entry["end"]))

    def video_original_key(self, key: str) -> str:
        entry = self.modality.get("video", {}).get(key)
        if entry is None:
            raise DatasetError(
                f"{self.modality_json}: video.{key} is not defined "
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
                f"{self.modality_json}: annotation.{name} is not defined "
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
