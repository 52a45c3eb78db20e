"""`Gr00tN1d7`: the Qwen3-VL backbone + the N1.7 flow-matching action head as a transformers ``PreTrainedModel``.

``model(**batch).loss`` trains, ``model.get_action(**batch)["action_pred"]`` samples (normalised, padded actions),
optionally with real-time chunking (``previous_action=..., options={...}``). Batches hold Qwen3-VL inputs:
``input_ids``, ``attention_mask``, ``pixel_values`` (flattened patches) + ``image_grid_thw``, and ``state``
(B, state_history_length, max_state_dim), ``embodiment_id``, ``action`` / ``action_mask`` (B, horizon, dims).
Weights are fp32. The module tree gives upstream's tensor names (see :mod:`.backbone`, :mod:`.action_head`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ..layers import CategorySpecificLinear
# set_trainable / train / from_pretrained, the flag names and the action-head calls are N1.6's: only
# apply_trainable_flags (which modules a flag covers), head_dtype and the backbone inputs differ. TRAINABLE_FLAGS and
# eval_frozen_children stay importable from here.
from ..modeling import (
    TRAINABLE_FLAGS,
    ActionHeadCallsMixin,
    Gr00tN1d6,
    LoraPartsMixin,
    TrainableFlagsMixin,
    eval_frozen_children,
    init_category_specific_linear,
    set_llm_trainable,
)
from .action_head import Gr00tN1d7ActionHead
from .backbone import Qwen3VLBackbone
from .configuration import Gr00tN1d7Config


@dataclass
class Gr00tN1d7Output(ModelOutput):
    """``loss``: masked flow-matching MSE (scalar). ``action_loss``: its masked elementwise terms (B, H, D)."""

    loss: torch.FloatTensor | None = None
    action_loss: torch.FloatTensor | None = None
    action_mask: torch.FloatTensor | None = None


class Gr00tN1d7(TrainableFlagsMixin, LoraPartsMixin, ActionHeadCallsMixin, PreTrainedModel):
    config_class = Gr00tN1d7Config
    # LoRA (model/lora.py): the LLM and the DiT are adapted as N1.6's; the Qwen3-VL vision blocks fuse q, k and v
    LORA_PROJECTIONS = {
        "llm": Gr00tN1d6.LORA_PROJECTIONS["llm"],
        "visual": ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"),
        "dit": Gr00tN1d6.LORA_PROJECTIONS["dit"],
    }
    config: Gr00tN1d7Config
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock", "BasicTransformerBlock", "VLSelfAttentionBlock"]
    # A mean over valid elements: keep the Trainer from passing num_items_in_batch.
    accepts_loss_kwargs = False
    # The Qwen3-VL LM head (tied to embed_tokens upstream) is never used for GR00T's features and is not built.
    _keys_to_ignore_on_load_unexpected = [r"^backbone\.model\.lm_head\."]

    def __init__(self, config: Gr00tN1d7Config):
        super().__init__(config)
        config.validate_architecture()
        self.backbone = Qwen3VLBackbone(config)
        self.action_head = Gr00tN1d7ActionHead(config)
        self.post_init()
        self.apply_trainable_flags()

    # --- weights ----------------------------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        # Linear / Embedding / LayerNorm: transformers' defaults; the Qwen3-VL sub-model gets its own initialiser.
        super()._init_weights(module)
        if isinstance(module, CategorySpecificLinear):
            init_category_specific_linear(module)  # as N1.6 (not upstream's flat 0.02)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.model.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.model.model.set_input_embeddings(value)

    # --- trainable parameters ---------------------------------------------------------------------------------------
    def apply_trainable_flags(self) -> None:
        """requires_grad from the tune_* flags, as upstream's Qwen3Backbone / Gr00tN1d7ActionHead set them."""
        cfg = self.config
        vlm = self.backbone.model
        vlm.visual.requires_grad_(cfg.tune_visual)  # the vision tower with its merger and deepstack mergers
        set_llm_trainable(vlm.language_model, cfg)
        self.action_head.apply_trainable_flags(cfg)  # its VL self-attention block goes with tune_vlln
        self.train_lora_parts_through_adapters()
        self.train(self.training)  # re-applies eval() to whatever is frozen now

    # --- the parts LoRA can adapt (model/lora.py) -------------------------------------------------------------------
    def part_modules(self, part: str) -> tuple[nn.Module, ...]:
        """Everything a LoRA-adapted part freezes: the scope of its tune_* flag."""
        vlm = self.backbone.model
        parts = {"llm": (vlm.language_model,), "visual": (vlm.visual,), "dit": (self.action_head.model,)}
        if part not in parts:
            raise ValueError(f"unknown model part {part!r}; known: {', '.join(parts)}")
        return parts[part]

    def lora_layers(self, part: str) -> tuple[str, nn.ModuleList]:
        """(module name prefix, layers) of a part LoRA adapts: the kept LLM layers, the vision blocks or the DiT
        blocks (upstream's names)."""
        vlm = self.backbone.model
        layers = {
            "llm": ("backbone.model.model.language_model.layers", vlm.language_model.layers),
            "visual": ("backbone.model.model.visual.blocks", vlm.visual.blocks),
            "dit": ("action_head.model.transformer_blocks", self.action_head.model.transformer_blocks),
        }
        if part not in layers:
            raise ValueError(f"unknown model part {part!r}; known: {', '.join(layers)}")
        return layers[part]

    # --- forward / inference ----------------------------------------------------------------------------------------
    @property
    def head_dtype(self) -> torch.dtype:
        return self.action_head.action_decoder.layer1.W.dtype

    def _backbone(self, input_ids, attention_mask, pixel_values, image_grid_thw,
                  mm_token_type_ids=None) -> dict[str, torch.Tensor]:
        device = self.device
        out = self.backbone(
            input_ids.to(device),
            attention_mask.to(device),
            None if pixel_values is None else pixel_values.to(device),
            None if image_grid_thw is None else image_grid_thw.to(device),
            None if mm_token_type_ids is None else mm_token_type_ids.to(device),
        )
        out["backbone_features"] = out["backbone_features"].to(self.head_dtype)
        return out

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        state: torch.Tensor,
        embodiment_id: torch.LongTensor,
        action: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.LongTensor | None = None,
    ) -> Gr00tN1d7Output:
        """Flow-matching training loss. Noise and time are drawn from torch's global RNG (seed it to reproduce)."""
        backbone_output = self._backbone(input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids)
        out = self.head_loss(backbone_output, state, action, action_mask, embodiment_id)
        return Gr00tN1d7Output(loss=out["loss"], action_loss=out["action_loss"], action_mask=out["action_mask"])

    @torch.no_grad()
    def get_action(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        state: torch.Tensor,
        embodiment_id: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.LongTensor | None = None,
        action: torch.Tensor | None = None,  # accepted (and ignored) so a training batch can be passed as is
        action_mask: torch.Tensor | None = None,
        num_inference_timesteps: int | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        previous_action: torch.Tensor | None = None,
        options: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sample an action chunk: ``{"action_pred": (B, action_horizon, max_action_dim)}`` (normalised, padded).

        Real-time chunking: pass the previous chunk as ``previous_action`` and ``options`` with ``action_horizon``,
        ``rtc_overlap_steps``, ``rtc_frozen_steps``, ``rtc_ramp_rate`` (see ``Gr00tN1d7ActionHead.get_action``).
        Upstream switches RTC on when the inputs hold an ``action``; here ``action`` is ignored so a training batch
        can be sampled from, and the previous chunk is named explicitly.
        """
        with self.eval_mode():
            pred = self.action_head.get_action(
                self._backbone(input_ids, attention_mask, pixel_values, image_grid_thw, mm_token_type_ids),
                state=self._float(state),
                embodiment_id=embodiment_id.to(self.device).long(),
                num_inference_timesteps=num_inference_timesteps,
                generator=generator,
                noise=noise,
                previous_action=previous_action,
                options=options,
            )
        return {"action_pred": pred}
