"""C. Video files: presence, container metadata, frame counts and (deep) decoding."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groot_ft.data.validate.codes import CODEC_ALIASES, SUPPORTED_CODECS
from groot_ft.data.validate.context import Ctx
from groot_ft.data.validate.info import video_hw, video_meta

if TYPE_CHECKING:  # annotations only: the runtime imports form no cycle
    from groot_ft.data.validate.episodes import EpisodePlan
    from groot_ft.data.validate.layouts import EpisodeSource


def check_episode_videos(ctx: Ctx, source: EpisodeSource, plan: EpisodePlan, rows: int | None) -> None:
    e = source.meta.index
    expected_frames = rows if rows is not None else source.meta.length
    for key, path in source.videos.items():
        used = key in plan.used_videos
        if path is None:
            plan.no_video_path(ctx, key, used)
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
                plan.note_missing_videos(key, [e])
            continue
        with ctx.guard(rel, e):
            check_video_file(ctx, rel, path, e, key, expected_frames, plan)


def check_video_file(
    ctx: Ctx,
    rel: str,
    path: Path,
    e: int,
    key: str,
    expected_frames: int,
    plan: EpisodePlan,
    holds: str = "the episode has",
) -> Any:
    """Container, codec, size, fps and frame-count checks of one file; returns its VideoInfo (None if unreadable).

    ``expected_frames`` is what the file must hold (v3: the sum of its episodes' lengths, described by ``holds``).
    """
    from groot_ft.data.video import VideoError, probe_video

    add = partial(ctx.add, file=rel, episode=e, field=key)  # every finding here is about this file
    feature = ctx.features[key]
    meta = video_meta(feature)
    try:
        info = probe_video(path)
    except VideoError as exc:
        add(
            "VIDEO_UNREADABLE",
            f"cannot open video {key!r} of episode {e}: {strip_path(exc, path)}",
        )
        return None
    if info.num_video_streams != 1:
        add(
            "VIDEO_STREAM_COUNT",
            f"file has {info.num_video_streams} video streams (expected 1)",
        )
    codec = CODEC_ALIASES.get(info.codec, info.codec)
    if codec not in SUPPORTED_CODECS:
        add(
            "VIDEO_CODEC_UNSUPPORTED",
            f"codec {info.codec!r} is not one of {', '.join(sorted(SUPPORTED_CODECS))}",
        )
    declared_codec = meta.get("video.codec")
    if isinstance(declared_codec, str) and CODEC_ALIASES.get(declared_codec, declared_codec) != codec:
        ctx.aggregate(
            "VIDEO_CODEC_MISMATCH",
            f"features.{key}",
            f"video feature {key!r} declares codec {declared_codec!r} but its files use {codec!r}",
        ).hit(e, rel)
    height, width = video_hw(feature)
    if (info.height, info.width) != (height, width):
        add(
            "VIDEO_RESOLUTION_MISMATCH",
            f"video is {info.width}x{info.height} (WxH) but meta/info.json declares {width}x{height}",
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
        add(
            "VIDEO_FPS_MISMATCH",
            f"video runs at {info.fps:g} fps but the dataset fps is {fps:g}",
        )
    frames = info.num_frames
    source = "container metadata" if info.frame_count_source == "metadata" else "demuxed packets"
    if ctx.deep:
        decoded = deep_decode(ctx, rel, path, e, key, (height, width), plan)
        if decoded is None:
            return info
        frames, source = decoded, "decoded frames"
    if frames < expected_frames:
        add(
            "VIDEO_FRAME_COUNT_MISMATCH",
            f"video has {frames} frames ({source}) but {holds} "
            f"{expected_frames} rows; GR00T decodes one frame per row",
        )
    elif frames > expected_frames:
        add(
            "VIDEO_EXTRA_FRAMES",
            f"video has {frames} frames ({source}) for {expected_frames} rows",
        )
    elif (
        fps_ok
        and fps
        and expected_frames
        and info.duration_s
        and abs(info.duration_s - expected_frames / fps) > 1.0 / fps + 1e-6
    ):
        add(
            "VIDEO_DURATION_MISMATCH",
            f"video lasts {info.duration_s:.4f} s but {expected_frames} frames at "
            f"{fps:g} fps last {expected_frames / fps:.4f} s",
        )
    return info


def strip_path(exc: Exception, path: Path) -> str:
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def deep_decode(
    ctx: Ctx, rel: str, path: Path, e: int, key: str, hw: tuple[int, int], plan: EpisodePlan
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
