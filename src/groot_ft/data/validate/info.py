"""A. ``meta/info.json``: keys, fps, features, video metadata and the totals."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from groot_ft.data.layout import feature_names, info_defaults, required_info

from groot_ft.data.validate.context import Ctx, is_int, is_number

if TYPE_CHECKING:  # annotations only: the runtime imports form no cycle
    from groot_ft.data.validate.layouts import EpisodeMeta, Layout


def numpy_dtype(dtype: str) -> np.dtype | None:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return None
    if dt.kind not in "biuf":
        return None
    return dt


def check_info(ctx: Ctx, layout: Layout) -> None:
    info = ctx.info
    f = "meta/info.json"
    for key in required_info(ctx.version):
        if key not in info:
            ctx.add("INFO_KEY_MISSING", f"required key {key!r} is missing", file=f, field=key)
    for key in ("total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks"):
        if key in info and (not is_int(info[key]) or info[key] < 0):
            ctx.add("INFO_INVALID_VALUE", f"{key} must be an integer >= 0, got {info[key]!r}", file=f, field=key)
    if "chunks_size" in info and (not is_int(info["chunks_size"]) or info["chunks_size"] <= 0):
        ctx.add(
            "INFO_INVALID_VALUE",
            f"chunks_size must be a positive integer, got {info['chunks_size']!r}",
            file=f,
            field="chunks_size",
        )
    # fps
    fps = info.get("fps")
    if "fps" in info:
        if not is_number(fps) or not math.isfinite(fps) or fps <= 0:
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
        check_feature(ctx, name, feat)
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


def check_feature(ctx: Ctx, name: str, feat: Any) -> None:
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
    if not isinstance(dtype, str) or not (dtype in ("video", "image", "string") or numpy_dtype(dtype) is not None):
        problems.append(f"dtype {dtype!r} is not a known dtype (numpy name, video, image or string)")
    if not isinstance(shape, (list, tuple)) or not shape or not all(is_int(s) and s > 0 for s in shape):
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
    else:
        # names only label elements (training never reads them), so every problem with them is a warning
        read = feature_names(feat)
        if read.problem is not None:
            ctx.add(
                "FEATURE_NAMES_UNSTRUCTURED" if read.unreadable else "FEATURE_NAMES_MISMATCH",
                f"feature {name!r}: {read.problem}",
                file=f,
                field=f"{where}.names",
            )
    ctx.features[name] = {"dtype": dtype, "shape": shape, "names": names, "raw": feat}
    if dtype == "video":
        check_video_feature_info(ctx, name, feat)


def video_hw(feature: dict[str, Any]) -> tuple[int, int]:
    shape, names = feature["shape"], feature.get("names")
    if isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel"):
        return shape[1], shape[2]  # (C, H, W)
    return shape[0], shape[1]  # (H, W, C), LeRobot's layout


def video_meta(feature: dict[str, Any]) -> dict[str, Any]:
    raw = feature["raw"]
    meta = raw.get("info")
    if not isinstance(meta, dict):
        meta = raw.get("video_info")
    return meta if isinstance(meta, dict) else {}


def check_video_feature_info(ctx: Ctx, name: str, feat: dict[str, Any]) -> None:
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
        if not is_number(vfps) or abs(float(vfps) - ctx.fps) > 1e-6 * ctx.fps:
            ctx.add(
                "VIDEO_FPS_MISMATCH",
                f"video feature {name!r} declares video.fps {vfps!r} but the dataset fps is {ctx.info.get('fps')!r}",
                file=f,
                field=f"{where}.{key}.video.fps",
            )


def check_totals(ctx: Ctx, layout: Layout, episodes: list[EpisodeMeta], tasks: dict[int, str] | None) -> None:
    """Totals, splits and task references of the metadata; skipped where a dropped line would explain a mismatch."""
    info, f = ctx.info, "meta/info.json"
    n = len(episodes)
    episodes_file_ok = layout.episodes_complete
    if not layout.tasks_complete:
        tasks = None

    def count(key: str) -> int | None:  # a well-formed total (malformed ones are reported by check_info)
        value = info.get(key)
        return value if is_int(value) and value >= 0 else None

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
            math.ceil(n / cs) if episodes_file_ok and is_int(cs) and cs > 0 else None,
            f"expected ceil({n} / {cs}) = {math.ceil(n / cs) if is_int(cs) and cs > 0 else '?'}",
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
