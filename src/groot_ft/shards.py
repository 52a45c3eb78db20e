"""build-shards: turn a dataset into training-sample files, decoding every needed video frame exactly once.

Stage 1 writes one Arrow IPC cache per episode (``episodes/episode_XXXXXX.arrow``): every frame a valid step can
ask for, of every configured camera, scaled to the processor's working size and JPEG-encoded (other frames are
null and never decoded past the last needed one), plus the state/action groups and language of each frame. A
cache is rebuilt only when its episode's files change (fingerprint in the cache metadata). Episodes are built in
parallel over ``threads`` threads; a cache depends only on its episode, so the result does not depend on that count.

Frames go from the decoder to the JPEG encoder without leaving FFmpeg: libswscale first makes the RGB24 picture a
plain decode gives (the one upstream's decoder gives, bit for bit), then scales it with area averaging into
full-range YUV 4:4:4, and FFmpeg's MJPEG encoder (an intra-only, stateless JPEG encoder, one slice, so the bytes do
not depend on the CPU count) compresses it. So the only loss against upstream's frames is the JPEG codec's own
(45.5 dB PSNR on gr1; going from the video's 4:2:0 straight to 4:4:4 gave 41.1 dB). That avoids a PIL resize and
PIL's per-image overhead, which cost more than decoding itself on small frames (docs/benchmarks.md). The files are
plain baseline JPEG (JFIF), which any reader opens; the loader reads them with libjpeg-turbo.

Stage 2 assembles ``shard_XXXXX.arrow`` files of about ``shard_size`` samples with upstream GR00T's assignment:
episodes in a seeded order, each episode's valid steps shuffled and split into ``1/episode_sampling_rate``
interleaved subsets, each subset given to the currently shortest shard. Every valid step appears once per pass.
A sample row holds exactly what the processor needs: the frames at the video offsets, the state rows, the action
chunk and the instruction. Each shard stores a key over its pieces (episode content digests and steps); a shard
whose key is unchanged is not rewritten, so changing one episode rewrites only the shards that hold it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import pyarrow as pa
import simplejpeg
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter
from PIL import Image
from tqdm import tqdm

from groot_ft.data.lerobot import LeRobotDataset, VideoSegment
from groot_ft.data.video import VideoError, first_video_stream, open_video
from groot_ft.geometry import shortest_edge_size
from groot_ft.io import GroupCommit, atomic_write_bytes, atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig

if TYPE_CHECKING:
    from typing_extensions import Buffer

SHARD_FORMAT_VERSION = 1
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


# --- assignment (pure, tested against upstream's semantics) ------------------------------------------------------
def valid_steps(length: int, cfg: EmbodimentModalityConfig) -> np.ndarray:
    """Steps whose whole action chunk lies inside the episode (upstream: length - horizon + 1 of them)."""
    return np.arange(max(0, length - cfg.action_horizon + 1), dtype=np.int64)


def plan_shards(
    episode_lengths: dict[int, int],
    cfg: EmbodimentModalityConfig,
    shard_size: int,
    episode_sampling_rate: float,
    seed: int,
) -> list[list[tuple[int, np.ndarray]]]:
    """Return, per shard, the (episode_index, steps) pieces it holds."""
    rng = np.random.default_rng(seed)
    episodes = sorted(episode_lengths)
    total = sum(len(valid_steps(episode_lengths[e], cfg)) for e in episodes)
    if total == 0:
        raise ValueError(
            f"no episode is longer than the action horizon ({cfg.action_horizon} steps); nothing to train on"
        )
    num_shards = math.ceil(total / shard_size)
    num_splits = max(1, int(round(1 / episode_sampling_rate)))
    shards: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(num_shards)]
    sizes = np.zeros(num_shards, dtype=np.int64)
    for e in rng.permutation(np.array(episodes, dtype=np.int64)):
        steps = valid_steps(episode_lengths[int(e)], cfg)
        if len(steps) == 0:
            continue
        steps = rng.permutation(steps)
        for i in range(num_splits):
            part = np.sort(steps[i::num_splits])
            if len(part) == 0:
                continue
            target = int(np.argmin(sizes))  # ties go to the lowest index, as upstream
            shards[target].append((int(e), part))
            sizes[target] += len(part)
    if (sizes == 0).any():
        raise ValueError(
            f"{int((sizes == 0).sum())} of {num_shards} shards would be empty; lower episode_sampling_rate's "
            f"inverse or raise shard_size"
        )
    return shards


def needed_frames(length: int, cfg: EmbodimentModalityConfig) -> np.ndarray:
    """Sorted frame indices that some valid step shows (its video offsets, clipped into the episode)."""
    steps = len(valid_steps(length, cfg))
    shown = np.zeros(length, dtype=bool)
    if steps:
        for delta in cfg.video.delta_indices:  # the steps are 0..steps-1, so each offset shows one clipped range
            first, last = (min(max(k, 0), length - 1) for k in (delta, steps - 1 + delta))
            shown[first : last + 1] = True
    return np.flatnonzero(shown).astype(np.int64, copy=False)


# --- frames -------------------------------------------------------------------------------------------------------
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

    def __init__(self, edge: int | None, huffman: str = "default"):
        self.edge = edge
        self.huffman = huffman
        self._scaler = VideoReformatter()
        self._rgb = VideoReformatter()
        self._targets: dict[tuple[int, int], tuple[int, int, Any, Fraction]] = {}
        self._count = 0

    def _target(self, width: int, height: int) -> tuple[int, int, Any, Fraction]:
        """(output width, output height, encoder, its time base) for a source size."""
        if (width, height) not in self._targets:
            w, h = width, height
            if self.edge is not None and min(width, height) != self.edge:
                h, w = shortest_edge_size(height, width, self.edge)
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


def thread_encoder(edge: int | None) -> FrameEncoder:
    """This thread's :class:`FrameEncoder` for ``edge``, made once: FFmpeg's scaler and encoder contexts cannot be
    shared between threads, and setting them up costs as much as encoding a few frames (a process forked from this
    one makes its own)."""
    if getattr(_encoders, "pid", None) != os.getpid():
        _encoders.pid, _encoders.by_edge = os.getpid(), {}
    if edge not in _encoders.by_edge:
        _encoders.by_edge[edge] = FrameEncoder(edge)
    return _encoders.by_edge[edge]


def encode_jpeg(frame: np.ndarray) -> bytes:
    """JPEG bytes of one RGB ``(H, W, 3)`` uint8 array, encoded the way shard frames are (no resize)."""
    return FrameEncoder(None).encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 array of one JPEG image.

    libjpeg-turbo through simplejpeg: the same pixels as PIL (the same library underneath, accurate IDCT) in a
    third of PIL's time and half that of FFmpeg's MJPEG decoder plus an RGB conversion on small frames
    (docs/benchmarks.md), which matters because the loader decodes every camera of every sample. It keeps no
    state, so threads and forked DataLoader workers need nothing of their own. Anything it rejects goes through
    PIL, so any JPEG PIL reads still reads.
    """
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


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


