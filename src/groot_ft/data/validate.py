"""Validate a GR00T-flavoured LeRobot dataset up front and report every problem at once.

Upstream GR00T discovers a broken dataset mid-training, one bare ``KeyError`` at a time. :func:`validate_dataset`
instead checks everything the loader, the stats step and training will rely on (the invariant list of
``dataset-formats.md`` §2: A metadata/schema, B parquet per episode, C video, D stats files, E ``modality.json``, plus
the user's modality config) and returns a :class:`ValidationReport` with one :class:`Finding` per problem.

Design rules:

* it never modifies the dataset and never raises on bad input: each check turns problems into findings, and an
  unexpected exception inside a check becomes an ``INTERNAL`` error naming the file it was looking at;
* every finding carries a stable ``code`` (see :data:`CODES`, which also fixes each code's severity and default hint),
  the file relative to the dataset root, the episode and the field (column, JSON key or ``"line N"``);
* the per-episode pass streams one episode at a time and reads only the declared columns, so memory does not grow
  with the number of episodes (only counters and findings are kept);
* on-disk layouts plug in through :class:`_Layout`: :class:`_V2Layout` (v2.0/v2.1: one parquet and one mp4 per
  episode, JSONL metadata) and :class:`_V3Layout` (v3.0: many episodes per parquet/mp4 file, located by the
  ``meta/episodes/*.parquet`` rows; ``meta/tasks.parquet``). Each provides ``check_layout``/``load_episodes``/
  ``load_tasks``/``episode_sources``/``open_table``/``check_episode_videos``/``finish``/``check_stats``; the column,
  timestamp, video-file and modality checks are shared. v3 adds the row-range and video-time-window invariants
  (``dataset-formats.md`` §2 invariants 8 and 15): ``V3_INDEX_GAP``, ``V3_INDEX_LENGTH_MISMATCH``, ``V3_EPISODE_ROWS``,
  ``V3_VIDEO_SPAN_MISMATCH``, ``V3_TIMESTAMP_CHAIN``; and a video file is checked once, against the sum of the
  lengths of the episodes it holds.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.layout import (
    DEFAULT_ACTION_COLUMN,
    DEFAULT_STATE_COLUMN,
    SUPPORTED_VERSIONS,
    V3_EPISODE_COLUMNS,
    V3_EPISODES_DIR,
    V3_TASKS_FILE,
    DatasetError,
    V3Location,
    episode_spans,
    info_defaults,
    info_value,
    range_in,
    required_info,
    resolve_inside,
    v3_task_column,
    v3_video_columns,
)
from groot_ft.io import atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig

__all__ = ["CODES", "ERROR", "WARNING", "Finding", "ValidationReport", "validate_dataset"]

ERROR = "error"
WARNING = "warning"

#: code -> (severity, default hint). Codes are stable identifiers; tests, CI and users may match on them.
CODES: dict[str, tuple[str, str]] = {
    # --- dataset / meta files -------------------------------------------------------------------------------
    "DATASET_NOT_FOUND": (ERROR, "Pass the dataset root: the folder that holds meta/, data/ and videos/."),
    "META_MISSING": (ERROR, "Restore the file from the dataset's source or re-export the dataset."),
    "JSON_INVALID": (ERROR, "Fix the JSON syntax at the reported line (a JSON validator shows the exact spot)."),
    "JSONL_INVALID": (ERROR, "Every line of a .jsonl file must be one JSON object; fix or remove the reported line."),
    "INTERNAL": (ERROR, "This is a validator bug or an unreadable file; report it with the file named here."),
    # --- A. metadata / schema -------------------------------------------------------------------------------
    "UNSUPPORTED_VERSION": (ERROR, "Convert the dataset to LeRobot v3.0, v2.1 or v2.0 with lerobot's converters."),
    "VERSION_LAYOUT_MISMATCH": (ERROR, "Make codebase_version in meta/info.json match the files on disk."),
    "INFO_KEY_MISSING": (ERROR, "Add the key to meta/info.json (see LeRobot's info.json format)."),
    "INFO_KEY_DEFAULTED": (WARNING, "LeRobot's default is used, as every reader does; add the key to be explicit."),
    "INFO_INVALID_VALUE": (ERROR, "Fix the value in meta/info.json."),
    "FPS_INVALID": (ERROR, "Set fps in meta/info.json to the positive integer frame rate of the recordings."),
    "FPS_NOT_INTEGER": (WARNING, "Write fps as an integer (e.g. 20, not 20.0); it is read as a number either way."),
    "FEATURE_INVALID": (ERROR, "Every feature needs a dtype and a shape (list of positive integers)."),
    "FEATURE_NAME_INVALID": (ERROR, "Rename the feature without '/' (LeRobot v3 flattens stats as stats/<feature>)."),
    "FEATURE_NAMES_MISMATCH": (ERROR, "Give one name per element (len(names) == shape[0]) or set names to null."),
    "FEATURE_NAMES_UNSTRUCTURED": (WARNING, "Use a flat list of per-element names (LeRobot v2 style)."),
    "VIDEO_INFO_LEGACY_KEY": (WARNING, 'Accepted; newer tools write the video metadata under "info".'),
    "VIDEO_INFO_MISSING": (WARNING, 'Add the video metadata ("info": {"video.fps", "video.codec", ...}).'),
    "TOTAL_EPISODES_MISMATCH": (ERROR, "Set total_episodes in meta/info.json to the number of episodes."),
    "TOTAL_FRAMES_MISMATCH": (ERROR, "Set total_frames in meta/info.json to the sum of the episode lengths."),
    "TOTAL_TASKS_MISMATCH": (ERROR, "Set total_tasks in meta/info.json to the number of tasks in the tasks file."),
    "TOTAL_VIDEOS_MISMATCH": (WARNING, "total_videos should be episodes x video features; it is informational."),
    "TOTAL_CHUNKS_MISMATCH": (WARNING, "total_chunks should be ceil(total_episodes / chunks_size); informational."),
    "SPLIT_INVALID": (WARNING, 'splits values should be "start:end" episode ranges; GR00T ignores them.'),
    "SPLIT_OUT_OF_RANGE": (WARNING, "Split ranges should lie within [0, total_episodes]; GR00T ignores splits."),
    "EMPTY_DATASET": (ERROR, "The dataset has no episodes; record or convert at least one episode."),
    "EPISODE_ENTRY_INVALID": (ERROR, "Each episode entry needs integer episode_index and length >= 0."),
    "EPISODE_TASKS_MISSING": (WARNING, "Add the episode's task strings (tasks) to its episodes metadata entry."),
    "EPISODE_INDICES_INVALID": (ERROR, "Episode indices must be exactly 0..N-1, unique and sorted; renumber them."),
    "ZERO_LENGTH_EPISODE": (ERROR, "Drop the empty episode (and renumber) or re-export it with its frames."),
    "TASK_ENTRY_INVALID": (ERROR, "Each task entry needs an integer task_index and a string task."),
    "TASK_INDICES_INVALID": (ERROR, "Task indices must be exactly 0..T-1 and unique; renumber the tasks."),
    "DUPLICATE_TASK": (ERROR, "Keep one line per task string and point every index column at it."),
    "EPISODE_TASK_UNKNOWN": (WARNING, "List only task strings that appear in the tasks file."),
    "PATH_TEMPLATE_INVALID": (ERROR, "Use LeRobot's placeholders ({episode_chunk}, {episode_index}, {video_key})."),
    "PATH_ESCAPES_ROOT": (ERROR, "Path templates must stay inside the dataset root; remove '..' or absolute parts."),
    # --- A'. LeRobot v3.0 metadata ------------------------------------------------------------------------------
    "V3_INFO_KEY_MISSING": (
        WARNING,
        "LeRobot v3 writers record data_files_size_in_mb and video_files_size_in_mb; readers do not need them.",
    ),
    "V3_EPISODES_SCHEMA": (
        ERROR,
        "meta/episodes/*.parquet needs integer episode_index, length, data/chunk_index, data/file_index, "
        "dataset_from_index, dataset_to_index and, per camera, videos/<key>/chunk_index, file_index, from_timestamp, "
        "to_timestamp; re-export the metadata.",
    ),
    "V3_INDEX_GAP": (
        ERROR,
        "dataset_from_index must start at 0 and each episode must start at the previous one's dataset_to_index; "
        "fix meta/episodes or re-export the dataset.",
    ),
    "V3_INDEX_LENGTH_MISMATCH": (ERROR, "dataset_to_index - dataset_from_index must equal the episode's length."),
    "V3_EPISODE_ROWS": (
        ERROR,
        "The data file must hold exactly length rows of the episode (episode_index == e, index == "
        "dataset_from_index..dataset_to_index-1), contiguous; fix meta/episodes or re-export the file.",
    ),
    "V3_VIDEO_SPAN_MISMATCH": (
        ERROR,
        "to_timestamp - from_timestamp must equal length / fps (within one frame); fix meta/episodes or re-encode.",
    ),
    "V3_TIMESTAMP_CHAIN": (
        ERROR,
        "Episodes sharing a video file must chain: the first starts at 0, each from_timestamp equals the previous "
        "to_timestamp and the last to_timestamp is the file's duration; fix meta/episodes or re-encode.",
    ),
    "V3_FILE_UNREFERENCED": (WARNING, "No episode points at this file; delete it or fix meta/episodes."),
    # --- B. parquet per episode -----------------------------------------------------------------------------
    "PARQUET_MISSING": (ERROR, "Restore the parquet file or drop its episodes from the episodes metadata."),
    "PARQUET_UNREADABLE": (ERROR, "Re-export the file; it is truncated or not a parquet file (missing footer?)."),
    "EPISODE_LENGTH_MISMATCH": (ERROR, "Make length in meta/episodes.jsonl equal the parquet row count."),
    "COLUMN_MISSING": (ERROR, "Add the column to the parquet file or remove the feature from meta/info.json."),
    "COLUMN_UNDECLARED": (WARNING, "Declare the column in meta/info.json features (it is ignored otherwise)."),
    "DEFAULT_COLUMN_MISSING": (WARNING, "LeRobot writes this column; GR00T does not need it."),
    "DTYPE_MISMATCH": (ERROR, "Store the column with the dtype declared in meta/info.json (or fix the declaration)."),
    "SHAPE_MISMATCH": (ERROR, "Every row must hold exactly shape[0] values, as declared in meta/info.json."),
    "NULL_VALUES": (ERROR, "Fill or drop the rows with missing values."),
    "NON_FINITE_VALUES": (ERROR, "Remove or repair frames with NaN/Inf; they poison statistics and training."),
    "VALUE_MAGNITUDE_LARGE": (WARNING, "Values above 1e6 usually mean wrong units or uninitialised data."),
    "EPISODE_INDEX_COLUMN_MISMATCH": (ERROR, "The episode_index column must equal the episode's index in every row."),
    "FRAME_INDEX_MISMATCH": (ERROR, "frame_index must be 0..L-1 in order within each episode."),
    "GLOBAL_INDEX_MISMATCH": (ERROR, "index must be the global frame counter, contiguous across episodes."),
    "TIMESTAMPS_NOT_INCREASING": (ERROR, "Timestamps must strictly increase within an episode; re-export it."),
    "TIMESTAMP_STEP_MISMATCH": (ERROR, "Consecutive timestamps must be 1/fps apart; fix fps or resample the episode."),
    "TIMESTAMP_DRIFT": (WARNING, "Timestamps drift from ts[0] + k/fps; the recording clock is not at fps."),
    "TIMESTAMP_START_NONZERO": (WARNING, "LeRobot timestamps start at 0; GR00T indexes frames and does not mind."),
    "TASK_INDEX_OUT_OF_RANGE": (ERROR, "Every task_index value must be a task_index of the tasks file."),
    "ANNOTATION_INDEX_OUT_OF_RANGE": (ERROR, "Annotation values index the tasks file; add the task or fix values."),
    "EPISODE_TASKS_MISMATCH": (WARNING, "List the tasks the episode's rows use in its episodes metadata entry."),
    "NEXT_DONE_INCONSISTENT": (WARNING, "next.done is expected to be true exactly on each episode's last frame."),
    # --- C. video -------------------------------------------------------------------------------------------
    "VIDEO_MISSING": (ERROR, "Restore the video file, or stop using this camera in modality.json / the config."),
    "UNUSED_VIDEO_MISSING": (WARNING, "Nothing uses this camera; remove the feature from meta/info.json to silence."),
    "VIDEO_UNREADABLE": (ERROR, "Re-encode the file (e.g. with PyAV/ffmpeg); it is truncated or not a video."),
    "VIDEO_STREAM_COUNT": (ERROR, "Each episode video must hold exactly one video stream."),
    "VIDEO_CODEC_UNSUPPORTED": (ERROR, "Re-encode with h264, hevc or av1."),
    "VIDEO_CODEC_MISMATCH": (WARNING, "Update video.codec in meta/info.json to the codec of the files."),
    "VIDEO_RESOLUTION_MISMATCH": (ERROR, "Fix the feature shape in meta/info.json or re-encode at that size."),
    "VIDEO_PIX_FMT_MISMATCH": (WARNING, "Update video.pix_fmt in meta/info.json to the files' pixel format."),
    "VIDEO_FPS_MISMATCH": (ERROR, "Videos must run at the dataset fps; re-encode or fix the declared fps."),
    "VIDEO_FRAME_COUNT_MISMATCH": (ERROR, "The video needs one frame per parquet row; re-encode it."),
    "VIDEO_EXTRA_FRAMES": (WARNING, "Frames past the last parquet row are never used by GR00T."),
    "VIDEO_DURATION_MISMATCH": (ERROR, "The video duration must match length / fps; re-encode the episode."),
    "VIDEO_DECODE_ERROR": (ERROR, "The file fails to decode; re-encode it from the source frames."),
    "VIDEO_SPARSE_KEYFRAMES": (WARNING, "Few keyframes make random access slow; re-encode with a small GOP (g=2)."),
    # --- D. stats files -------------------------------------------------------------------------------------
    "STATS_INVALID": (ERROR, "Fix or delete the stats file; the stats step regenerates meta/stats.json."),
    "STATS_UNKNOWN_FEATURE": (ERROR, "Stats keys must be features of meta/info.json; delete the stale entry."),
    "STATS_SHAPE_MISMATCH": (ERROR, "Stats arrays must be shaped like the feature; regenerate the stats."),
    "STATS_ORDER_VIOLATION": (ERROR, "Stats must satisfy min <= q01 <= ... <= q99 <= max and std >= 0; regenerate."),
    "STATS_COUNT_MISMATCH": (ERROR, "count must equal the number of frames; regenerate the stats."),
    "STATS_INCOMPLETE": (WARNING, "GR00T needs mean/std/min/max/q01/q99 per float feature; the stats step adds them."),
    "RELATIVE_STATS_MISMATCH": (
        WARNING,
        "relative_stats.json does not match the config; the stats step recomputes it.",
    ),
    # --- E. modality.json / config --------------------------------------------------------------------------
    "MODALITY_INVALID": (ERROR, "meta/modality.json maps state/action/video/annotation keys (see GR00T's docs)."),
    "MODALITY_UNKNOWN_KEY": (WARNING, "GR00T reads only state, action, video and annotation from modality.json."),
    "MODALITY_SLICE_INVALID": (ERROR, "Each group needs integers 0 <= start < end."),
    "MODALITY_SLICE_OUT_OF_BOUNDS": (ERROR, "end must not exceed the column's shape[0] in meta/info.json."),
    "MODALITY_SLICE_OVERLAP": (ERROR, "Groups of one column must not overlap; fix start/end."),
    "MODALITY_SLICE_GAP": (WARNING, "Groups do not tile [0, dim) exactly; unused dimensions are ignored."),
    "MODALITY_UNKNOWN_COLUMN": (ERROR, "original_key must name a non-video feature of meta/info.json."),
    "MODALITY_ROTATION_TYPE_INVALID": (ERROR, "Use one of GR00T's rotation types (axis_angle, quaternion, ...)."),
    "MODALITY_RANGE_INVALID": (ERROR, "range must be [lo, hi] with lo < hi."),
    "MODALITY_VIDEO_NOT_A_FEATURE": (ERROR, 'video original_key must be a dtype "video" feature of meta/info.json.'),
    "MODALITY_ANNOTATION_COLUMN_MISSING": (ERROR, "The annotation column must be a feature in meta/info.json."),
    "MODALITY_ANNOTATION_NOT_INT": (ERROR, "Annotation columns hold integer task indices (dtype int64)."),
    "CONFIG_KEY_MISSING": (ERROR, "Add the key to meta/modality.json or remove it from the modality config."),
    "CONFIG_RELATIVE_DIM_MISMATCH": (ERROR, "A RELATIVE action group needs a state group of the same dimension."),
    "EPISODE_SHORTER_THAN_HORIZON": (WARNING, "Episodes shorter than the action horizon yield no training samples."),
}

ROTATION_TYPES = frozenset(
    {"axis_angle", "quaternion", "rotation_6d", "matrix"}
    | {f"euler_angles_{o}" for o in ("rpy", "ryp", "pry", "pyr", "yrp", "ypr")}
)
SUPPORTED_CODECS = frozenset({"h264", "hevc", "av1", "vp9"})
_CODEC_ALIASES = {
    "libdav1d": "av1",
    "libaom-av1": "av1",
    "libsvtav1": "av1",
    "libx264": "h264",
    "h265": "hevc",
    "libx265": "hevc",
    "libvpx-vp9": "vp9",
}
_LEROBOT_DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_MODALITY_SECTIONS = ("state", "action", "video", "annotation")
_STAT_ORDER = ("min", "q01", "q10", "q50", "q90", "q99", "max")
_GROOT_STATS = ("mean", "std", "min", "max", "q01", "q99")
_LARGE_VALUE = 1e6
_SPARSE_GOP = 30  # mean frames per keyframe above which random access gets slow (LeRobot writes g=2)
_GROUP_AFTER = 5  # summary_text: show this many findings of one code, then summarise the rest


# ===================================================================================================== results


@dataclass(frozen=True)
class Finding:
    """One problem found in a dataset."""

    code: str
    severity: str  # "error" | "warning"
    message: str
    file: str | None = None  # relative to the dataset root
    episode: int | None = None
    field: str | None = None  # column, JSON field or "line N"
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "episode": self.episode,
            "field": self.field,
            "hint": self.hint,
        }

    def line(self) -> str:
        parts = [self.severity.upper(), self.code]
        if self.file:
            parts.append(self.file)
        if self.episode is not None:
            parts.append(f"[episode {self.episode}]")
        head = " ".join(parts)
        where = f" {self.field}" if self.field else ""
        hint = f" -> {self.hint}" if self.hint else ""
        return f"{head}{where}: {self.message}{hint}"


@dataclass
class ValidationReport:
    """Everything :func:`validate_dataset` found. ``ok`` means no errors (warnings allowed)."""

    dataset: str
    codebase_version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    episodes: int | None = None
    frames: int | None = None
    deep: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def codes(self, severity: str | None = None) -> set[str]:
        return {f.code for f in self.findings if severity is None or f.severity == severity}

    def by_code(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.code] = counts.get(f.code, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        errors, warnings = self.errors, self.warnings
        return {
            "dataset": self.dataset,
            "codebase_version": self.codebase_version,
            "ok": self.ok,
            "errors": [f.to_dict() for f in errors],
            "warnings": [f.to_dict() for f in warnings],
            "summary": {
                "errors": len(errors),
                "warnings": len(warnings),
                "episodes": self.episodes,
                "frames": self.frames,
                "deep": self.deep,
                "by_code": self.by_code(),
            },
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON atomically (temporary sibling file, then :func:`os.replace`)."""
        path = Path(path)
        atomic_write_json(path, self.to_dict())
        return path

    def summary_text(self) -> str:
        """Readable multi-line summary: counts, then every finding (long runs of one code are summarised)."""
        errors, warnings = self.errors, self.warnings
        status = "OK" if self.ok else "FAILED"
        size = []
        if self.episodes is not None:
            size.append(f"{self.episodes} episodes")
        if self.frames is not None:
            size.append(f"{self.frames} frames")
        lines = [
            f"{status}: {self.dataset} (codebase_version {self.codebase_version or 'unknown'}"
            + (", deep video check" if self.deep else "")
            + ")",
            f"  {len(errors)} error(s), {len(warnings)} warning(s)" + (f"; {', '.join(size)}" if size else ""),
        ]
        for findings in (errors, warnings):
            groups: dict[str, list[Finding]] = {}
            for f in findings:
                groups.setdefault(f.code, []).append(f)
            for code, items in groups.items():
                shown = items if len(items) <= _GROUP_AFTER + 1 else items[:_GROUP_AFTER]
                lines.extend(f.line() for f in shown)
                rest = items[len(shown) :]
                if rest:
                    eps = sorted({f.episode for f in rest if f.episode is not None})
                    where = f" (episodes {_ranges(eps)})" if eps else ""
                    lines.append(f"... and {len(rest)} more {items[0].severity.upper()} {code}{where}")
        return "\n".join(lines)


