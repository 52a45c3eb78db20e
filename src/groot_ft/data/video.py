"""Encode, probe and decode episode videos with PyAV.

Conventions (the ones LeRobot v2.x and GR00T use):

* frames are ``uint8`` RGB arrays shaped ``(N, H, W, 3)``;
* videos are stored as ``yuv420p`` (so ``H`` and ``W`` must be even), one frame every ``1/fps`` seconds starting at 0;
* "frame index" ``k`` means the ``k``-th frame in presentation order, which is what GR00T's loader asks for
  (``np.arange(L)``); frame ``k`` has timestamp ``k / fps``;
* the encoder writes a keyframe every ``gop`` frames (default 2, as LeRobot does) so that random access costs at
  most one extra decoded frame; that makes files about 3x larger than a default GOP.

Codecs: ``"h264"`` (libx264) and ``"av1"`` (libsvtav1, decoded by libdav1d). SVT-AV1 prints ~25 ``Svt[info]`` lines
per encode to stderr from C; we silence them by setting ``SVT_LOG=1`` (errors only) while the encoder is opened, unless
the caller already set ``SVT_LOG``.

Every failure to open/decode a file is raised as :class:`VideoError`, whose message starts with the path.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from groot_ft.errors import UserError

__all__ = [
    "CODECS",
    "VideoError",
    "VideoInfo",
    "X264_PARAMS",
    "count_decodable_frames",
    "encode_video",
    "probe_video",
    "read_frames",
    "read_frames_at_timestamps",
]

#: codec name accepted by :func:`encode_video` -> (PyAV encoder name, default CRF, default preset).
CODECS: dict[str, tuple[str, int, str]] = {
    "h264": ("libx264", 20, "veryfast"),
    "av1": ("libsvtav1", 30, "10"),
}
ENCODER_ALIASES = {"libx264": "h264", "libsvtav1": "av1"}
#: libx264's default extra parameters. Its AVX-512 code (core 165, as PyAV 18 ships it) varies the first frames
#: between encodes of the same frames in one process (7 to 22 encodes in 300 here); cpu-independent makes every CPU
#: give the bytes of x264's C code, at the speed of its assembly (docs/benchmarks.md, "Video encoding").
X264_PARAMS = "cpu-independent=1"


class VideoError(UserError, RuntimeError):
    """A video file that cannot be opened, probed or decoded as asked. ``path`` holds the offending file."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


