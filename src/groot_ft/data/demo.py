"""A small synthetic, learnable, GR00T-flavoured LeRobot v2.1 (or v3.0) dataset ("reach the named target and grasp it").

Scene (seen from straight above): a square table spanning ``x, y in [-1, 1]`` with a faint grid, two coloured target
discs (two distinct colours out of red/green/blue/yellow) at random positions, and the arm's end effector drawn as a
light-grey disc. The camera is overhead, so the end-effector disc shrinks as the arm lowers (``z`` from 1 down to 0);
its dark centre is the open gripper and fills in as the gripper closes. Each episode's instruction names one of the
two targets, e.g. ``"move the arm to the red target and grasp it"``; the arm starts at a random position, moves
smoothly (slightly curved path, tracking noise) over the named target, lowers, closes the gripper and stays there.

Cameras: ``observation.images.front`` (whole table) and ``observation.images.wrist`` (a view centred on the end
effector that zooms in as the arm lowers, with the two gripper fingers drawn at the bottom of the image).

``observation.state`` = current ``(x, y, z, gripper)``; ``action`` = the commanded next absolute ``(x, y, z,
gripper)``; the state tracks the command with a first-order lag and small noise, so ``action[t] ~ state[t+1]``.

Everything is a deterministic function of ``(seed, episode_index)`` (numpy only); parquet and JSON output are
byte-identical for a given seed and library versions, videos are as deterministic as the encoder (libx264 and
libsvtav1 both gave identical bytes run to run here).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.video import CODECS, encode_video
from groot_ft.errors import OutputExistsError

__all__ = [
    "CAMERAS",
    "COLOURS",
    "DEMO_VERSIONS",
    "FRONT_HALF_EXTENT",
    "ROBOT_TYPE",
    "TARGET_RADIUS",
    "EpisodeSpec",
    "front_world_to_pixel",
    "instruction_for",
    "make_episode",
    "render_front",
    "render_wrist",
    "write_demo_dataset",
]

ROBOT_TYPE = "groot_ft_demo_arm"
DEMO_VERSIONS = ("v2.1", "v3.0")
CHUNKS_SIZE = 1000
CAMERAS = ("front", "wrist")
STATE_NAMES = ["x", "y", "z", "gripper"]

#: target colours (RGB uint8); each episode uses two distinct ones.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 175, 65),
    "blue": (45, 85, 225),
    "yellow": (235, 210, 40),
}
TABLE_RGB = (118, 106, 94)
GRID_RGB = (92, 82, 72)
FLOOR_RGB = (42, 42, 48)
EE_RGB = (232, 232, 232)
EE_HOLE_RGB = (60, 60, 66)
FINGER_RGB = (165, 168, 175)

TARGET_RADIUS = 0.13  # world units (the table is 2 x 2)
FRONT_HALF_EXTENT = 1.1  # the front camera sees [-1.1, 1.1]^2: the table plus a thin floor border
GRID_STEP = 0.25
Z_GRASP = 0.04


def instruction_for(colour: str) -> str:
    return f"move the arm to the {colour} target and grasp it"


# ------------------------------------------------------------------------------------------------ episode content


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything about one episode except its pixels."""

    episode_index: int
    length: int
    instruction: str
    target_colour: str  # the colour named in the instruction
    targets: tuple[tuple[str, tuple[float, float]], ...]  # (colour, (x, y)) for both discs
    state: np.ndarray  # (length, 4) float32: x, y, z, gripper
    action: np.ndarray  # (length, 4) float32: commanded next absolute x, y, z, gripper

    @property
    def goal_xy(self) -> tuple[float, float]:
        return dict(self.targets)[self.target_colour]


