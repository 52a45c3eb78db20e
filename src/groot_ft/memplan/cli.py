"""``groot-ft plan``: the per-GPU memory of a run config, and whether it fits a card.

    groot-ft plan config/config.yaml my_run.yaml [--gpu-memory 24GiB] [--json plan.json] [--set key=value ...]

The config files merge as Snakemake merges them (later files win). The card size comes from ``--gpu-memory`` or the
config's ``finetune_resources.gpu_memory_gb``. Exit 0: the run fits (or no card size was given: the plan only);
1: it does not fit (the plan, then the cheapest changes that would make it fit, each with its planned need);
2: the config or an input cannot be used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from .errors import PlanInputError, PlanUnsupportedError

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(gib|gb|g|mib|mb|m)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> float:
    """Bytes of a card size: ``24GiB``, ``24GB``, ``24`` (GiB), ``24576MiB``. ``GB`` is read as GiB: a card sold as
    "24 GB" holds 24 GiB."""
    match = _SIZE.match(str(text))
    if not match:
        raise PlanInputError(f"--gpu-memory {text!r}: expected a size such as 24GiB, 48GB or 81920MiB")
    value, unit = float(match.group(1)), (match.group(2) or "gib").lower()
    return value * (2**20 if unit in ("mib", "mb", "m") else 2**30)


def _config(paths: list[str], sets: list[str]):
    from groot_ft.config import ConfigError, FinetuneConfig, merge_config, read_config_files

    try:
        data = read_config_files(*paths)
    except ConfigError as exc:
        raise PlanInputError(str(exc)) from exc
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PlanInputError(f"--set {item!r}: expected key=value")
        data = merge_config(data, {key: yaml.safe_load(value)})
    try:
        return FinetuneConfig.from_dict(data, source=" + ".join(paths) or "--set")
    except ConfigError as exc:
        raise PlanInputError(str(exc)) from exc


def _images_and_frames(cfg, images: int | None) -> tuple[int, int, tuple[int, int] | None, list[str]]:
    """Images per sample, state tokens and frame size (h, w) from the run's modality configs and datasets.

    The frame is that of a video the modality config reads (through the dataset's modality mapping), not merely the
    first video in info.json: gr1.PickNPlace also carries an unused 800 x 1280 recording. Of several, the most
    elongated counts, as it makes the most image tokens at a fixed shortest edge."""
    from groot_ft.config import ConfigError
    from groot_ft.data.lerobot import DatasetError, LeRobotDataset
    from groot_ft.modality import ModalityConfigError, load_modality_config

    notes = []
    try:
        specs = cfg.dataset_specs()
    except ConfigError as exc:  # no modality config: the run itself would stop there, the plan still says its size
        specs = []
        notes.append(f"{exc}; assuming 1 image and 1 state step")
    counts, states, frames = [], [], []
    for spec in specs:
        try:
            modality = load_modality_config(spec.modality_config_path)
        except (OSError, ModalityConfigError) as exc:
            notes.append(f"modality config {spec.modality_config_path} not readable ({exc}); assuming 1 image and "
                         "1 state step")
            continue
        counts.append(len(modality.video.delta_indices) * len(modality.video.modality_keys))
        states.append(len(modality.state.delta_indices))
        try:
            dataset = LeRobotDataset(spec.path, spec.modality_json_path)
            for key in modality.video.modality_keys:
                feature = dataset.info["features"].get(dataset.video_original_key(key)) or {}
                shape = feature.get("shape") or []
                if len(shape) == 3 and min(shape[:2]) > 0:
                    named = dict(zip(feature.get("names") or ["height", "width", "channel"], shape))
                    frames.append((int(named.get("height", shape[0])), int(named.get("width", shape[1]))))
        except (OSError, ValueError, DatasetError) as exc:
            notes.append(f"frame size of {spec.path} not read ({exc})")
    frame = max(frames, key=lambda hw: max(hw) / min(hw)) if frames else None
    if frame is None:
        notes.append("frame size unknown: square frames at the model's image size assumed")
    return (images or max(counts, default=1)), max(states, default=1), frame, notes


def build_plan(cfg, *, device: str, images: int | None, text_tokens: int | None):
    """(plan, shapes factory, notes) for a validated run config."""
    from groot_ft.config import ConfigError
    from groot_ft.model.factory import FINETUNE_STATE_DROPOUT

    from .estimate import RunSetup, ZeroSetup, geometry_for, plan_memory, shapes_factory
    from .shapes import load_model_config

    try:
        per_gpu = cfg.per_device_batch_size(cfg.num_gpus)
    except ConfigError as exc:
        raise PlanInputError(str(exc)) from exc
    # the plan models N1.6 only (load_model_config refuses N1.7), so null means N1.6's fine-tuning default
    state_dropout = FINETUNE_STATE_DROPOUT["n1.6"] if cfg.state_dropout_prob is None else cfg.state_dropout_prob
    model_cfg = load_model_config(cfg.base_model_path, cfg.base_model_revision, tune_llm=cfg.tune_llm,
                                  tune_visual=cfg.tune_visual, tune_projector=cfg.tune_projector,
                                  tune_diffusion_model=cfg.tune_diffusion_model,
                                  state_dropout_prob=state_dropout)
    n_images, state_tokens, frame, notes = _images_and_frames(cfg, images)
    if frame and model_cfg.image_size is None:
        scale = model_cfg.shortest_image_edge / min(frame)
        frame = (round(frame[0] * scale), round(frame[1] * scale))
    # Text and control tokens a sample adds besides its images: upstream's chat prompt around a short instruction
    # measured 66 on gr1 (130 tokens with 64 image tokens); the presets' byte tokenizer spends a byte a character.
    if text_tokens is None:
        text_tokens = 66 if model_cfg.text_config.vocab_size > 1000 else 48
        notes.append(f"text tokens per sample: {text_tokens} assumed (--text-tokens to change)")
    geo = geometry_for(model_cfg, batch=per_gpu, images=n_images, text_tokens=text_tokens,
                       state_tokens=state_tokens, image_edge=frame if model_cfg.image_size is None else None)
    targets = tuple(cfg.lora_targets) if cfg.lora_rank else ()
    setup = RunSetup(geometry=geo, zero=ZeroSetup.from_file(cfg.deepspeed_config), world=cfg.num_gpus,
                     accumulation=cfg.gradient_accumulation_steps, device=device,
                     checkpointing=cfg.activation_checkpointing, lora_rank=cfg.lora_rank, lora_targets=targets)
    shapes_for = shapes_factory(model_cfg, cfg.lora_rank, targets)
    return plan_memory(shapes_for(cfg.lora_rank, targets), setup), shapes_for, notes


def format_table(plan, card: float | None = None) -> str:
    """The plan as a readable table (GiB per process)."""
    d = plan.to_dict()
    b = d["bytes"]
    # GiB for real models; MiB when the whole peak is below one GiB (the presets), so the table is not all zeros
    g, unit = (2**30, "GiB") if b["peak"] >= 2**30 else (2**20, "MiB")
    lines = [
        f"memory plan per GPU: {d['parameters']:,} parameters, {d['trainable_parameters']:,} trainable"
        + (f" ({d['lora_parameters']:,} LoRA, rank {d['lora_rank']} on {', '.join(d['lora_targets'])})"
           if d["lora_rank"] else ""),
        f"  {d['dtype']} on {d['device']}, ZeRO-{d['zero_stage']} over {d['world_size']} process(es)"
        + (", optimizer offloaded to CPU" if d["offload_optimizer"] else "")
        + f"; batch {d['per_gpu_batch']} x accumulation {d['gradient_accumulation_steps']}, "
          f"{d['sequence_length']} tokens a sample; activation checkpointing "
          f"{'on' if d['activation_checkpointing'] else 'off'}",
        f"  {'component':<36}{unit:>9}",
    ]
    rows = [(k.replace("_", " "), v) for k, v in b.items() if k not in ("backward_peak", "step_peak", "peak",
                                                                         "needed_on_card")]
    for key, value in rows:
        lines.append(f"  {key:<36}{value / g:9.2f}")
    lines.append(f"  {'peak at the backward pass':<36}{b['backward_peak'] / g:9.2f}")
    lines.append(f"  {'peak at the optimizer step':<36}{b['step_peak'] / g:9.2f}")
    lines.append(f"  {'PEAK (' + d['peak_phase'] + ')':<36}{b['peak'] / g:9.2f}")
    if d["device"] == "cuda":
        lines.append(f"  {'needed on the card (+ CUDA reserve)':<36}{b['needed_on_card'] / g:9.2f}")
    if card is not None:
        verdict = "fits" if plan.fits(card) else "does NOT fit"
        lines.append(f"  -> {verdict} a {card / 2**30:g} GiB card")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    from .estimate import suggestions

    try:
        cfg = _config(args.config, args.set or [])
        card = parse_size(args.gpu_memory) if args.gpu_memory else None
        if card is None and cfg.finetune_resources.get("gpu_memory_gb"):
            card = float(cfg.finetune_resources["gpu_memory_gb"]) * 2**30
        plan, shapes_for, notes = build_plan(cfg, device=args.device, images=args.images,
                                             text_tokens=args.text_tokens)
    except PlanUnsupportedError as exc:
        # not the user's mistake and no reason to stop a run: the plan says plainly that it has nothing to say
        print(f"memory plan: none: {exc}" + (f"; the {card / 2**30:g} GiB card is not checked" if card else ""),
              file=sys.stderr)
        if args.json:
            from groot_ft.io import atomic_write_text

            atomic_write_text(Path(args.json), json.dumps({"supported": False, "reason": str(exc)}, indent=2) + "\n")
        return 0
    except (PlanInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(plan, card))
    for note in notes:
        print(f"  note: {note}")
    result = {**plan.to_dict(), "card_bytes": card, "fits": None if card is None else plan.fits(card)}
    code = 0
    if card is not None and not plan.fits(card):
        rows = suggestions(shapes_for, plan.setup, card, Path(cfg.deepspeed_config).parent)
        result["changes"] = [{"change": c, "needed_on_card": need, "fits": ok} for c, need, ok in rows]
        print(f"\nThis run needs {plan.needed() / 2**30:.1f} GiB per GPU and cannot fit a {card / 2**30:g} GiB card. "
              "Cheapest changes (planned need per GPU):", file=sys.stderr)
        for change, need, ok in rows:
            print(f"  - {change}: {need / 2**30:.1f} GiB{'' if ok else ' (still too much)'}", file=sys.stderr)
        code = 1
    if args.json:
        from groot_ft.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return code


def add_plan_parser(sub) -> None:
    p = sub.add_parser("plan", help="per-GPU memory of a run config; exit 1 when it cannot fit --gpu-memory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="+", help="run config YAML file(s), merged in order (later files win)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (YAML value)")
    p.add_argument("--gpu-memory", help="the card's memory, e.g. 24GiB (default: finetune_resources.gpu_memory_gb)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="plan for CUDA (bf16, the GPU run) or the CPU training path (fp32)")
    p.add_argument("--images", type=int, help="images per sample (default: from the modality config)")
    p.add_argument("--text-tokens", type=int, help="text and control tokens per sample besides the images")
    p.add_argument("--json", help="write the plan as JSON here")
    p.set_defaults(func=cmd_plan)
