"""Benchmark: x264 encoding as ``encode_video`` configures it, against x264's defaults and its portable C code.

For each setting it encodes the same clip ``--runs`` times in one process and reports the number of distinct byte
strings (1 means repeatable), the median seconds per encode, and whether the bytes equal those of x264's C code
(``asm=0``), which are the same on every CPU. Every setting goes through ``encode_video`` (``threads=1``), which
passes ``X264_PARAMS`` unless told otherwise; the timings include writing the file.

    python scripts/bench_video.py --runs 100 --frames 120 --size 256 320
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from groot_ft.data.video import X264_PARAMS, encode_video

SETTINGS = {
    "x264 default (threads=1)": "",
    f"groot-ft (threads=1, {X264_PARAMS})": X264_PARAMS,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--fps", type=int, default=15)
    args = parser.parse_args()
    frames = clip(args.frames, *args.size)
    with tempfile.TemporaryDirectory() as tmp:
        clip_path = Path(tmp) / "clip.mp4"

        def encode(params: str) -> bytes:
            return encode_video(frames, clip_path, args.fps, x264_params=params).read_bytes()

        reference = hashlib.sha256(encode("asm=0")).hexdigest()
        print(f"libx264 via PyAV {av.__version__}, {args.frames} frames {args.size[0]}x{args.size[1]}, "
              f"{args.runs} runs")
        print(f"{'setting':42} {'distinct':>8} {'s/encode':>9} {'= C code':>9}")
        for name, params in SETTINGS.items():
            seconds, digests = [], set()
            for _ in range(args.runs):
                start = time.perf_counter()
                data = encode(params)
                seconds.append(time.perf_counter() - start)
                digests.add(hashlib.sha256(data).hexdigest())
            same = "yes" if digests == {reference} else "no"
            print(f"{name:42} {len(digests):>8} {statistics.median(seconds):>9.4f} {same:>9}")

if __name__ == "__main__":
    main()