def _ranges(values: list[int], limit: int = 12) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (at most ``limit`` ranges)."""
    out: list[str] = []
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    if len(out) > limit:
        out = out[:limit] + [f"... ({len(out) - limit} more ranges)"]
    return ", ".join(out)


# ===================================================================================================== context


class _Aggregate:
    """A dataset-wide warning that many episodes may trigger: reported once, with a count and the first episode."""

    def __init__(self, code: str, field: str | None, message: str):
        self.code, self.field, self.message = code, field, message
        self.count = 0
        self.first_episode: int | None = None
        self.first_file: str | None = None
        self.first_detail = ""

    def hit(self, episode: int | None, file: str | None = None, detail: str = "") -> None:
        self.count += 1
        if self.count == 1:
            self.first_episode, self.first_file, self.first_detail = episode, file, detail


class _Ctx:
    def __init__(self, root: Path, cfg: EmbodimentModalityConfig | None, deep: bool, tol: float):
        self.root = root
        self.root_resolved = root.resolve()
        self.cfg = cfg
        self.deep = deep
        self.tol = float(tol)
        self.findings: list[Finding] = []
        self.aggregates: dict[tuple[str, str | None, str], _Aggregate] = {}
        self.version: str | None = None
        self.info: dict[str, Any] = {}
        self.fps: float | None = None
        self.features: dict[str, dict[str, Any]] = {}  # only well-formed features
        # info.json's features as written (None when unusable): names that exist but failed their own checks must
        # not be reported again as "unknown" by the modality/stats cross-checks
        self.declared: dict[str, Any] | None = None
        self.total_episodes_listed: int | None = None
        self.frames_seen = 0

    def add(
        self,
        code: str,
        message: str,
        *,
        file: str | None = None,
        episode: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        severity, default_hint = CODES[code]
        hint = default_hint if hint is None else hint
        self.findings.append(Finding(code, severity, message, file, episode, field, hint))

    def aggregate(self, code: str, field: str | None, message: str) -> _Aggregate:
        key = (code, field, message)
        if key not in self.aggregates:
            self.aggregates[key] = _Aggregate(code, field, message)
        return self.aggregates[key]

    def flush_aggregates(self, total_episodes: int) -> None:
        for agg in self.aggregates.values():
            if not agg.count:
                continue
            if agg.first_episode is None:
                scope = ""
            elif agg.count == 1:
                scope = f" (episode {agg.first_episode}"
            else:
                scope = f" ({agg.count} of {total_episodes} episodes, first: episode {agg.first_episode}"
            if scope:
                scope += f": {agg.first_detail})" if agg.first_detail else ")"
            self.add(agg.code, agg.message + scope, file=agg.first_file, episode=agg.first_episode, field=agg.field)
        self.aggregates.clear()

    def setting(self, key: str) -> Any:
        """info.json's value for ``key``, or the format's default when absent (data.layout.info_defaults)."""
        return info_value(self.info, key, self.version)

    def rel(self, path: Path | str) -> str:
        path = Path(path)
        for base in (self.root_resolved, self.root):
            with contextlib.suppress(ValueError):
                return path.relative_to(base).as_posix()
        return str(path)

    @contextlib.contextmanager
    def guard(self, file: str | None, episode: int | None = None) -> Iterator[None]:
        """Turn an unexpected exception inside one check into an INTERNAL finding and carry on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the validator must never raise on bad input
            self.add(
                "INTERNAL",
                f"unexpected {type(exc).__name__} while checking {file or 'the dataset'}: {exc}",
                file=file,
                episode=episode,
            )


_MISSING = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_json(ctx: _Ctx, rel: str, *, required: bool) -> Any:
    """Parsed JSON of ``root/rel``; ``_MISSING`` (after reporting) when absent or malformed."""
    path = ctx.root / rel
    if not path.is_file():
        if required:
            what = "is missing" if not path.exists() else "is not a regular file"
            ctx.add("META_MISSING", f"{rel} {what}", file=rel)
        return _MISSING
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.add("JSON_INVALID", f"cannot read {rel}: {exc}", file=rel)
        return _MISSING
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.add(
            "JSON_INVALID",
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=rel,
            field=f"line {exc.lineno}",
        )
        return _MISSING


class _Jsonl:
    """Iterate (line number, object) over the well-formed lines of a JSONL file; malformed lines are reported.

    ``bad`` counts the lines that could not be used, so callers can tell when the file's content is incomplete.
    """

    def __init__(self, ctx: _Ctx, rel: str):
        self.ctx, self.rel = ctx, rel
        self.bad = 0
        self.lines = 0

    def report(self, code: str, lineno: int, message: str) -> None:
        self.bad += 1
        self.ctx.add(code, message, file=self.rel, field=f"line {lineno}")

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        ctx, rel = self.ctx, self.rel
        try:
            fh = (ctx.root / rel).open("r", encoding="utf-8")
        except OSError as exc:
            self.bad += 1
            ctx.add("JSONL_INVALID", f"cannot read {rel}: {exc}", file=rel)
            return
        with fh:
            lineno = 0
            try:
                for lineno, line in enumerate(fh, start=1):  # noqa: B007 - lineno used after a decode error
                    self.lines = lineno
                    if not line.strip():
                        self.report("JSONL_INVALID", lineno, f"line {lineno} is blank; JSONL needs one object per line")
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        self.report(
                            "JSONL_INVALID", lineno, f"invalid JSON ({exc.msg} at column {exc.colno})"
                        )
                        continue
                    if not isinstance(obj, dict):
                        self.report(
                            "JSONL_INVALID", lineno, f"expected a JSON object, got {type(obj).__name__}"
                        )
                        continue
                    yield lineno, obj
            except UnicodeDecodeError as exc:
                self.report("JSONL_INVALID", lineno + 1, f"not UTF-8 text ({exc.reason})")


def _iter_jsonl(ctx: _Ctx, rel: str, *, required: bool) -> _Jsonl | None:
    """A :class:`_Jsonl` over ``root/rel``, or None (reported as META_MISSING when required) if there is no file."""
    if not (ctx.root / rel).is_file():
        if required:
            ctx.add("META_MISSING", f"{rel} is missing", file=rel)
        return None
    return _Jsonl(ctx, rel)


# ===================================================================================================== entry


def validate_dataset(
    root: str | os.PathLike[str],
    modality_config: EmbodimentModalityConfig | None = None,
    *,
    deep: bool = False,
    timestamp_tolerance_s: float = 1e-4,
) -> ValidationReport:
    """Check a LeRobot v2.0/v2.1/v3.0 dataset (GR00T flavour) and return every problem found.

    ``modality_config`` (the embodiment's config) adds checks that every key it uses exists in ``modality.json`` and
    decides which cameras are "used". ``deep=True`` decodes every video frame instead of trusting container metadata.
    ``timestamp_tolerance_s`` bounds ``|diff(timestamp) - 1/fps|`` (LeRobot's ``tolerance_s``).
    Never modifies the dataset and never raises on bad input.
    """
    root_path = Path(root)
    report = ValidationReport(dataset=str(root_path), deep=deep)
    try:
        ctx = _Ctx(root_path, modality_config, deep, timestamp_tolerance_s)
    except Exception as exc:  # noqa: BLE001 - e.g. an unresolvable path
        report.findings.append(
            Finding("INTERNAL", ERROR, f"cannot open {root_path}: {exc}", None, None, None, CODES["INTERNAL"][1])
        )
        return report
    try:
        _validate(ctx, report)
    except Exception as exc:  # noqa: BLE001 - last resort; individual checks are guarded already
        ctx.add("INTERNAL", f"unexpected {type(exc).__name__}: {exc}")
    report.codebase_version = ctx.version
    report.findings = ctx.findings
    return report


def _validate(ctx: _Ctx, report: ValidationReport) -> None:
    if not ctx.root.is_dir():
        what = "does not exist" if not ctx.root.exists() else "is not a directory"
        ctx.add("DATASET_NOT_FOUND", f"dataset root {ctx.root} {what}")
        return
    info = _load_json(ctx, "meta/info.json", required=True)
    if info is not _MISSING and not isinstance(info, dict):
        ctx.add(
            "JSON_INVALID", f"meta/info.json must hold a JSON object, got {type(info).__name__}", file="meta/info.json"
        )
        info = _MISSING
    if info is _MISSING:
        _syntax_only(ctx)  # still report what else is broken
        return
    ctx.info = info
    version = info.get("codebase_version")
    ctx.version = version if isinstance(version, str) else None
    layout_cls = _LAYOUTS.get(version) if isinstance(version, str) else None
    if layout_cls is None:
        shown = "missing" if version is None else repr(version)
        ctx.add(
            "UNSUPPORTED_VERSION",
            f"codebase_version is {shown}; supported: {', '.join(SUPPORTED_VERSIONS)}",
            file="meta/info.json",
            field="codebase_version",
        )
        return
    layout = layout_cls(ctx)
    _run(ctx, layout, report)


def _syntax_only(ctx: _Ctx) -> None:
    for rel in ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"):
        rows = _iter_jsonl(ctx, rel, required=False)
        if rows is not None:
            for _ in rows:
                pass
    for rel in ("meta/modality.json", "meta/stats.json", "meta/relative_stats.json"):
        _load_json(ctx, rel, required=False)


def _run(ctx: _Ctx, layout: _Layout, report: ValidationReport) -> None:
    with ctx.guard("meta/info.json"):
        _check_info(ctx, layout)
    proceed = True
    with ctx.guard("meta/info.json"):
        proceed = layout.check_layout() is not False
    if not proceed:  # the files are another version's layout: everything else would only repeat that
        ctx.flush_aggregates(0)
        return
    episodes: list[_EpisodeMeta] = []
    tasks: dict[int, str] | None = None
    with ctx.guard(layout.episodes_file):
        episodes = layout.load_episodes()
    with ctx.guard(layout.tasks_file):
        tasks = layout.load_tasks()
    with ctx.guard("meta/info.json"):
        _check_totals(ctx, layout, episodes, tasks)
    modality = None
    with ctx.guard("meta/modality.json"):
        modality = _check_modality(ctx)
    with ctx.guard("meta/modality.json"):
        _check_config(ctx, modality)
    plan = _EpisodePlan.build(ctx, layout, modality, tasks)
    report.episodes = len(episodes)
    with ctx.guard(None):
        for source in layout.episode_sources(episodes):
            rows = _check_episode(ctx, layout, source, plan)
            ctx.frames_seen += rows if rows is not None else source.meta.length
            layout.check_episode_videos(source, plan, rows)
    with ctx.guard(None):
        layout.finish(plan, episodes)
    plan.finish(ctx, len(episodes))
    report.frames = ctx.frames_seen if episodes else 0
    with ctx.guard("meta"):
        layout.check_stats(episodes, plan.rows_override)
    with ctx.guard("meta/relative_stats.json"):
        _check_relative_stats(ctx, modality)
    ctx.flush_aggregates(len(episodes))


