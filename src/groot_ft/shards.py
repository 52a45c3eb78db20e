"""build-shards: turn a dataset into training-sample files, decoding every video frame exactly once.

Stage 1 writes one Arrow IPC cache per episode (``episodes/episode_XXXXXX.arrow``): every frame of every configured
camera resized to the processor's working size and JPEG-encoded, plus the state/action groups and language of
each frame. A cache is rebuilt only when its episode's files change (content fingerprint in the cache metadata).

Stage 2 assembles ``shard_XXXXX.arrow`` files of about ``shard_size`` samples with upstream GR00T's assignment:
episodes in a seeded order, each episode's valid steps shuffled and split into ``1/episode_sampling_rate``
interleaved subsets, each subset given to the currently shortest shard. Every valid step appears once per pass.
A sample row holds exactly what the processor needs: the frames at the video offsets, the state rows, the action
chunk and the instruction.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.io import atomic_write_bytes, atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig

SHARD_FORMAT_VERSION = 1
JPEG_QUALITY = 95


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


# --- frames -------------------------------------------------------------------------------------------------------
def resize_shortest_edge(frame: np.ndarray, edge: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if min(h, w) == edge:
        return frame
    scale = edge / min(h, w)
    size = (max(edge, round(w * scale)), max(edge, round(h * scale)))
    # BOX averages every source pixel when shrinking (like cv2.INTER_AREA), so small targets stay alias-free
    resample = Image.BOX if scale < 1 else Image.BILINEAR
    return np.asarray(Image.fromarray(frame).resize(size, resample))


def encode_jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# --- stage 1: per-episode caches ------------------------------------------------------------------------------------
def episode_fingerprint(ds: LeRobotDataset, episode: int, cfg: EmbodimentModalityConfig, edge: int) -> str:
    """Cheap content key: file sizes and mtimes of the episode's inputs plus everything that shapes the cache.

    The inputs are the episode's data file and video files whatever the layout; for LeRobot v3 (files shared by many
    episodes) the episode's global row range and each camera's time window in its file are part of the key too.
    """
    h = hashlib.sha256()
    h.update(json.dumps([SHARD_FORMAT_VERSION, edge, JPEG_QUALITY, cfg.to_dict(), ds.modality], sort_keys=True).encode())
    h.update(json.dumps([ds.version, ds.episode(episode).length, ds.episode_rows(episode)]).encode())
    paths = [ds.episode_data_file(episode)]
    for key in cfg.video.modality_keys:
        segment = ds.episode_video_segment(episode, ds.video_original_key(key))
        paths.append(segment.path)
        h.update(f"{key}:{segment.start_s!r}:{segment.end_s!r}".encode())
    root = ds.root.resolve()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps(ds.tasks, sort_keys=True).encode())
    return h.hexdigest()


def _cache_fingerprint(path: Path) -> str | None:
    try:
        with pa.memory_map(str(path)) as src:
            meta = pa.ipc.open_file(src).schema.metadata or {}
        return meta.get(b"fingerprint", b"").decode() or None
    except (OSError, pa.ArrowInvalid):
        return None


def build_episode_cache(
    ds: LeRobotDataset, episode: int, cfg: EmbodimentModalityConfig, edge: int, path: Path, fingerprint: str
) -> None:
    arrays = ds.load_episode(episode, cfg)
    n = arrays.length
    columns: dict[str, pa.Array] = {"frame_index": pa.array(np.arange(n, dtype=np.int64))}
    for key in cfg.video.modality_keys:
        frames = ds.read_episode_frames(episode, ds.video_original_key(key), np.arange(n))
        columns[f"video.{key}"] = pa.array([encode_jpeg(resize_shortest_edge(f, edge)) for f in frames], pa.binary())
    shapes: dict[str, int] = {}
    for modality, groups in (("state", arrays.state), ("action", arrays.action)):
        for key, values in groups.items():
            shapes[f"{modality}.{key}"] = values.shape[1]
            flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
            columns[f"{modality}.{key}"] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    columns["language"] = pa.array(arrays.language, pa.string())
    meta = {b"fingerprint": fingerprint.encode(), b"dims": json.dumps(shapes).encode(), b"episode": str(episode).encode()}
    table = pa.table(columns).replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


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
) -> Path:
    """Build (or refresh) the shard directory; returns the path of its manifest.json.

    ``episodes`` restricts the shards to those episode indices (e.g. the training split); default all.
    """
    ds = LeRobotDataset(dataset_root)
    out = Path(out_dir)
    cache_dir = out / "episodes"
    cache_dir.mkdir(parents=True, exist_ok=True)

    if episodes is None:
        episodes = [ep for ep in ds.episodes]
    else:
        by_index = {ep.index: ep for ep in ds.episodes}
        missing = sorted(set(episodes) - set(by_index))
        if missing:
            raise ValueError(f"{dataset_root}: episodes {missing} do not exist")
        episodes = [by_index[e] for e in sorted(set(episodes))]
    rebuilt = 0
    for ep in tqdm(episodes, desc="decode episodes", unit="ep", disable=not progress):
        path = cache_dir / f"episode_{ep.index:06d}.arrow"
        fp = episode_fingerprint(ds, ep.index, cfg, image_edge)
        if _cache_fingerprint(path) != fp:
            build_episode_cache(ds, ep.index, cfg, image_edge, path, fp)
            rebuilt += 1
    wanted = {f"episode_{ep.index:06d}.arrow" for ep in episodes}
    for stale in cache_dir.glob("episode_*.arrow"):
        if stale.name not in wanted:
            stale.unlink()

    lengths = {}
    for ep in episodes:
        with pa.memory_map(str(cache_dir / f"episode_{ep.index:06d}.arrow")) as src:
            lengths[ep.index] = pa.ipc.open_file(src).read_all().num_rows
    plan = plan_shards(lengths, cfg, shard_size, episode_sampling_rate, seed)

    dims: dict[str, int] = {}
    shard_entries = []
    for i, pieces in enumerate(tqdm(plan, desc="write shards", unit="shard", disable=not progress)):
        tables = []
        for episode, steps in pieces:
            with pa.memory_map(str(cache_dir / f"episode_{episode:06d}.arrow")) as src:
                cache = pa.ipc.open_file(src).read_all()
                dims.update(json.loads(cache.schema.metadata[b"dims"]))
                cols = {"episode_index": pa.array(np.full(len(steps), episode, np.int64)), "step": pa.array(steps)}
                cols.update(_gather(cache, cfg, steps))
                tables.append(pa.table(cols))
        table = pa.concat_tables(tables)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=256)
        name = f"shard_{i:05d}.arrow"
        atomic_write_bytes(out / name, sink.getvalue().to_pybytes())
        shard_entries.append({"file": name, "samples": table.num_rows})
    for stale in out.glob("shard_*.arrow"):
        if stale.name not in {s["file"] for s in shard_entries}:
            stale.unlink()

    manifest = {
        "format_version": SHARD_FORMAT_VERSION,
        "dataset": str(Path(dataset_root).resolve()),
        "modality_config": cfg.to_dict(),
        "image_edge": image_edge,
        "shard_size": shard_size,
        "episode_sampling_rate": episode_sampling_rate,
        "seed": seed,
        "episodes": len(episodes),
        "episode_indices": [ep.index for ep in episodes],
        "episodes_rebuilt": rebuilt,
        "samples": int(sum(s["samples"] for s in shard_entries)),
        "dims": dims,
        "shards": shard_entries,
    }
    atomic_write_json(out / "manifest.json", manifest)
    return out / "manifest.json"


def sample_from_row(row: dict[str, Any], cfg: EmbodimentModalityConfig, dims: dict[str, int]) -> dict[str, Any]:
    """One shard row as an unbatched observation+action dict in upstream's layout."""
    step: dict[str, Any] = {"video": {}, "state": {}, "action": {}}
    for key in cfg.video.modality_keys:
        step["video"][key] = np.stack([decode_jpeg(b) for b in row[f"video.{key}"]])
    for modality in ("state", "action"):
        t = len(cfg[modality].delta_indices)
        for key in cfg[modality].modality_keys:
            d = dims[f"{modality}.{key}"]
            step[modality][key] = np.asarray(row[f"{modality}.{key}"], dtype=np.float32).reshape(t, d)
    step["language"] = {cfg.language.modality_keys[0]: row["language"]}
    return step
