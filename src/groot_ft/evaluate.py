"""eval_open_loop: replay recorded episodes through a trained policy and compare its actions with the recorded ones.

For each episode, every ``action_horizon`` steps the policy sees the recorded observation (frames, state, instruction)
and predicts a chunk; the chunks are concatenated and compared with the recorded actions over the episode. Errors are
in physical units (the policy un-normalises and makes relative actions absolute), as upstream's open_loop_eval does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.io import atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig


@dataclass
class Trajectory:
    episode_index: int
    ground_truth: dict[str, np.ndarray]  # group -> (T, D)
    predicted: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    inference_steps: list[int]

    def errors(self) -> dict[str, float]:
        gt = np.concatenate([self.ground_truth[k] for k in self.ground_truth], axis=1)
        pred = np.concatenate([self.predicted[k] for k in self.ground_truth], axis=1)
        diff = pred - gt
        return {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}


def observation_at(ds: LeRobotDataset, episode: Any, cfg: EmbodimentModalityConfig, t: int,
                   frames: dict[str, np.ndarray]) -> dict[str, Any]:
    """Unbatched policy observation of step ``t`` (offsets clamped to the episode, like the shards)."""
    n = episode.length

    def rows(deltas):
        return np.clip(t + np.asarray(deltas), 0, n - 1)

    return {
        "video": {k: frames[k][rows(cfg.video.delta_indices)] for k in cfg.video.modality_keys},
        "state": {k: episode.state[k][rows(cfg.state.delta_indices)] for k in cfg.state.modality_keys},
        "language": {cfg.language.modality_keys[0]: episode.language[t]},
    }


def replay_episode(policy, ds: LeRobotDataset, episode_index: int, max_steps: int | None = None) -> Trajectory:
    cfg = policy.modality_config
    episode = ds.load_episode(episode_index, cfg)
    horizon = len(cfg.action.delta_indices)
    length = episode.length if max_steps is None else min(episode.length, max_steps)
    frames = {k: ds.read_episode_frames(episode_index, ds.video_original_key(k), range(episode.length))
              for k in cfg.video.modality_keys}
    predicted: dict[str, list[np.ndarray]] = {k: [] for k in cfg.action.modality_keys}
    steps = list(range(0, length, horizon))
    for t in steps:
        action = policy.get_action(observation_at(ds, episode, cfg, t, frames))
        for k in cfg.action.modality_keys:
            predicted[k].append(action[k])
    return Trajectory(
        episode_index=episode_index,
        ground_truth={k: episode.action[k][:length] for k in cfg.action.modality_keys},
        predicted={k: np.concatenate(v)[:length] for k, v in predicted.items()},
        state={k: episode.state[k][:length] for k in cfg.state.modality_keys},
        inference_steps=steps,
    )


def plot_trajectory(traj: Trajectory, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [(k, d) for k, v in traj.ground_truth.items() for d in range(v.shape[1])]
    cols = min(4, len(dims))
    rows = -(-len(dims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (key, d) in zip(axes.flat, dims):
        gt, pred = traj.ground_truth[key][:, d], traj.predicted[key][:, d]
        ax.plot(gt, label="recorded action", color="black", lw=1.2)
        ax.plot(pred, label="predicted action", color="tab:orange", lw=1.2)
        if key in traj.state and traj.state[key].shape[1] == traj.ground_truth[key].shape[1]:
            ax.plot(traj.state[key][:, d], label="state", color="tab:blue", lw=0.8, alpha=0.6)
        ax.plot(traj.inference_steps, pred[traj.inference_steps], "o", color="red", ms=3, label="inference point")
        ax.set_title(f"{key}[{d}]", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_open_loop(model_path: str | Path, dataset_root: str | Path, embodiment_tag: str, out_dir: str | Path,
                       episodes: list[int], *, max_steps: int | None = None, device: str = "cpu",
                       progress: bool = True, modality_json: str | Path | None = None) -> dict[str, Any]:
    from groot_ft.policy import Gr00tPolicy

    out = Path(out_dir)
    policy = Gr00tPolicy(model_path, embodiment_tag, device=device)
    ds = LeRobotDataset(dataset_root, modality_json)
    print(f"open-loop eval: {ds.root}: {ds.modality_source}")
    per_episode = []
    for ep in tqdm(episodes, desc="open-loop eval", unit="episode", disable=not progress):
        traj = replay_episode(policy, ds, ep, max_steps)
        errors = traj.errors()
        per_episode.append({"episode_index": ep, "steps": len(next(iter(traj.ground_truth.values()))), **errors})
        plot_trajectory(traj, out / f"traj_{ep:06d}.png",
                        f"episode {ep}: MSE {errors['mse']:.4g}, MAE {errors['mae']:.4g} (physical units)")
    metrics = {
        "model": str(model_path),
        "dataset": str(dataset_root),
        "modality_json": str(ds.modality_json),
        "embodiment_tag": embodiment_tag,
        "episodes": per_episode,
        "mean_mse": float(np.mean([e["mse"] for e in per_episode])),
        "mean_mae": float(np.mean([e["mae"] for e in per_episode])),
    }
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
