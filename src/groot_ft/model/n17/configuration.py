"""`Gr00tN1d7Config`: upstream GR00T N1.7 field names and defaults, plus the nested Qwen3-VL backbone config.

Upstream (``gr00t/configs/model/gr00t_n1d7.py``) names its vision-language backbone by hub id (``model_name``,
``nvidia/Cosmos-Reason2-2B``, a Qwen3-VL) and loads it with ``Qwen3VLForConditionalGeneration.from_pretrained``. Here
the backbone is described by one nested transformers config, ``vlm_config`` (a ``Qwen3VLConfig``). A released
``config.json`` has none: it is then taken from :data:`KNOWN_BACKBONES` by ``model_name`` (the Cosmos-Reason2-2B
geometry), so a local copy of ``nvidia/GR00T-N1.7-3B`` parses as is; any other ``model_name`` needs an explicit
``vlm_config``.

Field defaults are upstream's *class* defaults (``select_layer`` 12, a 16-block DiT, no VL self-attention). The
released 3B checkpoint overrides them in its ``config.json`` (16 kept LLM layers, a 32-block DiT, a 4-layer VL
self-attention block); the ``n1.7-3b`` preset (:mod:`.presets`) holds those. Fields the network does not act on are
kept so the file round-trips and are marked "recorded only" (most belong to the processor, not yet built).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from transformers import PretrainedConfig, Qwen3VLConfig
from transformers.configuration_utils import SubConfigSpec

# The checks that read the same fields as N1.6's, with the same messages, and upstream's to_filtered_dict (the same
# augmentation keys; AUGMENTATION_KEYS stays importable from here).
from ..configuration import (
    AUGMENTATION_KEYS,
    block_and_dropout_errors,
    dit_sequence_errors,
    filtered_config_dict,
    llm_layer_errors,
)
from ..configuration import default_diffusion_model_cfg as n16_default_diffusion_model_cfg  # same DiT, other depth


def default_diffusion_model_cfg() -> dict[str, Any]:
    """N1.6's DiT settings (32 heads x 48 = 1536 wide) with upstream N1.7's class default of 16 blocks; the released
    3B has 32."""
    return {**n16_default_diffusion_model_cfg(), "num_layers": 16}


COSMOS_REASON2_2B = "nvidia/Cosmos-Reason2-2B"

# nvidia/Cosmos-Reason2-2B's config.json (a Qwen3-VL-2B layout), as LeRobot 0.6.1 hard-codes it
# (groot_n1_7.py, _cosmos_reason2_qwen3_vl_config) and the reference lists it. transformers 5 spells the rotary
# settings `rope_parameters` (the hub file's `rope_scaling` + `rope_theta`). The full 28 layers are described here;
# the model keeps the first `select_layer`.
COSMOS_REASON2_2B_CONFIG: dict[str, Any] = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": True,
    "text_config": {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 6144,
        "max_position_embeddings": 262144,
        "num_attention_heads": 16,
        "num_hidden_layers": 28,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
        "tie_word_embeddings": True,
        "vocab_size": 151936,
    },
    "vision_config": {
        "deepstack_visual_indexes": [5, 11, 17],
        "depth": 24,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 1024,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 4096,
        "num_heads": 16,
        "num_position_embeddings": 2304,
        "out_hidden_size": 2048,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}

KNOWN_BACKBONES: dict[str, dict[str, Any]] = {COSMOS_REASON2_2B: COSMOS_REASON2_2B_CONFIG}

# Upstream's VL self-attention keys; anything else in vl_self_attention_cfg is rejected so a typo is not ignored.
VL_SELF_ATTENTION_KEYS = {
    "num_layers",
    "num_attention_heads",
    "attention_head_dim",
    "dropout",
    "final_dropout",
    "positional_embeddings",
    "activation_fn",
    "attention_bias",
}


class Gr00tN1d7Config(PretrainedConfig):
    model_type = "Gr00tN1d7"
    sub_configs_defaults = {
        "vlm_config": SubConfigSpec(Qwen3VLConfig, init_kwargs=COSMOS_REASON2_2B_CONFIG),
    }

    # --- identity -------------------------------------------------------------------------------------------------
    model_dtype: str = "bfloat16"  # recorded only: weights are materialised in fp32

    # --- backbone ---------------------------------------------------------------------------------------------------
    model_name: str = COSMOS_REASON2_2B  # names the backbone geometry when vlm_config is absent
    backbone_model_type: str = "qwen"  # recorded only
    model_revision: str | None = None  # recorded only
    tune_top_llm_layers: int = 0
    backbone_embedding_dim: int = 2048
    tune_llm: bool = False
    tune_visual: bool = False
    select_layer: int = 12  # LLM layers kept (the released 3B: 16)
    reproject_vision: bool = False  # recorded only
    use_flash_attention: bool = True  # recorded only (SDPA is used)
    load_bf16: bool = False  # recorded only for now (N1.7 loads the backbone in fp32 by default)
    backbone_trainable_params_fp32: bool = True  # recorded only
    vlm_config: dict | PretrainedConfig | None = None

    # --- processing (the N1.7 processor's; recorded only until it exists) -------------------------------------------
    image_crop_size: list[int] | None = dataclasses.field(default_factory=lambda: [230, 230])
    image_target_size: list[int] | None = dataclasses.field(default_factory=lambda: [256, 256])
    shortest_image_edge: int | None = None
    crop_fraction: float | None = None
    random_rotation_angle: int | None = None
    color_jitter_params: dict | None = None
    use_albumentations_transforms: bool = True
    letter_box_transform: bool = False
    extra_augmentation_config: dict | None = None
    formalize_language: bool = True
    apply_sincos_state_encoding: bool = False
    use_percentiles: bool = True
    use_relative_action: bool = False
    exclude_state: bool = False
    use_mean_std: bool = False

    # --- action head ------------------------------------------------------------------------------------------------
    max_state_dim: int = 132
    max_action_dim: int = 132
    action_horizon: int = 40  # padded horizon (upstream fails above 40)
    strict_action_padding_mask: bool = False  # recorded only (decides the processor's action_mask)
    hidden_size: int = 1024
    input_embedding_dim: int = 1536
    state_history_length: int = 1  # consecutive states concatenated into the one state token
    add_pos_embed: bool = True
    attn_dropout: float = 0.2  # recorded only (the DiT uses diffusion_model_cfg["dropout"])
    use_vlln: bool = True
    max_seq_len: int = 1024
    use_alternate_vl_dit: bool = True
    attend_text_every_n_blocks: int = 2
    diffusion_model_cfg: dict = dataclasses.field(default_factory=default_diffusion_model_cfg)
    # None or num_layers 0: no VL self-attention (upstream's class default); the released 3B has 4 layers.
    vl_self_attention_cfg: dict | None = None

    # --- flow matching ----------------------------------------------------------------------------------------------
    num_inference_timesteps: int = 4
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    num_timestep_buckets: int = 1000

    # --- training flags ---------------------------------------------------------------------------------------------
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    tune_vlln: bool = True  # vlln and the VL self-attention block
    state_dropout_prob: float = 0.8  # upstream's model default (its fine-tuning CLI passes 0.2)
    max_num_embodiments: int = 32

    def __post_init__(self, **kwargs):
        # A released config.json carries no vlm_config: take it from the backbone it names.
        if getattr(self, "vlm_config", None) is None:
            known = KNOWN_BACKBONES.get(self.model_name)
            if known is None:
                raise ValueError(
                    f"Gr00tN1d7Config without vlm_config needs a known backbone model_name "
                    f"({', '.join(KNOWN_BACKBONES)}), got {self.model_name!r}"
                )
            self.vlm_config = copy.deepcopy(known)
        super().__post_init__(**kwargs)  # builds the Qwen3VLConfig from a dict
        # A partial dict (e.g. only num_layers) keeps upstream's values for the other keys.
        self.diffusion_model_cfg = {**default_diffusion_model_cfg(), **dict(self.diffusion_model_cfg or {})}
        if self.vl_self_attention_cfg is not None:
            self.vl_self_attention_cfg = dict(self.vl_self_attention_cfg)
        self.validate_architecture()

    # ---------------------------------------------------------------------------------------------------------------
    @property
    def num_vl_self_attention_layers(self) -> int:
        return int((self.vl_self_attention_cfg or {}).get("num_layers", 0))

    def validate_architecture(self) -> None:
        """Fail at config time on combinations the network cannot be built from."""
        errors = []
        dit = self.diffusion_model_cfg
        text, vision = self.vlm_config.text_config, self.vlm_config.vision_config
        if dit["num_attention_heads"] * dit["attention_head_dim"] != self.input_embedding_dim:
            errors.append(
                f"DiT width num_attention_heads*attention_head_dim must equal input_embedding_dim "
                f"{self.input_embedding_dim}"
            )
        if dit["output_dim"] != self.hidden_size:
            errors.append(f"diffusion_model_cfg output_dim {dit['output_dim']} must equal hidden_size {self.hidden_size}")
        if self.backbone_embedding_dim != text.hidden_size:
            errors.append(
                f"backbone_embedding_dim {self.backbone_embedding_dim} must equal the LLM width {text.hidden_size}"
            )
        if vision.out_hidden_size != text.hidden_size:
            errors.append(f"vision out_hidden_size {vision.out_hidden_size} must equal the LLM width {text.hidden_size}")
        errors += llm_layer_errors(self, text.num_hidden_layers)
        mrope = (text.rope_parameters or {}).get("mrope_section")
        if mrope is not None and sum(mrope) != text.head_dim // 2:
            errors.append(f"mrope_section {mrope} must sum to head_dim/2 = {text.head_dim // 2}")
        vl = self.vl_self_attention_cfg
        if vl is not None and vl.get("num_layers", 0) > 0:
            unknown = sorted(set(vl) - VL_SELF_ATTENTION_KEYS)
            if unknown:
                errors.append(f"vl_self_attention_cfg has unknown keys {unknown}")
            width = vl.get("num_attention_heads", 8) * vl.get("attention_head_dim", 64)
            if width != self.backbone_embedding_dim:
                errors.append(
                    f"VL self-attention width num_attention_heads*attention_head_dim = {width} must equal "
                    f"backbone_embedding_dim {self.backbone_embedding_dim}"
                )
            if vl.get("positional_embeddings") is not None:
                errors.append("vl_self_attention_cfg positional_embeddings must be null (upstream's checkpoints)")
            if vl.get("activation_fn", "gelu-approximate") != "gelu-approximate" or not vl.get("attention_bias", True):
                errors.append("vl_self_attention_cfg supports only activation_fn gelu-approximate with attention bias")
        errors += dit_sequence_errors(self)
        if self.state_history_length < 1:
            errors.append("state_history_length must be >= 1")
        image_token_id = self.vlm_config.image_token_id
        if not 0 <= image_token_id < text.vocab_size:
            errors.append(f"backbone image_token_id {image_token_id} outside vocab {text.vocab_size}")
        errors += block_and_dropout_errors(self)
        if errors:
            raise ValueError("invalid Gr00tN1d7Config: " + "; ".join(errors))

    def to_filtered_dict(self, exclude_augment: bool = True) -> dict[str, Any]:
        """Upstream's helper: the config dict without the image-augmentation keys."""
        return filtered_config_dict(self, exclude_augment)
