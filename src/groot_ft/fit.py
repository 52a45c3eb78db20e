"""Does each dataset fit the model? Checked before any stage runs, where upstream finds out mid-training.

The model pads states to ``max_state_dim``, actions to ``max_action_dim`` x ``action_horizon``, and indexes its
per-embodiment weights with ids below 32; a dataset that exceeds any of these trains into a shape error (or a
silently truncated action) hours later. :func:`fit_problems` lists every such problem of one dataset at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groot_ft.embodiment import EMBODIMENT_TAG_TO_ID, embodiment_id
from groot_ft.errors import read_json_file
from groot_ft.modality import EmbodimentModalityConfig


@dataclass(frozen=True)
class ModelLimits:
    """The sizes a model pads to, and the embodiment ids it knows."""

    source: str
    max_state_dim: int
    max_action_dim: int
    action_horizon: int
    embodiment_ids: dict[str, int]
    sincos_state: bool = False  # the base processor encodes sin/cos state keys as sin and cos (two dims each)

    @classmethod
    def of(cls, base_model_path: str) -> ModelLimits:
        """From a model directory's config.json (+ embodiment_id.json), else from the named preset."""
        root = Path(base_model_path)
        if (root / "config.json").is_file():
            config = read_json_file(root / "config.json", "the base model's config")
            ids_file = root / "embodiment_id.json"
            ids = read_json_file(ids_file, "the base model's embodiment ids") if ids_file.is_file() else {}
            source = str(root / "config.json")
            processor_file = root / "processor_config.json"  # its settings apply when fine-tuning from it
            if processor_file.is_file():
                kwargs = read_json_file(processor_file, "the base model's processor config").get("processor_kwargs", {})
                sincos = bool(kwargs.get("apply_sincos_state_encoding", False))
            else:
                sincos = bool(config.get("apply_sincos_state_encoding", False))
        else:
            from groot_ft.preset_facts import PRESET_FACTS

            if base_model_path in PRESET_FACTS:  # without importing the model package (torch)
                facts = PRESET_FACTS[base_model_path]
                config = {"max_state_dim": facts.max_state_dim, "max_action_dim": facts.max_action_dim,
                          "action_horizon": facts.action_horizon}
            else:
                from groot_ft.model import preset

                config = preset(base_model_path).to_dict()  # an unknown name: the preset lookup's own error
            ids, source = {}, f"preset {base_model_path!r}"
            sincos = False  # a preset's processor is built by the trainer, without sin/cos encoding
        return cls(source, int(config["max_state_dim"]), int(config["max_action_dim"]), int(config["action_horizon"]),
                   {**EMBODIMENT_TAG_TO_ID, **{k.lower(): int(v) for k, v in ids.items()}}, sincos)


def _group_width(modality_json: dict[str, Any], section: str, key: str) -> int | None:
    entry = modality_json.get(section, {}).get(key)
    if not isinstance(entry, dict) or not {"start", "end"} <= set(entry):
        return None
    return int(entry["end"]) - int(entry["start"])


def fit_problems(
    where: str,
    tag: str,
    cfg: EmbodimentModalityConfig,
    modality_json: dict[str, Any],
    limits: ModelLimits,
    mapping_name: str = "meta/modality.json",
) -> list[str]:
    """Every way the dataset at ``where`` (its modality mapping given, named ``mapping_name`` in messages: the
    external file when it lives outside the dataset) does not fit the model; empty if it fits."""
    problems = []
    horizon = len(cfg.action.delta_indices)
    if horizon > limits.action_horizon:
        problems.append(
            f"{where}: the action horizon is {horizon} steps (action.delta_indices) but the model "
            f"({limits.source}) predicts at most {limits.action_horizon}; shorten action.delta_indices"
        )
    for section, modality, limit, name in (
        ("state", cfg.state, limits.max_state_dim, "max_state_dim"),
        ("action", cfg.action, limits.max_action_dim, "max_action_dim"),
    ):
        total = 0
        for key in modality.modality_keys:
            width = _group_width(modality_json, section, key)
            if width is None:
                problems.append(f"{where}: {mapping_name} has no {section}.{key} with start/end; add it or drop "
                                f"the key from the modality config")
                continue
            if section == "state" and limits.sincos_state and key in (modality.sin_cos_embedding_keys or ()):
                width *= 2  # sin and cos of every dimension
            total += width
        if total > limit:
            problems.append(
                f"{where}: the {section} groups {', '.join(modality.modality_keys)} add up to {total} dimensions but "
                f"the model ({limits.source}) pads {section} to {name}={limit}; drop groups or use a model with a "
                f"larger {name}"
            )
    if cfg.relative_action_keys() and cfg.state.delta_indices[-1] != cfg.action.delta_indices[0]:
        problems.append(
            f"{where}: RELATIVE actions need state.delta_indices[-1] == action.delta_indices[0] "
            f"({cfg.state.delta_indices[-1]} != {cfg.action.delta_indices[0]})"
        )
    try:
        embodiment_id(tag, limits.embodiment_ids)
    except (KeyError, ValueError) as exc:
        problems.append(f"{where}: {exc.args[0]}")
    return problems
