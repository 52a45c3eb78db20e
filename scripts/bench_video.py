"""Benchmark: x264 encoding as ``encode_video`` configures it, against x264's defaults and its portable C code.

For each setting it encodes the same clip ``--runs`` times in one process and reports the number of distinct byte
strings (1 means repeatable), the median seconds per encode, and whether the bytes equal those of x264's C code
(``asm=0``), which are the same on every CPU. ``groot-ft`` passes ``threads=1`` and ``cpu-independent=1``.

    python scripts/bench_video.py --runs 100 --frames 120 --size 256 320
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import time
from fractions import Fraction

import av
import numpy as np

from groot_ft.data.video import CODECS

SETTINGS = {
    "x264 default (threads=1)": "",
    "groot-ft (threads=1, cpu-independent=1)": "cpu-independent=1",
    "x264 C code (threads=1, asm=0)": "asm=0",
}


def clip(n: int, height: int, width: int) -> np.ndarray:
    """Moving colour gradients: every frame differs, and motion search has something to find."""
    t = np.arange(n, dtype=np.float64)[:, None, None]
    y = np.arange(height, dtype=np.float64)[None, :, None] / height
    x = np.arange(width, dtype=np.float64)[None, None, :] / width
    r = 128 + 100 * np.sin(2 * np.pi * (x + 0.03 * t))
    g = 128 + 100 * np.cos(2 * np.pi * (y - 0.02 * t))
    b = 60 + 160 * np.exp(-(((x - 0.2 - 0.025 * t) ** 2 + (y - 0.5) ** 2) / 0.02))
    return np.clip(np.stack(np.broadcast_arrays(r, g, b), axis=-1) + 0.5, 0, 255).astype(np.uint8)


def encode(frames: np.ndarray, fps: int, x264_params: str) -> bytes:
    _, crf, preset = CODECS["h264"]
    options = {"crf": str(crf), "g": "2", "preset": preset, "threads": "1"}
    if x264_params:
        options["x264-params"] = x264_params
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()
    frames = clip(args.frames, *args.size)
    reference = encode(frames, args.fps, "asm=0")
    print(f"libx264 via PyAV {av.__version__}, {args.frames} frames {args.size[0]}x{args.size[1]}, {args.runs} runs")
    print(f"{'setting':42} {'distinct':>8} {'s/encode':>9} {'= C code':>9}")
    for name, params in SETTINGS.items():
        seconds, digests = [], set()
        for _ in range(args.runs):
            start = time.perf_counter()
            data = encode(frames, args.fps, params)
            seconds.append(time.perf_counter() - start)
            digests.add(hashlib.sha256(data).hexdigest())
        same = "yes" if digests == {hashlib.sha256(reference).hexdigest()} else "no"
        print(f"{name:42} {len(digests):>8} {statistics.median(seconds):>9.4f} {same:>9}")


if __name__ == "__main__":
    main()