def _ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's reason alone ("Invalid data found when processing input"): PyAV's text repeats the errno and the
    path, which VideoError's message already starts with."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else str(exc)


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about the first video stream of a file (no frame is decoded to get them)."""

    path: Path
    codec: str  # canonical codec name, e.g. "h264", "av1", "hevc"
    width: int
    height: int
    fps: float
    pix_fmt: str | None
    num_frames: int
    duration_s: float
    num_video_streams: int
    frame_count_source: str  # "metadata" (container frame count) or "packets" (counted while demuxing)


# --------------------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def quiet_svt() -> Iterator[None]:
    """Set ``SVT_LOG=1`` (errors only) for the duration of the block unless the user chose a level."""
    if "SVT_LOG" in os.environ:
        yield
        return
    os.environ["SVT_LOG"] = "1"
    try:
        yield
    finally:
        os.environ.pop("SVT_LOG", None)


@contextlib.contextmanager
def open_video(path: Path) -> Iterator[av.container.InputContainer]:
    """The video container at ``path``, closed on exit; a missing or unreadable file is a VideoError naming it."""
    if not path.is_file():
        raise VideoError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"cannot open as a video container ({_ffmpeg_reason(exc)})") from exc
    try:
        yield container
    finally:
        container.close()


def first_video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoError(path, "contains no video stream")
    return container.streams.video[0]


def _canonical_codec(stream: av.video.stream.VideoStream) -> str:
    # The decoder may be a wrapper such as "libdav1d"; ``canonical_name`` is the codec itself ("av1").
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def _stream_fps(stream: av.video.stream.VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return None


def _as_index_array(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        raise ValueError(f"frame indices must be a 1-D sequence, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"frame indices must be integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(arr.min())}")
    return arr.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------- encode


def encode_video(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: int,
    codec: str = "h264",
    *,
    crf: int | None = None,
    gop: int = 2,
    preset: str | int | None = None,
    x264_params: str = X264_PARAMS,
) -> Path:
    """Encode ``frames`` (``(N, H, W, 3)`` uint8 RGB) to ``path`` as yuv420p ``codec`` at ``fps`` frames/second.

    ``codec`` is ``"h264"`` (libx264) or ``"av1"`` (libsvtav1); ``crf``/``preset`` default per codec (see
    :data:`CODECS`), ``gop`` is the keyframe interval. ``x264_params`` (libx264 only; ``""`` for none) defaults to
    :data:`X264_PARAMS`, which makes the bytes repeatable. The container format follows the file suffix (``.mp4``
    normally). The file is written to a temporary name in the same directory and moved into place with
    :func:`os.replace`, so readers never see a partial file. Returns the path.
    """
    path = Path(path)
    codec = ENCODER_ALIASES.get(codec, codec)
    if codec not in CODECS:
        raise ValueError(f"unsupported codec {codec!r}; choose one of {sorted(CODECS)}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be shaped (N, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    n, height, width, _ = frames.shape
    if n == 0:
        raise ValueError("cannot encode a video with no frames")
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {height}x{width}")
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    if gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    fps = int(fps)
    encoder, default_crf, default_preset = CODECS[codec]
    options = {
        "crf": str(default_crf if crf is None else int(crf)),
        "g": str(int(gop)),
        "preset": str(default_preset if preset is None else preset),
    }
    if encoder == "libx264":
        # x264's output depends on its thread count, which "auto" takes from the CPUs this process may use: one
        # thread makes the bytes the same on every machine (and for any CPU affinity)
        options["threads"] = "1"
        if x264_params:
            options["x264-params"] = x264_params

    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling name (not mkstemp: that would leave the final file with mode 0600).
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        with quiet_svt() if codec == "av1" else contextlib.nullcontext():
            container = av.open(str(tmp), mode="w", format=_muxer_for(path))
            try:
                stream = container.add_stream(encoder, rate=fps, options=options)
                stream.width = width
                stream.height = height
                stream.pix_fmt = "yuv420p"
                time_base = Fraction(1, fps)
                for i in range(n):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                    frame.pts = i
                    frame.time_base = time_base
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode(None):
                    container.mux(packet)
            finally:
                container.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _muxer_for(path: Path) -> str | None:
    return {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(path.suffix.lower())


# ----------------------------------------------------------------------------------------------------------- probe


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read container metadata of ``path`` (first video stream); counts packets if the container has no frame count.

    Does not decode pixels, so a file whose frame data is damaged may still probe fine; use
    :func:`count_decodable_frames` or :func:`read_frames` to check it decodes.
    """
    path = Path(path)
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        ctx = stream.codec_context
        num_frames = int(stream.frames or 0)
        source = "metadata"
        try:
            if num_frames <= 0:
                source = "packets"
                num_frames = sum(1 for p in container.demux(stream) if p.size and p.pts is not None)
        except av.FFmpegError as exc:
            raise VideoError(path, f"cannot demux video packets ({_ffmpeg_reason(exc)})") from exc
        fps = _stream_fps(stream)
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        elif fps:
            duration = num_frames / fps
        else:
            duration = 0.0
        if fps is None:
            fps = num_frames / duration if duration > 0 else 0.0
        width, height = int(ctx.width or stream.width), int(ctx.height or stream.height)
        if width <= 0 or height <= 0:
            raise VideoError(path, "video stream has no frame size")
        pix_fmt = ctx.pix_fmt if ctx.pix_fmt else None
        return VideoInfo(
            path=path,
            codec=_canonical_codec(stream),
            width=width,
            height=height,
            fps=float(fps),
            pix_fmt=pix_fmt,
            num_frames=num_frames,
            duration_s=float(duration),
            num_video_streams=len(container.streams.video),
            frame_count_source=source,
        )


def count_decodable_frames(path: str | os.PathLike[str]) -> int:
    """Decode every frame of the first video stream (no RGB conversion) and return how many there are."""
    path = Path(path)
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        count = 0
        try:
            for _ in container.decode(stream):
                count += 1
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding failed after {count} frames ({_ffmpeg_reason(exc)})") from exc
        return count


# ---------------------------------------------------------------------------------------------------------- decode


