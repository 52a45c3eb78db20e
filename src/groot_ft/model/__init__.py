"""GR00T N1.6-style VLA model: config, network, tokenizer, collator, and the factory the trainer uses.

Importing this package registers ``Gr00tN1d6`` and ``Gr00tN1d7`` (GR00T N1.7, :mod:`.n17`) with ``AutoConfig`` /
``AutoModel`` (so ``AutoModel.from_pretrained`` works on saved checkpoints after ``import groot_ft.model``).

    model, tokenizer = create_model("tiny")              # or "mid", "n1.6-3b", "n1.7-tiny", "n1.7-3b", a checkpoint
                                                         # directory (ours or a local copy of upstream's N1.6 or
                                                         # N1.7), plus tune_* overrides
    collate = make_collator(tokenizer, model.config)     # Gr00tCollator, or N1.7's for an n1.7-* / Gr00tN1d7 base
    batch = collate(samples)                             # list of processor samples -> dict of tensors
    loss = model(**batch).loss
    actions = model.get_action(**batch)["action_pred"]   # (B, action_horizon, max_action_dim), normalised + padded
    save_model(model, tokenizer, out_dir)

On CUDA, ``create_model`` applies upstream's ``load_bf16`` + ``backbone_trainable_params_fp32`` when the config asks
for it (``model.apply_bf16_weights()``: frozen backbone weights bf16, trainable parameters fp32). Parameter names and
shapes follow upstream's ``Gr00tN1d6`` state dict; see docs/model.md for what was verified.
"""

from transformers import AutoConfig, AutoModel

from .collator import Gr00tCollator
from .configuration import Gr00tN1d6Config
from .factory import (
    CheckpointError,
    ModelNotFoundError,
    TokenizerNotFoundError,
    checkpoint_tokenizer,
    create_model,
    finetune_state_dropout,
    load_model_config,
    save_model,
)
from .modeling import Gr00tN1d6, Gr00tN1d6Output
from .n17 import Gr00tN1d7, Gr00tN1d7Config  # importing n17 registers Gr00tN1d7 with the Auto classes
from .presets import PRESETS, preset
from .tokenizer import IMG_CONTEXT_TOKEN, build_tokenizer, load_tokenizer


def make_collator(tokenizer, config, **kwargs):
    """The collator for a model's config: :class:`Gr00tCollator` for N1.6, ``Gr00tN17Collator`` (Qwen3-VL inputs)
    for ``model_type`` ``Gr00tN1d7``; ``kwargs`` go to its constructor."""
    if getattr(config, "model_type", None) == Gr00tN1d7Config.model_type:
        from .n17.collator import Gr00tN17Collator

        return Gr00tN17Collator(tokenizer, config, **kwargs)
    return Gr00tCollator(tokenizer, config, **kwargs)


def _register_auto_classes() -> None:
    # exist_ok=True guards double registration: re-importing or reloading this package re-registers the current
    # class objects instead of raising "already used by a Transformers config".
    AutoConfig.register(Gr00tN1d6Config.model_type, Gr00tN1d6Config, exist_ok=True)
    AutoModel.register(Gr00tN1d6Config, Gr00tN1d6, exist_ok=True)


_register_auto_classes()

__all__ = [
    "Gr00tN1d6Config",
    "Gr00tN1d6",
    "Gr00tN1d6Output",
    "Gr00tN1d7Config",
    "Gr00tN1d7",
    "Gr00tCollator",
    "make_collator",
    "build_tokenizer",
    "preset",
    "PRESETS",
    "create_model",
    "finetune_state_dropout",
    "load_model_config",
    "checkpoint_tokenizer",
    "load_tokenizer",
    "CheckpointError",
    "ModelNotFoundError",
    "TokenizerNotFoundError",
    "save_model",
    "IMG_CONTEXT_TOKEN",
]
