"""package: finish a run's output tree, check it loads, plot, and write the model card, release copy and manifest.

Upstream leaves the processor files only in ``processor/`` and inside each ``checkpoint-N/``; we also place them beside
the final model at the root, so ``Gr00tPolicy(output_dir)`` and ``AutoModel.from_pretrained(output_dir)`` both work
(:func:`place_processor_files`, its own workflow step so that open-loop evaluation can run before the card is written).

:func:`package_output` then writes, each atomically and the manifest last: ``plots/``, ``README.md`` (model card),
``release/`` (the final model without optimizer states or checkpoints, hard-linked where the filesystem allows) and
``manifest.json``. ``groot-ft verify`` (:mod:`groot_ft.manifest`) checks the result.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from groot_ft import manifest as mf
from groot_ft.errors import UserError, read_json_file
from groot_ft.io import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from groot_ft.model_card import render_model_card

PROCESSOR_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")
CHECKPOINT_FILES = ("config.json", "model.safetensors", "trainer_state.json", "wandb_config.json", *PROCESSOR_FILES)
# a LoRA run's adapter alone (peft format) beside the merged weights: groot_ft.model.lora.ADAPTER_DIR, not imported
# because that module pulls in torch
ADAPTER_DIR = "adapter"
# root files that describe the run, not the model: kept out of release/
RUN_ONLY_FILES = {"manifest.json", "training_log.jsonl", "wandb_config.json"}
# the workflow's run description names this machine's dataset, stats and shard paths: bookkeeping, not the model
RUN_DESCRIPTION = "experiment_cfg/run.json"


class PackageError(UserError, RuntimeError):
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


def _save_png(fig, out_png: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})  # no version stamp: same run, same bytes
    plt.close(fig)
    atomic_write_bytes(out_png, buf.getvalue())


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
    _save_png(fig, out_png)


def plot_stats(stats_dir: Path | None, out_png: Path) -> None:
    """Per-dimension min/q01/mean/q99/max of state and action, as the report's dataset overview."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stats = read_json_file(stats_dir / "stats.json", "the statistics (--stats)") if stats_dir else {}
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
    _save_png(fig, out_png)


def place_processor_files(output_dir: str | Path) -> list[str]:
    """Copy processor/* beside the final model. Identical files are left untouched, so their mtimes (which
    Snakemake compares) only move when the content does."""
    out = Path(output_dir)
    lines = []
    for name in PROCESSOR_FILES:
        src = out / "processor" / name
        if not src.is_file():
            raise PackageError(f"{src}: missing; re-run the finetune rule (it writes processor/ before training)")
        data = src.read_bytes()
        dst = out / name
        if dst.is_file() and dst.read_bytes() == data:
            continue
        atomic_write_bytes(dst, data)
        lines.append(f"wrote {dst}")
    return lines


def _recorded_datasets(out: Path) -> list[tuple[Path, Path | None]]:
    """(dataset root, external modality mapping or None) of every dataset experiment_cfg/conf.yaml records."""
    conf_path = out / "experiment_cfg" / "conf.yaml"
    data = (yaml.safe_load(conf_path.read_text()) or {}).get("data", {})
    entries = data.get("datasets") or ([{"path": data["dataset"]}] if data.get("dataset") else [])
    if not entries:
        raise PackageError(f"{conf_path}: data.dataset(s) is not recorded; pass the dataset with --dataset")
    return [(Path(e["path"] if isinstance(e, dict) else e),
             Path(e["modality_json_path"]) if isinstance(e, dict) and e.get("modality_json_path") else None)
            for e in entries]


