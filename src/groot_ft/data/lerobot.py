"""One reader for GR00T-flavoured LeRobot datasets, used by every stage (validate, stats, shards, eval).

It resolves ``info.json`` path templates, ``modality.json`` group slices and annotation columns, and reads only the
parquet columns a caller asks for. Path templates are formatted and then checked to stay inside the dataset root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.modality import EmbodimentModalityConfig

SUPPORTED_VERSIONS = ("v2.0", "v2.1")
DEFAULT_STATE_COLUMN = "observation.state"
DEFAULT_ACTION_COLUMN = "action"


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and what to do."""


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


def resolve_inside(root: Path, relative: str, what: str) -> Path:
    """Join a templated path to the dataset root, refusing anything that escapes it."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise DatasetError(f"{root / 'meta/info.json'}: {what} {relative!r} escapes the dataset root; fix the template")
    return candidate


class LeRobotDataset:
    """Read-only view of a LeRobot v2.0/v2.1 dataset with GR00T's ``meta/modality.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset directory does not exist")
        self.info: dict[str, Any] = read_json(self.root / "meta" / "info.json")
        version = self.info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"{self.root / 'meta/info.json'}: codebase_version {version!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_VERSIONS)}"
            )
        self.version: str = version

    # --- metadata -------------------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.info.get("fps", 30))

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info.get("features", {})

    @property
    def chunks_size(self) -> int:
        value = self.info.get("chunks_size", 1000)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DatasetError(f"{self.root / 'meta/info.json'}: chunks_size must be a positive integer, got {value!r}")
        return value

    @cached_property
    def episodes(self) -> list[Episode]:
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
    def tasks(self) -> dict[int, str]:
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

    # --- paths ----------------------------------------------------------------------------------------------
    def episode_chunk(self, episode_index: int) -> int:
        return episode_index // self.chunks_size

    def data_path(self, episode_index: int) -> Path:
        template = self.info.get("data_path")
        if not template:
            raise DatasetError(f"{self.root / 'meta/info.json'}: data_path is missing")
        rel = format_template(
            self.root, template, "data_path", episode_chunk=self.episode_chunk(episode_index), episode_index=episode_index
        )
        return resolve_inside(self.root, rel, "data_path")

    def video_path(self, episode_index: int, original_key: str) -> Path:
        template = self.info.get("video_path")
        if not template:
            raise DatasetError(f"{self.root / 'meta/info.json'}: video_path is missing but videos are needed")
        rel = format_template(
            self.root,
            template,
            "video_path",
            episode_chunk=self.episode_chunk(episode_index),
            episode_index=episode_index,
            video_key=original_key,
        )
        return resolve_inside(self.root, rel, "video_path")

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
        """Parquet column holding task indices for a language key such as ``annotation.human.task_description``."""
        if not key.startswith("annotation."):
            raise DatasetError(f"language key {key!r}: only annotation.<source>.<type> keys are supported")
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
        path = self.data_path(episode_index)
        try:
            return pq.read_table(path, columns=columns)
        except FileNotFoundError:
            raise DatasetError(f"{path}: parquet file of episode {episode_index} is missing") from None
        except (pa.ArrowInvalid, KeyError) as exc:
            raise DatasetError(f"{path}: cannot read episode {episode_index}: {exc}") from None

    def load_episode(self, episode_index: int, cfg: EmbodimentModalityConfig) -> EpisodeArrays:
        """State/action groups as float32 arrays and the language strings, for every frame of one episode."""
        state_slices = {k: self.group_slice("state", k) for k in cfg.state.modality_keys}
        action_slices = {k: self.group_slice("action", k) for k in cfg.action.modality_keys}
        lang_key = cfg.language.modality_keys[0]
        lang_col = self.language_column(lang_key)
        columns = sorted({s.column for s in (*state_slices.values(), *action_slices.values())} | {lang_col})
        table = self.read_episode_table(episode_index, columns)
        length = min(table.num_rows, next(e.length for e in self.episodes if e.index == episode_index))
        matrices = {c: column_matrix(table, c, self.data_path(episode_index))[:length] for c in columns if c != lang_col}
        tasks = self.tasks
        task_ids = table.column(lang_col).to_numpy()[:length]
        try:
            language = [tasks[int(t)] for t in task_ids]
        except KeyError as exc:
            raise DatasetError(
                f"{self.data_path(episode_index)}: {lang_col} value {exc.args[0]} is not a task_index in tasks.jsonl"
            ) from None
        return EpisodeArrays(
            episode_index=episode_index,
            length=length,
            state={k: matrices[s.column][:, s.start : s.end] for k, s in state_slices.items()},
            action={k: matrices[s.column][:, s.start : s.end] for k, s in action_slices.items()},
            language=language,
        )


@dataclass
class EpisodeArrays:
    episode_index: int
    length: int
    state: dict[str, np.ndarray]
    action: dict[str, np.ndarray]
    language: list[str]


def column_matrix(
    table: pa.Table, column: str, path: Path | str = "<table>", dtype: np.dtype | type | None = np.float32
) -> np.ndarray:
    """A list/fixed-size-list (or scalar) numeric column as a (rows, dim) matrix.

    ``dtype`` defaults to float32, as upstream casts state and action; ``None`` keeps the parquet dtype (statistics
    of differences are taken in the stored precision before any cast).
    """
    col = table.column(column).combine_chunks()
    if col.null_count:
        raise DatasetError(f"{path}: column {column} has {col.null_count} null rows")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
        out = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise DatasetError(f"{path}: column {column} has rows of different lengths {sorted(set(lengths.tolist()))}")
        dim = int(lengths[0]) if len(lengths) else 0
        out = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    else:
        out = col.to_numpy(zero_copy_only=False).reshape(-1, 1)
    if out.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: column {column} has dtype {out.dtype}; expected numbers")
    return out if dtype is None else out.astype(dtype, copy=False)
