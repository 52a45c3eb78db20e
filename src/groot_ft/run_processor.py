"""The run's processor: a base checkpoint's processor settings and embodiment configs, or a preset's defaults.

Fine-tuning from a checkpoint directory (one with ``processor_config.json``) follows upstream N1.6: the processor is
the checkpoint's (``Gr00tProcessor.from_pretrained``) and only four settings can be overridden by the run:

* ``modality_configs``: per tag, merged over the checkpoint's; a tag given ``None`` uses the checkpoint's entry;
* ``color_jitter_params``: ``None`` keeps the checkpoint's, ``{}`` disables jitter, a mapping replaces it;
* ``random_rotation_angle``: ``None`` keeps the checkpoint's, ``0`` disables rotation, a number replaces it;
* ``use_relative_action`` (always True, as upstream's finetune launcher sets it).

Everything else (``shortest_image_edge``, ``crop_fraction``, ``max_state_dim``/``max_action_dim``/
``max_action_horizon``, ``use_percentiles``, ``clip_outliers``, ``apply_sincos_state_encoding``,
``formalize_language``) is the checkpoint's. The checkpoint's ``config.json`` also carries jitter settings; like
upstream, the processor's (``processor_config.json``) are the ones that apply.

Statistics: the dataset's statistics of the run's tags are installed with
``set_statistics(..., override=override_pretraining_statistics)``: with False a tag the checkpoint already has keeps
its pretraining statistics (the N1.6 release default); with True (upstream's current default) the dataset's replace
them. Statistics of the checkpoint's other tags are kept as they are.

Without a checkpoint directory (a model preset) the processor is built from the model config's padding sizes and the
shards' image size, with this module's defaults for everything else.

:func:`build_run_processor` also returns the provenance: one line per setting group saying where it came from.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groot_ft.embodiment import normalize_tag
from groot_ft.modality import EmbodimentModalityConfig
from groot_ft.processor import PROCESSOR_CONFIG_NAME, Gr00tProcessor, ProcessorError, read_processor_config
from groot_ft.processor_n17 import processor_class_for

# settings that come from the base checkpoint's processor_config.json (or the preset) and cannot be overridden
INHERITED_SETTINGS = (
    "shortest_image_edge", "crop_fraction", "max_state_dim", "max_action_dim", "max_action_horizon",
    "use_percentiles", "clip_outliers", "apply_sincos_state_encoding", "formalize_language",
)
BASE_SOURCE = f"base checkpoint {PROCESSOR_CONFIG_NAME}"


def base_modality_configs(base_dir: Path | None) -> dict[str, EmbodimentModalityConfig]:
    """The embodiment configs a base checkpoint's ``processor_config.json`` holds (empty without one)."""
    return {} if base_dir is None else read_processor_config(base_dir)[1]


def resolve_modality_configs(
    base_dir: Path | None, modality_configs: Mapping[str, EmbodimentModalityConfig | None]
) -> dict[str, EmbodimentModalityConfig]:
    """The config each run tag uses: the run's, or (given None) the base checkpoint's entry for that tag."""
    known = base_modality_configs(base_dir)
    out: dict[str, EmbodimentModalityConfig] = {}
    missing = []
    for tag, cfg in modality_configs.items():
        tag = normalize_tag(tag)
        if cfg is not None:
            out[tag] = cfg
        elif tag in known:
            out[tag] = known[tag]
        else:
            missing.append(tag)
    if missing:
        where = (
            f"the base checkpoint ({Path(base_dir) / PROCESSOR_CONFIG_NAME}) knows "
            f"{', '.join(sorted(known)) or 'no tags'}"
            if base_dir is not None
            else "the base model is a preset, which has no embodiment configs"
        )
        raise ProcessorError(
            f"embodiment {', '.join(repr(t) for t in missing)}: no modality config given and {where}; "
            "set modality_config_path for it"
        )
    return out


def modality_config_differences(run: EmbodimentModalityConfig, base: EmbodimentModalityConfig) -> list[str]:
    """What a run config changes against the base checkpoint's entry for the same tag (empty if nothing)."""
    diffs = []
    for modality in ("video", "state", "action", "language"):
        r, b = run[modality], base[modality]
        if r.modality_keys != b.modality_keys:
            if set(r.modality_keys) == set(b.modality_keys):
                diffs.append(f"{modality} group order {list(r.modality_keys)} (base {list(b.modality_keys)})")
            else:
                diffs.append(f"{modality} keys {list(r.modality_keys)} (base {list(b.modality_keys)})")
        if r.delta_indices != b.delta_indices:
            diffs.append(f"{modality} delta_indices {_short(r.delta_indices)} (base {_short(b.delta_indices)})")
        for name in ("sin_cos_embedding_keys", "mean_std_embedding_keys"):
            rv, bv = getattr(r, name), getattr(b, name)
            if (rv or ()) != (bv or ()):
                diffs.append(f"{modality} {name} {_listed(rv)} (base {_listed(bv)})")
    r_ac = {k: run.action_config_for(k).to_dict() for k in run.action.modality_keys}
    b_ac = {k: base.action_config_for(k).to_dict() for k in base.action.modality_keys}
    changed = sorted(k for k in r_ac if k in b_ac and r_ac[k] != b_ac[k])
    if changed:
        diffs.append("action_configs of " + ", ".join(changed))
    return diffs