def trained_datasets(out: Path, override: list[str] | None = None, modality_jsons: list[str] | None = None,
                     run: str | Path | None = None) -> list[tuple[Path, Path | None]]:
    """The dataset roots the run trained on, each with the modality mapping it read when that lived outside the
    dataset: ``override`` (and ``modality_jsons``, ``-`` for none), else those of the run description ``run`` (the
    workflow's experiment_cfg/run.json), else those experiment_cfg/conf.yaml records (a run trained outside the
    workflow).

    ``override`` without ``modality_jsons`` keeps the mappings conf.yaml records: a moved dataset does not make
    package forget that the run read its mapping from elsewhere (a missing one is then an error, not a skip)."""
    if modality_jsons and not override:
        raise PackageError("--modality-json goes with --dataset (one per dataset); without --dataset the mappings "
                           "come from experiment_cfg/conf.yaml")
    if override and modality_jsons:
        if len(modality_jsons) != len(override):
            raise PackageError(f"{len(modality_jsons)} --modality-json for {len(override)} --dataset; give one per "
                               f"dataset (`-` for a dataset's own meta/modality.json)")
        pairs = [(Path(p), None if m == "-" else Path(m)) for p, m in zip(override, modality_jsons)]
    elif override:
        recorded = _recorded_datasets(out) if (out / "experiment_cfg" / "conf.yaml").is_file() else []
        mappings = [m for _, m in recorded] if len(recorded) == len(override) else [None] * len(override)
        pairs = list(zip(map(Path, override), mappings))
    elif run is not None:
        from groot_ft.config import ConfigError, RunDescription

        try:
            described = RunDescription.load(run).datasets
        except ConfigError as exc:
            raise PackageError(str(exc)) from exc
        pairs = [(Path(d.path), Path(d.modality_json_path) if d.modality_json_path else None) for d in described]
    else:
        pairs = _recorded_datasets(out)
    for p, _ in pairs:
        if not (p / "meta" / "info.json").is_file():
            raise PackageError(f"{p}: the run's dataset is not there (no meta/info.json), so it cannot be "
                               f"fingerprinted; pass its current location with --dataset")
    return pairs


def training_metrics(out: Path) -> dict[str, Any]:
    log = out / "training_log.jsonl"
    history = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
    train = [r for r in history if "loss" in r]
    evaluation = [r for r in history if "eval_loss" in r]
    open_loop = []
    for path in sorted(out.glob("eval/**/metrics.json")):
        m = json.loads(path.read_text())
        if "mean_mse" in m:
            open_loop.append({"file": path.relative_to(out).as_posix(), "dataset": m.get("dataset"),
                              "episodes": len(m.get("episodes", [])), "mean_mse": m["mean_mse"],
                              "mean_mae": m["mean_mae"]})
    return {
        "first_loss": train[0]["loss"] if train else None,
        "final_loss": train[-1]["loss"] if train else None,
        "final_step": train[-1]["step"] if train else None,
        "final_eval_loss": evaluation[-1]["eval_loss"] if evaluation else None,
        "open_loop": open_loop,
    }


def release_files(out: Path) -> list[str]:
    """The final model as one loadable directory: root files except run records, plus experiment_cfg/ and adapter/."""
    files = [p.name for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.name not in RUN_ONLY_FILES and not any(m in p.name for m in mf.OPTIMIZER_MARKERS)]
    # experiment_cfg/, and a LoRA run's adapter/ (the merged weights are the root's model.safetensors)
    for sub in ("experiment_cfg", ADAPTER_DIR):
        files += [p.relative_to(out).as_posix() for p in sorted((out / sub).rglob("*")) if p.is_file()]
    return [f for f in files if f != RUN_DESCRIPTION]


def _link_or_copy(src: Path, dst: Path) -> bool:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return True
    except OSError:  # another filesystem, or one without hard links
        shutil.copyfile(src, dst)
        return False


def _shareable(path: Path) -> None:
    """Temp files and dirs are created owner-only; what package ships must be readable by every user of the box."""
    os.chmod(path, 0o755 if path.is_dir() else 0o644)


def load_check(directory: Path) -> int:
    """Load ``directory`` the way users will (AutoModel + processor); return the parameter count."""
    import groot_ft.model  # noqa: F401 - registers the architecture with AutoConfig/AutoModel
    from transformers import AutoModel

    from groot_ft.processor_n17 import load_processor

    model = AutoModel.from_pretrained(directory)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    load_processor(directory)  # N1.6's or N1.7's processor class, as processor_config.json names it
    return n_params


