"""Write LeRobot v3.0 datasets: convert a v2.0/v2.1 dataset into the v3.0 layout (``dataset-formats.md`` §1.3).

:func:`write_v3_dataset` is our own writer (no lerobot dependency), used to build v3 test fixtures and by users
who want a v3 copy of a v2 dataset. Output layout::

    meta/info.json  meta/tasks.parquet  meta/episodes/chunk-000/file-000.parquet  [meta/modality.json, stats ...]
    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet               many episodes per file
    videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4     many episodes per file, per camera

* Episodes are concatenated in episode-index order. A new data (video) file is started before an episode that
  would push the current file past ``data_files_size_in_mb`` (``video_files_size_in_mb``); a file always holds at
  least one episode. Sizes are estimated from the in-memory Arrow size of the rows (data) and the size of the source
  mp4s (video), so the split is deterministic. ``file_index`` wraps into the next chunk after ``chunks_size`` files.
* Video is decoded from the source (frame ``k`` of an episode = the ``k``-th frame of its mp4, as GR00T reads v2)
  and re-encoded, streaming, one output file at a time: frame ``i`` of an output file is shown at ``i / fps``, so an
  episode spans ``[from_timestamp, to_timestamp) = [first / fps, (first + length) / fps)``, consecutive episodes
  chain exactly and the last ``to_timestamp`` is the file's duration. Codec defaults to the source's when it is one
  we encode (h264, av1), else h264; keyframe every 2 frames (LeRobot's ``g=2``).
* The ``index`` column is rewritten to the global row counter (equal to the source's when that one is
  consistent); all other columns are copied unchanged. ``meta/episodes`` rows carry the episode's location and
  per-episode ``stats/<feature>/<stat>`` (from ``episodes_stats.jsonl`` when present, else computed from the rows:
  min, max, mean, std, count for numeric features). ``meta/tasks.parquet`` is written the way pandas stores a frame
  indexed by task (columns ``task_index`` and ``task``, ``task`` declared as the pandas index), as LeRobot 0.6 does.
* Other files of ``meta/`` (``modality.json``, ``stats.json``, ``relative_stats.json``, ...) are copied.

Everything is written into a hidden temporary sibling of ``out_root`` and renamed into place at the end; the source
is only read. A camera declared in ``info.json`` with no files at all (e.g. gr1's ``observation.images.egoview``)
stays declared and gets no ``videos/<key>/...`` columns; one missing in only some episodes is an error.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.lerobot import (
    V3_DATA_PATH,
    V3_EPISODES_PATH,
    V3_TASKS_FILE,
    V3_VIDEO_PATH,
    DatasetError,
    LeRobotDataset,
    column_matrix,
    read_jsonl,
    v3_video_columns,
)
from groot_ft.data.video import CODECS, ENCODER_ALIASES, quiet_svt, read_frames
from groot_ft.errors import OutputExistsError

__all__ = [
    "DEFAULT_DATA_FILES_SIZE_IN_MB",
    "DEFAULT_VIDEO_FILES_SIZE_IN_MB",
    "v3_file_counts",
    "write_v3_dataset",
]

DEFAULT_DATA_FILES_SIZE_IN_MB = 100.0  # LeRobot's defaults
DEFAULT_VIDEO_FILES_SIZE_IN_MB = 200.0
_MB = 1024 * 1024
_V2_ONLY_META = {"info.json", "episodes.jsonl", "tasks.jsonl", "episodes_stats.jsonl"}


class _VideoWriter:
    """Streaming mp4 encoder: frames are appended episode by episode; frame ``i`` is shown at ``i / fps``."""

    def __init__(self, path: Path, fps: int, codec: str, width: int, height: int, crf: int | None, gop: int = 2):
        encoder, default_crf, default_preset = CODECS[codec]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fps = fps
        self.frames = 0
        self.size = (height, width)
        self.container = av.open(str(path), mode="w", format="mp4")
        options = {"crf": str(default_crf if crf is None else int(crf)), "g": str(gop), "preset": default_preset}
        self.stream = self.container.add_stream(encoder, rate=fps, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.time_base = Fraction(1, fps)

    def write(self, frames: np.ndarray) -> None:
        if frames.shape[1:3] != self.size:
            raise DatasetError(
                f"{self.path}: frames of {frames.shape[2]}x{frames.shape[1]} (WxH) cannot join a video of "
                f"{self.size[1]}x{self.size[0]}; every episode of a camera must have the same resolution"
            )
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self.frames
            vf.time_base = self.time_base
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
            self.frames += 1

    def close(self) -> None:
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        finally:
            self.container.close()


class _FileCounter:
    """(chunk_index, file_index) of the current output file; wraps into the next chunk after ``chunks_size``."""

    def __init__(self, chunks_size: int):
        self.chunks_size = chunks_size
        self.chunk = 0
        self.file = 0

    def advance(self) -> None:
        self.file += 1
        if self.file >= self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0


def write_v3_dataset(
    src_root: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    *,
    data_files_size_in_mb: float = DEFAULT_DATA_FILES_SIZE_IN_MB,
    video_files_size_in_mb: float = DEFAULT_VIDEO_FILES_SIZE_IN_MB,
    chunks_size: int | None = None,
    codec: str | None = None,
    crf: int | None = None,
    episodes_per_meta_file: int | None = None,
) -> Path:
    """Convert the v2.0/v2.1 dataset at ``src_root`` into a new v3.0 dataset at ``out_root`` and return its path.

    ``out_root`` must not exist or be an empty directory, and must not lie inside the source. ``chunks_size``
    defaults to the source's; ``codec``/``crf`` choose the re-encoding (default: the source's codec when it is
    h264/av1, with :data:`~groot_ft.data.video.CODECS`' CRF); ``episodes_per_meta_file`` splits ``meta/episodes``
    into several files (default one). Raises :class:`DatasetError` for an inconsistent source (rows vs length,
    videos with fewer frames than rows, cameras with files for only some episodes).
    """
    src = LeRobotDataset(src_root)
    out = Path(out_root)
    if src.is_v3:
        raise DatasetError(f"{src.root}: is already a {src.version} dataset")
    limits = (("data_files_size_in_mb", data_files_size_in_mb), ("video_files_size_in_mb", video_files_size_in_mb))
    for name, value in limits:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    chunks = src.chunks_size if chunks_size is None else int(chunks_size)
    if chunks < 1:
        raise ValueError(f"chunks_size must be >= 1, got {chunks_size!r}")
    if episodes_per_meta_file is not None and episodes_per_meta_file < 1:
        raise ValueError(f"episodes_per_meta_file must be >= 1, got {episodes_per_meta_file!r}")
    if codec is not None:
        codec = ENCODER_ALIASES.get(codec, codec)
        if codec not in CODECS:
            raise ValueError(f"unsupported codec {codec!r}; choose one of {sorted(CODECS)}")
    if out.resolve().is_relative_to(src.root.resolve()):
        raise DatasetError(f"{out}: the v3 dataset cannot be written inside the source dataset {src.root}; choose "
                           f"an OUT outside it")
    _refuse_existing(out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        episodes = sorted(src.episodes, key=lambda e: e.index)
        if not episodes:
            raise DatasetError(f"{src.episodes_file}: lists no episodes")
        ep_stats = _source_episode_stats(src)
        rows, stats = _write_data(src, tmp, episodes, data_files_size_in_mb * _MB, chunks, ep_stats)
        videos, codecs = {}, {}
        for key in src.video_keys():
            written = _write_videos(src, tmp, key, episodes, video_files_size_in_mb * _MB, chunks, codec, crf)
            if written is not None:
                videos[key], codecs[key] = written
        _write_episodes_meta(tmp, episodes, rows, videos, stats, episodes_per_meta_file or len(episodes), chunks)
        tasks = src.tasks
        _write_tasks(tmp / V3_TASKS_FILE, tasks)
        info = _v3_info(src, episodes, len(tasks), chunks, data_files_size_in_mb, video_files_size_in_mb, codecs)
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n", encoding="utf-8")
        for item in sorted((src.root / "meta").iterdir()):
            if item.is_file() and item.name not in _V2_ONLY_META:
                shutil.copy2(item, tmp / "meta" / item.name)
        _refuse_existing(out)
        if out.is_dir():
            out.rmdir()  # empty (checked just above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _refuse_existing(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise OutputExistsError(f"{out}: refusing to write a dataset into a non-empty directory")
    elif out.exists() or out.is_symlink():
        raise OutputExistsError(f"{out}: exists and is not a directory")


# --------------------------------------------------------------------------------------------------------- data


def _source_episode_stats(src: LeRobotDataset) -> dict[int, dict[str, Any]]:
    path = src.root / "meta" / "episodes_stats.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for row in read_jsonl(path):
        if isinstance(row.get("episode_index"), int) and isinstance(row.get("stats"), dict):
            out[row["episode_index"]] = row["stats"]
    return out


def _computed_stats(src: LeRobotDataset, table: pa.Table, path: Path) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for name, feat in src.features.items():
        dtype = str(feat.get("dtype", ""))
        if name not in table.column_names or not (dtype.startswith(("float", "int", "uint"))):
            continue
        values = column_matrix(table, name, path, dtype=np.float64)
        if not len(values):
            continue
        stats[name] = {
            "min": values.min(axis=0).tolist(),
            "max": values.max(axis=0).tolist(),
            "mean": values.mean(axis=0).tolist(),
            "std": values.std(axis=0).tolist(),
            "count": [len(values)],
        }
    return stats


def _write_data(
    src: LeRobotDataset,
    tmp: Path,
    episodes: list,
    limit_bytes: float,
    chunks: int,
    ep_stats: dict[int, dict[str, Any]],
) -> tuple[dict[int, tuple[int, int, int, int]], dict[int, dict[str, Any]]]:
    """Concatenate the episodes' rows into data files; returns per episode (chunk, file, from, to) and its stats."""
    counter = _FileCounter(chunks)
    buffer: list[pa.Table] = []
    buffered = 0
    where: dict[int, tuple[int, int, int, int]] = {}
    stats: dict[int, dict[str, Any]] = {}
    global_index = 0

    def flush() -> None:
        path = tmp / V3_DATA_PATH.format(chunk_index=counter.chunk, file_index=counter.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            table = pa.concat_tables(buffer)
        except pa.ArrowInvalid as exc:
            raise DatasetError(f"{src.root}: episodes' parquet files have different schemas ({exc})") from None
        pq.write_table(table, path, compression="snappy")

    for ep in episodes:
        path = src.episode_data_file(ep.index)
        table = src.read_episode_table(ep.index)
        if table.num_rows != ep.length:
            raise DatasetError(
                f"{path}: has {table.num_rows} rows but {src.episodes_file.name} gives episode {ep.index} length "
                f"{ep.length}; fix the source first (groot-ft validate names the problem)"
            )
        if "index" in table.column_names:
            i = table.schema.get_field_index("index")
            values = pa.array(np.arange(global_index, global_index + ep.length, dtype=np.int64))
            table = table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))
        nbytes = table.nbytes
        if buffer and buffered + nbytes > limit_bytes:
            flush()
            counter.advance()
            buffer, buffered = [], 0
        buffer.append(table)
        buffered += nbytes
        where[ep.index] = (counter.chunk, counter.file, global_index, global_index + ep.length)
        stats[ep.index] = ep_stats.get(ep.index) or _computed_stats(src, table, path)
        global_index += ep.length
    flush()
    return where, stats