# --- stage 1: per-episode caches ------------------------------------------------------------------------------------
def _video_segments(ds: LeRobotDataset, episode: int, cfg: EmbodimentModalityConfig) -> dict[str, VideoSegment]:
    return {key: ds.episode_video_segment(episode, ds.video_original_key(key)) for key in cfg.video.modality_keys}


@dataclass(frozen=True)
class FingerprintBase:
    """The part of every episode fingerprint that is the same for all episodes of a build (hashed once)."""

    hash: Any  # a hashlib sha256 object, copied per episode
    root: str  # the dataset root, resolved, with a trailing separator


def fingerprint_base(ds: LeRobotDataset, cfg: EmbodimentModalityConfig, edge: int) -> FingerprintBase:
    h = hashlib.sha256()
    shape = [SHARD_FORMAT_VERSION, edge, FRAME_ENCODING, cfg.to_dict(), ds.modality]
    h.update(json.dumps(shape, sort_keys=True).encode())
    h.update(json.dumps(ds.tasks, sort_keys=True).encode())
    return FingerprintBase(h, os.path.join(ds.root.resolve(), ""))


def episode_fingerprint(
    ds: LeRobotDataset,
    episode: int,
    cfg: EmbodimentModalityConfig,
    edge: int,
    segments: dict[str, VideoSegment] | None = None,
    base: FingerprintBase | None = None,
) -> str:
    """Cheap content key: file sizes and mtimes of the episode's inputs plus everything that shapes the cache.

    The inputs are the episode's data file and video files whatever the layout; for LeRobot v3 (files shared by many
    episodes) the episode's global row range and each camera's time window in its file are part of the key too.
    ``segments`` (from :func:`_video_segments`) and ``base`` (from :func:`fingerprint_base`) save work when many
    episodes are fingerprinted.
    """
    base = base or fingerprint_base(ds, cfg, edge)
    h = base.hash.copy()
    h.update(json.dumps([ds.version, ds.episode(episode).length, ds.episode_rows(episode)]).encode())
    paths = [ds.episode_data_file(episode)]
    for key, segment in (segments or _video_segments(ds, episode, cfg)).items():
        paths.append(segment.path)
        h.update(f"{key}:{segment.start_s!r}:{segment.end_s!r}".encode())
    for p in paths:  # resolved paths inside the root (the reader refuses any other)
        st = p.stat()
        h.update(f"{str(p).removeprefix(base.root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class CacheInfo:
    """What stage 2 needs from an episode cache without reading its data."""

    fingerprint: str
    content: str  # sha256 of the cache's data: equal content gives equal shards, whatever the file dates
    length: int
    dims: dict[str, int]


def read_cache_info(path: Path) -> CacheInfo | None:
    """The cache's metadata, or None when it is missing, unreadable or from an older layout."""
    try:
        with pa.memory_map(str(path)) as src:
            meta = pa.ipc.open_file(src).schema.metadata or {}
        return CacheInfo(
            meta[b"fingerprint"].decode(), meta[b"content"].decode(), int(meta[b"length"]), json.loads(meta[b"dims"])
        )
    except (OSError, KeyError, ValueError, pa.ArrowInvalid):
        return None


def _content_digest(table: pa.Table) -> str:
    """sha256 of a freshly built table's schema and column buffers (no serialisation: the cache is written once)."""
    h = hashlib.sha256(str(table.schema.remove_metadata()).encode())
    for column in table.columns:
        for chunk in column.chunks:
            h.update(f"{len(chunk)}:{chunk.offset}".encode())
            for buffer in chunk.buffers():
                h.update(b"-" if buffer is None else buffer)
    return h.hexdigest()


def _ipc_bytes(table: pa.Table, max_chunksize: int | None = None) -> pa.Buffer:
    """The table as an Arrow IPC file, in Arrow's own buffer (written out without a copy to Python bytes)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max_chunksize)
    return sink.getvalue()


def _frame_column(n: int, rows: np.ndarray, frames: list[bytes]) -> pa.Array:
    """A binary column of ``n`` rows holding ``frames`` at ``rows`` (sorted) and nulls elsewhere, assembled from its
    three buffers: the same array as ``pa.array`` of a list with Nones, without a Python object per row."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[rows + 1] = [len(f) for f in frames]
    np.cumsum(offsets, out=offsets)
    if offsets[-1] >= 2**31:  # past 32-bit offsets: let Arrow say what it makes of it
        column = [None] * n
        for k, f in zip(rows.tolist(), frames, strict=True):
            column[k] = f
        return pa.array(column, pa.binary())
    valid = np.zeros(n, dtype=bool)
    valid[rows] = True
    nulls = n - len(rows)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    buffers = [bitmap, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(frames))]
    return pa.Array.from_buffers(pa.binary(), n, buffers, null_count=nulls)