# ===================================================================================================== layouts


@dataclass(frozen=True)
class _EpisodeMeta:
    index: int
    length: int
    tasks: tuple[str, ...]
    line: int  # line (v2) or row (v3) of the episode's metadata entry
    file: str = "meta/episodes.jsonl"  # the metadata file listing the episode
    where: str = ""  # "line N" / "row N": the field used when a finding is about the metadata entry


@dataclass
class _EpisodeSource:
    """Where one episode's rows and frames live (the layout decides; the checks do not care)."""

    meta: _EpisodeMeta
    data_file: Path | None  # None when the path cannot be formed (already reported)
    videos: dict[str, Path | None]  # original video key -> file
    # v3: the global [dataset_from_index, dataset_to_index) range and per camera (from_ts, to_ts) in its file
    rows: tuple[int, int] | None = None
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)


class _Layout:
    """One on-disk layout family: :class:`_V2Layout` (v2.0/v2.1) or :class:`_V3Layout` (v3.0)."""

    episodes_file = "meta/episodes.jsonl"
    tasks_file = "meta/tasks.jsonl"
    legacy_totals = True  # total_videos / total_chunks are v2 keys
    length_mismatch_code = "EPISODE_LENGTH_MISMATCH"
    placeholders = ""  # what a path template may use, for PATH_TEMPLATE_INVALID messages
    template_hint: str | None = None  # PATH_TEMPLATE_INVALID hint; None: the code's default
    episodes_complete = False
    tasks_complete = False
    task_lines = 0

    def __init__(self, ctx: _Ctx):
        self.ctx = ctx

    def check_layout(self) -> bool | None:
        """Check version vs files and the path templates; False stops validation (another version's layout)."""
        raise NotImplementedError

    def _check_template(self, key: str, needed: tuple[str, ...]) -> bool:
        """Check a path template once (placeholders, formatting, root escape); True if paths can be formed."""
        ctx = self.ctx
        template = ctx.setting(key)
        if template is None:
            return False  # INFO_KEY_MISSING already reported for data_path; no video_path: videos are skipped
        if not isinstance(template, str) or not template:
            ctx.add(
                "INFO_INVALID_VALUE",
                f"{key} must be a path template string, got {template!r}",
                file="meta/info.json",
                field=key,
            )
            return False
        for name in needed:
            if "{" + name not in template:
                ctx.add(
                    "PATH_TEMPLATE_INVALID",
                    f"{key} {template!r} lacks the {{{name}}} placeholder",
                    file="meta/info.json",
                    field=key,
                    hint=self.template_hint,
                )
                return False
        try:
            rel = self._format_sample(template)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            ctx.add(
                "PATH_TEMPLATE_INVALID",
                f"{key} {template!r} cannot be formatted ({type(exc).__name__}: {exc}); {self.placeholders}",
                file="meta/info.json",
                field=key,
                hint=self.template_hint,
            )
            return False
        try:
            resolve_inside(ctx.root, rel, key)
        except DatasetError:
            ctx.add(
                "PATH_ESCAPES_ROOT",
                f"{key} {template!r} resolves to {rel!r}, outside the dataset root",
                file="meta/info.json",
                field=key,
            )
            return False
        return True

    def _format_sample(self, template: str) -> str:
        """A template formatted with sample values (episode/file 0), to check it once."""
        raise NotImplementedError

    def check_episode_videos(self, source: _EpisodeSource, plan: _EpisodePlan, rows: int | None) -> None:
        _check_episode_videos(self.ctx, source, plan, rows)

    def finish(self, plan: _EpisodePlan, episodes: list[_EpisodeMeta]) -> None:
        """Checks that need every episode seen (v3: whole video files, unreferenced files)."""

    def load_episodes(self) -> list[_EpisodeMeta]:
        raise NotImplementedError

    def load_tasks(self) -> dict[int, str] | None:
        raise NotImplementedError

    def episode_sources(self, episodes: list[_EpisodeMeta]) -> Iterator[_EpisodeSource]:
        raise NotImplementedError

    def open_table(self, source: _EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        raise NotImplementedError

    def check_stats(self, episodes: list[_EpisodeMeta], rows: dict[int, int]) -> None:
        """Check the stats files; ``rows`` maps episodes whose parquet row count differs from their length."""
        raise NotImplementedError


class _V2Layout(_Layout):
    """LeRobot v2.0 / v2.1: one parquet file and one mp4 per camera per episode, JSONL metadata."""

    placeholders = "v2 templates may use {episode_chunk}, {episode_index} and {video_key}"

    def __init__(self, ctx: _Ctx):
        super().__init__(ctx)
        self.data_template_ok = False
        self.video_template_ok = False
        self.episodes_complete = False  # episodes.jsonl read without dropping a line
        self.tasks_complete = False
        self.task_lines = 0
        cs = ctx.setting("chunks_size")
        # an invalid/missing chunks_size is reported by _check_info; keep checking with LeRobot's default
        self.chunks_size = cs if _is_int(cs) and cs > 0 else 1000

    # --- layout / templates ---------------------------------------------------------------------------------
    def check_layout(self) -> bool:
        ctx = self.ctx
        version = ctx.version
        if (ctx.root / "meta" / "episodes").is_dir() and not (ctx.root / self.episodes_file).exists():
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {version} but meta/episodes/ holds a v3.0 layout (and there is no "
                f"{self.episodes_file})",
                file="meta/info.json",
                field="codebase_version",
                hint='Set codebase_version to "v3.0" if the dataset was written in the v3.0 layout.',
            )
            return False
        data_template = ctx.setting("data_path")
        if isinstance(data_template, str) and "{file_index" in data_template:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {version} but data_path {data_template!r} is a v3.0 template ({{file_index}})",
                file="meta/info.json",
                field="codebase_version",
            )
        has_ep_stats = (ctx.root / "meta" / "episodes_stats.jsonl").is_file()
        if version == "v2.1" and not has_ep_stats:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                "codebase_version is v2.1 but meta/episodes_stats.jsonl is missing (LeRobot v2.1 loaders need it)",
                file="meta/info.json",
                field="codebase_version",
                hint="Write meta/episodes_stats.jsonl or declare codebase_version v2.0.",
            )
        self.data_template_ok = self._check_template("data_path", ("episode_index",))
        video_features = [k for k, f in ctx.features.items() if f["dtype"] == "video"]
        if video_features:
            self.video_template_ok = self._check_template("video_path", ("episode_index", "video_key"))
        return True

    def _format_sample(self, template: str) -> str:
        return self._format(template, 0, "observation.images.x")

    def _format(self, template: str, episode: int, video_key: str | None = None) -> str:
        chunk = episode // self.chunks_size
        return template.format(episode_chunk=chunk, episode_index=episode, video_key=video_key)

    def _path(self, key: str, episode: int, video_key: str | None = None) -> Path | None:
        try:
            return resolve_inside(self.ctx.root, self._format(self.ctx.setting(key), episode, video_key), key)
        except (DatasetError, KeyError, IndexError, ValueError):
            return None  # the template was reported once in check_layout

    # --- metadata -------------------------------------------------------------------------------------------
    def load_episodes(self) -> list[_EpisodeMeta]:
        ctx = self.ctx
        rel = self.episodes_file
        rows = _iter_jsonl(ctx, rel, required=True)
        if rows is None:
            return []
        episodes: list[_EpisodeMeta] = []
        first_line: dict[int, int] = {}
        order_ok = True
        prev = -1
        dropped = 0
        for lineno, row in rows:
            idx, length, tasks = row.get("episode_index", _MISSING), row.get("length", _MISSING), row.get("tasks")
            bad = []
            if not _is_int(idx) or idx < 0:
                bad.append(f"episode_index {'missing' if idx is _MISSING else repr(idx)}")
            if not _is_int(length) or length < 0:
                bad.append(f"length {'missing' if length is _MISSING else repr(length)}")
            if bad:
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"line {lineno}: {' and '.join(bad)} (need integers >= 0)",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx if _is_int(idx) else None,
                )
                dropped += 1
                continue
            if tasks is None:
                ctx.add(
                    "EPISODE_TASKS_MISSING",
                    f'line {lineno}: episode {idx} has no "tasks" list',
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                tasks = []
            elif not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"line {lineno}: tasks must be a list of strings, got {tasks!r}",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                tasks = [t for t in tasks if isinstance(t, str)] if isinstance(tasks, list) else []
            if idx in first_line:
                ctx.add(
                    "EPISODE_INDICES_INVALID",
                    f"line {lineno}: episode_index {idx} duplicates line {first_line[idx]}",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                dropped += 1
                continue
            first_line[idx] = lineno
            if idx < prev:
                order_ok = False
            prev = idx
            if length == 0:
                ctx.add(
                    "ZERO_LENGTH_EPISODE", f"episode {idx} has length 0", file=rel, field=f"line {lineno}", episode=idx
                )
            episodes.append(_EpisodeMeta(idx, length, tuple(tasks), lineno, rel, f"line {lineno}"))
        self.episodes_complete = not dropped and not rows.bad
        if not episodes:
            ctx.add("EMPTY_DATASET", f"{rel} lists no (usable) episodes", file=rel)
            return []
        _check_episode_indices(ctx, rel, sorted(first_line), self.episodes_complete, order_ok)
        episodes.sort(key=lambda e: e.index)
        return episodes

    def load_tasks(self) -> dict[int, str] | None:
        rows = _iter_jsonl(self.ctx, self.tasks_file, required=True)
        if rows is None:
            return None
        tasks, dropped = _collect_tasks(
            self.ctx, self.tasks_file, ((f"line {n}", n, row) for n, row in rows), "line"
        )
        self.tasks_complete = not dropped and not rows.bad
        self.task_lines = rows.lines
        _check_task_indices(self.ctx, self.tasks_file, tasks, self.tasks_complete)
        return tasks

    # --- data -----------------------------------------------------------------------------------------------
    def episode_sources(self, episodes: list[_EpisodeMeta]) -> Iterator[_EpisodeSource]:
        video_keys = [k for k, f in self.ctx.features.items() if f["dtype"] == "video"]
        for ep in episodes:
            data_file = self._path("data_path", ep.index) if self.data_template_ok else None
            videos = {
                key: (self._path("video_path", ep.index, key) if self.video_template_ok else None) for key in video_keys
            }
            yield _EpisodeSource(ep, data_file, videos)

    def open_table(self, source: _EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        ctx = self.ctx
        ep = source.meta.index
        path = source.data_file
        assert path is not None
        rel = ctx.rel(path)
        if not path.is_file():
            ctx.add("PARQUET_MISSING", f"parquet file of episode {ep} is missing", file=rel, episode=ep)
            return None
        try:
            with pq.ParquetFile(path) as pf:
                schema = pf.schema_arrow
                present = [c for c in columns_wanted if c in schema.names]
                table = pf.read(columns=present, use_threads=False)
        except (pa.ArrowException, OSError, ValueError) as exc:
            ctx.add("PARQUET_UNREADABLE", f"cannot read episode {ep}: {exc}", file=rel, episode=ep)
            return None
        return schema, table

    # --- stats ----------------------------------------------------------------------------------------------
    def check_stats(self, episodes: list[_EpisodeMeta], rows_override: dict[int, int]) -> None:
        ctx = self.ctx
        lengths = {e.index: rows_override.get(e.index, e.length) for e in episodes}
        total = sum(lengths.values())
        stats = _load_json(ctx, "meta/stats.json", required=False)
        if stats is not _MISSING:
            with ctx.guard("meta/stats.json"):
                _check_stats_object(ctx, stats, "meta/stats.json", None, total, groot=True)
        rel = "meta/episodes_stats.jsonl"
        rows = _iter_jsonl(ctx, rel, required=False)
        if rows is None:
            return
        seen: set[int] = set()
        unknown: list[int] = []
        for lineno, row in rows:
            idx = row.get("episode_index")
            where = f"line {lineno}"
            if not _is_int(idx):
                ctx.add("STATS_INVALID", f"line {lineno}: needs an integer episode_index", file=rel, field=where)
                continue
            if idx in seen:
                ctx.add(
                    "STATS_INVALID", f"line {lineno}: episode {idx} appears twice", file=rel, field=where, episode=idx
                )
                continue
            seen.add(idx)
            if idx not in lengths:
                unknown.append(idx)
                continue
            with ctx.guard(rel, idx):
                _check_stats_object(ctx, row.get("stats"), rel, idx, lengths[idx], groot=False, line=lineno)
        if not self.episodes_complete:
            return  # episodes.jsonl lost lines: cross-references would only repeat that
        if unknown:
            ctx.add(
                "STATS_INVALID",
                f"stats for episodes {_ranges(sorted(unknown))}, which {self.episodes_file} does not list",
                file=rel,
                episode=unknown[0] if len(unknown) == 1 else None,
            )
        missing = sorted(set(lengths) - seen)
        if missing:
            ctx.add(
                "STATS_INVALID",
                f"no stats for episodes {_ranges(missing)}",
                file=rel,
                episode=missing[0] if len(missing) == 1 else None,
            )


def _collect_tasks(
    ctx: _Ctx, rel: str, rows: Iterator[tuple[str, int, dict[str, Any]]], unit: str
) -> tuple[dict[int, str], int]:
    """task_index -> task from ``(where, number, {"task_index", "task"})`` rows; returns the tasks and rows dropped."""
    tasks: dict[int, str] = {}
    by_text: dict[str, tuple[int, int]] = {}
    lines: dict[int, int] = {}
    dropped = 0
    for where, lineno, row in rows:
        idx, text = row.get("task_index", _MISSING), row.get("task", _MISSING)
        if not _is_int(idx) or idx < 0 or not isinstance(text, str):
            ctx.add(
                "TASK_ENTRY_INVALID",
                f"{where}: needs integer task_index >= 0 and string task, got "
                f"task_index={'missing' if idx is _MISSING else repr(idx)}, "
                f"task={'missing' if text is _MISSING else repr(text)}",
                file=rel,
                field=where,
            )
            dropped += 1
            continue
        if idx in tasks:
            ctx.add(
                "TASK_INDICES_INVALID",
                f"{where}: task_index {idx} duplicates {unit} {lines[idx]}",
                file=rel,
                field=where,
            )
            dropped += 1
            continue
        if text in by_text:
            other_idx, other_line = by_text[text]
            ctx.add(
                "DUPLICATE_TASK",
                f"{where}: task {text!r} (task_index {idx}) duplicates task_index {other_idx} on {unit} {other_line}",
                file=rel,
                field=where,
            )
        else:
            by_text[text] = (idx, lineno)
        tasks[idx] = text
        lines[idx] = lineno
    return tasks, dropped


def _check_task_indices(ctx: _Ctx, rel: str, tasks: dict[int, str], complete: bool) -> None:
    if complete and tasks and sorted(tasks) != list(range(len(tasks))):
        missing = sorted(set(range(len(tasks))) - set(tasks))
        extra = sorted(i for i in tasks if i >= len(tasks))
        ctx.add(
            "TASK_INDICES_INVALID",
            f"task indices are not 0..{len(tasks) - 1}: missing {_ranges(missing)}; unexpected {_ranges(extra)}",
            file=rel,
            field="task_index",
        )


def _check_episode_indices(ctx: _Ctx, rel: str, indices: list[int], complete: bool, order_ok: bool) -> None:
    """Episode indices must be exactly 0..N-1 (``indices`` sorted, unique) and listed in order."""
    n = len(indices)
    if indices != list(range(n)):
        missing = sorted(set(range(n)) - set(indices))
        extra = [i for i in indices if i >= n]
        note = "" if complete else " (some entries could not be read; fix those first)"
        ctx.add(
            "EPISODE_INDICES_INVALID",
            f"episode indices are not 0..{n - 1}: missing {_ranges(missing)}; unexpected {_ranges(extra)}{note}",
            file=rel,
            field="episode_index",
        )
    elif not order_ok:
        ctx.add(
            "EPISODE_INDICES_INVALID", "episodes are not listed in episode_index order", file=rel, field="episode_index"
        )


def _nonneg_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


class _V3Layout(_Layout):
    """LeRobot v3.0: many episodes per parquet file and per mp4, located by ``meta/episodes/*.parquet`` rows."""

    episodes_file = V3_EPISODES_DIR
    tasks_file = V3_TASKS_FILE
    legacy_totals = False
    length_mismatch_code = "V3_EPISODE_ROWS"
    placeholders = "v3 templates may use {chunk_index}, {file_index} and {video_key}"
    template_hint = "Use LeRobot v3's placeholders ({chunk_index}, {file_index}, {video_key})."

    def __init__(self, ctx: _Ctx):
        super().__init__(ctx)
        self.data_template_ok = False
        self.video_template_ok = False
        self.locations: dict[int, V3Location] = {}
        self.meta_files: list[str] = []
        self.absent_video_columns: dict[str, str] = {}  # camera -> first meta file without its columns
        self.broken_video_columns: set[str] = set()  # cameras whose columns are malformed (reported)
        self.file_episodes: dict[Path, list[int]] = {}  # data file -> episodes meta/episodes places there
        self.bad_files: set[Path] = set()  # missing/unreadable data files (reported once)
        self.cache: tuple[Path, pa.Schema, pa.Table, dict[int, Any] | None, np.ndarray | None] | None = None
        # (camera, video file) -> [(episode, from_ts, to_ts, length, meta file)] in episode order
        self.video_entries: dict[tuple[str, Path], list[tuple[int, float, float, int, str]]] = {}

    @property
    def video_keys(self) -> list[str]:
        """Declared (well-formed) video features; known once _check_info has run."""
        return [k for k, f in self.ctx.features.items() if f["dtype"] == "video"]

    # --- layout / templates ---------------------------------------------------------------------------------
    def check_layout(self) -> bool:
        ctx, info, f = self.ctx, self.ctx.info, "meta/info.json"
        has_dir = (ctx.root / V3_EPISODES_DIR).is_dir()
        if not has_dir and (ctx.root / "meta" / "episodes.jsonl").is_file():
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {ctx.version} but the dataset has meta/episodes.jsonl and no "
                f"{V3_EPISODES_DIR}/ (a v2 layout)",
                file=f,
                field="codebase_version",
                hint="Set codebase_version to the dataset's real version (v2.0/v2.1), or convert the dataset "
                "(groot_ft.data.convert.write_v3_dataset).",
            )
            return False
        for key in ("data_files_size_in_mb", "video_files_size_in_mb"):
            if key not in info:
                ctx.add("V3_INFO_KEY_MISSING", f"{key} is missing (LeRobot v3 writers record it)", file=f, field=key)
            elif not _is_number(info[key]) or not info[key] > 0:
                ctx.add("INFO_INVALID_VALUE", f"{key} must be a positive number, got {info[key]!r}", file=f, field=key)
        template = ctx.setting("data_path")
        if isinstance(template, str) and "{episode_index" in template and "{file_index" not in template:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {ctx.version} but data_path {template!r} is a v2 template (one file per episode)",
                file=f,
                field="data_path",
            )
        else:
            self.data_template_ok = self._check_template("data_path", ("chunk_index", "file_index"))
        if self.video_keys:
            self.video_template_ok = self._check_template("video_path", ("video_key", "chunk_index", "file_index"))
        return True

    def _format_sample(self, template: str) -> str:
        return template.format(chunk_index=0, file_index=0, video_key="observation.images.x")

    def _data_path(self, loc: V3Location) -> Path | None:
        if not self.data_template_ok or loc.data is None:
            return None
        try:
            rel = self.ctx.setting("data_path").format(chunk_index=loc.data[0], file_index=loc.data[1])
            return resolve_inside(self.ctx.root, rel, "data_path")
        except (DatasetError, KeyError, IndexError, ValueError):
            return None

    def _video_path(self, key: str, entry: tuple[int, int, float, float]) -> Path | None:
        try:
            rel = self.ctx.setting("video_path").format(video_key=key, chunk_index=entry[0], file_index=entry[1])
            return resolve_inside(self.ctx.root, rel, "video_path")
        except (DatasetError, KeyError, IndexError, ValueError):
            return None

    # --- metadata -------------------------------------------------------------------------------------------
    def load_episodes(self) -> list[_EpisodeMeta]:
        ctx = self.ctx
        base = ctx.root / V3_EPISODES_DIR
        if not base.is_dir():
            ctx.add(
                "META_MISSING",
                f"{V3_EPISODES_DIR}/ is missing (a v3.0 dataset lists its episodes in "
                f"{V3_EPISODES_DIR}/chunk-*/file-*.parquet)",
                file=V3_EPISODES_DIR,
            )
            return []
        files = sorted(p for p in base.rglob("*.parquet") if p.is_file())
        if not files:
            ctx.add("META_MISSING", f"{V3_EPISODES_DIR}/ holds no parquet files", file=V3_EPISODES_DIR)
            return []
        episodes: list[_EpisodeMeta] = []
        first_seen: dict[int, str] = {}
        order_ok, prev, complete = True, -1, True
        for path in files:
            rel = ctx.rel(path)
            self.meta_files.append(rel)
            with ctx.guard(rel):
                read = self._read_episodes_file(path, rel)
                if read is None:
                    complete = False
                    continue
                for meta, loc in read:
                    if meta is None:
                        complete = False
                        continue
                    if meta.index in first_seen:
                        ctx.add(
                            "EPISODE_INDICES_INVALID",
                            f"{meta.where}: episode_index {meta.index} duplicates {first_seen[meta.index]}",
                            file=rel,
                            field=meta.where,
                            episode=meta.index,
                        )
                        complete = False
                        continue
                    first_seen[meta.index] = f"{rel} {meta.where}"
                    order_ok = order_ok and meta.index > prev
                    prev = meta.index
                    self.locations[meta.index] = loc
                    episodes.append(meta)
        self.episodes_complete = complete
        if not episodes:
            ctx.add("EMPTY_DATASET", f"{V3_EPISODES_DIR}/ lists no (usable) episodes", file=V3_EPISODES_DIR)
            return []
        _check_episode_indices(ctx, V3_EPISODES_DIR, sorted(first_seen), complete, order_ok)
        episodes.sort(key=lambda e: e.index)
        self._check_index_chain(episodes)
        return episodes

    def _read_episodes_file(
        self, path: Path, rel: str
    ) -> list[tuple[_EpisodeMeta | None, V3Location | None]] | None:
        ctx = self.ctx
        try:
            schema = pq.read_schema(path)
            names = schema.names
            table = pq.read_table(path, columns=[n for n in names if not n.startswith("stats/")])
        except (pa.ArrowException, OSError, ValueError) as exc:
            ctx.add("PARQUET_UNREADABLE", f"cannot read the episodes metadata: {exc}", file=rel)
            return None
        unusable = set()
        for col in V3_EPISODE_COLUMNS:
            if col not in names:
                ctx.add("V3_EPISODES_SCHEMA", f"column {col!r} is missing", file=rel, field=col)
                unusable.add(col)
            elif not pa.types.is_integer(schema.field(col).type):
                ctx.add(
                    "V3_EPISODES_SCHEMA",
                    f"column {col!r} is {schema.field(col).type}, expected integers",
                    file=rel,
                    field=col,
                )
                unusable.add(col)
        if {"episode_index", "length"} & unusable:
            return None
        cols = {c: table.column(c).to_pylist() for c in V3_EPISODE_COLUMNS if c not in unusable}
        tasks = None
        if "tasks" in names:
            tasks = table.column("tasks").to_pylist()
        else:
            ctx.add("EPISODE_TASKS_MISSING", "no tasks column (each episode's task strings)", file=rel, field="tasks")
        videos: dict[str, list[list[Any]]] = {}
        for key in self.video_keys:
            wanted = v3_video_columns(key)
            present = [c for c in wanted if c in names]
            if not present:
                self.absent_video_columns.setdefault(key, rel)
                continue
            bad = [c for c in wanted if c not in names]
            for c in wanted[:2]:
                if c in names and not pa.types.is_integer(schema.field(c).type):
                    bad.append(c)
            for c in wanted[2:]:
                if c in names and not (
                    pa.types.is_floating(schema.field(c).type) or pa.types.is_integer(schema.field(c).type)
                ):
                    bad.append(c)
            if bad:
                for c in bad:
                    what = "is missing" if c not in names else f"is {schema.field(c).type}, expected numbers"
                    ctx.add("V3_EPISODES_SCHEMA", f"column {c!r} {what}", file=rel, field=c)
                self.broken_video_columns.add(key)
                continue
            videos[key] = [table.column(c).to_pylist() for c in wanted]
        out: list[tuple[_EpisodeMeta | None, V3Location | None]] = []
        for row in range(table.num_rows):
            where = f"row {row}"
            idx, length = cols["episode_index"][row], cols["length"][row]
            if not _nonneg_int(idx) or not _nonneg_int(length):
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"{where}: episode_index {idx!r}, length {length!r} (need integers >= 0)",
                    file=rel,
                    field=where,
                    episode=idx if _is_int(idx) else None,
                )
                out.append((None, None))
                continue
            ep_tasks = tasks[row] if tasks is not None else []
            if not isinstance(ep_tasks, list) or not all(isinstance(t, str) for t in ep_tasks):
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"{where}: tasks must be a list of strings, got {ep_tasks!r}",
                    file=rel,
                    field=where,
                    episode=idx,
                )
                ep_tasks = [t for t in ep_tasks if isinstance(t, str)] if isinstance(ep_tasks, list) else []
            if length == 0:
                ctx.add("ZERO_LENGTH_EPISODE", f"episode {idx} has length 0", file=rel, field=where, episode=idx)
            data = rows = None
            if "data/chunk_index" in cols and "data/file_index" in cols:
                chunk, file = cols["data/chunk_index"][row], cols["data/file_index"][row]
                if _nonneg_int(chunk) and _nonneg_int(file):
                    data = (chunk, file)
                else:
                    ctx.add(
                        "V3_EPISODES_SCHEMA",
                        f"{where}: data/chunk_index {chunk!r}, data/file_index {file!r} (need integers >= 0)",
                        file=rel,
                        field="data/file_index",
                        episode=idx,
                    )
            if "dataset_from_index" in cols and "dataset_to_index" in cols:
                lo, hi = cols["dataset_from_index"][row], cols["dataset_to_index"][row]
                if _nonneg_int(lo) and _nonneg_int(hi):
                    rows = (lo, hi)
                else:
                    ctx.add(
                        "V3_EPISODES_SCHEMA",
                        f"{where}: dataset_from_index {lo!r}, dataset_to_index {hi!r} (need integers >= 0)",
                        file=rel,
                        field="dataset_from_index",
                        episode=idx,
                    )
            locs: dict[str, tuple[int, int, float, float] | None] = {}
            for key, (chunks, files, starts, ends) in videos.items():
                entry = (chunks[row], files[row], starts[row], ends[row])
                if all(v is None for v in entry):
                    locs[key] = None  # no video of this camera for this episode
                elif (
                    _nonneg_int(entry[0])
                    and _nonneg_int(entry[1])
                    and all(_is_number(v) and math.isfinite(v) for v in entry[2:])
                ):
                    locs[key] = (entry[0], entry[1], float(entry[2]), float(entry[3]))
                else:
                    ctx.add(
                        "V3_EPISODES_SCHEMA",
                        f"{where}: videos/{key}/... entry {entry!r} needs chunk_index, file_index >= 0 and finite "
                        "from_timestamp, to_timestamp",
                        file=rel,
                        field=f"videos/{key}/from_timestamp",
                        episode=idx,
                    )
                    locs[key] = None
            out.append(
                (_EpisodeMeta(idx, length, tuple(ep_tasks), row, rel, where), V3Location(data, rows, locs, rel))
            )
        return out

    def _check_index_chain(self, episodes: list[_EpisodeMeta]) -> None:
        """dataset_from_index[0] == 0, from[i+1] == to[i], to - from == length (invariant 8)."""
        ctx = self.ctx
        prev: tuple[int, int] | None = None  # (episode, dataset_to_index)
        for i, ep in enumerate(episodes):
            rows = self.locations[ep.index].rows
            if rows is None:
                prev = None
                continue
            lo, hi = rows
            if i == 0 and lo != 0:
                ctx.add(
                    "V3_INDEX_GAP",
                    f"the first episode ({ep.index}) starts at dataset_from_index {lo}, expected 0",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_from_index",
                )
            elif prev is not None and lo != prev[1]:
                kind = "gap" if lo > prev[1] else "overlap"
                ctx.add(
                    "V3_INDEX_GAP",
                    f"episode {ep.index} starts at dataset_from_index {lo} but episode {prev[0]} ends at "
                    f"dataset_to_index {prev[1]} ({kind} of {abs(lo - prev[1])} rows)",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_from_index",
                )
            if hi - lo != ep.length:
                ctx.add(
                    "V3_INDEX_LENGTH_MISMATCH",
                    f"dataset_to_index - dataset_from_index = {hi} - {lo} = {hi - lo} but episode {ep.index} has "
                    f"length {ep.length}",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_to_index",
                )
            prev = (ep.index, hi)

    def load_tasks(self) -> dict[int, str] | None:
        ctx, rel = self.ctx, self.tasks_file
        path = ctx.root / rel
        if not path.is_file():
            ctx.add("META_MISSING", f"{rel} is missing", file=rel)
            return None
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            ctx.add("PARQUET_UNREADABLE", f"cannot read the tasks: {exc}", file=rel)
            return None
        column = v3_task_column(table.schema)
        if column is None or "task_index" not in table.column_names:
            ctx.add(
                "TASK_ENTRY_INVALID",
                "needs a task_index column and the task strings as a 'task' column or as the pandas index "
                f"(columns: {', '.join(table.column_names)})",
                file=rel,
                field="task_index" if "task_index" not in table.column_names else "task",
            )
            return None
        pairs = zip(table.column("task_index").to_pylist(), table.column(column).to_pylist(), strict=True)
        rows = ((f"row {i}", i, {"task_index": a, "task": b}) for i, (a, b) in enumerate(pairs))
        tasks, dropped = _collect_tasks(ctx, rel, rows, "row")
        self.tasks_complete = not dropped
        self.task_lines = table.num_rows
        _check_task_indices(ctx, rel, tasks, self.tasks_complete)
        return tasks

    # --- data -----------------------------------------------------------------------------------------------
    def episode_sources(self, episodes: list[_EpisodeMeta]) -> Iterator[_EpisodeSource]:
        paths = {ep.index: self._data_path(self.locations[ep.index]) for ep in episodes}
        for ep in episodes:
            if paths[ep.index] is not None:
                self.file_episodes.setdefault(paths[ep.index], []).append(ep.index)
        for ep in episodes:
            loc = self.locations[ep.index]
            videos: dict[str, Path | None] = {}
            windows: dict[str, tuple[float, float]] = {}
            for key in self.video_keys:
                entry = loc.videos.get(key)
                videos[key] = self._video_path(key, entry) if entry is not None and self.video_template_ok else None
                if entry is not None:
                    windows[key] = (entry[2], entry[3])
            yield _EpisodeSource(ep, paths[ep.index], videos, loc.rows, windows)

    def open_table(self, source: _EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        ctx = self.ctx
        ep = source.meta
        e = ep.index
        path = source.data_file
        assert path is not None
        rel = ctx.rel(path)
        if path in self.bad_files:
            return None  # reported with the first episode that needed it
        if self.cache is None or self.cache[0] != path:
            self.cache = None
            eps = self.file_episodes.get(path, [e])
            if not path.is_file():
                ctx.add(
                    "PARQUET_MISSING",
                    f"data file of episode(s) {_ranges(eps)} is missing",
                    file=rel,
                    episode=e,
                )
                self.bad_files.add(path)
                return None
            try:
                with pq.ParquetFile(path) as pf:
                    schema = pf.schema_arrow
                    wanted = dict.fromkeys([*columns_wanted, "episode_index", "index"])
                    wanted = [c for c in wanted if c in schema.names]
                    table = pf.read(columns=wanted, use_threads=False)
            except (pa.ArrowException, OSError, ValueError) as exc:
                ctx.add(
                    "PARQUET_UNREADABLE", f"cannot read the data file of episode(s) {_ranges(eps)}: {exc}", file=rel,
                    episode=e,
                )
                self.bad_files.add(path)
                return None
            spans = index = None
            if "episode_index" in table.column_names and pa.types.is_integer(table.schema.field("episode_index").type):
                col = table.column("episode_index")
                if not col.null_count:
                    spans = episode_spans(col.to_numpy())
            if "index" in table.column_names and pa.types.is_integer(table.schema.field("index").type):
                col = table.column("index")
                if not col.null_count:
                    index = col.to_numpy()
            self.cache = (path, schema, table, spans, index)
            self._check_orphans(path, rel, spans)
        _, schema, table, spans, index = self.cache
        if spans is not None:
            span = spans.get(e)
        elif index is not None and source.rows is not None:
            span = range_in(index, *source.rows)
        else:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"the data file has no usable episode_index or index column: cannot tell which rows are episode {e}'s",
                file=rel,
                episode=e,
                field="episode_index",
            )
            return None
        if span is None:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"the data file holds no rows of episode {e}, which {ep.file} {ep.where} places there",
                file=rel,
                episode=e,
                field="episode_index",
            )
            return None
        if isinstance(span, tuple):
            sub = table.slice(span[0], span[1] - span[0])
        else:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"episode {e}'s {len(span)} rows are not contiguous in the data file (sort rows by episode)",
                file=rel,
                episode=e,
                field="episode_index",
            )
            sub = table.take(pa.array(span))
        if source.rows is not None and "index" in sub.column_names and sub.num_rows and index is not None:
            first = int(sub.column("index")[0].as_py())
            if first != source.rows[0]:
                ctx.add(
                    "V3_EPISODE_ROWS",
                    f"episode {e}'s rows start at index {first} but {ep.file} {ep.where} gives dataset_from_index "
                    f"{source.rows[0]}",
                    file=rel,
                    episode=e,
                    field="index",
                )
        return schema, sub.select([c for c in sub.column_names if c in columns_wanted])

    def _check_orphans(self, path: Path, rel: str, spans: dict[int, Any] | None) -> None:
        if spans is None or not self.episodes_complete:
            return
        expected = set(self.file_episodes.get(path, ()))
        for other in sorted(set(spans) - expected)[:10]:
            where = "places in another file" if other in self.locations else "does not list"
            ctx_msg = f"the data file holds rows of episode {other}, which {V3_EPISODES_DIR} {where}"
            self.ctx.add("V3_EPISODE_ROWS", ctx_msg, file=rel, episode=other, field="episode_index")

    # --- video ----------------------------------------------------------------------------------------------
    def check_episode_videos(self, source: _EpisodeSource, plan: _EpisodePlan, rows: int | None) -> None:
        ctx = self.ctx
        ep = source.meta
        e = ep.index
        loc = self.locations.get(e)
        if loc is None:
            return
        for key in self.video_keys:
            if key in self.absent_video_columns or key in self.broken_video_columns:
                continue  # reported once in finish / when read
            used = key in plan.used_videos
            entry = loc.videos.get(key)
            if entry is None:
                if used:
                    ctx.add(
                        "VIDEO_MISSING",
                        f"episode {e} has no videos/{key}/... entry (no video of camera {key!r})",
                        file=ep.file,
                        episode=e,
                        field=key,
                    )
                else:
                    stat = plan.video_missing.setdefault(key, [0, e, e])
                    stat[0] += 1
                    stat[2] = e
                continue
            path = source.videos.get(key)
            if path is None:
                if used and ctx.setting("video_path") is None and not plan.video_path_reported:
                    ctx.add(
                        "INFO_KEY_MISSING",
                        f"video_path is missing but video feature {key!r} is used",
                        file="meta/info.json",
                        field="video_path",
                    )
                    plan.video_path_reported = True
                continue
            _, _, t0, t1 = entry
            if ctx.fps and ep.length:
                want = ep.length / ctx.fps
                if abs((t1 - t0) - want) > 1.0 / ctx.fps + ctx.tol:
                    ctx.add(
                        "V3_VIDEO_SPAN_MISMATCH",
                        f"camera {key!r}: to_timestamp - from_timestamp = {t1:.6f} - {t0:.6f} = {t1 - t0:.6f} s but "
                        f"{ep.length} frames at {ctx.fps:g} fps last {want:.6f} s",
                        file=ep.file,
                        episode=e,
                        field=f"videos/{key}/to_timestamp",
                    )
            self.video_entries.setdefault((key, path), []).append((e, t0, t1, ep.length, ep.file))

    def finish(self, plan: _EpisodePlan, episodes: list[_EpisodeMeta]) -> None:
        ctx = self.ctx
        for key, rel in self.absent_video_columns.items():
            if key in plan.used_videos:
                ctx.add(
                    "V3_EPISODES_SCHEMA",
                    f"no videos/{key}/... columns, but camera {key!r} is used (modality.json / the config)",
                    file=rel,
                    field=f"videos/{key}/chunk_index",
                )
            elif episodes:
                plan.video_missing[key] = [len(episodes), episodes[0].index, episodes[-1].index]
        for (key, path), entries in self.video_entries.items():
            rel = ctx.rel(path)
            eps = [x[0] for x in entries]
            with ctx.guard(rel, eps[0]):
                self._check_video(plan, key, path, rel, entries)
        if self.episodes_complete:
            with ctx.guard(None):
                self._check_unreferenced()

    def _check_video(
        self, plan: _EpisodePlan, key: str, path: Path, rel: str, entries: list[tuple[int, float, float, int, str]]
    ) -> None:
        ctx = self.ctx
        eps = [x[0] for x in entries]
        if not path.is_file():
            if key in plan.used_videos:
                ctx.add(
                    "VIDEO_MISSING",
                    f"video file of camera {key!r} for episode(s) {_ranges(eps)} is missing",
                    file=rel,
                    episode=eps[0],
                    field=key,
                )
            else:
                stat = plan.video_missing.setdefault(key, [0, eps[0], eps[-1]])
                stat[0] += len(eps)
                stat[1], stat[2] = min(stat[1], eps[0]), max(stat[2], eps[-1])
            return
        total = sum(x[3] for x in entries)
        info = _check_video_file(
            ctx, rel, path, eps[0], key, total, plan, holds=f"its episode(s) {_ranges(eps)} have"
        )
        tol = ctx.tol
        e0, t0, _, _, mfile = entries[0]
        if abs(t0) > tol:
            ctx.add(
                "V3_TIMESTAMP_CHAIN",
                f"camera {key!r}: episode {e0} is the first in {rel} but starts at from_timestamp {t0:.6f} s, "
                "expected 0",
                file=mfile,
                episode=e0,
                field=f"videos/{key}/from_timestamp",
            )
        for (pe, _, p1, _, _), (ce, c0, _, _, cfile) in pairwise(entries):
            if abs(c0 - p1) > tol:
                kind = "gap" if c0 > p1 else "overlap"
                ctx.add(
                    "V3_TIMESTAMP_CHAIN",
                    f"camera {key!r}: episode {ce} starts at from_timestamp {c0:.6f} s in {rel} but episode {pe} "
                    f"ends at to_timestamp {p1:.6f} s ({kind} of {abs(c0 - p1):.6f} s)",
                    file=cfile,
                    episode=ce,
                    field=f"videos/{key}/from_timestamp",
                )
        if info is not None and ctx.fps and info.duration_s:
            le, _, l1, _, lfile = entries[-1]
            if abs(l1 - info.duration_s) > 0.5 / ctx.fps + tol:
                ctx.add(
                    "V3_TIMESTAMP_CHAIN",
                    f"camera {key!r}: the last episode in {rel} ({le}) ends at to_timestamp {l1:.6f} s but the "
                    f"file lasts {info.duration_s:.6f} s",
                    file=lfile,
                    episode=le,
                    field=f"videos/{key}/to_timestamp",
                )

    def _check_unreferenced(self) -> None:
        ctx = self.ctx
        referenced = set(self.file_episodes) | {path for _, path in self.video_entries}
        found: list[Path] = []
        for key, suffix in (("data_path", ".parquet"), ("video_path", ".mp4")):
            template = ctx.setting(key)
            if not isinstance(template, str) or "/" not in template or template.startswith(("/", "{")):
                continue
            top = ctx.root / template.split("/", 1)[0]
            template_ok = self.data_template_ok if key == "data_path" else self.video_template_ok
            if top.is_dir() and template_ok:
                found.extend(p for p in sorted(top.rglob(f"*{suffix}")) if p.is_file() and not p.name.startswith("."))
        extra = [p for p in found if p.resolve() not in referenced]
        for p in extra[:20]:
            ctx.add("V3_FILE_UNREFERENCED", "no episode in meta/episodes points at this file", file=ctx.rel(p))

    # --- stats ----------------------------------------------------------------------------------------------
    def check_stats(self, episodes: list[_EpisodeMeta], rows_override: dict[int, int]) -> None:
        ctx = self.ctx
        lengths = {e.index: rows_override.get(e.index, e.length) for e in episodes}
        stats = _load_json(ctx, "meta/stats.json", required=False)
        if stats is not _MISSING:
            with ctx.guard("meta/stats.json"):
                _check_stats_object(ctx, stats, "meta/stats.json", None, sum(lengths.values()), groot=True)
        for rel in self.meta_files:
            with ctx.guard(rel):
                self._check_episode_stats(rel, lengths)

    def _check_episode_stats(self, rel: str, lengths: dict[int, int]) -> None:
        ctx = self.ctx
        path = ctx.root / rel
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError, ValueError):
            return  # reported by load_episodes
        columns = [n for n in names if n.startswith("stats/")]
        if not columns or "episode_index" not in names:
            return
        parsed: dict[str, tuple[str, str]] = {}
        for col in columns:
            feature, _, stat = col[len("stats/") :].rpartition("/")
            if not feature or not stat:
                ctx.add("STATS_INVALID", f"column {col!r} is not stats/<feature>/<stat>", file=rel, field=col)
                continue
            parsed[col] = (feature, stat)
        table = pq.read_table(path, columns=["episode_index", *parsed])
        values = {col: table.column(col).to_pylist() for col in parsed}
        for row, e in enumerate(table.column("episode_index").to_pylist()):
            if e not in lengths:
                continue
            obj: dict[str, dict[str, Any]] = {}
            for col, (feature, stat) in parsed.items():
                if values[col][row] is not None:
                    obj.setdefault(feature, {})[stat] = values[col][row]
            if obj:
                _check_stats_object(ctx, obj, rel, e, lengths[e], groot=False, row=row)