def _min_jerk(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * s * (10.0 - 15.0 * s + 6.0 * s * s)


def make_episode(seed: int, episode_index: int) -> EpisodeSpec:
    """Sample episode ``episode_index`` of the dataset with ``seed`` (independent of how many episodes there are)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(episode_index), 0x6A7]))
    names = list(COLOURS)
    colour_ids = rng.choice(len(names), size=2, replace=False)
    while True:
        positions = rng.uniform(-0.7, 0.7, size=(2, 2))
        if np.linalg.norm(positions[0] - positions[1]) >= 0.55:
            break
    while True:
        start = rng.uniform(-0.85, 0.85, size=2)
        if np.min(np.linalg.norm(positions - start, axis=1)) >= 0.45:
            break
    chosen = int(rng.integers(2))
    goal = positions[chosen]
    z0 = rng.uniform(0.55, 0.9)
    z_grasp = Z_GRASP + rng.uniform(0.0, 0.03)

    # Nominal plan p[0..L]: reach (curved; duration grows with distance), lower, close, hold (40..70 frames in all).
    n_reach = int(round(10 + 9 * np.linalg.norm(goal - start) + rng.uniform(0, 4)))
    n_lower = int(rng.integers(8, 12))
    n_close = int(rng.integers(4, 7))
    n_hold = int(rng.integers(8, 25))
    length = int(np.clip(n_reach + n_lower + n_close + n_hold, 40, 70))
    t = np.arange(length + 1, dtype=np.float64)
    s_reach = _min_jerk(t / n_reach)
    s_lower = _min_jerk((t - n_reach) / n_lower)
    s_close = _min_jerk((t - n_reach - n_lower) / n_close)
    delta = goal - start
    perp = np.array([-delta[1], delta[0]]) / max(np.linalg.norm(delta), 1e-9)
    bow = rng.normal(0.0, 0.08)
    xy = start + s_reach[:, None] * delta + (bow * np.sin(np.pi * s_reach))[:, None] * perp
    z = z0 + (z_grasp - z0) * s_lower
    grip = s_close
    plan = np.column_stack([xy, z, grip])

    # Demonstrator commands = next plan point (+ small noise); the arm tracks them with a lag.
    noise_scale = np.array([0.004, 0.004, 0.002, 0.0])
    action = plan[1:] + rng.normal(0.0, 1.0, size=(length, 4)) * noise_scale
    state = np.empty((length, 4))
    state[0] = plan[0]
    for k in range(length - 1):
        state[k + 1] = state[k] + 0.8 * (action[k] - state[k]) + rng.normal(0.0, 1.0, 4) * noise_scale * 0.5
    for arr in (state, action):
        arr[:, :2] = np.clip(arr[:, :2], -1.0, 1.0)
        arr[:, 2:] = np.clip(arr[:, 2:], 0.0, 1.0)

    colour = names[colour_ids[chosen]]
    return EpisodeSpec(
        episode_index=int(episode_index),
        length=length,
        instruction=instruction_for(colour),
        target_colour=colour,
        targets=tuple((names[c], (float(p[0]), float(p[1]))) for c, p in zip(colour_ids, positions)),
        state=state.astype(np.float32),
        action=action.astype(np.float32),
    )


# -------------------------------------------------------------------------------------------------------- render


def front_world_to_pixel(x: float, y: float, image_size: int) -> tuple[float, float]:
    """(row, col) pixel coordinates (continuous, pixel centres at integers) of world ``(x, y)`` in the front view."""
    scale = image_size / (2.0 * FRONT_HALF_EXTENT)
    return (FRONT_HALF_EXTENT - y) * scale - 0.5, (x + FRONT_HALF_EXTENT) * scale - 0.5


def _grid(centre: np.ndarray, half: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (T, S, S) of pixel centres for views centred at ``centre`` (T, 2) with half-extent (T,)."""
    u = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    h = half.astype(np.float32)[:, None, None]
    xs = centre[:, 0].astype(np.float32)[:, None, None] + h * u[None, None, :]
    ys = centre[:, 1].astype(np.float32)[:, None, None] - h * u[None, :, None]
    px = (2.0 * h / size).astype(np.float32)  # world size of one pixel, (T, 1, 1)
    return xs, ys, px


def _blend(img: np.ndarray, alpha: np.ndarray, rgb: tuple[int, int, int]) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(rgb, dtype=np.float32)


def _disc_alpha(xs, ys, px, cx, cy, radius) -> np.ndarray:
    dist = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    return np.clip((radius - dist) / px + 0.5, 0.0, 1.0)


def _scene(xs: np.ndarray, ys: np.ndarray, px: np.ndarray, spec: EpisodeSpec) -> np.ndarray:
    """Table, grid and targets (no arm) as float32 RGB (T, S, S, 3) in [0, 255]."""
    shape = np.broadcast_shapes(xs.shape, ys.shape)
    img = np.empty(shape + (3,), dtype=np.float32)
    img[...] = np.asarray(FLOOR_RGB, dtype=np.float32)
    table = np.clip((1.0 - np.maximum(np.abs(xs), np.abs(ys))) / px + 0.5, 0.0, 1.0)
    shade = (1.0 + 0.05 * np.sin(2.1 * xs + 0.7) * np.cos(1.7 * ys - 0.3)).astype(np.float32)
    table_rgb = np.asarray(TABLE_RGB, dtype=np.float32) * shade[..., None]
    gx = np.abs(xs / GRID_STEP - np.round(xs / GRID_STEP)) * GRID_STEP
    gy = np.abs(ys / GRID_STEP - np.round(ys / GRID_STEP)) * GRID_STEP
    line = 0.6 * np.clip((0.006 - np.minimum(gx, gy)) / px + 0.5, 0.0, 1.0)
    table_rgb += line[..., None] * (np.asarray(GRID_RGB, dtype=np.float32) - table_rgb)
    img += table[..., None] * (table_rgb - img)
    for colour, (cx, cy) in spec.targets:
        _blend(img, _disc_alpha(xs, ys, px, cx, cy, TARGET_RADIUS), COLOURS[colour])
    return img


def _ee_radius(z: np.ndarray) -> np.ndarray:
    return 0.045 + 0.065 * z  # overhead camera: the effector looks bigger the higher it is


def render_front(spec: EpisodeSpec, image_size: int) -> np.ndarray:
    """Front (overhead, whole-table) camera frames, (length, S, S, 3) uint8."""
    xs, ys, px = _grid(np.zeros((1, 2)), np.array([FRONT_HALF_EXTENT]), image_size)
    background = _scene(xs, ys, px, spec)[0]
    frames = np.broadcast_to(background, (spec.length,) + background.shape).copy()
    state = spec.state.astype(np.float32)
    cx, cy = state[:, 0, None, None], state[:, 1, None, None]
    z, grip = state[:, 2, None, None], state[:, 3, None, None]
    radius = _ee_radius(z)
    _blend(frames, _disc_alpha(xs, ys, px, cx, cy, radius), EE_RGB)
    _blend(frames, _disc_alpha(xs, ys, px, cx, cy, radius * 0.55 * (1.0 - grip)), EE_HOLE_RGB)
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


def render_wrist(spec: EpisodeSpec, image_size: int) -> np.ndarray:
    """Wrist camera frames, (length, S, S, 3) uint8: centred on the effector, zooming in as it lowers."""
    state = spec.state.astype(np.float32)
    half = 0.18 + 0.32 * state[:, 2]
    xs, ys, px = _grid(state[:, :2], half, image_size)
    frames = _scene(xs, ys, px, spec)
    # Gripper fingers, fixed in the camera frame: two bars whose gap shrinks as the gripper closes.
    u = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2.0 - 1.0
    upx = np.float32(2.0 / image_size)
    grip = state[:, 3, None, None]
    offset = 0.14 + 0.34 * (1.0 - grip)
    vert = np.clip((u[None, :, None] - 0.35) / upx + 0.5, 0.0, 1.0)  # lower part of the image
    for sign in (-1.0, 1.0):
        across = np.abs(u[None, None, :] - sign * offset)
        _blend(frames, np.clip((0.07 - across) / upx + 0.5, 0.0, 1.0) * vert, FINGER_RGB)
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------- write

_LIST4 = pa.list_(pa.float32(), 4)
_SCHEMA = pa.schema(
    [
        ("observation.state", _LIST4),
        ("action", _LIST4),
        ("timestamp", pa.float32()),
        ("frame_index", pa.int64()),
        ("episode_index", pa.int64()),
        ("index", pa.int64()),
        ("task_index", pa.int64()),
        ("annotation.human.task_description", pa.int64()),
        ("next.done", pa.bool_()),
    ]
)
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    values = np.ascontiguousarray(values, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=pa.float32()), values.shape[1])