def build_episode_cache(
    ds: LeRobotDataset,
    episode: int,
    cfg: EmbodimentModalityConfig,
    edge: int,
    path: Path,
    fingerprint: str,
    encoder: FrameEncoder | None = None,
    segments: dict[str, VideoSegment] | None = None,
    write: Callable[[Path, Buffer], None] = atomic_write_bytes,
) -> CacheInfo:
    encoder = encoder or FrameEncoder(edge)
    segments = segments or _video_segments(ds, episode, cfg)
    arrays = ds.load_episode(episode, cfg)
    n = arrays.length
    wanted = needed_frames(n, cfg)
    columns: dict[str, pa.Array] = {"frame_index": pa.array(np.arange(n, dtype=np.int64))}
    for key, segment in segments.items():
        if ds.is_v3:
            encoded = encode_video_frames(segment.path, wanted, encoder, start_s=segment.start_s, fps=ds.fps)
        else:
            encoded = encode_video_frames(segment.path, wanted, encoder)
        columns[f"video.{key}"] = _frame_column(n, wanted, encoded)
    dims: dict[str, int] = {}
    for modality, groups in (("state", arrays.state), ("action", arrays.action)):
        for key, values in groups.items():
            dims[f"{modality}.{key}"] = values.shape[1]
            flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
            columns[f"{modality}.{key}"] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    columns["language"] = pa.array(arrays.language, pa.string())
    table = pa.table(columns)
    info = CacheInfo(fingerprint, _content_digest(table), n, dims)
    meta = {
        b"fingerprint": fingerprint.encode(),
        b"content": info.content.encode(),
        b"length": str(n).encode(),
        b"dims": json.dumps(dims).encode(),
        b"episode": str(episode).encode(),
    }
    write(path, _ipc_bytes(table.replace_schema_metadata(meta)))
    return info