# ------------------------------------------------------------------------------------------------------- videos


def _write_videos(
    src: LeRobotDataset,
    tmp: Path,
    key: str,
    episodes: list,
    limit_bytes: float,
    chunks: int,
    codec: str | None,
    crf: int | None,
) -> tuple[dict[int, tuple[int, int, float, float]], str] | None:
    """Re-encode one camera into concatenated files; per episode (chunk, file, from_ts, to_ts), and the codec used."""
    sources = {ep.index: src.episode_video_file(ep.index, key) for ep in episodes}
    missing = [e for e, p in sources.items() if not p.is_file()]
    if len(missing) == len(sources):
        return None  # declared but never recorded: keep the declaration, write no files
    if missing:
        raise DatasetError(
            f"{sources[missing[0]]}: camera {key!r} has no file for episode(s) {missing[:10]} but has files for "
            "others; a v3 video file needs every episode"
        )
    fps = src.fps
    if not float(fps).is_integer():
        raise DatasetError(f"{src.root / 'meta/info.json'}: fps {fps} is not an integer frame rate")
    fps_i = int(fps)
    if codec is None:
        meta = src.features[key].get("info") or src.features[key].get("video_info") or {}
        declared = ENCODER_ALIASES.get(str(meta.get("video.codec")), str(meta.get("video.codec")))
        codec = declared if declared in CODECS else "h264"
    counter = _FileCounter(chunks)
    writer: _VideoWriter | None = None
    written = 0
    where: dict[int, tuple[int, int, float, float]] = {}
    with quiet_svt() if codec == "av1" else contextlib.nullcontext():
        try:
            for ep in episodes:
                path = sources[ep.index]
                size = path.stat().st_size
                if writer is not None and written + size > limit_bytes:
                    writer.close()
                    writer = None
                    counter.advance()
                frames = read_frames(path, range(ep.length)) if ep.length else None
                if frames is None:
                    raise DatasetError(f"{path}: episode {ep.index} has length 0; drop it before converting")
                if writer is None:
                    out = tmp / V3_VIDEO_PATH.format(video_key=key, chunk_index=counter.chunk, file_index=counter.file)
                    writer = _VideoWriter(out, fps_i, codec, frames.shape[2], frames.shape[1], crf)
                    written = 0
                start = writer.frames
                writer.write(frames)
                written += size
                where[ep.index] = (counter.chunk, counter.file, start / fps_i, writer.frames / fps_i)
        finally:
            if writer is not None:
                writer.close()
    return where, codec