def _feature_stats(values: np.ndarray) -> dict[str, list]:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    return {
        "min": [float(x) for x in v.min(axis=0)],
        "max": [float(x) for x in v.max(axis=0)],
        "mean": [float(x) for x in v.mean(axis=0)],
        "std": [float(x) for x in v.std(axis=0)],
        "count": [int(v.shape[0])],
    }


def _info(
    episodes: int, total_frames: int, total_tasks: int, fps: int, image_size: int, codec: str
) -> dict:
    video_feature = {
        "dtype": "video",
        "shape": [image_size, image_size, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.fps": float(fps),
            "video.height": image_size,
            "video.width": image_size,
            "video.channels": 3,
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "has_audio": False,
        },
    }
    scalar_int = {"dtype": "int64", "shape": [1], "names": None}
    features = {f"observation.images.{cam}": video_feature for cam in CAMERAS}
    features.update(
        {
            "observation.state": {"dtype": "float32", "shape": [4], "names": list(STATE_NAMES)},
            "action": {"dtype": "float32", "shape": [4], "names": list(STATE_NAMES)},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": dict(scalar_int),
            "episode_index": dict(scalar_int),
            "index": dict(scalar_int),
            "task_index": dict(scalar_int),
            "annotation.human.task_description": dict(scalar_int),
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
        }
    )
    return {
        "codebase_version": "v2.1",
        "robot_type": ROBOT_TYPE,
        "total_episodes": episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "total_videos": episodes * len(CAMERAS),
        "total_chunks": math.ceil(episodes / CHUNKS_SIZE),
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


MODALITY = {
    "state": {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}},
    "action": {"arm": {"start": 0, "end": 3}, "gripper": {"start": 3, "end": 4}},
    "video": {cam: {"original_key": f"observation.images.{cam}"} for cam in CAMERAS},
    "annotation": {"human.task_description": {}},
}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=4) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_demo_dataset(
    out_dir: str | os.PathLike[str],
    episodes: int = 24,
    codec: str = "h264",
    seed: int = 0,
    fps: int = 15,
    image_size: int = 96,
    version: str = "v2.1",
    data_files_size_in_mb: float | None = None,
    video_files_size_in_mb: float | None = None,
) -> Path:
    """Write the synthetic dataset to ``out_dir`` (must not exist, or be an empty directory) and return its path.

    The dataset is built in a hidden temporary sibling directory and renamed into place at the end, so ``out_dir``
    either does not exist or holds a complete dataset.

    ``version="v3.0"`` writes the same content in the LeRobot v3.0 layout (via
    :func:`groot_ft.data.convert.write_v3_dataset` from a temporary v2.1 copy, so videos are encoded twice);
    ``data_files_size_in_mb`` / ``video_files_size_in_mb`` then bound its files (LeRobot's defaults 100 / 200 when
    None; small values make a small dataset span several data and video files).
    """
    out = Path(out_dir)
    if version not in DEMO_VERSIONS:
        raise ValueError(f"unsupported version {version!r}; choose one of {', '.join(DEMO_VERSIONS)}")
    if version == "v3.0":
        return _write_v3_demo(
            out,
            dict(episodes=episodes, codec=codec, seed=seed, fps=fps, image_size=image_size),
            data_files_size_in_mb,
            video_files_size_in_mb,
        )
    if data_files_size_in_mb is not None or video_files_size_in_mb is not None:
        raise ValueError("data_files_size_in_mb / video_files_size_in_mb apply to version='v3.0' only")
    if codec not in CODECS:
        raise ValueError(f"unsupported codec {codec!r}; choose one of {sorted(CODECS)}")
    if int(episodes) != episodes or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    if int(image_size) != image_size or image_size < 16 or image_size % 2:
        raise ValueError(f"image_size must be an even integer >= 16, got {image_size!r}")
    episodes, fps, image_size = int(episodes), int(fps), int(image_size)
    _refuse_existing(out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        (tmp / "meta").mkdir()
        task_ids: dict[str, int] = {}
        episode_rows, stats_rows = [], []
        global_index = 0
        for ep in range(episodes):
            spec = make_episode(seed, ep)
            task = task_ids.setdefault(spec.instruction, len(task_ids))
            n = spec.length
            frame_index = np.arange(n, dtype=np.int64)
            timestamp = (frame_index / fps).astype(np.float32)
            table = pa.Table.from_arrays(
                [
                    _fixed_list(spec.state),
                    _fixed_list(spec.action),
                    pa.array(timestamp, type=pa.float32()),
                    pa.array(frame_index, type=pa.int64()),
                    pa.array(np.full(n, ep, dtype=np.int64)),
                    pa.array(np.arange(global_index, global_index + n, dtype=np.int64)),
                    pa.array(np.full(n, task, dtype=np.int64)),
                    pa.array(np.full(n, task, dtype=np.int64)),
                    pa.array(frame_index == n - 1, type=pa.bool_()),
                ],
                schema=_SCHEMA,
            )
            chunk = ep // CHUNKS_SIZE
            data_file = tmp / DATA_PATH.format(episode_chunk=chunk, episode_index=ep)
            data_file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, data_file, compression="snappy")
            for cam, render in (("front", render_front), ("wrist", render_wrist)):
                video_file = tmp / VIDEO_PATH.format(
                    episode_chunk=chunk, video_key=f"observation.images.{cam}", episode_index=ep
                )
                encode_video(render(spec, image_size), video_file, fps, codec)
            episode_rows.append({"episode_index": ep, "tasks": [spec.instruction], "length": n})
            stats_rows.append(
                {
                    "episode_index": ep,
                    "stats": {
                        "observation.state": _feature_stats(spec.state),
                        "action": _feature_stats(spec.action),
                        "timestamp": _feature_stats(timestamp),
                    },
                }
            )
            global_index += n
        meta = tmp / "meta"
        _write_json(meta / "info.json", _info(episodes, global_index, len(task_ids), fps, image_size, codec))
        _write_jsonl(meta / "episodes.jsonl", episode_rows)
        _write_jsonl(meta / "tasks.jsonl", ({"task_index": i, "task": t} for t, i in task_ids.items()))
        _write_jsonl(meta / "episodes_stats.jsonl", stats_rows)
        _write_json(meta / "modality.json", MODALITY)
        _refuse_existing(out)
        if out.is_dir():
            out.rmdir()  # empty (checked just above); rename cannot replace a directory on every OS
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_v3_demo(
    out: Path, kwargs: dict, data_files_size_in_mb: float | None, video_files_size_in_mb: float | None
) -> Path:
    from groot_ft.data.convert import (
        DEFAULT_DATA_FILES_SIZE_IN_MB,
        DEFAULT_VIDEO_FILES_SIZE_IN_MB,
        write_v3_dataset,
    )

    _refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.v2-{uuid.uuid4().hex}"
    try:
        source = write_demo_dataset(staging / "v2.1", **kwargs)
        data_mb = DEFAULT_DATA_FILES_SIZE_IN_MB if data_files_size_in_mb is None else data_files_size_in_mb
        video_mb = DEFAULT_VIDEO_FILES_SIZE_IN_MB if video_files_size_in_mb is None else video_files_size_in_mb
        return write_v3_dataset(
            source, out, data_files_size_in_mb=data_mb, video_files_size_in_mb=video_mb, codec=kwargs["codec"]
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_existing(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise OutputExistsError(f"{out}: refusing to write the demo dataset into a non-empty directory")
    elif out.exists() or out.is_symlink():
        raise OutputExistsError(f"{out}: exists and is not a directory")