def _refresh_caches(
    ds: LeRobotDataset, episodes: list[int], cfg: EmbodimentModalityConfig, edge: int, cache_dir: Path,
    threads: int, progress: bool,
) -> tuple[dict[int, CacheInfo], int]:
    """Bring every episode cache up to date; returns each episode's cache info and how many were rebuilt."""
    infos: dict[int, CacheInfo] = {}
    stale: list[tuple[int, str, dict[str, VideoSegment]]] = []
    base = fingerprint_base(ds, cfg, edge)
    for e in episodes:  # fingerprints first, on this thread: they also warm the reader's lazily loaded metadata
        segments = _video_segments(ds, e, cfg)
        fp = episode_fingerprint(ds, e, cfg, edge, segments, base)
        info = read_cache_info(cache_dir / f"episode_{e:06d}.arrow")
        if info is not None and info.fingerprint == fp:
            infos[e] = info
        else:
            stale.append((e, fp, segments))

    for leftover in cache_dir.glob(".episode_*.arrow.*.tmp"):  # an interrupted run's uncommitted caches
        leftover.unlink(missing_ok=True)
    bar = tqdm(total=len(stale), desc="decode episodes", unit="ep", disable=not progress)
    with GroupCommit() as batch:  # caches become durable and visible in groups, not one fsync per episode
        if threads <= 1 or len(stale) <= 1:
            encoder = thread_encoder(edge)
            for e, fp, segments in stale:
                path = cache_dir / f"episode_{e:06d}.arrow"
                infos[e] = build_episode_cache(ds, e, cfg, edge, path, fp, encoder, segments, batch.write)
                bar.update()
        else:
            def build(e: int, fp: str, segments: dict[str, VideoSegment]) -> CacheInfo:
                path = cache_dir / f"episode_{e:06d}.arrow"
                return build_episode_cache(ds, e, cfg, edge, path, fp, thread_encoder(edge), segments, batch.write)

            # decoding, scaling and compression run in FFmpeg without the GIL, so threads scale like processes here
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shards") as pool:
                futures = {pool.submit(build, *item): item[0] for item in stale}
                try:
                    for future in futures:
                        infos[futures[future]] = future.result()
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    bar.close()
    return infos, len(stale)


