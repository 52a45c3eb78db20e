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

The frame decoding and JPEG encoding of stage 1 live in :mod:`groot_ft.shard_frames`; the read side the loader uses
(:class:`ShardSet`, :class:`ShardReader`, :func:`decode_jpeg`) in :mod:`groot_ft.shard_reader`. Both are re-exported
here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from groot_ft.data.lerobot import DatasetError, LeRobotDataset, VideoSegment
from groot_ft.errors import UserError
from groot_ft.io import GroupCommit, atomic_write_bytes, atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig
from groot_ft.shard_frames import (  # noqa: F401 (re-exported: importable from here as before)
    FRAME_ENCODING,
    JPEG_QSCALE,
    FrameEncoder,
    encode_jpeg,
    encode_video_frames,
    resize_shortest_edge,
    thread_encoder,
)
from groot_ft.shard_reader import SHARD_FORMAT_VERSION, ShardReader, ShardSet, decode_jpeg  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from typing_extensions import Buffer


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
        raise DatasetError(
            f"no episode is longer than the action horizon ({cfg.action_horizon} steps); nothing to train on: add "
            f"longer episodes or shorten action.delta_indices in the modality config"
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
        raise UserError(
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


# --- stage 1: per-episode caches ------------------------------------------------------------------------------------
def _video_segments(ds: LeRobotDataset, episode: int, cfg: EmbodimentModalityConfig) -> dict[str, VideoSegment]:
    return {key: ds.episode_video_segment(episode, ds.video_original_key(key)) for key in cfg.video.modality_keys}


@dataclass(frozen=True)
class FingerprintBase:
    """The part of every episode fingerprint that is the same for all episodes of a build (hashed once)."""

    hash: Any  # a hashlib sha256 object, copied per episode
    root: str  # the dataset root, resolved, with a trailing separator


def fingerprint_base(ds: LeRobotDataset, cfg: EmbodimentModalityConfig, edge: int,
                     letter_box: bool = False) -> FingerprintBase:
    h = hashlib.sha256()
    # letter_box only when set, so the caches built before it existed keep their keys
    shape = [SHARD_FORMAT_VERSION, [edge, "letter_box"] if letter_box else edge, FRAME_ENCODING, cfg.to_dict(),
             ds.modality]
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
    threads: int, progress: bool, letter_box: bool = False,
) -> tuple[dict[int, CacheInfo], int]:
    """Bring every episode cache up to date; returns each episode's cache info and how many were rebuilt."""
    infos: dict[int, CacheInfo] = {}
    stale: list[tuple[int, str, dict[str, VideoSegment]]] = []
    base = fingerprint_base(ds, cfg, edge, letter_box)
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
            encoder = thread_encoder(edge, letter_box)
            for e, fp, segments in stale:
                path = cache_dir / f"episode_{e:06d}.arrow"
                infos[e] = build_episode_cache(ds, e, cfg, edge, path, fp, encoder, segments, batch.write)
                bar.update()
        else:
            def build(e: int, fp: str, segments: dict[str, VideoSegment]) -> CacheInfo:
                path = cache_dir / f"episode_{e:06d}.arrow"
                return build_episode_cache(ds, e, cfg, edge, path, fp, thread_encoder(edge, letter_box), segments,
                                           batch.write)

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
    modality_json: str | Path | None = None,
    letter_box: bool = False,
) -> Path:
    """Build (or refresh) the shard directory; returns the path of its manifest.json.

    Frames are stored with their shorter side ``image_edge``; with ``letter_box`` (N1.7's ``letter_box_transform``)
    their longer side, which the processor then pads to a square (``geometry.stored_frame_size``).
    ``episodes`` restricts the shards to those episode indices (e.g. the training split); default all.
    ``threads`` episodes are decoded at once; the files written do not depend on it. ``modality_json``: the
    modality mapping kept outside the dataset (modality_json_path); the episode caches are keyed by its content.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ds = LeRobotDataset(dataset_root, modality_json)
    if progress:
        print(f"shards: {ds.root}: {ds.modality_source}")
    out = Path(out_dir)
    cache_dir = out / "episodes"
    cache_dir.mkdir(parents=True, exist_ok=True)

    if episodes is None:
        chosen = [ep.index for ep in ds.episodes]
    else:
        known = {ep.index for ep in ds.episodes}
        missing = sorted(set(episodes) - known)
        if missing:
            raise DatasetError(f"{dataset_root}: episodes {missing} do not exist (check the run description's or "
                               f"--eval-episodes' episode indices)")
        chosen = sorted(set(episodes))
    infos, episodes_rebuilt = _refresh_caches(ds, chosen, cfg, image_edge, cache_dir, threads, progress, letter_box)
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
        "modality_json": str(ds.modality_json.resolve()),
        "modality_config": cfg.to_dict(),
        "image_edge": image_edge,
        "letter_box": letter_box,
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
