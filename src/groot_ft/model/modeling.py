"""`Gr00tN1d6`: backbone + flow-matching action head as a transformers ``PreTrainedModel``.

Call it with the collator's batch: ``model(**batch).loss`` for training, ``model.get_action(**batch)["action_pred"]``
for inference. Weights are built in fp32. :meth:`Gr00tN1d6.apply_bf16_weights` applies upstream's ``load_bf16`` +
``backbone_trainable_params_fp32`` (frozen backbone weights bf16, trainable ones fp32, action head fp32); the forward
pass then works both under ``torch.autocast(..., dtype=torch.bfloat16)`` and without it (dtype boundaries are cast
explicitly). A model cast as a whole (``model.to(torch.bfloat16)``, DeepSpeed bf16) works too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .action_head import Gr00tN1d6ActionHead
from .backbone import EagleBackbone
from .configuration import Gr00tN1d6Config
from .layers import CategorySpecificLinear

TRAINABLE_FLAGS = ("tune_llm", "tune_visual", "tune_top_llm_layers", "tune_projector", "tune_diffusion_model", "tune_vlln")


@dataclass
class Gr00tN1d6Output(ModelOutput):
    """``loss``: masked flow-matching MSE (scalar). ``action_loss``: its masked elementwise terms (B, H, D)."""

    loss: torch.FloatTensor | None = None
    action_loss: torch.FloatTensor | None = None
    action_mask: torch.FloatTensor | None = None


class TrainableFlagsMixin:
    """tune_* flag handling both GR00T families share (N1.6 here, N1.7 in ``n17/modeling.py``).

    The class using it is a ``PreTrainedModel`` with a config holding :data:`TRAINABLE_FLAGS` and
    ``validate_architecture()``, and defines ``apply_trainable_flags()`` for its own module tree: which modules a flag
    covers is family-specific, what happens around it is not.
    """

    def set_trainable(self, **flags) -> None:
        """Change tune_* flags (and the config) after construction, e.g. ``model.set_trainable(tune_llm=True)``."""
        unknown = set(flags) - set(TRAINABLE_FLAGS)
        if unknown:
            raise ValueError(f"unknown trainable flags {sorted(unknown)}; known: {TRAINABLE_FLAGS}")
        for key, value in flags.items():
            setattr(self.config, key, value)
        self.config.validate_architecture()
        self.apply_trainable_flags()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            eval_frozen_children(self)
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # Loading replaces parameters, which resets requires_grad; re-apply the (possibly overridden) flags.
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.apply_trainable_flags()
        return loaded


class LoraPartsMixin:
    """Which parts carry LoRA adapters (``model/lora.py`` injects them), for both families.

    A family defines :attr:`LORA_PROJECTIONS` (the Linear layers adapted in one layer of each part, relative to it),
    ``lora_layers(part)`` (the module-name prefix and the layers) and ``part_modules(part)`` (everything the part's
    tune_* flag covers, which an adapted part freezes), and calls :meth:`train_lora_parts_through_adapters` at the end
    of its ``apply_trainable_flags``.
    """

    LORA_PROJECTIONS: dict[str, tuple[str, ...]] = {}
    _lora_parts: tuple[str, ...] = ()

    @property
    def lora_parts(self) -> tuple[str, ...]:
        """The parts that carry LoRA adapters (empty without LoRA)."""
        return self._lora_parts

    def set_lora_parts(self, parts) -> None:
        """Record which parts carry adapters and re-apply the trainable flags."""
        self._lora_parts = tuple(parts)
        self.apply_trainable_flags()

    def train_lora_parts_through_adapters(self) -> None:
        """A part with LoRA adapters trains through them only, whatever its tune_* flag says."""
        for part in self._lora_parts:
            for module in self.part_modules(part):
                module.requires_grad_(False)
                for layer in module.modules():
                    # peft's tuner layers name their adapter sub-modules in adapter_layer_names (lora_A, lora_B, ...)
                    for attr in getattr(layer, "adapter_layer_names", ()):
                        getattr(layer, attr).requires_grad_(True)


class ActionHeadCallsMixin:
    """How both families hand a batch to their action head (N1.7 in ``n17/modeling.py``): inputs cast to the head's
    dtype (``head_dtype``, which each family defines) and sampling in eval mode. The backbone call and the arguments
    each family's ``forward`` / ``get_action`` take are family-specific and stay in the model classes."""

    def _float(self, x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x.to(device=self.device, dtype=self.head_dtype)

    def head_loss(self, backbone_output, state, action, action_mask, embodiment_id) -> dict[str, torch.Tensor]:
        """The action head's training loss (``action_mask`` None: every element counts)."""
        if action_mask is None:
            action_mask = torch.ones_like(action)
        return self.action_head(
            backbone_output,
            state=self._float(state),
            action=self._float(action),
            action_mask=self._float(action_mask),
            embodiment_id=embodiment_id.to(self.device).long(),
        )

    @contextlib.contextmanager
    def eval_mode(self):
        """eval() for the block (no dropout / state dropout at inference, whatever mode the caller left the model in),
        then train() again if the model was training."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            if was_training:
                self.train()


def set_llm_trainable(language_model: nn.Module, config) -> None:
    """tune_llm for the kept LLM layers; the top tune_top_llm_layers train even when tune_llm is False (they adapt
    the features the action head reads). The same in both families."""
    language_model.requires_grad_(config.tune_llm)
    if config.tune_top_llm_layers > 0:
        for layer in language_model.layers[-config.tune_top_llm_layers :]:
            layer.requires_grad_(True)


def eval_frozen_children(module: nn.Module) -> None:
    """Put every submodule whose parameters are all frozen into eval() (dropout off), recursing into mixed ones."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            eval_frozen_children(child)


def init_category_specific_linear(module: CategorySpecificLinear) -> None:
    """std 1/sqrt(fan_in) instead of upstream's flat 0.02, for both families.

    About the same at N1.6 widths (0.018-0.031 for 1024-3072 inputs), but at tiny widths a flat 0.02 makes the chain
    W1 -> W2 -> W3 start as an almost-zero signal and the flow-matching loss falls several times slower.
    """
    init.normal_(module.W, mean=0.0, std=module.in_features**-0.5)
    init.zeros_(module.b)


class Gr00tN1d6(TrainableFlagsMixin, LoraPartsMixin, ActionHeadCallsMixin, PreTrainedModel):
    config_class = Gr00tN1d6Config
    # per layer of each part LoRA can adapt: Qwen3's attention and MLP, SigLIP2's attention and MLP, a DiT block's
    # attention and feed-forward (not its AdaLN modulation)
    LORA_PROJECTIONS = {
        "llm": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
        "visual": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1",
                   "mlp.fc2"),
        "dit": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2"),
    }
    config: Gr00tN1d6Config
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["Siglip2EncoderLayer", "Qwen3DecoderLayer", "BasicTransformerBlock"]
    # The loss is a mean over valid elements, not a sum to be divided by num_items_in_batch: keep the Trainer from
    # passing num_items_in_batch and skipping its gradient-accumulation scaling.
    accepts_loss_kwargs = False
    # Tensors an upstream N1.6 checkpoint holds that this implementation does not build: the SigLIP2 pooling head and
    # the LLM's lm_head (tied to embed_tokens) are never used for GR00T's features; a mask_token is only built when
    # state_dropout_prob > 0.
    _keys_to_ignore_on_load_unexpected = [
        r"^backbone\.model\.vision_model\.vision_model\.head\.",
        r"^backbone\.model\.language_model\.lm_head\.",
        r"^action_head\.mask_token$",
    ]

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__(config)
        config.validate_architecture()
        self.backbone = EagleBackbone(config)
        self.action_head = Gr00tN1d6ActionHead(config)
        self.post_init()
        self._bf16_weights: bool = False
        self._trainable_params_fp32: bool = True
        self.apply_trainable_flags()

    # --- weights ----------------------------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        # transformers.initialization functions skip tensors already loaded by from_pretrained.
        # Linear/Embedding/LayerNorm: transformers' defaults (normal(0.02), ones/zeros); the SigLIP2 and Qwen3
        # sub-models are dispatched to their own _init_weights by transformers.
        super()._init_weights(module)
        if isinstance(module, CategorySpecificLinear):
            init_category_specific_linear(module)
        elif isinstance(module, Gr00tN1d6ActionHead) and module.mask_token is not None:
            init.normal_(module.mask_token, mean=0.0, std=0.02)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.model.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.model.language_model.set_input_embeddings(value)

    # --- trainable parameters (upstream §6.1 / §6.4) --------------------------------------------------------------------
    def apply_trainable_flags(self) -> None:
        """Set requires_grad from the config's tune_* flags; frozen modules go to eval() in train()."""
        cfg = self.config
        vlm = self.backbone.model
        vlm.vision_model.requires_grad_(cfg.tune_visual)
        vlm.mlp1.requires_grad_(cfg.tune_visual)
        set_llm_trainable(vlm.language_model, cfg)
        self.action_head.apply_trainable_flags(cfg)
        self.train_lora_parts_through_adapters()
        if getattr(self, "_bf16_weights", False):
            self._cast_backbone_weights()  # a parameter that became (un)trainable changes storage dtype
        self.train(self.training)  # re-applies eval() to whatever is frozen now

    # --- the parts LoRA can adapt (model/lora.py) -------------------------------------------------------------------
    def part_modules(self, part: str) -> tuple[nn.Module, ...]:
        """Everything a LoRA-adapted part freezes: the scope of its tune_* flag."""
        vlm = self.backbone.model
        if part == "llm":
            return (vlm.language_model,)
        if part == "visual":
            return (vlm.vision_model, vlm.mlp1)
        if part == "dit":
            return (self.action_head.model,)
        raise ValueError(f"unknown model part {part!r}; known: llm, visual, dit")

    def lora_layers(self, part: str) -> tuple[str, nn.ModuleList]:
        """(module name prefix, layers) of a part LoRA adapts: the kept LLM layers, the SigLIP2 encoder layers or
        the DiT blocks."""
        if part == "llm":
            return "backbone.model.language_model.model.layers", self.backbone.model.language_model.layers
        if part == "visual":
            return ("backbone.model.vision_model.vision_model.encoder.layers",
                    self.backbone.model.vision_model.vision_model.encoder.layers)
        if part == "dit":
            return "action_head.model.transformer_blocks", self.action_head.model.transformer_blocks
        raise ValueError(f"unknown model part {part!r}; known: llm, visual, dit")

    # --- bf16 weights with fp32 trainable parameters (upstream load_bf16 + backbone_trainable_params_fp32) ----------
    def apply_bf16_weights(self, enable: bool = True, trainable_params_fp32: bool | None = None) -> dict[str, int]:
        """Store the backbone in bf16 and keep its trainable parameters (and the whole action head) in fp32.

        Upstream builds the Eagle backbone with ``torch_dtype=bfloat16`` when ``load_bf16`` and then casts every
        trainable backbone parameter back to fp32 when ``backbone_trainable_params_fp32``; the action head is built in
        fp32. This does the same to an existing model (``trainable_params_fp32`` defaults to the config's
        ``backbone_trainable_params_fp32``) and records both flags in the config. Later ``set_trainable`` calls
        re-apply it. ``enable=False`` casts the backbone back to fp32. Returns the parameter count per dtype.

        Use it on CUDA with bf16 autocast (the frozen bf16 backbone halves its memory and the optimizer only sees fp32
        parameters). Without autocast the forward pass still works: floating inputs of the LLM layers, the vision
        tower, ``mlp1`` and the action head are cast to that module's weight dtype.
        """
        if trainable_params_fp32 is None:
            trainable_params_fp32 = bool(self.config.backbone_trainable_params_fp32)
        self._bf16_weights = bool(enable)
        self._trainable_params_fp32 = bool(trainable_params_fp32)
        self.config.load_bf16 = bool(enable)
        self.config.backbone_trainable_params_fp32 = bool(trainable_params_fp32)
        self._cast_backbone_weights()
        counts: dict[str, int] = {}
        for p in self.parameters():
            key = str(p.dtype).replace("torch.", "")
            counts[key] = counts.get(key, 0) + p.numel()
        return counts

    def _cast_backbone_weights(self) -> None:
        for param in self.backbone.parameters():
            if not self._bf16_weights:
                want = torch.float32
            elif param.requires_grad and self._trainable_params_fp32:
                want = torch.float32
            else:
                want = torch.bfloat16
            if param.dtype != want:
                param.grad = None
                param.data = param.data.to(want)

    # --- gradient checkpointing -------------------------------------------------------------------------------------
    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, **kwargs):
        # Non-reentrant checkpointing (transformers' default) gives parameter gradients even when a layer's input
        # needs none (trainable top LLM layers above frozen ones). Reentrant would silently drop them.
        keywords = getattr(gradient_checkpointing_func, "keywords", None) or {}
        if enable and keywords.get("use_reentrant", False):
            raise ValueError("Gr00tN1d6 supports only non-reentrant gradient checkpointing (use_reentrant=False)")
        if gradient_checkpointing_func is None:
            return super()._set_gradient_checkpointing(enable=enable, **kwargs)
        return super()._set_gradient_checkpointing(
            enable=enable, gradient_checkpointing_func=gradient_checkpointing_func, **kwargs
        )

    def enable_input_require_grads(self):
        # Not needed with non-reentrant checkpointing, and hooking the embeddings would make autograd run backward
        # through the frozen vision tower and lower LLM layers for nothing.
        self._require_grads_hooks = []

    # --- forward / inference ----------------------------------------------------------------------------------------
    @property
    def head_dtype(self) -> torch.dtype:
        """dtype of the action head's weights (fp32 unless the whole model was cast)."""
        return self.action_head.vlln.weight.dtype if self.config.use_vlln else next(self.action_head.parameters()).dtype

    def _backbone(self, input_ids, attention_mask, pixel_values, image_sizes=None) -> dict[str, torch.Tensor]:
        device = self.device
        out = self.backbone(
            input_ids.to(device),
            attention_mask.to(device),
            None if pixel_values is None else pixel_values.to(device),
            image_sizes,  # read on the host: it only says how to crop the padded images
        )
        out["backbone_features"] = out["backbone_features"].to(self.head_dtype)  # bf16 backbone -> fp32 head
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
        image_sizes: torch.Tensor | None = None,
    ) -> Gr00tN1d6Output:
        """Flow-matching training loss. Noise and time are drawn from torch's global RNG (seed it to reproduce).
        ``image_sizes`` (N_images, 2): the true sizes of zero-padded images of different sizes (the collator's)."""
        backbone_output = self._backbone(input_ids, attention_mask, pixel_values, image_sizes)
        out = self.head_loss(backbone_output, state, action, action_mask, embodiment_id)
        return Gr00tN1d6Output(loss=out["loss"], action_loss=out["action_loss"], action_mask=out["action_mask"])

    @torch.no_grad()
    def get_action(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        state: torch.Tensor,
        embodiment_id: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        action: torch.Tensor | None = None,  # accepted (and ignored) so a training batch can be passed as is
        action_mask: torch.Tensor | None = None,
        num_inference_timesteps: int | None = None,
        generator: torch.Generator | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sample an action chunk: ``{"action_pred": (B, action_horizon, max_action_dim)}`` (normalised, padded)."""
        with self.eval_mode():
            backbone_output = self._backbone(input_ids, attention_mask, pixel_values, image_sizes)
            pred = self.action_head.get_action(
                backbone_output,
                state=self._float(state),
                embodiment_id=embodiment_id.to(self.device).long(),
                num_inference_timesteps=num_inference_timesteps,
                generator=generator,
            )
        return {"action_pred": pred}