# --- stage 2: shards -----------------------------------------------------------------------------------------------
def _gather(cache: pa.Table, cfg: EmbodimentModalityConfig, steps: np.ndarray) -> dict[str, pa.Array]:
    n = cache.num_rows
    out: dict[str, pa.Array] = {}
    for modality in ("video", "state", "action"):
        deltas = np.asarray(cfg[modality].delta_indices, dtype=np.int64)
        # negative offsets before the first frame repeat frame 0 instead of wrapping (upstream's iloc quirk)
        rows = np.clip(steps[:, None] + deltas[None, :], 0, n - 1)
        for key in cfg[modality].modality_keys:
            col = cache.column(f"{modality}.{key}").combine_chunks()
            taken = col.take(pa.array(rows.reshape(-1)))
            if modality == "video":
                out[f"video.{key}"] = pa.ListArray.from_arrays(
                    pa.array(np.arange(0, rows.size + 1, len(deltas), dtype=np.int32)), taken
                )
            else:
                dim = col.type.list_size
                flat = taken.flatten()
                out[f"{modality}.{key}"] = pa.FixedSizeListArray.from_arrays(flat, len(deltas) * dim)
    out["language"] = cache.column("language").combine_chunks().take(pa.array(steps))
    return out


def shard_key(pieces: list[tuple[int, np.ndarray]], infos: dict[int, CacheInfo], cfg: EmbodimentModalityConfig) -> str:
    """Everything a shard's bytes depend on: layout version, modality config, and per piece its episode, that
    episode's cache content and the steps taken from it."""
    h = hashlib.sha256(json.dumps([SHARD_FORMAT_VERSION, cfg.to_dict()], sort_keys=True).encode())
    for episode, steps in pieces:
        h.update(f"|{episode}:{infos[episode].content}:".encode())
        h.update(np.ascontiguousarray(steps, dtype=np.int64).tobytes())
    return h.hexdigest()


def _stored_shard_key(path: Path) -> str | None:
    try:
        with pa.memory_map(str(path)) as src:
            meta = pa.ipc.open_file(src).schema.metadata or {}
        return meta.get(b"key", b"").decode() or None
    except (OSError, pa.ArrowInvalid):
        return None


def write_shard(
    path: Path, pieces: list[tuple[int, np.ndarray]], cfg: EmbodimentModalityConfig, cache_dir: Path, key: str
) -> int:
    tables = []
    for episode, steps in pieces:
        with pa.memory_map(str(cache_dir / f"episode_{episode:06d}.arrow")) as src:
            cache = pa.ipc.open_file(src).read_all()
            cols = {"episode_index": pa.array(np.full(len(steps), episode, np.int64)), "step": pa.array(steps)}
            cols.update(_gather(cache, cfg, steps))
            tables.append(pa.table(cols))
    table = pa.concat_tables(tables)
    table = table.replace_schema_metadata({b"key": key.encode()})
    atomic_write_bytes(path, _ipc_bytes(table, max_chunksize=256))
    return table.num_rows


