"""The parameters a run trains and keeps, read from the model built on the meta device.

Nothing is materialised: ``Gr00tN1d6(config)`` under ``torch.device("meta")`` gives every parameter's shape and the
model's own ``apply_trainable_flags`` decides ``requires_grad``, so the counts are the trainer's, not a re-derivation.
A checkpoint directory (or a hub snapshot already in the cache) contributes only its ``config.json``.

LoRA (``lora_rank > 0``) is applied on top, from shapes alone: every ``nn.Linear`` that ``model/lora.py`` would adapt
(``target_modules``) gets an adapter of ``rank x (in + out)`` trainable parameters, and what the targeted part's tune
flag covers is frozen (the model's ``part_modules``), the run's own rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import PlanInputError, PlanUnsupportedError  # noqa: F401  (raised here; importable from here)

# Parameter-name prefixes of the model's parts (the module tree mirrors upstream's names; see model/backbone.py).
VISUAL = "backbone.model.vision_model."
MLP1 = "backbone.model.mlp1."
LLM_LAYERS = "backbone.model.language_model.model.layers."
LLM = "backbone.model.language_model."
DIT = "action_head.model."



def part_of(name: str) -> str:
    """The part a parameter belongs to: visual, mlp1, llm, dit or head (the action head's projectors and norms)."""
    for prefix, part in ((VISUAL, "visual"), (MLP1, "mlp1"), (LLM, "llm"), (DIT, "dit")):
        if name.startswith(prefix):
            return part
    return "head"


@dataclass
class ModelShapes:
    """Parameter counts of one run's model. ``trainable`` includes LoRA adapters; ``decay``/``no_decay`` split the
    trainable count the way the trainer's AdamW groups it (no weight decay on biases and 1-D parameters), which is how
    DeepSpeed flattens them: one fp32 partition per group."""

    config: object  # Gr00tN1d6Config
    total: int = 0
    trainable: int = 0
    decay: int = 0
    no_decay: int = 0
    by_part: dict[str, dict[str, int]] = field(default_factory=dict)  # part -> {"total", "trainable"}
    lora_params: int = 0
    lora_linears: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # target -> [(in, out)] adapted
    trainable_llm_layers: list[int] = field(default_factory=list)
    largest_layer_params: int = 0  # the biggest transformer block, for ZeRO-3's gathered working set

    def part_trainable(self, part: str) -> bool:
        return self.by_part.get(part, {}).get("trainable", 0) > 0


def load_model_config(base_model_path: str, revision: str | None = None, **overrides):
    """The model config of a preset, a local checkpoint directory or a hub id in the local cache: config.json only."""
    from groot_ft.hub import BaseModelError, preset_names, resolve_base_model
    from groot_ft.model import Gr00tN1d6Config, preset

    from groot_ft.model.n17.factory import model_family

    if base_model_path in preset_names() and model_family(base_model_path) == "n1.6":
        return preset(base_model_path, **overrides)
    try:
        root = resolve_base_model(base_model_path, revision=revision)
    except BaseModelError as exc:
        raise PlanInputError(str(exc)) from exc
    root = root if root is not None else Path(base_model_path)
    if model_family(base_model_path if base_model_path in preset_names() else root) == "n1.7":
        raise PlanUnsupportedError(f"base model {base_model_path!r} is GR00T N1.7; the memory plan models N1.6's "
                                   f"network only, so this run's memory is not estimated or checked")
    config_file = root / "config.json"
    if not config_file.is_file():
        raise PlanInputError(f"base model {base_model_path!r}: neither a preset ({', '.join(preset_names())}) nor a "
                             f"directory with config.json")
    try:
        data = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanInputError(f"{config_file}: cannot read it as JSON ({exc})") from exc
    if data.get("model_type") != Gr00tN1d6Config.model_type:
        raise PlanInputError(f"{config_file}: model_type {data.get('model_type')!r} is not "
                             f"{Gr00tN1d6Config.model_type!r}")
    for key in ("architectures", "transformers_version", "torch_dtype", "attn_implementation"):
        data.pop(key, None)
    try:
        return Gr00tN1d6Config(**{**data, **overrides})
    except (TypeError, ValueError) as exc:
        raise PlanInputError(f"{config_file}: {exc}") from exc


def model_shapes(config, *, lora_rank: int = 0, lora_targets: tuple[str, ...] = ()) -> ModelShapes:
    """Count parameters of ``config`` (with its tune_* flags) built on the meta device, LoRA applied from shapes."""
    from groot_ft.model import Gr00tN1d6
    from groot_ft.model.lora import target_modules

    with torch.device("meta"):
        model = Gr00tN1d6(config)
    targets = tuple(lora_targets) if lora_rank > 0 else ()
    # which Linear layers get adapters and what a targeted part freezes: the model's own rule (model/lora.py)
    adapted_names = target_modules(model, targets) if targets else {}
    frozen = {id(p) for t in targets for module in model.part_modules(t) for p in module.parameters()}
    shapes = ModelShapes(config=config)
    for name, param in model.named_parameters():
        n = param.numel()
        trains = param.requires_grad and id(param) not in frozen
        part = shapes.by_part.setdefault(part_of(name), {"total": 0, "trainable": 0})
        part["total"] += n
        shapes.total += n
        if trains:
            part["trainable"] += n
            shapes.trainable += n
            if param.ndim < 2 or name.endswith(".bias"):
                shapes.no_decay += n
            else:
                shapes.decay += n
            if name.startswith(LLM_LAYERS):
                layer = int(name[len(LLM_LAYERS):].split(".")[0])
                if layer not in shapes.trainable_llm_layers:
                    shapes.trainable_llm_layers.append(layer)
    for target in targets:
        adapted = [(m.in_features, m.out_features) for m in map(model.get_submodule, adapted_names[target])]
        shapes.lora_linears[target] = adapted
        adapter = sum(lora_rank * (i + o) for i, o in adapted)
        shapes.lora_params += adapter
        # peft's lora_A / lora_B are weight matrices: the decay group
        shapes.decay += adapter
        shapes.trainable += adapter
        shapes.total += adapter
        part = shapes.by_part.setdefault({"llm": "llm", "visual": "visual", "dit": "dit"}[target],
                                         {"total": 0, "trainable": 0})
        part["total"] += adapter
        part["trainable"] += adapter
    shapes.trainable_llm_layers.sort()
    blocks = [m for m in model.modules() if type(m).__name__ in ("Qwen3DecoderLayer", "Siglip2EncoderLayer",
                                                                   "BasicTransformerBlock")]
    shapes.largest_layer_params = max((sum(p.numel() for p in b.parameters()) for b in blocks), default=0)
    return shapes
