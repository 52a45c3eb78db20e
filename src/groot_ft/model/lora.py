"""LoRA adapters (through ``peft``) on the parts of a GR00T model (N1.6 or N1.7) that a run names, and their merged
export.

    settings = LoraSettings(rank=16, alpha=32, dropout=0.05, targets=("llm", "dit"))
    add_lora(model, settings, seed=0)                 # adapters injected in place; the model stays a Gr00tN1d6
    merged = merged_state_dict(model, model.state_dict())   # upstream's tensor names, no peft needed to load it
    save_adapter(model, model.state_dict(), out / "adapter", settings, base_model="nvidia/GR00T-N1.6-3B")

The target modules are found in the model's own module tree, layer by layer (the model's ``LORA_PROJECTIONS``), and
passed to peft as full module names, so peft adapts exactly those and nothing else matches by accident. The parts:

- ``llm``: the attention (q, k, v, o) and MLP (gate, up, down) projections of every kept LLM layer (Qwen3 in both);
- ``visual``: every vision-tower layer's attention and MLP projections (N1.6's SigLIP2: q, k, v, out, fc1, fc2;
  N1.7's Qwen3-VL tower: the fused qkv, proj, linear_fc1, linear_fc2);
- ``dit``: the attention (to_q, to_k, to_v, to_out.0) and feed-forward (ff.net.0.proj, ff.net.2) projections of
  every DiT block (not the AdaLN modulation linear).

A targeted part then trains through its adapters only (the model's ``apply_trainable_flags`` freezes the rest of
the part, whatever its ``tune_*`` flag says); the other parts keep following their flags. N1.7's VL self-attention
block is not a LoRA part: it trains fully with ``tune_vlln``, as upstream's flag has it.

Merging is done on a state dict rather than on the modules: under DeepSpeed ZeRO-3 the modules hold partitions, while
the state dict the trainer exports is gathered in full on rank 0. The merge is peft's LoRA update,
``W + (lora_alpha / rank) * B @ A`` (tested against peft's own ``merge``).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from groot_ft.errors import UserError

LORA_PARTS = ("llm", "visual", "dit")
ADAPTER_NAME = "default"
# beside every export of merged weights (final model, checkpoint-N/, best checkpoint): the adapter alone
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OTHER_WEIGHTS = "other_parameters.safetensors"


class LoraConfigError(UserError, ValueError):
    """LoRA settings that cannot apply to this model; the message says which and why."""


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]

    @classmethod
    def from_run_config(cls, cfg) -> LoraSettings | None:
        """The run config's ``lora_*`` keys, or None when ``lora_rank`` is 0 (no adapters)."""
        if cfg.lora_rank == 0:
            return None
        return cls(int(cfg.lora_rank), float(cfg.lora_alpha), float(cfg.lora_dropout), tuple(cfg.lora_targets))

    def check(self) -> None:
        if self.rank < 1:
            raise LoraConfigError(f"lora_rank must be >= 1 to add adapters (got {self.rank})")
        if not self.targets:
            raise LoraConfigError("lora_rank > 0 but lora_targets is empty: name at least one of "
                                  f"{', '.join(LORA_PARTS)} (or set lora_rank: 0)")
        unknown = [t for t in self.targets if t not in LORA_PARTS]
        if unknown:
            raise LoraConfigError(f"lora_targets: unknown part(s) {unknown}; LoRA goes on {', '.join(LORA_PARTS)} "
                                  "(the connector mlp1, vlln and the embodiment projectors train fully or not at "
                                  "all, through their tune_* flags)")
        if len(set(self.targets)) != len(self.targets):
            raise LoraConfigError(f"lora_targets names a part twice: {list(self.targets)}")
        if self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise LoraConfigError(f"lora_alpha must be > 0 and 0 <= lora_dropout < 1 (got {self.alpha}, "
                                  f"{self.dropout})")