@dataclass(frozen=True)
class ShardSet:
    """What the loader needs to know about a shard directory (read from its manifest.json)."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> ShardSet:
        root = Path(root)
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest.get("format_version") != SHARD_FORMAT_VERSION:
            raise ValueError(f"{root}/manifest.json: shard format {manifest.get('format_version')} is not "
                             f"{SHARD_FORMAT_VERSION}; rebuild the shards")
        return cls(root, manifest)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["shards"]]

    @property
    def shard_lengths(self) -> list[int]:
        return [int(s["samples"]) for s in self.manifest["shards"]]

    @property
    def dims(self) -> dict[str, int]:
        return self.manifest["dims"]


def build_shards(
    dataset_root: str | Path,
    cfg: EmbodimentModalityConfig,
    out_dir: str | Path,
    *,
    image_edge: int,
    shard_size: int = 1024,
    episode_sampling_rate: float = 0.1,
    seed: int = 42,
    progress: bool = True,
    episodes: list[int] | None = None,
    threads: int = 1,
) -> Path:
    """Build (or refresh) the shard directory; returns the path of its manifest.json.

    ``episodes`` restricts the shards to those episode indices (e.g. the training split); default all.
    ``threads`` episodes are decoded at once; the files written do not depend on it.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ds = LeRobotDataset(dataset_root)
    out = Path(out_dir)
    cache_dir = out / "episodes"
    cache_dir.mkdir(parents=True, exist_ok=True)

    if episodes is None:
        chosen = [ep.index for ep in ds.episodes]
    else:
        known = {ep.index for ep in ds.episodes}
        missing = sorted(set(episodes) - known)
        if missing:
            raise ValueError(f"{dataset_root}: episodes {missing} do not exist")
        chosen = sorted(set(episodes))
    infos, episodes_rebuilt = _refresh_caches(ds, chosen, cfg, image_edge, cache_dir, threads, progress)
    wanted = {f"episode_{e:06d}.arrow" for e in chosen}
    for stale in cache_dir.glob("episode_*.arrow"):
        if stale.name not in wanted:
            stale.unlink()

    plan = plan_shards({e: infos[e].length for e in chosen}, cfg, shard_size, episode_sampling_rate, seed)
    dims: dict[str, int] = {}
    for e in chosen:
        dims.update(infos[e].dims)
    shard_entries = []
    shards_rebuilt = 0
    for i, pieces in enumerate(tqdm(plan, desc="write shards", unit="shard", disable=not progress)):
        name = f"shard_{i:05d}.arrow"
        key = shard_key(pieces, infos, cfg)
        if _stored_shard_key(out / name) != key:
            write_shard(out / name, pieces, cfg, cache_dir, key)
            shards_rebuilt += 1
        shard_entries.append({"file": name, "samples": int(sum(len(steps) for _, steps in pieces)), "key": key})
    for stale in out.glob("shard_*.arrow"):
        if stale.name not in {s["file"] for s in shard_entries}:
            stale.unlink()

    manifest = {
        "format_version": SHARD_FORMAT_VERSION,
        "dataset": str(Path(dataset_root).resolve()),
        "modality_config": cfg.to_dict(),
        "image_edge": image_edge,
        "frame_encoding": FRAME_ENCODING,
        "shard_size": shard_size,
        "episode_sampling_rate": episode_sampling_rate,
        "seed": seed,
        "episodes": len(chosen),
        "episode_indices": chosen,
        "episodes_rebuilt": episodes_rebuilt,
        "shards_rebuilt": shards_rebuilt,
        "samples": int(sum(s["samples"] for s in shard_entries)),
        "dims": dims,
        "shards": shard_entries,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return out / "manifest.json"


class ShardReader:
    """Random access to one shard's samples, each an unbatched observation+action dict in upstream's layout.

    Columns are turned into numpy views once per shard instead of converting every row to Python objects, which
    halves the per-sample cost outside the processor (docs/benchmarks.md).
    """

    def __init__(self, table: pa.Table, cfg: EmbodimentModalityConfig, dims: dict[str, int]):
        self.cfg = cfg
        self.num_rows = table.num_rows
        self._video = {}
        for key in cfg.video.modality_keys:
            col = table.column(f"video.{key}").combine_chunks()
            # the JPEG blobs as Python bytes once per shard, not one Arrow scalar per frame per sample
            self._video[key] = (col.offsets.to_numpy(), col.values.to_pylist())
        self._groups = {}
        for modality in ("state", "action"):
            t = len(cfg[modality].delta_indices)
            for key in cfg[modality].modality_keys:
                col = table.column(f"{modality}.{key}").combine_chunks()
                values = col.flatten().to_numpy(zero_copy_only=False)
                self._groups[(modality, key)] = values.reshape(len(col), t, dims[f"{modality}.{key}"])
        self._language = table.column("language").to_pylist()

    def __len__(self) -> int:
        return self.num_rows

    def sample(self, row: int) -> dict[str, Any]:
        step: dict[str, Any] = {"video": {}, "state": {}, "action": {}}
        for key, (offsets, blobs) in self._video.items():
            first, end = offsets[row], offsets[row + 1]
            if end - first == 1:  # one frame a camera, the usual case: no stack copy
                step["video"][key] = decode_jpeg(blobs[first])[None]
            else:
                step["video"][key] = np.stack([decode_jpeg(blobs[j]) for j in range(first, end)])
        for (modality, key), values in self._groups.items():
            step[modality][key] = values[row].copy()  # the processor may write into its input
        step["language"] = {self.cfg.language.modality_keys[0]: self._language[row]}
        return step