def read_frames(path: str | os.PathLike[str], indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Return the frames at 0-based ``indices`` (any order, duplicates allowed) as ``(K, H, W, 3)`` uint8 RGB.

    ``None`` returns every frame. The file is opened once and decoded sequentially up to the largest requested
    index. Raises :class:`VideoError` if the video is unreadable or shorter than a requested index.
    """
    path = Path(path)
    wanted = None if indices is None else _as_index_array(indices)
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        if wanted is not None and wanted.size == 0:
            h, w = int(stream.codec_context.height), int(stream.codec_context.width)
            return np.empty((0, h, w, 3), dtype=np.uint8)
        stop = None if wanted is None else int(wanted.max())
        keep = None if wanted is None else set(wanted.tolist())
        decoded: dict[int, np.ndarray] = {}
        everything: list[np.ndarray] = []
        seen = 0
        try:
            for k, frame in enumerate(container.decode(stream)):
                seen = k + 1
                if keep is None:
                    everything.append(frame.to_ndarray(format="rgb24"))
                elif k in keep:
                    decoded[k] = frame.to_ndarray(format="rgb24")
                if stop is not None and k >= stop:
                    break
        except av.FFmpegError as exc:
            target = "" if stop is None else f", before reaching requested frame index {stop}"
            raise VideoError(path, f"decoding failed after {seen} frames{target} ({_ffmpeg_reason(exc)})") from exc
    if wanted is None:
        if not everything:
            raise VideoError(path, "video stream has no decodable frames")
        return np.stack(everything)
    if stop is not None and seen <= stop:
        missing = sorted(i for i in keep if i >= seen)
        raise VideoError(
            path, f"frame index {missing[0]} requested but the video has only {seen} decodable frames"
        )
    _check_sizes(path, decoded.values())
    return np.stack([decoded[i] for i in wanted.tolist()])


def read_frames_at_timestamps(
    path: str | os.PathLike[str], timestamps: Sequence[float] | np.ndarray, tolerance_s: float = 1e-4
) -> np.ndarray:
    """Return, for each query time (seconds from the start of the file), the frame whose presentation time is nearest.

    Like LeRobot's loader: raises :class:`VideoError` if the nearest frame is more than ``tolerance_s`` away
    (default 1e-4 s, LeRobot's ``tolerance_s``). Decodes sequentially once, up to the last query.
    """
    path = Path(path)
    queries = np.asarray(timestamps, dtype=np.float64)
    if queries.ndim != 1:
        raise ValueError(f"timestamps must be a 1-D sequence, got shape {queries.shape}")
    if not np.all(np.isfinite(queries)):
        raise ValueError("timestamps must be finite")
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        if queries.size == 0:
            h, w = int(stream.codec_context.height), int(stream.codec_context.width)
            return np.empty((0, h, w, 3), dtype=np.uint8)
        order = np.argsort(queries, kind="stable")
        sorted_q = queries[order].tolist()
        horizon = sorted_q[-1] + tolerance_s
        best: list[tuple[float, int]] = [(float("inf"), -1)] * len(sorted_q)  # (|dt|, frame slot) per query
        frames: list[np.ndarray] = []
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        try:
            for k, frame in enumerate(container.decode(stream)):
                t = float(frame.time) - start if frame.time is not None else k / (_stream_fps(stream) or 1.0)
                lo = bisect.bisect_left(sorted_q, t - tolerance_s)
                hi = bisect.bisect_right(sorted_q, t + tolerance_s)
                if hi > lo:
                    slot = len(frames)
                    frames.append(frame.to_ndarray(format="rgb24"))
                    for j in range(lo, hi):
                        dt = abs(sorted_q[j] - t)
                        if dt < best[j][0]:
                            best[j] = (dt, slot)
                if t > horizon:
                    break
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding failed ({_ffmpeg_reason(exc)})") from exc
    for j, (dt, slot) in enumerate(best):
        if slot < 0:
            raise VideoError(path, f"no frame within {tolerance_s} s of timestamp {sorted_q[j]:.6f} s")
    _check_sizes(path, frames)
    out = np.empty((len(sorted_q),) + frames[0].shape, dtype=np.uint8)
    for j, (_, slot) in enumerate(best):
        out[order[j]] = frames[slot]
    return out


def _check_sizes(path: Path, arrays) -> None:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise VideoError(path, f"frame size changes inside the stream: {sorted(shapes)}")