def target_modules(model, targets) -> dict[str, list[str]]:
    """Full names of the ``nn.Linear`` modules LoRA adapts, per part, in module order."""
    found: dict[str, list[str]] = {}
    for part in targets:
        prefix, layers = model.lora_layers(part)
        if len(layers) == 0:
            raise LoraConfigError(f"lora_targets names {part!r}, but this model has no {part} layers to adapt")
        names = []
        for i, layer in enumerate(layers):
            # each model names its own (LORA_PROJECTIONS); checked against the tree, so a renamed module fails
            # loudly instead of silently leaving a layer without adapters
            for rel in model.LORA_PROJECTIONS[part]:
                module = layer.get_submodule(rel)
                if not isinstance(module, nn.Linear):
                    raise LoraConfigError(f"{prefix}.{i}.{rel} is a {type(module).__name__}, not a Linear layer")
                names.append(f"{prefix}.{i}.{rel}")
        found[part] = names
    return found


def lora_parts_of(model) -> tuple[str, ...]:
    """The parts carrying adapters; () for a model without any."""
    return tuple(getattr(model, "lora_parts", ()))


def add_lora(model, settings: LoraSettings, seed: int = 0, base_model: str | None = None) -> dict[str, int]:
    """Inject LoRA adapters into ``model`` in place and make the targeted parts train through them only.

    Every process of a run must build identical adapters, so they are initialised under ``seed`` without touching the
    global RNG (peft: A Kaiming-uniform, B zeros, so the model's outputs are unchanged at step 0). ``base_model`` is
    recorded in the adapter config (``base_model_name_or_path``). Returns :func:`parameter_counts`.
    """
    from peft import LoraConfig, inject_adapter_in_model

    settings.check()
    if not hasattr(model, "lora_layers"):
        raise LoraConfigError(f"{type(model).__name__} has no parts LoRA can adapt; set lora_rank: 0")
    if model.lora_parts:
        raise LoraConfigError(f"the model already has LoRA adapters on {list(model.lora_parts)}")
    names = [n for part in target_modules(model, settings.targets).values() for n in part]
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=names, bias="none", base_model_name_or_path=base_model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    # peft leaves only adapters trainable; the model's own rule decides: tune_* flags, then adapters on the targets
    model.set_lora_parts(settings.targets)
    return parameter_counts(model)


def lora_modules(model) -> dict[str, nn.Module]:
    """name -> peft LoRA layer (the wrapper around the adapted Linear)."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def parameter_counts(model) -> dict[str, int]:
    """``total`` (base weights + adapters), ``trainable``, ``adapters`` (LoRA A and B) and ``adapted_modules``."""
    adapters = sum(p.numel() for m in lora_modules(model).values()
                   for p in (*m.lora_A.parameters(), *m.lora_B.parameters()))
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "adapters": adapters,
        "adapted_modules": len(lora_modules(model)),
    }


def _lora_keys(name: str) -> tuple[str, str, str, str]:
    return (f"{name}.base_layer.weight", f"{name}.base_layer.bias",
            f"{name}.lora_A.{ADAPTER_NAME}.weight", f"{name}.lora_B.{ADAPTER_NAME}.weight")


def merged_state_dict(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` of the LoRA model (as ``model.state_dict()`` or accelerate's gathered one names it) with every
    adapted layer merged: ``<name>.weight = W + scaling * B @ A`` (computed in fp32, stored in W's dtype),
    ``<name>.bias`` unchanged, adapter tensors dropped. The result has upstream's tensor names."""
    out = dict(state_dict)
    for name, module in lora_modules(model).items():
        weight_key, bias_key, a_key, b_key = _lora_keys(name)
        base, a, b = out.pop(weight_key), out.pop(a_key), out.pop(b_key)
        delta = (b.float() @ a.float()) * module.scaling[ADAPTER_NAME]
        out[f"{name}.weight"] = (base.float() + delta.to(base.device)).to(base.dtype)
        if bias_key in out:
            out[f"{name}.bias"] = out.pop(bias_key)
    return out