# --------------------------------------------------------------------------------------------------------- meta


def _stats_columns(episodes: list, stats: dict[int, dict[str, Any]]) -> dict[str, list[Any]]:
    keys: list[tuple[str, str]] = []
    for ep in episodes:
        for feature, entry in (stats.get(ep.index) or {}).items():
            if "/" in feature or not isinstance(entry, dict):
                continue
            for stat in entry:
                if (feature, stat) not in keys:
                    keys.append((feature, stat))
    columns: dict[str, list[Any]] = {}
    for feature, stat in keys:
        values = []
        for ep in episodes:
            v = (stats.get(ep.index) or {}).get(feature, {}).get(stat)
            if v is None:
                values.append(None)
            elif stat == "count":
                values.append(np.asarray(v, dtype=np.int64).reshape(-1).tolist())
            else:
                values.append(np.asarray(v, dtype=np.float64).tolist())
        columns[f"stats/{feature}/{stat}"] = values
    return columns


def _write_episodes_meta(
    tmp: Path,
    episodes: list,
    rows: dict[int, tuple[int, int, int, int]],
    videos: dict[str, dict[int, tuple[int, int, float, float]]],
    stats: dict[int, dict[str, Any]],
    per_file: int,
    chunks: int,
) -> None:
    for part, start in enumerate(range(0, len(episodes), per_file)):
        eps = episodes[start : start + per_file]
        cols: dict[str, pa.Array] = {
            "episode_index": pa.array([e.index for e in eps], pa.int64()),
            "tasks": pa.array([list(e.tasks) for e in eps], pa.list_(pa.string())),
            "length": pa.array([e.length for e in eps], pa.int64()),
            "data/chunk_index": pa.array([rows[e.index][0] for e in eps], pa.int64()),
            "data/file_index": pa.array([rows[e.index][1] for e in eps], pa.int64()),
            "dataset_from_index": pa.array([rows[e.index][2] for e in eps], pa.int64()),
            "dataset_to_index": pa.array([rows[e.index][3] for e in eps], pa.int64()),
        }
        for key, where in videos.items():
            names = v3_video_columns(key)
            types = (pa.int64(), pa.int64(), pa.float64(), pa.float64())
            for i, (name, typ) in enumerate(zip(names, types, strict=True)):
                cols[name] = pa.array([where[e.index][i] for e in eps], typ)
        chunk, file = divmod(part, chunks)
        cols["meta/episodes/chunk_index"] = pa.array([chunk] * len(eps), pa.int64())
        cols["meta/episodes/file_index"] = pa.array([file] * len(eps), pa.int64())
        for name, values in _stats_columns(eps, stats).items():
            cols[name] = pa.array(values)
        path = tmp / V3_EPISODES_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path, compression="snappy")