def _short(values: tuple[int, ...]) -> str:
    v = list(values)
    if len(v) > 3 and v == list(range(v[0], v[-1] + 1)):
        return f"[{v[0]}..{v[-1]}]"
    return str(v)


def _listed(values: tuple[str, ...] | None) -> str:
    return "none" if not values else str(list(values))


def _describe_jitter(params: Mapping[str, Any] | None) -> str:
    return "none" if not params else json.dumps(dict(params))


def _describe_rotation(angle: float | None) -> str:
    return "none" if not angle else f"{float(angle):g} degrees"


def build_run_processor(
    base_dir: Path | None,
    modality_configs: dict[str, EmbodimentModalityConfig | None],
    statistics: dict[str, dict],
    *,
    color_jitter_params: Mapping[str, Any] | None,
    random_rotation_angle: float | None,
    override_pretraining_statistics: bool,
    model_config: Any,
    shortest_image_edge: int | None = None,
) -> tuple[Gr00tProcessor, list[str]]:
    """The run's processor and its provenance lines.

    ``base_dir`` is a local checkpoint directory with ``processor_config.json``, or None for a preset base model.
    ``modality_configs`` maps each run tag to the run's config, or None for "the base checkpoint's entry".
    ``statistics`` are the dataset statistics of the run's tags (``{tag: {state, action, relative_action}}``).
    ``color_jitter_params``/``random_rotation_angle`` are the run config's values: None keeps the base's (none for
    a preset), ``{}``/``0`` disable. ``model_config`` gives the preset's padding sizes and, with a checkpoint, is
    checked against the processor's. ``shortest_image_edge`` is the size the shards were built at (the preset's
    image size; with a checkpoint only compared with its setting).
    """
    base_dir = None if base_dir is None else Path(base_dir)
    if base_dir is not None and not (base_dir / PROCESSOR_CONFIG_NAME).is_file():
        raise ProcessorError(f"{base_dir}: no {PROCESSOR_CONFIG_NAME}; pass base_dir=None for a preset base model")
    requested = {normalize_tag(t): c for t, c in modality_configs.items()}
    resolved = resolve_modality_configs(base_dir, requested)
    statistics = {normalize_tag(t): s for t, s in statistics.items()}
    missing = sorted(set(resolved) - set(statistics))
    if missing:
        raise ProcessorError(f"no dataset statistics for embodiment {', '.join(missing)}")
    lines: list[str] = []
    # N1.7 (model_type Gr00tN1d7) has its own processor class and defaults (percentiles, 132 / 132 / 40)
    processor_cls = processor_class_for(model_config)
    if processor_cls is not Gr00tProcessor:
        lines.append(f"processor class: {processor_cls.processor_class} (the model config's model_type "
                     f"{model_config.model_type})")

    if base_dir is None:
        lines.append("base model: a preset (no processor files)")
        if shortest_image_edge is None:
            raise ProcessorError("a preset base model needs shortest_image_edge (the shards' image size)")
        processor = processor_cls(
            modality_configs=resolved,
            statistics=None,
            max_state_dim=model_config.max_state_dim,
            max_action_dim=model_config.max_action_dim,
            max_action_horizon=model_config.action_horizon,
            shortest_image_edge=shortest_image_edge,
            color_jitter_params=color_jitter_params,
            random_rotation_angle=random_rotation_angle,
            use_relative_action=True,
            # N1.7's letterbox is a model config field (a directory without processor files, or a preset)
            **({"letter_box_transform": bool(getattr(model_config, "letter_box_transform", False))}
               if processor_cls is not Gr00tProcessor else {}),
        )
        for tag, cfg in resolved.items():
            lines.append(f"{tag} modality config: run config ({cfg.source})")
        sized = ("shortest_image_edge", "max_state_dim", "max_action_dim", "max_action_horizon")
        lines.append(
            f"max_state_dim={processor.max_state_dim}, max_action_dim={processor.max_action_dim}, "
            f"max_action_horizon={processor.max_action_horizon}: model config"
        )
        lines.append(f"shortest_image_edge={processor.shortest_image_edge}: shards' image size (the preset's)")
        lines.append(
            "other processor settings ("
            + ", ".join(f"{k}={getattr(processor, k)}" for k in INHERITED_SETTINGS if k not in sized)
            + "): preset defaults"
        )
        jitter_src = "run config" if color_jitter_params is not None else "preset default (run config left it null)"
        rotation_src = "run config" if random_rotation_angle is not None else "preset default (run config left it null)"
        known: dict[str, EmbodimentModalityConfig] = {}
    else:
        known = base_modality_configs(base_dir)
        lines.append(f"base model: {base_dir} ({PROCESSOR_CONFIG_NAME}, statistics.json, embodiment_id.json)")
        overrides = {tag: cfg for tag, cfg in requested.items() if cfg is not None}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            processor = processor_cls.from_pretrained(
                base_dir,
                modality_configs=overrides,
                color_jitter_params=None if color_jitter_params is None else dict(color_jitter_params),
                random_rotation_angle=random_rotation_angle,
                use_relative_action=True,
            )
        for w in caught:  # e.g. pretraining statistics of a replaced config; only a problem if that tag is used
            if not any(f"{t!r}" in str(w.message) for t in resolved):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for tag, cfg in resolved.items():
            if requested[tag] is None:
                lines.append(f"{tag} modality config: {BASE_SOURCE}")
            elif tag not in known:
                lines.append(f"{tag} modality config: run config ({cfg.source}); new to the base checkpoint")
            else:
                diffs = modality_config_differences(cfg, known[tag])
                if diffs:
                    lines.append(
                        f"{tag} modality config: run config ({cfg.source}), replacing the base checkpoint's entry; "
                        f"differs in: {'; '.join(diffs)}"
                    )
                else:
                    lines.append(
                        f"{tag} modality config: run config ({cfg.source}), identical to the base checkpoint's entry"
                    )
        lines.append(
            "processor settings ("
            + ", ".join(f"{k}={getattr(processor, k)}" for k in INHERITED_SETTINGS)
            + f"): {BASE_SOURCE}"
        )
        jitter_src = "run config" if color_jitter_params is not None else f"{BASE_SOURCE} (run config left it null)"
        rotation_src = "run config" if random_rotation_angle is not None else f"{BASE_SOURCE} (run config left it null)"
        if model_config is not None:
            pairs = (
                ("max_state_dim", processor.max_state_dim, getattr(model_config, "max_state_dim", None)),
                ("max_action_dim", processor.max_action_dim, getattr(model_config, "max_action_dim", None)),
                ("max_action_horizon", processor.max_action_horizon, getattr(model_config, "action_horizon", None)),
            )
            bad = [f"{name} {p} (model config {m})" for name, p, m in pairs if m is not None and p != m]
            if bad:
                raise ProcessorError(
                    f"{base_dir / PROCESSOR_CONFIG_NAME} does not fit the model's config.json: {', '.join(bad)}"
                )
        if shortest_image_edge is not None and shortest_image_edge != processor.shortest_image_edge:
            message = (
                f"the shards hold frames at shortest edge {shortest_image_edge} but the base checkpoint's processor "
                f"works at {processor.shortest_image_edge}; frames are resized again per sample (rebuild the shards "
                "with this base_model_path to avoid it)"
            )
            warnings.warn(message, stacklevel=2)
            lines.append(f"note: {message}")

    if color_jitter_params is not None and not color_jitter_params:
        jitter_src = "run config ({} disables it)"
    if random_rotation_angle is not None and not random_rotation_angle:
        rotation_src = "run config (0 disables it)"
    lines.append(f"color_jitter_params {_describe_jitter(processor.color_jitter_params)}: {jitter_src}")
    lines.append(f"random_rotation_angle {_describe_rotation(processor.random_rotation_angle)}: {rotation_src}")
    lines.append("use_relative_action=True: run (as upstream's finetune launcher)")

    pretrained = set(processor.statistics)
    run_stats = {tag: statistics[tag] for tag in resolved}
    processor.set_statistics(run_stats, override=override_pretraining_statistics)
    flag = str(bool(override_pretraining_statistics)).lower()
    for tag in resolved:
        if tag not in pretrained:
            lines.append(f"statistics for {tag}: dataset" + (" (new to the base checkpoint)" if base_dir else ""))
        elif override_pretraining_statistics:
            lines.append(f"statistics for {tag}: dataset, replacing the base checkpoint's pretraining statistics "
                         f"(override_pretraining_statistics={flag})")
        else:
            lines.append(f"statistics for {tag}: base checkpoint statistics.json, pretraining statistics kept; the "
                         f"dataset's are not used (override_pretraining_statistics={flag})")
        try:
            processor.validate(tag)
        except ProcessorError as exc:
            if tag in pretrained and not override_pretraining_statistics:
                raise ProcessorError(
                    f"embodiment {tag!r}: the base checkpoint's pretraining statistics (kept because "
                    f"override_pretraining_statistics=false) do not fit the run's modality config: {exc}; "
                    "set override_pretraining_statistics: true to use the dataset's"
                ) from exc
            raise
    others = sorted(set(processor.statistics) - set(resolved))
    if others:
        lines.append(f"statistics for {', '.join(others)} (not trained in this run): base checkpoint statistics.json")
    return processor, lines