_LAYOUTS: dict[str, type[_Layout]] = {"v2.0": _V2Layout, "v2.1": _V2Layout, "v3.0": _V3Layout}


# ===================================================================================================== A. info.json


def _numpy_dtype(dtype: str) -> np.dtype | None:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    if dt.kind not in "biuf":
        return None
    return dt


def _check_info(ctx: _Ctx, layout: _Layout) -> None:
    info = ctx.info
    f = "meta/info.json"
    for key in required_info(ctx.version):
        if key not in info:
            ctx.add("INFO_KEY_MISSING", f"required key {key!r} is missing", file=f, field=key)
    for key in ("total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks"):
        if key in info and (not _is_int(info[key]) or info[key] < 0):
            ctx.add("INFO_INVALID_VALUE", f"{key} must be an integer >= 0, got {info[key]!r}", file=f, field=key)
    if "chunks_size" in info and (not _is_int(info["chunks_size"]) or info["chunks_size"] <= 0):
        ctx.add(
            "INFO_INVALID_VALUE",
            f"chunks_size must be a positive integer, got {info['chunks_size']!r}",
            file=f,
            field="chunks_size",
        )
    # fps
    fps = info.get("fps")
    if "fps" in info:
        if not _is_number(fps) or not math.isfinite(fps) or fps <= 0:
            ctx.add("FPS_INVALID", f"fps must be a positive number, got {fps!r}", file=f, field="fps")
        else:
            ctx.fps = float(fps)
            if isinstance(fps, float):
                if fps.is_integer():
                    ctx.add(
                        "FPS_NOT_INTEGER", f"fps is the float {fps!r}; LeRobot writes an integer", file=f, field="fps"
                    )
                else:
                    ctx.add("FPS_INVALID", f"fps {fps!r} is not an integer frame rate", file=f, field="fps")
    # features
    features = info.get("features")
    ctx.declared = features if isinstance(features, dict) else None
    if "features" in info and not isinstance(features, dict):
        ctx.add(
            "INFO_INVALID_VALUE", f"features must be an object, got {type(features).__name__}", file=f, field="features"
        )
        features = {}
    for name, feat in (features or {}).items():
        _check_feature(ctx, name, feat)
    has_video = any(feat["dtype"] == "video" for feat in ctx.features.values())
    for key, default in info_defaults(ctx.version).items():
        if key not in info and (key != "video_path" or has_video):
            ctx.add("INFO_KEY_DEFAULTED", f"{key!r} is missing; using LeRobot's default {default!r}", file=f, field=key)
    if "robot_type" in info and info["robot_type"] is not None and not isinstance(info["robot_type"], str):
        ctx.add(
            "INFO_INVALID_VALUE",
            f"robot_type must be a string or null, got {info['robot_type']!r}",
            file=f,
            field="robot_type",
        )


