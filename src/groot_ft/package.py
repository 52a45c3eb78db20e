"""package: finish a run's output tree, check it is complete and loadable, plot, and checksum every artifact.

Upstream leaves the processor files only in ``processor/`` and inside each ``checkpoint-N/``; we also place them beside
the final model at the root, so ``Gr00tPolicy(output_dir)`` and ``AutoModel.from_pretrained(output_dir)`` both work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from groot_ft.io import atomic_write_json, sha256_file

PROCESSOR_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")
CHECKPOINT_FILES = ("config.json", "model.safetensors", "trainer_state.json", "wandb_config.json", *PROCESSOR_FILES)


class PackageError(RuntimeError):
    """The output tree is incomplete; the message lists every missing piece."""


def check_tree(out: Path) -> list[str]:
    """Every missing piece of upstream's documented output tree (empty when complete)."""
    missing = []
    for rel in ("experiment_cfg/config.yaml", "experiment_cfg/conf.yaml", "wandb_config.json", "config.json",
                "model.safetensors", *(f"processor/{n}" for n in PROCESSOR_FILES)):
        if not (out / rel).is_file():
            missing.append(rel)
    checkpoints = sorted(p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[1].isdigit())
    numbered = [p for p in checkpoints if p.name[len("checkpoint-"):].isdigit()]
    if not numbered:
        missing.append("checkpoint-N/ (no checkpoint was saved)")
    for ckpt in checkpoints:
        # checkpoint-{step}-best-{metric}_{value}/ holds weights and processor files but no resume state
        required = CHECKPOINT_FILES if ckpt in numbered else tuple(n for n in CHECKPOINT_FILES if n != "trainer_state.json")
        for name in required:
            if not (ckpt / name).is_file():
                missing.append(f"{ckpt.name}/{name}")
        if not (ckpt / "experiment_cfg" / "config.yaml").is_file():
            missing.append(f"{ckpt.name}/experiment_cfg/config.yaml")
    return missing


def plot_loss(log_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()] if log_path.is_file() else []
    train = [r for r in records if "loss" in r]
    evaluation = [r for r in records if "eval_loss" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], marker=".", label="train")
        axes[1].plot([r["step"] for r in train], [r["learning_rate"] for r in train], color="tab:orange")
    if evaluation:
        axes[0].plot([r["step"] for r in evaluation], [r["eval_loss"] for r in evaluation], marker="s",
                     color="tab:green", label="eval (held-out episodes)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[0].set(title="training loss (flow-matching MSE)", xlabel="step", ylabel="loss")
    axes[1].set(title="learning rate", xlabel="step")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def plot_stats(stats_dir: Path | None, out_png: Path) -> None:
    """Per-dimension min/q01/mean/q99/max of state and action, as the report's dataset overview."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stats = json.loads((stats_dir / "stats.json").read_text()) if stats_dir else {}
    features = [k for k in ("observation.state", "action") if k in stats]
    fig, axes = plt.subplots(1, max(1, len(features)), figsize=(6 * max(1, len(features)), 3.8), squeeze=False)
    for ax, name in zip(axes[0], features):
        s = {k: np.asarray(v, dtype=float) for k, v in stats[name].items()}
        x = np.arange(len(s["mean"]))
        ax.vlines(x, s["min"], s["max"], color="lightgray", lw=6, label="min..max")
        ax.vlines(x, s["q01"], s["q99"], color="tab:blue", lw=3, label="q01..q99")
        ax.errorbar(x, s["mean"], yerr=s["std"], fmt="o", color="black", ms=3, label="mean ± std")
        ax.set(title=name, xlabel="dimension")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def package_output(output_dir: str | Path, stats_dir: str | Path | None = None,
                   validation_report: str | Path | None = None) -> list[str]:
    out = Path(output_dir)
    lines: list[str] = []
    missing = check_tree(out)
    if missing:
        raise PackageError(f"{out}: output tree incomplete; missing:\n  - " + "\n  - ".join(missing) +
                           "\nre-run the finetune rule (it resumes from the newest complete checkpoint)")
    for name in PROCESSOR_FILES:
        shutil.copy2(out / "processor" / name, out / name)

    # the root must load as upstream promises: import groot_ft; AutoModel.from_pretrained(output_dir)
    import groot_ft.model  # noqa: F401 - registers the architecture with AutoConfig/AutoModel
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    lines.append(f"loaded {type(model).__name__} from {out} ({n_params:,} parameters)")
    del model

    plot_loss(out / "training_log.jsonl", out / "plots" / "loss.png")
    plot_stats(Path(stats_dir) if stats_dir else None, out / "plots" / "dataset_stats.png")

    artifacts: dict[str, Any] = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if not path.is_file() or rel.parts[0] in {"logs", "shards"} or rel.name == "manifest.json":
            continue
        if rel.parts[0].startswith(".") or "training_state" in rel.parts:
            continue  # optimizer states are resume data, not release artifacts
        artifacts[str(rel)] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    history = []
    if (out / "training_log.jsonl").is_file():
        history = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in history if "loss" in r]
    evaluation = [r for r in history if "eval_loss" in r]
    manifest = {
        "format": "groot-ft-manifest/1",
        "first_loss": train[0]["loss"] if train else None,
        "final_loss": train[-1]["loss"] if train else None,
        "final_eval_loss": evaluation[-1]["eval_loss"] if evaluation else None,
        "validation": json.loads(Path(validation_report).read_text()).get("summary") if validation_report else None,
        "artifacts": artifacts,
    }
    atomic_write_json(out / "manifest.json", manifest)
    lines.append(f"wrote {out / 'manifest.json'} ({len(artifacts)} artifacts)")
    return lines
