"""Stage 1 of build-shards, frame side: decoding an episode's video frames and turning them into JPEG bytes.

Frames go from the decoder to the JPEG encoder without leaving FFmpeg (see :mod:`groot_ft.shards` for why). Split out
of :mod:`groot_ft.shards`, which re-exports these names.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter
from PIL import Image

from groot_ft.data.video import VideoError, first_video_stream, open_video
from groot_ft.geometry import shortest_edge_size, stored_frame_size

#: MJPEG quantiser scale (1 = finest). At 1 the files are about as large as PIL quality 95 (docs/benchmarks.md).
JPEG_QSCALE = 1
#: everything about how frames are turned into bytes; part of each episode cache's fingerprint
FRAME_ENCODING = f"ffmpeg-rgb24-mjpeg-yuv444p-full-q{JPEG_QSCALE}-stdhuffman-area-bitexact-1slice"
# BITEXACT keeps libswscale off CPU-specific SIMD paths, so shards are byte-identical across machines
_SCALE_FLAGS = int(Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.BITEXACT)
# resolved once: PyAV looks names up on every call, and stage 1 makes one call per frame
_YUV444 = av.VideoFormat("yuv444p")
_RGB24 = av.VideoFormat("rgb24")
_FULL_RANGE = int(ColorRange.JPEG)
_FF_QP2LAMBDA = 118  # FFmpeg's lambda per quantiser step
_ENCODE_BATCH_PIXELS = 8 << 20  # decoded pixels held at most before encoding them (~12 MiB of 4:2:0 frames)
_CODEC_FLAG_QSCALE = 2  # AV_CODEC_FLAG_QSCALE: fixed quantiser, no rate control


def resize_shortest_edge(frame: np.ndarray, edge: int) -> np.ndarray:
    """PIL area resize of an RGB array (the reference the shard frames are checked against)."""
    h, w = frame.shape[:2]
    if min(h, w) == edge:
        return frame
    resample = Image.BOX if edge < min(h, w) else Image.BILINEAR
    return np.asarray(Image.fromarray(frame).resize(shortest_edge_size(h, w, edge)[::-1], resample))


class FrameEncoder:
    """Scales decoded frames to the working size and JPEG-encodes them, all inside FFmpeg.

    Keeps one scaler and one MJPEG encoder per output size, so per-frame cost is the scaling and compression
    themselves. MJPEG is intra-only with a fixed quantiser: a frame's bytes depend on that frame alone. One
    instance per thread.
    """

    def __init__(self, edge: int | None, huffman: str = "default", letter_box: bool = False):
        self.edge = edge
        self.letter_box = letter_box  # the longer side to ``edge`` (see geometry.stored_frame_size)
        self.huffman = huffman
        self._scaler = VideoReformatter()
        self._rgb = VideoReformatter()
        self._targets: dict[tuple[int, int], tuple[int, int, Any, Fraction]] = {}
        self._count = 0

    def _target(self, width: int, height: int) -> tuple[int, int, Any, Fraction]:
        """(output width, output height, encoder, its time base) for a source size."""
        if (width, height) not in self._targets:
            w, h = width, height
            if self.edge is not None:
                h, w = stored_frame_size(height, width, self.edge, self.letter_box)
            ctx = av.CodecContext.create("mjpeg", "w")
            ctx.width, ctx.height = w, h
            ctx.pix_fmt = "yuv444p"
            ctx.color_range = _FULL_RANGE  # as JFIF readers assume
            ctx.time_base = Fraction(1, 1)
            ctx.flags = int(ctx.flags) | _CODEC_FLAG_QSCALE
            ctx.global_quality = JPEG_QSCALE * _FF_QP2LAMBDA
            ctx.qmin = ctx.qmax = JPEG_QSCALE
            # one slice: with slice threads FFmpeg cuts the picture into one slice per thread, separated by restart
            # markers, so the bytes would depend on how many CPUs the machine (or the SLURM job) has
            ctx.thread_count = 1
            # bitexact: no encoder version string in the files. Standard Huffman tables: optimal ones built per
            # frame make small files a quarter smaller but double the scale+encode time (docs/benchmarks.md)
            ctx.options = {"flags": "+bitexact", "huffman": self.huffman}
            ctx.open()
            self._targets[(width, height)] = (w, h, ctx, ctx.time_base)
        return self._targets[(width, height)]

    def encode(self, frame: av.VideoFrame) -> bytes:
        width, height, encoder, time_base = self._target(frame.width, frame.height)
        if frame.format.name != "rgb24":
            # First the RGB24 picture a plain decode gives (PyAV's default conversion, which is the frame upstream's
            # torchcodec decode gives, bit for bit): the video's own chroma upsampling, not ours. Going from 4:2:0
            # to the encoder's 4:4:4 directly (area filter) cost ~4 dB: 41.1 -> 45.5 dB PSNR on gr1.
            frame = self._rgb.reformat(frame, format=_RGB24, threads=1)
        # one scaler thread: episodes run in parallel already, and FFmpeg's slice threads cost more than they
        # save on frames this small
        small = self._scaler.reformat(frame, width, height, _YUV444, interpolation=_SCALE_FLAGS,
                                      dst_color_range=_FULL_RANGE, threads=1)
        # the encoder insists on increasing times; they do not reach the JPEG bytes
        self._count += 1
        small.pts = self._count
        small.time_base = time_base
        packets = encoder.encode(small)
        if len(packets) != 1:  # MJPEG has no frame delay; anything else would misalign frames and bytes
            raise RuntimeError(f"MJPEG encoder returned {len(packets)} packets for one frame")
        return bytes(packets[0])


_encoders = threading.local()


def thread_encoder(edge: int | None, letter_box: bool = False) -> FrameEncoder:
    """This thread's :class:`FrameEncoder` for ``edge``, made once: FFmpeg's scaler and encoder contexts cannot be
    shared between threads, and setting them up costs as much as encoding a few frames (a process forked from this
    one makes its own)."""
    if getattr(_encoders, "pid", None) != os.getpid():
        _encoders.pid, _encoders.by_edge = os.getpid(), {}
    if (edge, letter_box) not in _encoders.by_edge:
        _encoders.by_edge[edge, letter_box] = FrameEncoder(edge, letter_box=letter_box)
    return _encoders.by_edge[edge, letter_box]


def encode_jpeg(frame: np.ndarray) -> bytes:
    """JPEG bytes of one RGB ``(H, W, 3)`` uint8 array, encoded the way shard frames are (no resize)."""
    return FrameEncoder(None).encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))


def _decoded(path: Path, container, stream, seek_s: float | None) -> Iterator[av.VideoFrame]:
    try:
        if seek_s is not None:
            container.seek(max(0, int(math.floor(seek_s / float(stream.time_base)))), stream=stream, backward=True)
        yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise VideoError(path, f"decoding failed ({exc})") from exc


class _EncodeBatch:
    """Decoded frames held until a run of them is scaled and encoded together.

    Alternating the decoder and the encoder frame by frame evicts each one's code and tables from the CPU caches;
    runs of up to 16 frames (fewer for large pictures, to bound the memory held) took 2-10% less CPU for stage 1
    (docs/benchmarks.md). A slot already filled keeps its first frame.
    """

    def __init__(self, encoder: FrameEncoder, out: list[bytes | None]):
        self.encoder, self.out = encoder, out
        self.pending: list[tuple[int, av.VideoFrame]] = []
        self.taken = [b is not None for b in out]
        self.limit = 0

    def add(self, i: int, frame: av.VideoFrame) -> None:
        if self.taken[i]:
            return
        self.taken[i] = True
        self.pending.append((i, frame))
        if not self.limit:
            self.limit = max(1, min(16, _ENCODE_BATCH_PIXELS // max(1, frame.width * frame.height)))
        if len(self.pending) >= self.limit:
            self.flush()

    def flush(self) -> None:
        for i, frame in self.pending:
            self.out[i] = self.encoder.encode(frame)
        self.pending.clear()


def encode_video_frames(
    path: Path, wanted: np.ndarray, encoder: FrameEncoder, *, start_s: float | None = None, fps: float | None = None
) -> list[bytes]:
    """Encoded frames ``wanted`` (sorted unique indices) of one episode's video, decoding no further than the last.

    ``start_s=None``: the episode owns the file and frame ``k`` is the ``k``-th decoded frame (LeRobot v2, as GR00T
    reads it). Otherwise (v3, episodes share a file) frame ``k`` is the one shown at ``start_s + k / fps``, matched
    within a quarter frame period, after seeking to the keyframe before the first one.
    """
    out: list[bytes | None] = [None] * len(wanted)
    if len(wanted) == 0:
        return []
    slot = {int(k): i for i, k in enumerate(wanted.tolist())}
    last = int(wanted[-1])
    batch = _EncodeBatch(encoder, out)
    with open_video(path) as container:
        stream = first_video_stream(container, path)
        # one decoder thread: episodes are decoded in parallel already, and a per-file pool of threads costs more to
        # start than it saves on short, small videos
        stream.codec_context.thread_count = 1
        if start_s is None:
            for k, frame in enumerate(_decoded(path, container, stream, None)):
                if k in slot:
                    batch.add(slot[k], frame)
                if k >= last:
                    break
        else:
            tol = 0.25 / fps
            origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            first_s = start_s + int(wanted[0]) / fps
            for attempt in (first_s - tol + origin if first_s > tol else None, 0.0):
                for frame in _decoded(path, container, stream, attempt):
                    if frame.time is None:
                        raise VideoError(path, "a frame has no presentation time; cannot locate episode frames")
                    k = round((float(frame.time) - origin - start_s) * fps)
                    if k in slot and abs(float(frame.time) - origin - start_s - k / fps) <= tol:
                        batch.add(slot[k], frame)
                    if k > last:
                        break
                batch.flush()
                if attempt is None or all(b is not None for b in out):
                    break
        batch.flush()
    missing = [int(k) for k, b in zip(wanted.tolist(), out, strict=True) if b is None]
    if missing:
        where = "decodable frames" if start_s is None else f"frames near {start_s + missing[0] / fps:.6f} s"
        raise VideoError(path, f"episode frame {missing[0]} is missing: the video has too few {where}")
    return out  # type: ignore[return-value]