def _check_feature(ctx: _Ctx, name: str, feat: Any) -> None:
    f = "meta/info.json"
    where = f"features.{name}"
    if "/" in name:
        ctx.add("FEATURE_NAME_INVALID", f"feature name {name!r} contains '/'", file=f, field=where)
    if not isinstance(feat, dict):
        ctx.add(
            "FEATURE_INVALID", f"feature {name!r} must be an object, got {type(feat).__name__}", file=f, field=where
        )
        return
    dtype, shape = feat.get("dtype"), feat.get("shape")
    problems = []
    if not isinstance(dtype, str) or not (dtype in ("video", "image", "string") or _numpy_dtype(dtype) is not None):
        problems.append(f"dtype {dtype!r} is not a known dtype (numpy name, video, image or string)")
    if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(s) and s > 0 for s in shape):
        problems.append(f"shape {shape!r} is not a non-empty list of positive integers")
    if problems:
        ctx.add("FEATURE_INVALID", f"feature {name!r}: " + "; ".join(problems), file=f, field=where)
        return
    shape = list(shape)
    names = feat.get("names")
    if dtype in ("video", "image"):
        if len(shape) != 3:
            ctx.add(
                "FEATURE_INVALID",
                f"{dtype} feature {name!r} needs shape [height, width, channels], got {shape}",
                file=f,
                field=where,
            )
            return
    elif isinstance(names, list):
        if len(shape) == 1 and len(names) != shape[0]:
            ctx.add(
                "FEATURE_NAMES_MISMATCH",
                f"feature {name!r} has {len(names)} names for shape {shape}",
                file=f,
                field=f"{where}.names",
            )
    elif isinstance(names, dict):
        ctx.add(
            "FEATURE_NAMES_UNSTRUCTURED",
            f"feature {name!r} names are a mapping, not a list",
            file=f,
            field=f"{where}.names",
        )
    elif names is not None:
        ctx.add(
            "FEATURE_NAMES_MISMATCH",
            f"feature {name!r} names must be a list or null, got {names!r}",
            file=f,
            field=f"{where}.names",
        )
    ctx.features[name] = {"dtype": dtype, "shape": shape, "names": names, "raw": feat}
    if dtype == "video":
        _check_video_feature_info(ctx, name, feat)