def package_output(output_dir: str | Path, stats_dir: str | Path | None = None,
                   validation_report: str | Path | None = None, datasets: list[str] | None = None,
                   modality_jsons: list[str] | None = None, run: str | Path | None = None) -> list[str]:
    out = Path(output_dir)
    if not out.is_dir():  # else every piece of the tree would be listed as missing
        raise PackageError(f"{out}: no such directory; pass the run's output_dir")
    missing = check_tree(out)
    if missing:
        raise PackageError(f"{out}: output tree incomplete; missing:\n  - " + "\n  - ".join(missing) +
                           "\nre-run the finetune rule (it resumes from the newest complete checkpoint)")
    # everything that can fail on bad input is read before the first write
    hasher = mf.Hasher()
    fingerprints = [mf.dataset_fingerprint(p, hasher, m)
                    for p, m in trained_datasets(out, datasets, modality_jsons, run)]
    cfg_hash = mf.config_hash(out / "experiment_cfg" / "config.yaml")
    git = mf.git_info()
    provenance: dict[str, Any] = {
        "format": mf.FORMAT,
        "created": mf.created_now(),
        "dataset_fingerprint": mf.combined_fingerprint(fingerprints),
        "datasets": fingerprints,
        "config_hash": cfg_hash,
        "model_family": mf.model_family(out),
        "git_commit": git["commit"],
        "git": git,
        "package_versions": mf.package_versions(),
        "metrics": training_metrics(out),
        "validation": (read_json_file(validation_report, "the validation report (--validation)").get("summary")
                       if validation_report else None),
    }

    lines = place_processor_files(out)
    plot_loss(out / "training_log.jsonl", out / "plots" / "loss.png")
    plot_stats(Path(stats_dir) if stats_dir else None, out / "plots" / "dataset_stats.png")
    # the release is built (and loaded) first: the card needs the parameter count it measures
    release_dir = out / mf.RELEASE_DIR
    with atomic_directory(release_dir, overwrite=True) as tmp:
        linked = sum(_link_or_copy(out / rel, tmp / rel) for rel in release_files(out) if rel != "README.md")
        provenance["parameters"] = load_check(tmp)
        card = render_model_card(out, provenance)
        atomic_write_text(out / "README.md", card)
        _shareable(out / "README.md")
        linked += _link_or_copy(out / "README.md", tmp / "README.md")
        release_manifest = {**provenance, "kind": "release",
                            "artifacts": mf.hash_artifacts(tmp, mf.artifact_paths(tmp, release=True), hasher)}
        atomic_write_json(tmp / "manifest.json", release_manifest)
        _shareable(tmp / "manifest.json")
        _shareable(tmp)
    n_release = len(release_manifest["artifacts"])
    lines.append(f"loaded {release_dir} with AutoModel and Gr00tProcessor ({provenance['parameters']:,} parameters)")
    lines.append(f"wrote {out / 'README.md'} (model card)")
    lines.append(f"wrote {release_dir}/ ({n_release} files, {linked} hard-linked, no optimizer states)")

    artifacts = mf.hash_artifacts(out, mf.artifact_paths(out), hasher)
    manifest = {**provenance, "kind": "run",
                "release": {"path": mf.RELEASE_DIR, "manifest_sha256": sha256_file(release_dir / "manifest.json"),
                            "files": n_release},
                "artifacts": artifacts}
    atomic_write_json(out / "manifest.json", manifest)
    _shareable(out / "manifest.json")
    for d in fingerprints:
        mapping = d["modality_json"]["path"] if d["modality_json"] else "the dataset's own meta/modality.json"
        lines.append(f"dataset {d['path']}: fingerprint {d['fingerprint'][:12]}, modality mapping: {mapping}")
    lines.append(f"wrote {out / 'manifest.json'} ({len(artifacts)} artifacts; "
                 f"dataset {manifest['dataset_fingerprint'][:12]}, "
                 f"config {manifest['config_hash'][:12]}, commit {(git['commit'] or 'none')[:12]})")
    return lines