def fully_trained_modules(model) -> tuple[list[str], list[str]]:
    """What trains besides the adapters: the largest modules whose parameters all train and that hold no adapter
    (peft's ``modules_to_save``: the projectors, a part trained through its tune_* flag), and trainable parameters
    that sit directly in a module that also holds frozen ones (``action_head.mask_token`` when the DiT has adapters),
    which ``modules_to_save`` cannot name."""
    from peft.tuners.lora import LoraLayer

    modules: list[str] = []
    loose: list[str] = []

    def walk(prefix: str, module: nn.Module) -> None:
        loose.extend(prefix + name for name, p in module.named_parameters(recurse=False) if p.requires_grad)
        for name, child in module.named_children():
            params = list(child.parameters())
            if isinstance(child, LoraLayer) or not any(p.requires_grad for p in params):
                continue  # adapters are saved as such; a frozen module is the base model's
            if all(p.requires_grad for p in params) and not any(isinstance(m, LoraLayer) for m in child.modules()):
                modules.append(prefix + name)
            else:
                walk(f"{prefix}{name}.", child)

    walk("", model)
    return modules, loose


def adapter_state_dict(model, state_dict: dict[str, torch.Tensor], modules_to_save=()) -> dict[str, torch.Tensor]:
    """The LoRA tensors, and the tensors of ``modules_to_save``, under the names ``peft``'s
    ``PeftModel.save_pretrained`` writes (adapter name dropped, ``base_model.model.`` prefix), so
    ``PeftModel.from_pretrained(Gr00tN1d6 model, adapter_dir)`` loads them."""
    out = {}
    for name in lora_modules(model):
        _, _, a_key, b_key = _lora_keys(name)
        out[f"base_model.model.{name}.lora_A.weight"] = state_dict[a_key].contiguous()
        out[f"base_model.model.{name}.lora_B.weight"] = state_dict[b_key].contiguous()
    prefixes = tuple(f"{m}." for m in modules_to_save)
    for key, tensor in state_dict.items():
        if key.startswith(prefixes):
            out[f"base_model.model.{key}"] = tensor.contiguous()
    return out


def save_adapter(model, state_dict: dict[str, torch.Tensor], directory: str | os.PathLike) -> Path:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` in peft's format into ``directory``.

    The adapter holds everything the run changed: the LoRA weights and, as peft's ``modules_to_save``, the modules
    trained in full (the embodiment projectors, any part trained through its tune_* flag), so
    ``PeftModel.from_pretrained(base_model, directory).merge_and_unload()`` rebuilds the fine-tuned model from the base
    checkpoint. Trainable parameters peft cannot name (:func:`fully_trained_modules`) go to
    ``other_parameters.safetensors`` under the model's own names; ``groot_ft_adapter.json`` says what is where."""
    from safetensors.torch import save_file

    from groot_ft.io import atomic_write_json, share_like_umask

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    modules, loose = fully_trained_modules(model)
    # the LoraConfig add_lora injected with (peft keeps it on the model), target names sorted for a stable file
    config = copy.deepcopy(model.peft_config[ADAPTER_NAME])
    config.target_modules = sorted(lora_modules(model))
    config.modules_to_save = modules or None
    config.save_pretrained(os.fspath(out))
    written = [out / ADAPTER_WEIGHTS]
    save_file(adapter_state_dict(model, state_dict, modules), os.fspath(written[0]), metadata={"format": "pt"})
    if loose:
        written.append(out / OTHER_WEIGHTS)
        save_file({k: state_dict[k].contiguous() for k in loose}, os.fspath(written[1]), metadata={"format": "pt"})
    share_like_umask(*written)
    parts = {part: len(model.LORA_PROJECTIONS[part]) * len(model.lora_layers(part)[1]) for part in model.lora_parts}
    atomic_write_json(out / "groot_ft_adapter.json", {
        "lora_targets": list(model.lora_parts), "adapted_modules_per_part": parts, "modules_to_save": modules,
        "other_parameters": {"file": OTHER_WEIGHTS, "names": loose} if loose else None,
    })
    return out