def _video_hw(feature: dict[str, Any]) -> tuple[int, int]:
    shape, names = feature["shape"], feature.get("names")
    if isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel"):
        return shape[1], shape[2]  # (C, H, W)
    return shape[0], shape[1]  # (H, W, C), LeRobot's layout


def _video_meta(feature: dict[str, Any]) -> dict[str, Any]:
    raw = feature["raw"]
    meta = raw.get("info")
    if not isinstance(meta, dict):
        meta = raw.get("video_info")
    return meta if isinstance(meta, dict) else {}


def _check_video_feature_info(ctx: _Ctx, name: str, feat: dict[str, Any]) -> None:
    f = "meta/info.json"
    where = f"features.{name}"
    if isinstance(feat.get("info"), dict):
        meta, key = feat["info"], "info"
    elif isinstance(feat.get("video_info"), dict):
        meta, key = feat["video_info"], "video_info"
        ctx.add(
            "VIDEO_INFO_LEGACY_KEY",
            f'video feature {name!r} keeps its metadata under "video_info" (GR00T converter style) instead of "info"',
            file=f,
            field=f"{where}.video_info",
        )
    else:
        ctx.add("VIDEO_INFO_MISSING", f'video feature {name!r} has no "info" metadata', file=f, field=where)
        return
    vfps = meta.get("video.fps")
    if vfps is not None and ctx.fps is not None:
        if not _is_number(vfps) or abs(float(vfps) - ctx.fps) > 1e-6 * ctx.fps:
            ctx.add(
                "VIDEO_FPS_MISMATCH",
                f"video feature {name!r} declares video.fps {vfps!r} but the dataset fps is {ctx.info.get('fps')!r}",
                file=f,
                field=f"{where}.{key}.video.fps",
            )


def _check_totals(ctx: _Ctx, layout: _Layout, episodes: list[_EpisodeMeta], tasks: dict[int, str] | None) -> None:
    """Totals, splits and task references of the metadata; skipped where a dropped line would explain a mismatch."""
    info, f = ctx.info, "meta/info.json"
    n = len(episodes)
    episodes_file_ok = layout.episodes_complete
    if not layout.tasks_complete:
        tasks = None

    def count(key: str) -> int | None:  # a well-formed total (malformed ones are reported by _check_info)
        value = info.get(key)
        return value if _is_int(value) and value >= 0 else None

    frames = sum(e.length for e in episodes)
    n_video = sum(1 for feat in ctx.features.values() if feat["dtype"] == "video")
    cs = ctx.setting("chunks_size")
    expected: list[tuple[str, str, int | None, str]] = [
        (
            "total_episodes",
            "TOTAL_EPISODES_MISMATCH",
            n if episodes_file_ok else None,
            f"meta/episodes.jsonl lists {n} episodes",
        ),
        (
            "total_frames",
            "TOTAL_FRAMES_MISMATCH",
            frames if episodes_file_ok else None,
            f"the episode lengths sum to {frames}",
        ),
        (
            "total_tasks",
            "TOTAL_TASKS_MISMATCH",
            len(tasks) if tasks is not None else None,
            f"{layout.tasks_file} has {len(tasks or ())} tasks",
        ),
        (
            "total_videos",
            "TOTAL_VIDEOS_MISMATCH",
            n * n_video if episodes_file_ok else None,
            f"expected {n} episodes x {n_video} video features = {n * n_video}",
        ),
        (
            "total_chunks",
            "TOTAL_CHUNKS_MISMATCH",
            math.ceil(n / cs) if episodes_file_ok and _is_int(cs) and cs > 0 else None,
            f"expected ceil({n} / {cs}) = {math.ceil(n / cs) if _is_int(cs) and cs > 0 else '?'}",
        ),
    ]
    if not layout.legacy_totals:
        expected = [e for e in expected if e[0] not in ("total_videos", "total_chunks")]
        expected = [(k, c, w, why.replace("meta/episodes.jsonl", layout.episodes_file)) for k, c, w, why in expected]
    for key, code, want, why in expected:
        have = count(key)
        if have is not None and want is not None and have != want:
            ctx.add(code, f"{key} is {have} but {why}", file=f, field=key)
    splits = info.get("splits")
    if splits is not None:
        if not isinstance(splits, dict):
            ctx.add("SPLIT_INVALID", f"splits must be an object, got {splits!r}", file=f, field="splits")
        else:
            for name, value in splits.items():
                where = f"splits.{name}"
                try:
                    lo_s, hi_s = str(value).split(":")
                    lo, hi = int(lo_s), int(hi_s)
                except ValueError:
                    ctx.add("SPLIT_INVALID", f'split {name!r} = {value!r} is not "start:end"', file=f, field=where)
                    continue
                if episodes_file_ok and not (0 <= lo <= hi <= n):
                    ctx.add(
                        "SPLIT_OUT_OF_RANGE",
                        f"split {name!r} = {value!r} is outside [0, {n}] ({n} episodes)",
                        file=f,
                        field=where,
                    )
    # episodes' task strings vs tasks.jsonl
    if tasks is not None and episodes:
        known = set(tasks.values())
        unknown: dict[str, int] = {}
        files: dict[int, str] = {}
        for e in episodes:
            for t in e.tasks:
                if t not in known:
                    unknown.setdefault(t, e.index)
                    files.setdefault(e.index, e.file)
        for t, ep in list(unknown.items())[:20]:
            ctx.add(
                "EPISODE_TASK_UNKNOWN",
                f"episode {ep} lists task {t!r}, which {layout.tasks_file} lacks",
                file=files[ep],
                episode=ep,
                field="tasks",
            )


# ===================================================================================================== E. modality


def _check_modality(ctx: _Ctx) -> dict[str, Any] | None:
    rel = "meta/modality.json"
    modality = _load_json(ctx, rel, required=True)
    if modality is _MISSING:
        return None
    if not isinstance(modality, dict):
        ctx.add("MODALITY_INVALID", f"modality.json must hold an object, got {type(modality).__name__}", file=rel)
        return None
    for key in modality:
        if key not in _MODALITY_SECTIONS:
            ctx.add(
                "MODALITY_UNKNOWN_KEY",
                f"unknown top-level key {key!r} (GR00T reads {', '.join(_MODALITY_SECTIONS)})",
                file=rel,
                field=key,
            )
    clean: dict[str, Any] = {}
    for section in _MODALITY_SECTIONS:
        value = modality.get(section, {})
        if not isinstance(value, dict):
            ctx.add(
                "MODALITY_INVALID",
                f"{section} must be an object mapping keys to entries, got {type(value).__name__}",
                file=rel,
                field=section,
            )
            value = {}
        entries = {}
        for key, entry in value.items():
            if not isinstance(entry, dict):
                ctx.add(
                    "MODALITY_INVALID",
                    f"{section}.{key} must be an object, got {entry!r}",
                    file=rel,
                    field=f"{section}.{key}",
                )
                continue
            entries[key] = entry
        clean[section] = entries
    for section, default in (("state", DEFAULT_STATE_COLUMN), ("action", DEFAULT_ACTION_COLUMN)):
        _check_slices(ctx, section, default, clean[section])
    for key, entry in clean["video"].items():
        original = entry.get("original_key", f"observation.images.{key}")
        if ctx.declared is None:
            break  # features unusable (reported): nothing to cross-check against
        feat = ctx.declared.get(original) if isinstance(original, str) else None
        if not isinstance(feat, dict) or feat.get("dtype") != "video":
            what = "is not a feature of meta/info.json" if feat is None else f"has dtype {feat.get('dtype')!r}"
            ctx.add(
                "MODALITY_VIDEO_NOT_A_FEATURE",
                f'video.{key} maps to original_key {original!r}, which {what} (needs a dtype "video" feature)',
                file=rel,
                field=f"video.{key}.original_key",
            )
    for key, entry in clean["annotation"].items():
        column = entry.get("original_key", f"annotation.{key}")
        if ctx.declared is None or (isinstance(column, str) and column in ctx.declared and column not in ctx.features):
            continue  # features unusable, or this one is malformed (both reported already)
        feat = ctx.features.get(column) if isinstance(column, str) else None
        if feat is None:
            ctx.add(
                "MODALITY_ANNOTATION_COLUMN_MISSING",
                f"annotation.{key} maps to column {column!r}, which is not a feature of meta/info.json",
                file=rel,
                field=f"annotation.{key}",
            )
        elif not (_numpy_dtype(feat["dtype"]) is not None and _numpy_dtype(feat["dtype"]).kind in "iu"):
            ctx.add(
                "MODALITY_ANNOTATION_NOT_INT",
                f"annotation.{key} maps to column {column!r} of dtype "
                f"{feat['dtype']!r}; annotations are integer task indices",
                file=rel,
                field=f"annotation.{key}",
            )
    return clean


def _check_slices(ctx: _Ctx, section: str, default_column: str, groups: dict[str, dict[str, Any]]) -> None:
    rel = "meta/modality.json"
    by_column: dict[str, list[tuple[int, int, str]]] = {}
    for key, entry in groups.items():
        where = f"{section}.{key}"
        start, end = entry.get("start"), entry.get("end")
        column = entry.get("original_key", default_column)
        if not _is_int(start) or not _is_int(end) or start < 0 or start >= end:
            ctx.add(
                "MODALITY_SLICE_INVALID",
                f"{where}: start={start!r}, end={end!r} (need integers 0 <= start < end)",
                file=rel,
                field=where,
            )
            start = end = None
        feat = ctx.features.get(column) if isinstance(column, str) else None
        if ctx.declared is None or (isinstance(column, str) and column in ctx.declared and feat is None):
            pass  # features unusable, or this one is malformed (both reported already)
        elif feat is None or feat["dtype"] in ("video", "image", "string"):
            what = "not a feature of meta/info.json" if feat is None else f"a {feat['dtype']} feature"
            ctx.add(
                "MODALITY_UNKNOWN_COLUMN",
                f"{where} reads column {column!r}, which is {what}",
                file=rel,
                field=f"{where}.original_key" if "original_key" in entry else where,
            )
        elif start is not None:
            dim = feat["shape"][0]
            if end > dim:
                ctx.add(
                    "MODALITY_SLICE_OUT_OF_BOUNDS",
                    f"{where} = [{start}:{end}) exceeds {column!r} of dimension {dim}",
                    file=rel,
                    field=where,
                )
            by_column.setdefault(column, []).append((start, end, key))
        rot = entry.get("rotation_type")
        if rot is not None and rot not in ROTATION_TYPES:
            ctx.add(
                "MODALITY_ROTATION_TYPE_INVALID",
                f"{where}.rotation_type {rot!r} is not one of {', '.join(sorted(ROTATION_TYPES))}",
                file=rel,
                field=f"{where}.rotation_type",
            )
        rng = entry.get("range")
        if rng is not None and not (
            isinstance(rng, list) and len(rng) == 2 and all(_is_number(v) for v in rng) and rng[0] < rng[1]
        ):
            ctx.add(
                "MODALITY_RANGE_INVALID",
                f"{where}.range {rng!r} must be [lo, hi] with lo < hi",
                file=rel,
                field=f"{where}.range",
            )
    for column, spans in by_column.items():
        spans.sort()
        dim = ctx.features[column]["shape"][0]
        covered_to = 0
        gaps = []
        for (s0, e0, k0), (s1, _e1, k1) in pairwise(spans):
            if s1 < e0:
                ctx.add(
                    "MODALITY_SLICE_OVERLAP",
                    f"{section}.{k1} [{s1}:{_e1}) overlaps {section}.{k0} [{s0}:{e0}) in column {column!r}",
                    file=rel,
                    field=f"{section}.{k1}",
                )
        for s, e, _k in spans:
            if s > covered_to:
                gaps.append(f"[{covered_to}:{s})")
            covered_to = max(covered_to, e)
        if covered_to < dim:
            gaps.append(f"[{covered_to}:{dim})")
        if gaps:
            ctx.add(
                "MODALITY_SLICE_GAP",
                f"{section} groups leave {', '.join(gaps)} of {column!r} (dim {dim}) unused",
                file=rel,
                field=section,
            )


def _group_dim(modality: dict[str, Any], section: str, key: str) -> int | None:
    entry = modality.get(section, {}).get(key)
    if not entry:
        return None
    s, e = entry.get("start"), entry.get("end")
    return e - s if _is_int(s) and _is_int(e) and e > s else None


def _check_config(ctx: _Ctx, modality: dict[str, Any] | None) -> None:
    cfg = ctx.cfg
    if cfg is None or modality is None:
        return
    rel = "meta/modality.json"
    src = cfg.source
    for section in ("state", "action", "video"):
        defined = modality.get(section, {})
        for key in cfg[section].modality_keys:
            if key not in defined:
                ctx.add(
                    "CONFIG_KEY_MISSING",
                    f"the modality config ({src}) uses {section} key {key!r}, which "
                    f"modality.json does not define (defined: {', '.join(defined) or 'none'})",
                    file=rel,
                    field=f"{section}.{key}",
                )
    for key in cfg.language.modality_keys:
        annotations = modality.get("annotation", {})
        if key == "task":  # the frame's task_index (checked with the other task columns)
            continue
        if not key.startswith("annotation."):
            ctx.add(
                "CONFIG_KEY_MISSING",
                f"the modality config ({src}) uses language key {key!r}; only "
                "task and annotation.<source>.<type> keys are supported",
                file=rel,
                field=f"language.{key}",
                hint="Use task (the frame's task_index) or an annotation.* key defined in meta/modality.json.",
            )
        elif key[len("annotation.") :] not in annotations:
            ctx.add(
                "CONFIG_KEY_MISSING",
                f"the modality config ({src}) uses language key {key!r}, but "
                f"modality.json defines no annotation {key[len('annotation.') :]!r} (defined: "
                f"{', '.join(annotations) or 'none'})",
                file=rel,
                field=f"language.{key}",
            )
    for key in cfg.relative_action_keys():
        ref = cfg.reference_state_key(key)
        a_dim, s_dim = _group_dim(modality, "action", key), _group_dim(modality, "state", ref)
        if a_dim is not None and s_dim is not None and a_dim != s_dim:
            ctx.add(
                "CONFIG_RELATIVE_DIM_MISMATCH",
                f"RELATIVE action {key!r} has dimension {a_dim} but its reference state {ref!r} has {s_dim}",
                file=rel,
                field=f"action.{key}",
            )


# ===================================================================================================== B/C. per episode


