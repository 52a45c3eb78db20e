"""`Gr00tN1d6Config`: upstream GR00T N1.6 field names and defaults, plus the nested backbone configs.

Upstream's config (``gr00t/configs/model/gr00t_n1d6.py``) names the Eagle VLM by hub id (``model_name``) and builds it
from a vendored config. This re-implementation has no hub access, so the backbone is described by two nested
transformers configs: ``vision_config`` (``Siglip2VisionConfig``) and ``text_config`` (``Qwen3Config``). An upstream
``config.json`` has neither: they are then derived from ``model_name`` through :data:`KNOWN_BACKBONES` (the vendored
``nvidia/Eagle-Block2A-2B-v2`` geometry), so a local copy of an upstream checkpoint loads as is. Fields that upstream
keeps but this implementation does not act on are kept for config-file fidelity and are marked "recorded only".

transformers 5 configs are dataclasses: fields are class annotations, ``__post_init__`` validates.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from transformers import PretrainedConfig, Qwen3Config, Siglip2VisionConfig
from transformers.configuration_utils import SubConfigSpec


def default_diffusion_model_cfg() -> dict[str, Any]:
    """Upstream's DiT settings (32 blocks of 32 heads x 48 = 1536 wide)."""
    return {
        "positional_embeddings": None,
        "num_layers": 32,
        "num_attention_heads": 32,
        "attention_head_dim": 48,
        "norm_type": "ada_norm",
        "dropout": 0.2,
        "final_dropout": True,
        "output_dim": 1024,
        "interleave_self_attention": True,
    }


# Upstream Eagle-Block2A-2B-v2 geometry: SigLIP2 (so400m: 27 layers, 1152 wide, patch 14) and a Qwen3-1.7B LLM.
EAGLE_VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "patch_size": 14,
    "num_patches": 256,  # 16 x 16 learned position grid
    "num_channels": 3,
    "vision_use_head": False,  # Eagle takes patch features, not the pooled head
}
EAGLE_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 151680,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "tie_word_embeddings": True,
}

EAGLE_BACKBONE = "nvidia/Eagle-Block2A-2B-v2"

# Backbones an upstream config.json may name in model_name, with the sub-configs and image-token settings of their
# vendored config (gr00t/model/modules/nvidia/Eagle-Block2A-2B-v2/config.json: siglip2_vision_model, select_layer -1,
# downsample_ratio 0.5, image_token_index 151669, Qwen3ForCausalLM text_config).
KNOWN_BACKBONES: dict[str, dict[str, Any]] = {
    EAGLE_BACKBONE: {
        "vision_config": EAGLE_VISION_DEFAULTS,
        "text_config": EAGLE_TEXT_DEFAULTS,
        "image_token_index": 151669,
        "downsample_ratio": 0.5,
    },
}

# Keys upstream's ``to_filtered_dict(exclude_augment=True)`` drops.
AUGMENTATION_KEYS = (
    "random_rotation_angle",
    "color_jitter_params",
    "use_albumentations_transforms",
    "formalize_language",
    "image_crop_size",
    "image_target_size",
    "shortest_image_edge",
    "crop_fraction",
)


# --- pieces both families' configs use (N1.7: n17/configuration.py) ---------------------------------------------------
# Only the checks that read the same fields with the same messages are shared; each family keeps its own order of
# checks (it decides the order of a combined error message) and its own backbone-specific ones.
def llm_layer_errors(config: PretrainedConfig, num_hidden_layers: int) -> list[str]:
    """select_layer within the LLM's layers, tune_top_llm_layers within the kept ones."""
    errors = []
    if not 1 <= config.select_layer <= num_hidden_layers:
        errors.append(f"select_layer {config.select_layer} must be in [1, {num_hidden_layers}]")
    if not 0 <= config.tune_top_llm_layers <= config.select_layer:
        errors.append(f"tune_top_llm_layers {config.tune_top_llm_layers} must be in [0, select_layer]")
    return errors


def dit_sequence_errors(config: PretrainedConfig) -> list[str]:
    """The alternate VL DiT needs interleaved self-attention; the action horizon fits the position table."""
    errors = []
    dit = config.diffusion_model_cfg
    if config.use_alternate_vl_dit and not dit.get("interleave_self_attention", True):
        errors.append("use_alternate_vl_dit needs diffusion_model_cfg interleave_self_attention=True")
    if config.action_horizon > config.max_seq_len:
        errors.append(f"action_horizon {config.action_horizon} exceeds max_seq_len {config.max_seq_len}")
    return errors


