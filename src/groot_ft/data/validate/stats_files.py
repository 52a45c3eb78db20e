"""D. Stats files: ``meta/stats.json``, per-episode stats and ``meta/relative_stats.json``."""

from __future__ import annotations

from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np

from groot_ft.data.validate.codes import GROOT_STATS, STAT_ORDER
from groot_ft.data.validate.context import MISSING, Ctx, load_json
from groot_ft.data.validate.info import numpy_dtype
from groot_ft.data.validate.modality import group_dim


def as_array(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def check_stats_object(
    ctx: Ctx,
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
    add = partial(ctx.add, file=rel, episode=episode)  # every finding here is about this stats object
    if not isinstance(stats, dict):
        add(
            "STATS_INVALID",
            f"{where0}stats must be an object mapping features to statistics, got {type(stats).__name__}",
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
            add(
                "STATS_UNKNOWN_FEATURE",
                f"{where0}stats for {name!r}, which is not a feature of meta/info.json",
                field=field_name,
            )
            continue
        if not isinstance(entry, dict):
            add(
                "STATS_INVALID",
                f"{where0}stats of {name!r} must be an object, got {type(entry).__name__}",
                field=field_name,
            )
            continue
        is_image = feat["dtype"] in ("video", "image")
        arrays: dict[str, np.ndarray] = {}
        for stat, value in entry.items():
            arr = as_array(value)
            if arr is None or arr.dtype.kind not in "fiu" or not np.isfinite(arr).all():
                add(
                    "STATS_INVALID",
                    f"{where0}{name}.{stat} is not a finite numeric array",
                    field=f"{name}.{stat}",
                )
                continue
            arrays[stat] = arr
        for stat, arr in arrays.items():
            if stat == "count":
                if arr.size != 1:
                    add(
                        "STATS_SHAPE_MISMATCH",
                        f"{where0}{name}.count has shape {arr.shape}, expected (1,)",
                        field=f"{name}.count",
                    )
                elif not is_image and int(arr.reshape(-1)[0]) != frames:
                    add(
                        "STATS_COUNT_MISMATCH",
                        f"{where0}{name}.count is {int(arr.reshape(-1)[0])} but there are {frames} frames",
                        field=f"{name}.count",
                    )
                continue
            if is_image:
                ok = arr.ndim == 3 and arr.shape[1:] == (1, 1) or arr.ndim == 1
            else:
                ok = arr.shape == tuple(feat["shape"]) or (feat["shape"] == [1] and arr.shape in ((), (1,)))
            if not ok:
                want = "(C, 1, 1)" if is_image else str(tuple(feat["shape"]))
                add(
                    "STATS_SHAPE_MISMATCH",
                    f"{where0}{name}.{stat} has shape {arr.shape}, expected {want}",
                    field=f"{name}.{stat}",
                )
        check_stat_order(ctx, arrays, rel, episode, name, where0)
        if (
            groot
            and not is_image
            and (numpy_dtype(feat["dtype"]) is not None and numpy_dtype(feat["dtype"]).kind == "f")
        ):
            lacking = [s for s in GROOT_STATS if s not in entry]
            if lacking:
                add("STATS_INCOMPLETE", f"{name} lacks {', '.join(lacking)}", field=name)
    if groot:
        for name, feat in ctx.features.items():
            if name not in stats and (
                numpy_dtype(feat["dtype"]) is not None and numpy_dtype(feat["dtype"]).kind == "f"
            ):
                add("STATS_INCOMPLETE", f"no stats for float feature {name!r}", field=name)


def check_stat_order(
    ctx: Ctx, arrays: dict[str, np.ndarray], rel: str, episode: int | None, name: str, where0: str
) -> None:
    present = [s for s in STAT_ORDER if s in arrays]
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


def check_relative_stats(ctx: Ctx, modality: dict[str, Any] | None) -> None:
    rel = "meta/relative_stats.json"
    if not (ctx.root / rel).is_file():
        return
    stats = load_json(ctx, rel, required=False)
    if stats is MISSING:
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
            arr = as_array(value)
            if arr is None or arr.dtype.kind not in "fiu" or not np.isfinite(arr).all() or arr.ndim != 2:
                ctx.add(
                    "STATS_INVALID",
                    f"{key}.{stat} is not a finite (horizon, dim) array",
                    file=rel,
                    field=f"{key}.{stat}",
                )
                continue
            arrays[stat] = arr
        check_stat_order(ctx, arrays, rel, None, key, "")
    cfg = ctx.cfg
    if cfg is None or modality is None:
        return
    horizon = cfg.action_horizon
    for key in cfg.relative_action_keys():
        dim = group_dim(modality, "action", key)
        entry = stats.get(key)
        if not isinstance(entry, dict):
            ctx.add("RELATIVE_STATS_MISMATCH", f"no relative stats for RELATIVE action {key!r}", file=rel, field=key)
            continue
        for stat, value in entry.items():
            arr = as_array(value)
            if arr is not None and dim is not None and arr.shape != (horizon, dim):
                ctx.add(
                    "RELATIVE_STATS_MISMATCH",
                    f"{key}.{stat} has shape {arr.shape}, but the config needs (action horizon {horizon}, dim {dim})",
                    file=rel,
                    field=f"{key}.{stat}",
                )
                break
