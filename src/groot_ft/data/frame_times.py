"""Decoding the frames of a video shown at given times, as the reader does for v3 episodes in shared mp4 files.

Split out of :mod:`groot_ft.data.lerobot` (which re-exports :func:`decode_frames_at`); PyAV and
:mod:`groot_ft.data.video` are imported on first use, as before, so importing the reader stays cheap.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np


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