def block_and_dropout_errors(config: PretrainedConfig) -> list[str]:
    """attend_text_every_n_blocks >= 1 and state_dropout_prob a probability."""
    errors = []
    if config.attend_text_every_n_blocks < 1:
        errors.append("attend_text_every_n_blocks must be >= 1")
    if not 0.0 <= config.state_dropout_prob <= 1.0:
        errors.append("state_dropout_prob must be in [0, 1]")
    return errors


def filtered_config_dict(config: PretrainedConfig, exclude_augment: bool = True) -> dict[str, Any]:
    """Upstream's ``to_filtered_dict``: the config dict without the image-augmentation keys."""
    out = config.to_dict()
    if exclude_augment:
        for key in AUGMENTATION_KEYS:
            out.pop(key, None)
    return out


class Gr00tN1d6Config(PretrainedConfig):
    model_type = "Gr00tN1d6"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(Siglip2VisionConfig, init_kwargs=EAGLE_VISION_DEFAULTS),
        "text_config": SubConfigSpec(Qwen3Config, init_kwargs=EAGLE_TEXT_DEFAULTS),
    }

    # --- identity -------------------------------------------------------------------------------------------------
    # Recorded only: weights are materialised in fp32; load_bf16 below is applied by Gr00tN1d6.apply_bf16_weights().
    model_dtype: str = "bfloat16"

    # --- backbone ---------------------------------------------------------------------------------------------------
    model_name: str = "nvidia/Eagle-Block2A-2B-v2"  # recorded only (no hub access; geometry is in the sub-configs)
    backbone_model_type: str = "eagle"  # recorded only
    model_revision: str | None = None  # recorded only
    tune_top_llm_layers: int = 4
    backbone_embedding_dim: int = 2048
    tune_llm: bool = False
    tune_visual: bool = False
    select_layer: int = 16  # the LLM is truncated to this many layers
    reproject_vision: bool = False  # recorded only
    use_flash_attention: bool = True  # recorded only (SDPA is used)
    load_bf16: bool = True  # frozen backbone weights in bf16: see Gr00tN1d6.apply_bf16_weights / create_model
    collator_overwrite_image_inputs: bool = False  # recorded only
    eagle_collator: bool = False  # recorded only
    backbone_trainable_params_fp32: bool = True  # with load_bf16: trainable backbone params stay fp32
    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    image_token_index: int = 151669  # id of <IMG_CONTEXT>; create_model() aligns it with the tokenizer
    # None (upstream): each image keeps its aspect ratio and is resized to multiples of image_factor
    # (patch_size / downsample_ratio = 28 px for Eagle) by upstream's smart_resize, one <IMG_CONTEXT> per factor^2
    # pixels. An int: every image is squashed to that square side (this project's small presets).
    image_size: int | None = None
    downsample_ratio: float = 0.5  # pixel shuffle factor between vision tower and mlp1
    num_image_tokens: int | None = None  # <IMG_CONTEXT> tokens per image for a square image_size; derived when None

    # --- processing (used by the processor, not by the network) -----------------------------------------------------
    image_crop_size: list[int] | None = None
    image_target_size: list[int] | None = None
    shortest_image_edge: int = 256
    crop_fraction: float = 0.95
    random_rotation_angle: int | None = None
    color_jitter_params: dict | None = None
    use_albumentations_transforms: bool = True
    formalize_language: bool = True
    apply_sincos_state_encoding: bool = False
    use_relative_action: bool = False

    # --- action head ------------------------------------------------------------------------------------------------
    max_state_dim: int = 29
    max_action_dim: int = 29
    action_horizon: int = 16  # padded (maximum) action horizon
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    add_pos_embed: bool = True
    attn_dropout: float = 0.2  # recorded only (the DiT uses diffusion_model_cfg["dropout"])
    use_vlln: bool = True
    max_seq_len: int = 1024
    use_alternate_vl_dit: bool = True
    attend_text_every_n_blocks: int = 2
    diffusion_model_cfg: dict = dataclasses.field(default_factory=default_diffusion_model_cfg)

    # --- flow matching ----------------------------------------------------------------------------------------------
    num_inference_timesteps: int = 4
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    num_timestep_buckets: int = 1000

    # --- training flags ---------------------------------------------------------------------------------------------
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    tune_vlln: bool = True
    state_dropout_prob: float = 0.0
    state_additive_noise_scale: float = 0.0
    max_num_embodiments: int = 32

    def __post_init__(self, **kwargs):
        # An upstream config.json carries no sub-configs: take them from the backbone it names.
        missing = [name for name in ("vision_config", "text_config") if getattr(self, name, None) is None]
        if missing:
            known = KNOWN_BACKBONES.get(self.model_name)
            if known is None:
                raise ValueError(
                    f"Gr00tN1d6Config without {' / '.join(missing)} needs a known backbone model_name "
                    f"({', '.join(KNOWN_BACKBONES)}), got {self.model_name!r}"
                )
            for name in missing:
                setattr(self, name, copy.deepcopy(known[name]))
        super().__post_init__(**kwargs)  # builds vision_config / text_config objects from dicts
        # A partial dict (e.g. only num_layers) keeps upstream's values for the other keys.
        self.diffusion_model_cfg = {**default_diffusion_model_cfg(), **dict(self.diffusion_model_cfg or {})}
        if self.num_image_tokens is None:
            self.num_image_tokens = self.derived_num_image_tokens()
        self.validate_architecture()

    # ---------------------------------------------------------------------------------------------------------------
    @property
    def image_factor(self) -> int:
        """Pixels per image-token side: a vision patch times the pixel-shuffle factor (28 for Eagle)."""
        return self.vision_config.patch_size * round(1.0 / self.downsample_ratio)

    @property
    def patches_per_side(self) -> int | None:
        return None if self.image_size is None else self.image_size // self.vision_config.patch_size

    def derived_num_image_tokens(self) -> int | None:
        """Tokens per image for a square image_size; None when each image's own size decides."""
        side = self.patches_per_side
        return None if side is None else int(round(side * self.downsample_ratio)) ** 2

    def validate_architecture(self) -> None:
        """Fail at config time on combinations the network cannot be built from."""
        errors = []
        dit = self.diffusion_model_cfg
        inner = dit["num_attention_heads"] * dit["attention_head_dim"]
        if inner != self.input_embedding_dim:
            errors.append(
                f"DiT width num_attention_heads*attention_head_dim = {inner} must equal input_embedding_dim "
                f"{self.input_embedding_dim}"
            )
        if self.backbone_embedding_dim != self.text_config.hidden_size:
            errors.append(
                f"backbone_embedding_dim {self.backbone_embedding_dim} must equal text_config.hidden_size "
                f"{self.text_config.hidden_size}"
            )
        errors += llm_layer_errors(self, self.text_config.num_hidden_layers)
        patch = self.vision_config.patch_size
        scale = 1.0 / self.downsample_ratio
        side = self.patches_per_side
        if abs(scale - round(scale)) > 1e-6:
            errors.append(f"downsample_ratio {self.downsample_ratio} must be 1/n for an integer n")
        elif self.image_size is None:
            if self.num_image_tokens is not None:
                errors.append("num_image_tokens must be null when image_size is null (each image's size decides)")
        elif self.image_size % patch:
            errors.append(f"image_size {self.image_size} must be a multiple of the patch size {patch}")
        elif side % round(scale):
            errors.append(f"{side} patches per side cannot be pixel-shuffled by downsample_ratio {self.downsample_ratio}")
        elif self.num_image_tokens != self.derived_num_image_tokens():
            errors.append(
                f"num_image_tokens {self.num_image_tokens} disagrees with image_size/patch/downsample "
                f"({self.derived_num_image_tokens()})"
            )
        grid = round(self.vision_config.num_patches**0.5)
        if grid * grid != self.vision_config.num_patches:
            errors.append(f"vision_config.num_patches {self.vision_config.num_patches} must be a square number")
        if dit["output_dim"] != self.hidden_size:
            errors.append(
                f"diffusion_model_cfg output_dim {dit['output_dim']} must equal hidden_size {self.hidden_size} "
                "(upstream's action decoder reads hidden_size features)"
            )
        errors += dit_sequence_errors(self)
        if not 0 <= self.image_token_index < self.text_config.vocab_size:
            errors.append(f"image_token_index {self.image_token_index} outside vocab {self.text_config.vocab_size}")
        errors += block_and_dropout_errors(self)
        if errors:
            raise ValueError("invalid Gr00tN1d6Config: " + "; ".join(errors))

    def to_filtered_dict(self, exclude_augment: bool = True) -> dict[str, Any]:
        """Upstream's helper: the config dict without the image-augmentation keys."""
        return filtered_config_dict(self, exclude_augment)
