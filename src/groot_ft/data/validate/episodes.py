"""B/C. The per-episode pass: columns, semantics and timestamps of each episode's rows."""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from groot_ft.data.validate.codes import LARGE_VALUE, LEROBOT_DEFAULT_COLUMNS, SPARSE_GOP
from groot_ft.data.validate.context import Ctx
from groot_ft.data.validate.info import numpy_dtype
from groot_ft.data.validate.report import ranges

if TYPE_CHECKING:  # annotations only: the runtime imports form no cycle
    from groot_ft.data.validate.layouts import EpisodeMeta, EpisodeSource, Layout


class EpisodePlan:
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
        cls, ctx: Ctx, layout: Layout, modality: dict[str, Any] | None, tasks: dict[int, str] | None
    ) -> EpisodePlan:
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
            if (numpy_dtype(f["dtype"]) is not None and numpy_dtype(f["dtype"]).kind in "iu")
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

    def note_missing_videos(self, key: str, episodes: list[int]) -> None:
        """Count ``episodes`` (in order) as having no file of the unused camera ``key`` (summarized in finish)."""
        stat = self.video_missing.setdefault(key, [0, episodes[0], episodes[-1]])
        stat[0] += len(episodes)
        stat[1], stat[2] = min(stat[1], episodes[0]), max(stat[2], episodes[-1])

    def no_video_path(self, ctx: Ctx, key: str, used: bool) -> None:
        """A video file cannot be formed: report a missing video_path once, when a used camera needs it."""
        if used and ctx.setting("video_path") is None and not self.video_path_reported:
            ctx.add(
                "INFO_KEY_MISSING",
                f"video_path is missing but video feature {key!r} is used",
                file="meta/info.json",
                field="video_path",
            )
            self.video_path_reported = True

    def finish(self, ctx: Ctx, n_episodes: int) -> None:
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
            if eps and frames / max(kfs, 1) > SPARSE_GOP:
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
        for col in LEROBOT_DEFAULT_COLUMNS if self.tables_read else ():
            if col not in self.tabular and col not in self.undeclared:
                ctx.add(
                    "DEFAULT_COLUMN_MISSING",
                    f"no {col!r} column (LeRobot always writes one); neither declared nor present in the parquet files",
                    file="meta/info.json",
                    field=col,
                )


def check_episode(ctx: Ctx, layout: Layout, source: EpisodeSource, plan: EpisodePlan) -> int | None:
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
        check_table(ctx, rel, ep, schema, table, plan)
        return rows
    plan.prev_index_end = None
    return None


def check_table(ctx: Ctx, rel: str, ep: EpisodeMeta, schema: pa.Schema, table: pa.Table, plan: EpisodePlan) -> None:
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
        values = check_column(ctx, rel, e, name, feat, table.column(name))
        if values is not None:
            scalars[name] = values
    for extra in ("timestamp", "frame_index", "episode_index", "index", "task_index", "next.done"):
        if extra not in scalars and extra not in plan.tabular and extra in table.column_names:
            values = scalar_values(table.column(extra))
            if values is not None:
                scalars[extra] = values
    check_semantics(ctx, rel, ep, rows, scalars, plan)


def expected_arrow_leaf(dtype: str) -> pa.DataType | None:
    if dtype == "string":
        return pa.string()
    dt = numpy_dtype(dtype)
    return None if dt is None else pa.from_numpy_dtype(dt)


def is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def scalar_values(col: pa.ChunkedArray) -> np.ndarray | None:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if is_list(arr.type):
        return None
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    return None


def check_column(
    ctx: Ctx, rel: str, e: int, name: str, feat: dict[str, Any], col: pa.ChunkedArray
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
    expected_leaf = expected_arrow_leaf(feat["dtype"])
    scalar = shape == [1]
    if not is_list(arr.type):
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
        if not is_list(values.type):
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
    if is_list(values.type):
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
        if flat.size and float(np.abs(flat).max()) > LARGE_VALUE:
            ctx.aggregate("VALUE_MAGNITUDE_LARGE", name, f"column {name!r} has values with |x| > {LARGE_VALUE:g}").hit(
                e, rel, f"max |x| = {float(np.abs(flat).max()):.3g}"
            )
    if not levels or (levels == [1] and shape_ok):
        if pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf):
            out = values.to_numpy(zero_copy_only=False)
            return out if len(out) == rows else None
    return None


def _first_miscount(col: np.ndarray, start: int) -> int | None:
    """The first row where ``col`` stops counting up by one from ``start``; None if it never does."""
    bad = np.flatnonzero(col != start + np.arange(len(col)))
    return int(bad[0]) if bad.size else None


def check_semantics(
    ctx: Ctx, rel: str, ep: EpisodeMeta, rows: int, scalars: dict[str, np.ndarray], plan: EpisodePlan
) -> None:
    e = ep.index
    add = partial(ctx.add, file=rel, episode=e)  # findings about this episode's data file
    # episode_index column
    col = scalars.get("episode_index")
    if col is not None and rows and (col != e).any():
        wrong = sorted({int(v) for v in np.unique(col[col != e])})[:5]
        add(
            "EPISODE_INDEX_COLUMN_MISMATCH",
            f"episode_index column holds {wrong} in {int((col != e).sum())} rows of episode {e}",
            field="episode_index",
        )
    # frame_index
    col = scalars.get("frame_index")
    if col is not None and rows and (row := _first_miscount(col, 0)) is not None:
        add(
            "FRAME_INDEX_MISMATCH",
            f"frame_index is not 0..{rows - 1} (first bad row {row} holds {int(col[row])})",
            field="frame_index",
        )
    # global index
    col = scalars.get("index")
    if col is not None and rows:
        start = int(col[0])
        if (row := _first_miscount(col, start)) is not None:
            add(
                "GLOBAL_INDEX_MISMATCH",
                f"index is not contiguous within episode {e} (row {row} holds {int(col[row])}, expected {start + row})",
                field="index",
            )
        if plan.prev_index_end is not None and start != plan.prev_index_end:
            add(
                "GLOBAL_INDEX_MISMATCH",
                f"episode {e} starts at index {start}, expected {plan.prev_index_end} "
                "(one past the previous episode's last index)",
                field="index",
            )
        plan.prev_index_end = int(col[-1]) + 1
    else:
        plan.prev_index_end = None  # cannot tell where the next episode should start
    # timestamps
    ts = scalars.get("timestamp")
    if ts is not None and rows and ctx.fps:
        check_timestamps(ctx, rel, e, ts, plan)
    # task / annotation indices
    if plan.task_keys is not None and rows:
        for column, code in plan.index_columns.items():
            col = scalars.get(column)
            if col is None or col.dtype.kind not in "iu":
                continue
            uniq = np.unique(col)
            bad = uniq[~np.isin(uniq, plan.task_keys)]
            if bad.size:
                add(
                    code,
                    f"{column} values {[int(v) for v in bad[:8]]} are not task indices of "
                    f"{plan.tasks_label} (valid: {ranges([int(k) for k in plan.task_keys])})",
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
                e, rel, f"true at rows {ranges([int(i) for i in np.flatnonzero(done)][:20]) or 'none'}"
            )
    # horizon
    if plan.horizon is not None and 0 < rows < plan.horizon:
        ctx.aggregate(
            "EPISODE_SHORTER_THAN_HORIZON", "length", f"episodes shorter than the action horizon {plan.horizon}"
        ).hit(e, rel, f"{rows} frames")


def check_timestamps(ctx: Ctx, rel: str, e: int, ts: np.ndarray, plan: EpisodePlan) -> None:
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