def _write_tasks(path: Path, tasks: dict[int, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(tasks)
    frame = pd.DataFrame(
        {"task_index": np.array(order, dtype=np.int64)}, index=pd.Index([tasks[i] for i in order], name="task")
    )
    table = pa.Table.from_pandas(frame, preserve_index=True)
    # pandas >= 3 stores strings as large_string; write plain string as LeRobot's files do
    schema = pa.schema(
        [pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in table.schema]
    )
    table = table.cast(schema.with_metadata(table.schema.metadata))
    pq.write_table(table, path, compression="snappy")


def _v3_info(
    src: LeRobotDataset,
    episodes: list,
    total_tasks: int,
    chunks: int,
    data_mb: float,
    video_mb: float,
    codecs: dict[str, str],
) -> dict[str, Any]:
    info = copy.deepcopy(src.info)
    info["codebase_version"] = "v3.0"
    for legacy in ("total_chunks", "total_videos"):
        info.pop(legacy, None)
    info["total_episodes"] = len(episodes)
    info["total_frames"] = sum(e.length for e in episodes)
    info["total_tasks"] = total_tasks
    info["chunks_size"] = chunks
    info["data_files_size_in_mb"] = data_mb
    info["video_files_size_in_mb"] = video_mb
    info["data_path"] = V3_DATA_PATH
    info["video_path"] = V3_VIDEO_PATH if src.video_keys() else None
    for key, codec in codecs.items():
        feat = info["features"][key]
        meta = feat.get("info") if isinstance(feat.get("info"), dict) else feat.get("video_info")
        if isinstance(meta, dict):
            meta["video.codec"] = codec
            if "video.pix_fmt" in meta:
                meta["video.pix_fmt"] = "yuv420p"
    # keep key order readable: version first, as LeRobot writes it
    ordered = {"codebase_version": info.pop("codebase_version")}
    ordered.update(info)
    return ordered


def v3_file_counts(root: str | os.PathLike[str]) -> dict[str, int]:
    """Number of data files and of video files per camera in a v3 dataset (for tests and summaries)."""
    root = Path(root)
    counts = {"data": len(list((root / "data").rglob("*.parquet")))}
    videos = root / "videos"
    if videos.is_dir():
        for cam in sorted(p for p in videos.iterdir() if p.is_dir()):
            counts[cam.name] = len(list(cam.rglob("*.mp4")))
    return counts