class _EpisodePlan:
    """What the per-episode pass checks, resolved once; plus the small dataset-wide state it carries."""

    def __init__(self) -> None:
        self.tabular: dict[str, dict[str, Any]] = {}  # declared non-video features read from parquet
        self.read_columns: list[str] = []
        self.index_columns: dict[str, str] = {}  # column -> code for out-of-range values
        self.used_videos: set[str] = set()
        self.tasks: dict[int, str] | None = None
        self.task_keys: np.ndarray | None = None
        self.prev_index_end: int | None = 0  # expected first global index of the next episode
        self.last_episode = -1
        self.rows_override: dict[int, int] = {}  # episodes whose parquet row count differs from their length
        self.horizon: int | None = None
        self.video_missing: dict[str, list[int]] = {}  # unused camera -> [count, first, last] episodes without files
        self.video_path_reported = False
        self.tables_read = 0
        self.keyframes: dict[str, tuple[int, int, int]] = {}  # key -> (episodes, frames, keyframes), deep mode
        self.undeclared: dict[str, int] = {}
        self.length_code = "EPISODE_LENGTH_MISMATCH"
        self.episodes_label = "meta/episodes.jsonl"
        self.tasks_label = "meta/tasks.jsonl"

    @classmethod
    def build(
        cls, ctx: _Ctx, layout: _Layout, modality: dict[str, Any] | None, tasks: dict[int, str] | None
    ) -> _EpisodePlan:
        plan = cls()
        plan.length_code = layout.length_mismatch_code
        plan.episodes_label = layout.episodes_file
        plan.tasks_label = layout.tasks_file
        plan.tabular = {k: f for k, f in ctx.features.items() if f["dtype"] != "video"}
        plan.read_columns = [k for k, f in plan.tabular.items() if f["dtype"] not in ("image",)]
        for extra in ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"):
            if extra not in plan.read_columns:
                plan.read_columns.append(extra)  # read if present even when undeclared
        plan.tasks = tasks
        if tasks is not None:
            keys = set(tasks)
            if not layout.tasks_complete:  # a broken line may define any index below the line count
                keys |= set(range(layout.task_lines))
                plan.tasks = None
            plan.task_keys = np.array(sorted(keys), dtype=np.int64)
        if "task_index" in plan.read_columns:
            plan.index_columns["task_index"] = "TASK_INDEX_OUT_OF_RANGE"
        int_kinds = {
            k
            for k, f in plan.tabular.items()
            if (_numpy_dtype(f["dtype"]) is not None and _numpy_dtype(f["dtype"]).kind in "iu")
        }
        for k in int_kinds:
            if k.startswith("annotation."):
                plan.index_columns[k] = "ANNOTATION_INDEX_OUT_OF_RANGE"
        if modality is not None:
            for key, entry in modality.get("annotation", {}).items():
                col = entry.get("original_key", f"annotation.{key}")
                if col in int_kinds and col not in plan.index_columns:
                    plan.index_columns[col] = "ANNOTATION_INDEX_OUT_OF_RANGE"
        video_features = {k for k, f in ctx.features.items() if f["dtype"] == "video"}
        if ctx.cfg is not None and modality is not None:
            for key in ctx.cfg.video.modality_keys:
                entry = modality.get("video", {}).get(key)
                if entry is not None:
                    plan.used_videos.add(entry.get("original_key", f"observation.images.{key}"))
        elif modality is not None:
            for key, entry in modality.get("video", {}).items():
                plan.used_videos.add(entry.get("original_key", f"observation.images.{key}"))
        else:
            plan.used_videos = set(video_features)  # nothing says which cameras are unused: all count
        if ctx.cfg is not None:
            plan.horizon = ctx.cfg.action_horizon
        return plan

    def finish(self, ctx: _Ctx, n_episodes: int) -> None:
        for key, (count, first, last) in self.video_missing.items():
            if count == n_episodes:
                scope = f"none of the {n_episodes} episodes has a file for it"
            elif count == 1:
                scope = f"episode {first} has no file for it"
            else:
                scope = f"{count} of {n_episodes} episodes (episodes {first}..{last}) have no file for it"
            ctx.add(
                "UNUSED_VIDEO_MISSING",
                f"video feature {key!r} is declared in meta/info.json but {scope}; "
                "neither modality.json nor the modality config uses it",
                file="meta/info.json",
                field=f"features.{key}",
                episode=first if count == 1 else None,
            )
        for key, (eps, frames, kfs) in self.keyframes.items():
            if eps and frames / max(kfs, 1) > _SPARSE_GOP:
                ctx.add(
                    "VIDEO_SPARSE_KEYFRAMES",
                    f"video feature {key!r} has one keyframe every "
                    f"{frames / max(kfs, 1):.0f} frames on average ({kfs} keyframes in {frames} frames over "
                    f"{eps} episodes); decoding by index then needs long sequential decodes",
                    file="meta/info.json",
                    field=f"features.{key}",
                )
        for col, ep in self.undeclared.items():
            ctx.add(
                "COLUMN_UNDECLARED",
                f"parquet column {col!r} is not declared in meta/info.json features (first seen in episode {ep})",
                file="meta/info.json",
                field=col,
            )
        for col in _LEROBOT_DEFAULT_COLUMNS if self.tables_read else ():
            if col not in self.tabular and col not in self.undeclared:
                ctx.add(
                    "DEFAULT_COLUMN_MISSING",
                    f"no {col!r} column (LeRobot always writes one); neither declared nor present in the parquet files",
                    file="meta/info.json",
                    field=col,
                )


def _check_episode(ctx: _Ctx, layout: _Layout, source: _EpisodeSource, plan: _EpisodePlan) -> int | None:
    """Tabular checks of one episode; returns its parquet row count (None when unreadable)."""
    ep = source.meta
    if ep.index != plan.last_episode + 1:
        plan.prev_index_end = None  # a gap in the episode list: the expected start is unknown
    plan.last_episode = ep.index
    if source.data_file is None:
        return None
    rel = ctx.rel(source.data_file)
    with ctx.guard(rel, ep.index):
        opened = layout.open_table(source, plan.read_columns)
        if opened is None:
            plan.prev_index_end = None
            return None
        schema, table = opened
        plan.tables_read += 1
        rows = table.num_rows
        _check_table(ctx, rel, ep, schema, table, plan)
        return rows
    plan.prev_index_end = None
    return None


def _check_table(ctx: _Ctx, rel: str, ep: _EpisodeMeta, schema: pa.Schema, table: pa.Table, plan: _EpisodePlan) -> None:
    e = ep.index
    rows = table.num_rows
    names = set(schema.names)
    if rows != ep.length:
        plan.rows_override[e] = rows
        ctx.add(
            plan.length_code,
            f"episode {e} has {rows} parquet rows but {plan.episodes_label} says length {ep.length}",
            file=rel,
            episode=e,
            field="length",
        )
    if rows == 0 and ep.length != 0:
        ctx.add("ZERO_LENGTH_EPISODE", f"episode {e} has no rows", file=rel, episode=e)
    for col in schema.names:
        if col not in plan.tabular and col not in ctx.features and not col.startswith("__index_level_"):
            plan.undeclared.setdefault(col, e)
    scalars: dict[str, np.ndarray] = {}
    for name, feat in plan.tabular.items():
        if name not in names:
            ctx.add(
                "COLUMN_MISSING",
                f"declared feature {name!r} is not a column of episode {e}'s parquet file",
                file=rel,
                episode=e,
                field=name,
            )
            continue
        if feat["dtype"] == "image":
            if not pa.types.is_struct(schema.field(name).type):
                ctx.add(
                    "DTYPE_MISMATCH",
                    f"image column {name!r} is {schema.field(name).type}, expected struct<bytes, path>",
                    file=rel,
                    episode=e,
                    field=name,
                )
            continue
        values = _check_column(ctx, rel, e, name, feat, table.column(name))
        if values is not None:
            scalars[name] = values
    for extra in ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"):
        if extra not in scalars and extra not in plan.tabular and extra in table.column_names:
            values = _scalar_values(table.column(extra))
            if values is not None:
                scalars[extra] = values
    _check_semantics(ctx, rel, ep, rows, scalars, plan)


def _expected_arrow_leaf(dtype: str) -> pa.DataType | None:
    if dtype == "string":
        return pa.string()
    dt = _numpy_dtype(dtype)
    return None if dt is None else pa.from_numpy_dtype(dt)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _scalar_values(col: pa.ChunkedArray) -> np.ndarray | None:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if _is_list(arr.type):
        return None
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    return None


def _check_column(
    ctx: _Ctx, rel: str, e: int, name: str, feat: dict[str, Any], col: pa.ChunkedArray
) -> np.ndarray | None:
    """dtype, nesting/list lengths, nulls, NaN/Inf of one column; returns 1-D values for scalar columns."""
    shape: list[int] = feat["shape"]
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    rows = len(arr)
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        ctx.add(
            "NULL_VALUES",
            f"column {name!r} has {arr.null_count} null rows (first: row {first})",
            file=rel,
            episode=e,
            field=name,
        )
        return None
    expected_leaf = _expected_arrow_leaf(feat["dtype"])
    scalar = shape == [1]
    if not _is_list(arr.type):
        if not scalar:
            ctx.add(
                "DTYPE_MISMATCH",
                f"column {name!r} is a scalar {arr.type} but meta/info.json declares shape {shape}",
                file=rel,
                episode=e,
                field=name,
            )
            return None
        levels: list[int] = []
    else:
        levels = shape
    values: pa.Array = arr
    shape_ok = True
    for depth, n in enumerate(levels):
        if not _is_list(values.type):
            ctx.add(
                "SHAPE_MISMATCH",
                f"column {name!r} is nested {depth} deep but shape {shape} needs {len(shape)} levels",
                file=rel,
                episode=e,
                field=name,
            )
            return None
        if pa.types.is_fixed_size_list(values.type):
            size = values.type.list_size
            if size != n:
                ctx.add(
                    "SHAPE_MISMATCH",
                    f"column {name!r} stores fixed lists of {size} values but shape is {shape}",
                    file=rel,
                    episode=e,
                    field=name,
                )
                shape_ok = False
        else:
            lengths = values.value_lengths().to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != n)
            if bad.size:
                seen = sorted({int(v) for v in np.unique(lengths[bad])})[:5]
                row = int(bad[0]) if depth == 0 else None
                ctx.add(
                    "SHAPE_MISMATCH",
                    f"column {name!r}: {bad.size} list(s) at nesting level {depth} have "
                    f"lengths {seen} instead of {n}" + (f" (first: row {row})" if row is not None else ""),
                    file=rel,
                    episode=e,
                    field=name,
                )
                shape_ok = False
        values = values.flatten()
    if _is_list(values.type):
        ctx.add(
            "SHAPE_MISMATCH", f"column {name!r} is nested deeper than shape {shape}", file=rel, episode=e, field=name
        )
        return None
    leaf = values.type
    if (
        expected_leaf is not None
        and leaf != expected_leaf
        and not (pa.types.is_string(expected_leaf) and pa.types.is_large_string(leaf))
    ):
        ctx.add(
            "DTYPE_MISMATCH",
            f"column {name!r} holds {leaf} values but meta/info.json declares {feat['dtype']!r}",
            file=rel,
            episode=e,
            field=name,
        )
    if pa.types.is_floating(leaf):
        flat = values.to_numpy(zero_copy_only=False)
        finite = np.isfinite(flat)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            per_row = math.prod(levels) if levels and shape_ok else 1
            first_row = int(bad[0]) // per_row if shape_ok else None
            n_nan = int(np.isnan(flat[bad]).sum())
            ctx.add(
                "NON_FINITE_VALUES",
                f"column {name!r} has {n_nan} NaN and {bad.size - n_nan} Inf values"
                + (f" (first: row {first_row})" if first_row is not None else ""),
                file=rel,
                episode=e,
                field=name,
            )
            flat = flat[finite]
        if flat.size and float(np.abs(flat).max()) > _LARGE_VALUE:
            ctx.aggregate("VALUE_MAGNITUDE_LARGE", name, f"column {name!r} has values with |x| > {_LARGE_VALUE:g}").hit(
                e, rel, f"max |x| = {float(np.abs(flat).max()):.3g}"
            )
    if not levels or (levels == [1] and shape_ok):
        if pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf):
            out = values.to_numpy(zero_copy_only=False)
            return out if len(out) == rows else None
    return None


def _check_semantics(
    ctx: _Ctx, rel: str, ep: _EpisodeMeta, rows: int, scalars: dict[str, np.ndarray], plan: _EpisodePlan
) -> None:
    e = ep.index
    # episode_index column
    col = scalars.get("episode_index")
    if col is not None and rows and (col != e).any():
        wrong = sorted({int(v) for v in np.unique(col[col != e])})[:5]
        ctx.add(
            "EPISODE_INDEX_COLUMN_MISMATCH",
            f"episode_index column holds {wrong} in {int((col != e).sum())} rows of episode {e}",
            file=rel,
            episode=e,
            field="episode_index",
        )
    # frame_index
    col = scalars.get("frame_index")
    if col is not None and rows:
        bad = np.flatnonzero(col != np.arange(rows))
        if bad.size:
            ctx.add(
                "FRAME_INDEX_MISMATCH",
                f"frame_index is not 0..{rows - 1} (first bad row {int(bad[0])} holds {int(col[bad[0]])})",
                file=rel,
                episode=e,
                field="frame_index",
            )
    # global index
    col = scalars.get("index")
    if col is not None and rows:
        start = int(col[0])
        bad = np.flatnonzero(col != start + np.arange(rows))
        if bad.size:
            ctx.add(
                "GLOBAL_INDEX_MISMATCH",
                f"index is not contiguous within episode {e} (row {int(bad[0])} holds "
                f"{int(col[bad[0]])}, expected {start + int(bad[0])})",
                file=rel,
                episode=e,
                field="index",
            )
        if plan.prev_index_end is not None and start != plan.prev_index_end:
            ctx.add(
                "GLOBAL_INDEX_MISMATCH",
                f"episode {e} starts at index {start}, expected {plan.prev_index_end} "
                "(one past the previous episode's last index)",
                file=rel,
                episode=e,
                field="index",
            )
        plan.prev_index_end = int(col[-1]) + 1
    else:
        plan.prev_index_end = None  # cannot tell where the next episode should start
    # timestamps
    ts = scalars.get("timestamp")
    if ts is not None and rows and ctx.fps:
        _check_timestamps(ctx, rel, e, ts, plan)
    # task / annotation indices
    if plan.task_keys is not None and rows:
        for column, code in plan.index_columns.items():
            col = scalars.get(column)
            if col is None or col.dtype.kind not in "iu":
                continue
            uniq = np.unique(col)
            bad = uniq[~np.isin(uniq, plan.task_keys)]
            if bad.size:
                ctx.add(
                    code,
                    f"{column} values {[int(v) for v in bad[:8]]} are not task indices of "
                    f"{plan.tasks_label} (valid: {_ranges([int(k) for k in plan.task_keys])})",
                    file=rel,
                    episode=e,
                    field=column,
                )
        col = scalars.get("task_index")
        if col is not None and col.dtype.kind in "iu" and ep.tasks and plan.tasks is not None:
            used = {plan.tasks[int(v)] for v in np.unique(col) if int(v) in plan.tasks}
            missing = sorted(used - set(ep.tasks))
            if missing:
                ctx.add(
                    "EPISODE_TASKS_MISMATCH",
                    f"rows use task(s) {missing} that episode {e}'s tasks list in {ep.file} lacks",
                    file=ep.file,
                    episode=e,
                    field=ep.where or f"line {ep.line}",
                )
    # next.done
    done = scalars.get("next.done")
    if done is not None and rows and done.dtype == bool:
        expected = np.zeros(rows, dtype=bool)
        expected[-1] = True
        if (done != expected).any():
            ctx.aggregate("NEXT_DONE_INCONSISTENT", "next.done", "next.done is not true exactly on the last frame").hit(
                e, rel, f"true at rows {_ranges([int(i) for i in np.flatnonzero(done)][:20]) or 'none'}"
            )
    # horizon
    if plan.horizon is not None and 0 < rows < plan.horizon:
        ctx.aggregate(
            "EPISODE_SHORTER_THAN_HORIZON", "length", f"episodes shorter than the action horizon {plan.horizon}"
        ).hit(e, rel, f"{rows} frames")


