"""The model card (README.md) of a packaged run, in the Hugging Face layout: YAML front matter, then markdown.

Everything on it is read from the run's own files (experiment_cfg/config.yaml, processor_config.json, config.json,
training_log.jsonl, eval metrics) and the manifest's provenance, so the card cannot disagree with what was trained.
It holds no timestamp: re-packaging an unchanged run gives a byte-identical card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from groot_ft.manifest import model_family

TRAINING_KEYS = (
    "base_model_path", "max_steps", "global_batch_size", "gradient_accumulation_steps", "num_gpus",
    "learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "tune_llm", "tune_visual", "tune_projector",
    "tune_diffusion_model", "state_dropout_prob", "color_jitter_params", "random_rotation_angle",
    "episode_sampling_rate", "eval_episodes", "deepspeed_config", "seed",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "–"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`" if isinstance(value, str) else str(value)


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v if isinstance(v, str) else _fmt(v)} |" for k, v in rows)]


def embodiment_configs(root: Path) -> dict[str, dict[str, Any]]:
    """Modality configs per embodiment tag, as the processor saved them (what the policy will use)."""
    cfg = json.loads((root / "processor_config.json").read_text())
    return dict(cfg.get("processor_kwargs", {}).get("modality_configs", {}))


def action_dims(root: Path, tag: str) -> dict[str, int]:
    """Width of each action group, from the processor's statistics (what the policy un-normalises with)."""
    stats = json.loads((root / "statistics.json").read_text()).get(tag, {}).get("action", {})
    return {k: len(v["mean"]) for k, v in stats.items() if isinstance(v, dict) and "mean" in v}


def trained_tags(root: Path, cfg: dict[str, Any]) -> list[str]:
    """Embodiment tags of the run's datasets, in training order (one per mixture member or the run's own)."""
    conf = root / "experiment_cfg" / "conf.yaml"
    data = ((yaml.safe_load(conf.read_text()) if conf.is_file() else None) or {}).get("data", {})
    tags = [str(d.get("embodiment_tag")) for d in data.get("datasets") or [] if isinstance(d, dict)]
    tags = tags or [str(data.get("embodiment_tag") or cfg.get("embodiment_tag", "new_embodiment"))]
    return list(dict.fromkeys(t.lower() for t in tags))


def horizon(modality: dict[str, Any]) -> int:
    d = modality["action"]["delta_indices"]
    return max(d) - min(d) + 1


def _serve_example(tag: str, modality: dict[str, Any], dims: dict[str, int]) -> list[str]:
    lang = modality["language"]["modality_keys"][0]
    h = horizon(modality)
    video = ", ".join(f'"{k}": camera_frames("{k}")' for k in modality["video"]["modality_keys"])
    state = ", ".join(f'"{k}": read_state("{k}")' for k in modality["state"]["modality_keys"])
    shapes = ", ".join(f'"{k}": ({h}, {dims.get(k, "D")})' for k in modality["action"]["modality_keys"])
    return [
        "```python",
        "from groot_ft.policy import Gr00tPolicy",
        "",
        f'policy = Gr00tPolicy("path/to/this/directory", embodiment_tag="{tag}", device="cuda")  # or "cpu"',
        "while robot.is_running():",
        "    observation = {",
        f"        \"video\": {{{video}}},  # uint8 (T, H, W, 3) per camera",
        f"        \"state\": {{{state}}},  # float32 (T, D) per group",
        f'        "language": {{"{lang}": instruction}},',
        "    }",
        f"    action = policy.get_action(observation)  # {{{shapes}}} in physical units",
        f"    for t in range({h}):",
        "        robot.apply({group: chunk[t] for group, chunk in action.items()})",
        "```",
        "",
        "Add a leading batch dimension to every array (and `[[instruction]] * B` for language) to batch several "
        "robots; the actions then gain one too.",
    ]