def _check_timestamps(ctx: _Ctx, rel: str, e: int, ts: np.ndarray, plan: _EpisodePlan) -> None:
    if not np.isfinite(ts).all():
        return  # NON_FINITE_VALUES already reported
    fps = ctx.fps
    assert fps
    dt = 1.0 / fps
    # float32 timestamps carry rounding of one ulp each (1.2e-4 s beyond ~17 min); do not call that a violation
    ulp = float(np.spacing(np.abs(ts).max())) if ts.dtype.itemsize < 8 else 0.0
    tol = ctx.tol + 2 * ulp
    ts = ts.astype(np.float64, copy=False)
    diffs = np.diff(ts)
    bad = np.flatnonzero(diffs <= 0)
    if bad.size:
        k = int(bad[0])
        ctx.add(
            "TIMESTAMPS_NOT_INCREASING",
            f"{bad.size} timestamp(s) do not increase (first: row {k + 1} "
            f"{ts[k + 1]:.6f} s after row {k} {ts[k]:.6f} s)",
            file=rel,
            episode=e,
            field="timestamp",
        )
        return
    dev = np.abs(diffs - dt)
    bad = np.flatnonzero(dev > tol)
    if bad.size:
        k = int(bad[0])
        ctx.add(
            "TIMESTAMP_STEP_MISMATCH",
            f"{bad.size} step(s) differ from 1/fps = {dt:.6f} s by more than "
            f"{tol:g} s (first: rows {k}->{k + 1} step {diffs[k]:.6f} s; worst deviation "
            f"{float(dev.max()):.6f} s)",
            file=rel,
            episode=e,
            field="timestamp",
        )
        return
    if abs(ts[0]) > tol:
        steps = ts[0] * fps
        note = f" = {round(steps)}/fps" if abs(steps - round(steps)) < 1e-3 else ""
        ctx.aggregate("TIMESTAMP_START_NONZERO", "timestamp", "episode timestamps start after 0").hit(
            e, rel, f"starts at {ts[0]:.6g} s{note}"
        )
    drift = np.abs(ts - (ts[0] + np.arange(len(ts)) * dt))
    if drift.size and float(drift.max()) > tol:
        k = int(np.argmax(drift))
        ctx.aggregate(
            "TIMESTAMP_DRIFT", "timestamp", f"timestamps drift from ts[0] + k/fps by more than {tol:g} s"
        ).hit(e, rel, f"{float(drift[k]):.6f} s at row {k}")


# --------------------------------------------------------------------------------------------------- C. video


def _check_episode_videos(ctx: _Ctx, source: _EpisodeSource, plan: _EpisodePlan, rows: int | None) -> None:
    e = source.meta.index
    expected_frames = rows if rows is not None else source.meta.length
    for key, path in source.videos.items():
        used = key in plan.used_videos
        if path is None:
            if used and ctx.setting("video_path") is None and not plan.video_path_reported:
                ctx.add(
                    "INFO_KEY_MISSING",
                    f"video_path is missing but video feature {key!r} is used",
                    file="meta/info.json",
                    field="video_path",
                )
                plan.video_path_reported = True
            continue
        rel = ctx.rel(path)
        if not path.is_file():
            if used:
                ctx.add(
                    "VIDEO_MISSING",
                    f"video {key!r} of episode {e} is missing",
                    file=rel,
                    episode=e,
                    field=key,
                    hint="Restore the file, or stop using this camera in modality.json / the config.",
                )
            else:
                stat = plan.video_missing.setdefault(key, [0, e, e])
                stat[0] += 1
                stat[2] = e
            continue
        with ctx.guard(rel, e):
            _check_video_file(ctx, rel, path, e, key, expected_frames, plan)


def _check_video_file(
    ctx: _Ctx,
    rel: str,
    path: Path,
    e: int,
    key: str,
    expected_frames: int,
    plan: _EpisodePlan,
    holds: str = "the episode has",
) -> Any:
    """Container, codec, size, fps and frame-count checks of one file; returns its VideoInfo (None if unreadable).

    ``expected_frames`` is what the file must hold (v3: the sum of its episodes' lengths, described by ``holds``).
    """
    from groot_ft.data.video import VideoError, probe_video

    feature = ctx.features[key]
    meta = _video_meta(feature)
    try:
        info = probe_video(path)
    except VideoError as exc:
        ctx.add(
            "VIDEO_UNREADABLE",
            f"cannot open video {key!r} of episode {e}: {_strip_path(exc, path)}",
            file=rel,
            episode=e,
            field=key,
        )
        return None
    if info.num_video_streams != 1:
        ctx.add(
            "VIDEO_STREAM_COUNT",
            f"file has {info.num_video_streams} video streams (expected 1)",
            file=rel,
            episode=e,
            field=key,
        )
    codec = _CODEC_ALIASES.get(info.codec, info.codec)
    if codec not in SUPPORTED_CODECS:
        ctx.add(
            "VIDEO_CODEC_UNSUPPORTED",
            f"codec {info.codec!r} is not one of {', '.join(sorted(SUPPORTED_CODECS))}",
            file=rel,
            episode=e,
            field=key,
        )
    declared_codec = meta.get("video.codec")
    if isinstance(declared_codec, str) and _CODEC_ALIASES.get(declared_codec, declared_codec) != codec:
        ctx.aggregate(
            "VIDEO_CODEC_MISMATCH",
            f"features.{key}",
            f"video feature {key!r} declares codec {declared_codec!r} but its files use {codec!r}",
        ).hit(e, rel)
    height, width = _video_hw(feature)
    if (info.height, info.width) != (height, width):
        ctx.add(
            "VIDEO_RESOLUTION_MISMATCH",
            f"video is {info.width}x{info.height} (WxH) but meta/info.json declares {width}x{height}",
            file=rel,
            episode=e,
            field=key,
        )
    declared_pix = meta.get("video.pix_fmt")
    if isinstance(declared_pix, str) and info.pix_fmt and info.pix_fmt != declared_pix:
        ctx.aggregate(
            "VIDEO_PIX_FMT_MISMATCH", f"features.{key}", f"video feature {key!r} declares pix_fmt {declared_pix!r}"
        ).hit(e, rel, f"file uses {info.pix_fmt!r}")
    fps = ctx.fps
    fps_ok = True
    if fps and info.fps and abs(info.fps - fps) > 1e-3 * fps:
        fps_ok = False
        ctx.add(
            "VIDEO_FPS_MISMATCH",
            f"video runs at {info.fps:g} fps but the dataset fps is {fps:g}",
            file=rel,
            episode=e,
            field=key,
        )
    frames = info.num_frames
    source = "container metadata" if info.frame_count_source == "metadata" else "demuxed packets"
    if ctx.deep:
        decoded = _deep_decode(ctx, rel, path, e, key, (height, width), plan)
        if decoded is None:
            return info
        frames, source = decoded, "decoded frames"
    if frames < expected_frames:
        ctx.add(
            "VIDEO_FRAME_COUNT_MISMATCH",
            f"video has {frames} frames ({source}) but {holds} "
            f"{expected_frames} rows; GR00T decodes one frame per row",
            file=rel,
            episode=e,
            field=key,
        )
    elif frames > expected_frames:
        ctx.add(
            "VIDEO_EXTRA_FRAMES",
            f"video has {frames} frames ({source}) for {expected_frames} rows",
            file=rel,
            episode=e,
            field=key,
        )
    elif (
        fps_ok
        and fps
        and expected_frames
        and info.duration_s
        and abs(info.duration_s - expected_frames / fps) > 1.0 / fps + 1e-6
    ):
        ctx.add(
            "VIDEO_DURATION_MISMATCH",
            f"video lasts {info.duration_s:.4f} s but {expected_frames} frames at "
            f"{fps:g} fps last {expected_frames / fps:.4f} s",
            file=rel,
            episode=e,
            field=key,
        )
    return info


def _strip_path(exc: Exception, path: Path) -> str:
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _deep_decode(
    ctx: _Ctx, rel: str, path: Path, e: int, key: str, hw: tuple[int, int], plan: _EpisodePlan
) -> int | None:
    """Decode every frame (no colour conversion); count frames and keyframes. None after a reported failure."""
    import av

    frames = keyframes = 0
    bad_size: tuple[int, int] | None = None
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.is_keyframe and packet.size:
                    keyframes += 1
                for frame in packet.decode():
                    frames += 1
                    if bad_size is None and (frame.height, frame.width) != hw:
                        bad_size = (frame.height, frame.width)
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        ctx.add("VIDEO_DECODE_ERROR", f"decoding failed after {frames} frames: {exc}", file=rel, episode=e, field=key)
        return None
    if bad_size is not None:
        ctx.add(
            "VIDEO_RESOLUTION_MISMATCH",
            f"decoded frames are {bad_size[1]}x{bad_size[0]} (WxH), expected {hw[1]}x{hw[0]}",
            file=rel,
            episode=e,
            field=key,
        )
    eps, total, kfs = plan.keyframes.get(key, (0, 0, 0))
    plan.keyframes[key] = (eps + 1, total + frames, kfs + keyframes)
    return frames


# ===================================================================================================== D. stats


def _as_array(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def _check_stats_object(
    ctx: _Ctx,
    stats: Any,
    rel: str,
    episode: int | None,
    frames: int,
    *,
    groot: bool,
    line: int | None = None,
    row: int | None = None,
) -> None:
    where0 = f"line {line}: " if line is not None else f"row {row}: " if row is not None else ""
    if not isinstance(stats, dict):
        ctx.add(
            "STATS_INVALID",
            f"{where0}stats must be an object mapping features to statistics, got {type(stats).__name__}",
            file=rel,
            episode=episode,
        )
        return
    for name, entry in stats.items():
        if name == "__fingerprints__":
            continue
        field_name = name
        feat = ctx.features.get(name)
        if ctx.declared is None or (feat is None and name in ctx.declared):
            continue  # features unusable, or this one is malformed (both reported already)
        if feat is None:
            ctx.add(
                "STATS_UNKNOWN_FEATURE",
                f"{where0}stats for {name!r}, which is not a feature of meta/info.json",
                file=rel,
                episode=episode,
                field=field_name,
            )
            continue
        if not isinstance(entry, dict):
            ctx.add(
                "STATS_INVALID",
                f"{where0}stats of {name!r} must be an object, got {type(entry).__name__}",
                file=rel,
                episode=episode,
                field=field_name,
            )
            continue
        is_image = feat["dtype"] in ("video", "image")
        arrays: dict[str, np.ndarray] = {}
        for stat, value in entry.items():
            arr = _as_array(value)
            if arr is None or arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
                ctx.add(
                    "STATS_INVALID",
                    f"{where0}{name}.{stat} is not a finite numeric array",
                    file=rel,
                    episode=episode,
                    field=f"{name}.{stat}",
                )
                continue
            arrays[stat] = arr
        for stat, arr in arrays.items():
            if stat == "count":
                if arr.size != 1:
                    ctx.add(
                        "STATS_SHAPE_MISMATCH",
                        f"{where0}{name}.count has shape {arr.shape}, expected (1,)",
                        file=rel,
                        episode=episode,
                        field=f"{name}.count",
                    )
                elif not is_image and int(arr.reshape(-1)[0]) != frames:
                    ctx.add(
                        "STATS_COUNT_MISMATCH",
                        f"{where0}{name}.count is {int(arr.reshape(-1)[0])} but there are {frames} frames",
                        file=rel,
                        episode=episode,
                        field=f"{name}.count",
                    )
                continue
            if is_image:
                ok = arr.ndim == 3 and arr.shape[1:] == (1, 1) or arr.ndim == 1
            else:
                ok = arr.shape == tuple(feat["shape"]) or (feat["shape"] == [1] and arr.shape in ((), (1,)))
            if not ok:
                want = "(C, 1, 1)" if is_image else str(tuple(feat["shape"]))
                ctx.add(
                    "STATS_SHAPE_MISMATCH",
                    f"{where0}{name}.{stat} has shape {arr.shape}, expected {want}",
                    file=rel,
                    episode=episode,
                    field=f"{name}.{stat}",
                )
        _check_stat_order(ctx, arrays, rel, episode, name, where0)
        if (
            groot
            and not is_image
            and (_numpy_dtype(feat["dtype"]) is not None and _numpy_dtype(feat["dtype"]).kind == "f")
        ):
            lacking = [s for s in _GROOT_STATS if s not in entry]
            if lacking:
                ctx.add("STATS_INCOMPLETE", f"{name} lacks {', '.join(lacking)}", file=rel, episode=episode, field=name)
    if groot:
        for name, feat in ctx.features.items():
            if name not in stats and (
                _numpy_dtype(feat["dtype"]) is not None and _numpy_dtype(feat["dtype"]).kind == "f"
            ):
                ctx.add(
                    "STATS_INCOMPLETE", f"no stats for float feature {name!r}", file=rel, episode=episode, field=name
                )


def _check_stat_order(
    ctx: _Ctx, arrays: dict[str, np.ndarray], rel: str, episode: int | None, name: str, where0: str
) -> None:
    present = [s for s in _STAT_ORDER if s in arrays]
    problems = []
    for lo_name, hi_name in pairwise(present):
        lo, hi = arrays[lo_name], arrays[hi_name]
        if lo.shape != hi.shape:
            continue
        slack = 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
        if (lo > hi + slack).any():
            problems.append(f"{lo_name} > {hi_name} in {int((lo > hi + slack).sum())} dimension(s)")
    if "mean" in arrays and "min" in arrays and "max" in arrays:
        mean, lo, hi = arrays["mean"], arrays["min"], arrays["max"]
        if mean.shape == lo.shape == hi.shape:
            slack = 1e-5 * np.maximum(1.0, np.abs(mean))
            outside = (mean < lo - slack) | (mean > hi + slack)
            if outside.any():
                problems.append(f"mean outside [min, max] in {int(outside.sum())} dimension(s)")
    if "std" in arrays and (arrays["std"] < 0).any():
        problems.append("negative std")
    if problems:
        ctx.add(
            "STATS_ORDER_VIOLATION",
            f"{where0}stats of {name!r}: {'; '.join(problems)}",
            file=rel,
            episode=episode,
            field=name,
        )


def _check_relative_stats(ctx: _Ctx, modality: dict[str, Any] | None) -> None:
    rel = "meta/relative_stats.json"
    if not (ctx.root / rel).is_file():
        return
    stats = _load_json(ctx, rel, required=False)
    if stats is _MISSING:
        return
    if not isinstance(stats, dict):
        ctx.add("STATS_INVALID", f"relative stats must be an object, got {type(stats).__name__}", file=rel)
        return
    for key, entry in stats.items():
        if key == "__fingerprints__":
            continue
        if not isinstance(entry, dict):
            ctx.add("STATS_INVALID", f"relative stats of {key!r} must be an object", file=rel, field=key)
            continue
        arrays = {}
        for stat, value in entry.items():
            arr = _as_array(value)
            if arr is None or arr.dtype.kind not in "fiu" or not np.isfinite(arr).all() or arr.ndim != 2:
                ctx.add(
                    "STATS_INVALID",
                    f"{key}.{stat} is not a finite (horizon, dim) array",
                    file=rel,
                    field=f"{key}.{stat}",
                )
                continue
            arrays[stat] = arr
        _check_stat_order(ctx, arrays, rel, None, key, "")
    cfg = ctx.cfg
    if cfg is None or modality is None:
        return
    horizon = cfg.action_horizon
    for key in cfg.relative_action_keys():
        dim = _group_dim(modality, "action", key)
        entry = stats.get(key)
        if not isinstance(entry, dict):
            ctx.add("RELATIVE_STATS_MISMATCH", f"no relative stats for RELATIVE action {key!r}", file=rel, field=key)
            continue
        for stat, value in entry.items():
            arr = _as_array(value)
            if arr is not None and dim is not None and arr.shape != (horizon, dim):
                ctx.add(
                    "RELATIVE_STATS_MISMATCH",
                    f"{key}.{stat} has shape {arr.shape}, but the config needs (action horizon {horizon}, dim {dim})",
                    file=rel,
                    field=f"{key}.{stat}",
                )
                break