def render_model_card(root: Path, manifest: dict[str, Any]) -> str:
    """The card of run directory ``root``; ``manifest`` supplies provenance and metrics (not its artifact list)."""
    cfg = yaml.safe_load((root / "experiment_cfg" / "config.yaml").read_text()) or {}
    modalities = embodiment_configs(root)
    tags = [t for t in trained_tags(root, cfg) if t in modalities] or sorted(modalities)
    tag, modality = tags[0], modalities[tags[0]]
    name = cfg.get("experiment_name") or Path(str(cfg.get("output_dir", root))).name
    # the manifest's record when packaging, else read here (a card rendered on its own)
    family = manifest.get("model_family") or model_family(root)
    version = (family["family"] or "GR00T").removeprefix("GR00T ")  # "N1.7"
    keywords = ["robotics", "gr00t", f"gr00t-{version.lower()}" if family["family"] else "gr00t-unknown", "lerobot",
                "vision-language-action", "groot-ft"]
    front = {"library_name": "groot-ft", "pipeline_tag": "robotics", "tags": keywords}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", ""]
    lines += [
        f"# {name}",
        "",
        f"A {family['family'] or 'GR00T-style'} vision-language-action policy (`{family['model_type']}`, "
        f"{manifest.get('parameters', 0):,} parameters) fine-tuned with "
        f"groot-ft on the embodiment(s) {', '.join(f'`{t}`' for t in tags)}. Actions are predicted as chunks of "
        f"{horizon(modality)} steps by flow matching and returned in physical units.",
        "",
        "## Dataset",
        "",
    ]
    datasets = manifest.get("datasets") or []
    # a mixture's members, in training order as the run config lists them (the manifest keeps that order)
    members = list(cfg.get("datasets") or [])
    members += [{}] * (len(datasets) - len(members))
    for d, member in zip(datasets, members):
        extra = [(key.replace("_", " "), _fmt(member[key])) for key in ("name", "embodiment_tag", "mix_ratio",
                                                                        "eval_episodes") if key in member]
        lines += _table([
            ("path", _fmt(d["path"])),
            *extra,
            ("fingerprint (sha256 of meta, data, videos)", _fmt(d["fingerprint"])),
            ("modality mapping", _fmt(d["modality_json"]["path"]) if d.get("modality_json")
             else "the dataset's meta/modality.json"),
            ("format", _fmt(d.get("codebase_version"))),
            ("episodes / frames", f"{_fmt(d.get('total_episodes'))} / {_fmt(d.get('total_frames'))}"),
            ("fps", _fmt(d.get("fps"))),
            ("files / bytes", f"{d['files']} / {d['bytes']:,}"),
        ])
        lines.append("")
    if len(datasets) > 1:
        lines += [f"Mixture fingerprint: `{manifest['dataset_fingerprint']}`.", ""]
    for t in tags:
        m = modalities[t]
        action = m["action"]
        reps = [f"{k}: {a.get('rep')}" for k, a in zip(action["modality_keys"], action.get("action_configs") or [])]
        lines += _table([
            ("embodiment tag", _fmt(t)),
            ("video keys", _fmt(m["video"]["modality_keys"])),
            ("state keys", _fmt(m["state"]["modality_keys"])),
            ("action keys", _fmt(m["action"]["modality_keys"])),
            ("language key", _fmt(m["language"]["modality_keys"])),
            ("action horizon", _fmt(horizon(m))),
            ("action representations", _fmt(reps)),
        ])
        lines.append("")
    unless = " (unless a dataset above sets its own)" if cfg.get("datasets") else ""
    lines += [f"Held-out eval episodes{unless}: {_fmt(cfg.get('eval_episodes'))}."]
    lines += ["", "## Training", ""]
    lines += _table([(k, _fmt(cfg[k])) for k in TRAINING_KEYS if k in cfg])
    lines += _table([
        ("run config hash (sha256 of canonical JSON of `experiment_cfg/config.yaml`)",
         _fmt(manifest.get("config_hash"))),
        ("groot-ft commit", _fmt(manifest.get("git_commit")) + (" (uncommitted changes)" if (manifest.get("git") or {})
                                                                 .get("dirty") else "")),
        *((f"{k} version", _fmt(v)) for k, v in (manifest.get("package_versions") or {}).items()),
    ])[2:]
    lines += ["", "## Results", ""]
    metrics = manifest.get("metrics") or {}
    rows = [("first training loss", _fmt(metrics.get("first_loss"))),
            (f"final training loss (step {metrics.get('final_step', '?')})", _fmt(metrics.get("final_loss"))),
            ("final eval loss (held-out episodes)", _fmt(metrics.get("final_eval_loss")))]
    for ev in metrics.get("open_loop") or []:
        where = f"`{ev['file']}`, {ev['episodes']} episode(s)"
        rows += [(f"open-loop action MSE ({where})", _fmt(ev["mean_mse"])),
                 (f"open-loop action MAE ({where})", _fmt(ev["mean_mae"]))]
    lines += _table(rows)
    if not metrics.get("open_loop"):
        lines += ["", "No open-loop evaluation was run (`open_loop_eval_episodes: 0` or no held-out episodes)."]
    lines += [
        "",
        "Losses are the flow-matching MSE on normalised actions; open-loop errors are in physical units, from "
        "replaying held-out episodes through the policy.",
        "",
        "## Files",
        "",
        "- `release/`: the final model without optimizer states or checkpoints (weights, config, tokenizer, "
        "processor files, `experiment_cfg/`, this card). Ship this directory.",
        "- `manifest.json`: sha256 and size of every artifact, the dataset fingerprint, the config hash, the groot-ft "
        "commit and the package versions. Check a copy with `groot-ft verify DIR` (exit 0: intact).",
        "- `checkpoint-N/` (run directory only): resumable checkpoints with their `training_state/`.",
        "",
        "## Load",
        "",
        "```python",
        "import groot_ft  # registers the architecture with transformers' Auto classes",
        "from transformers import AutoModel",
        "",
        'model = AutoModel.from_pretrained("path/to/this/directory")',
        "```",
        "",
        "## Serve",
        "",
        *_serve_example(tag, modality, action_dims(root, tag)),
        "",
    ]
    return "\n".join(lines)
