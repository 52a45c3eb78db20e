"""Named N1.7 configurations.

- ``n1.7-3b``: the released ``nvidia/GR00T-N1.7-3B`` geometry: Cosmos-Reason2-2B (Qwen3-VL: 24-block vision tower,
  28-layer LLM) truncated to 16 LLM layers, a 4-block VL self-attention (32 heads x 64), a 32-block DiT, padding
  132 / 132 / 40. 3,144,016,000 parameters (~12.6 GB in fp32): build it on ``torch.device("meta")`` to inspect.
  Values that differ from upstream's class defaults are those of the released config as LeRobot 0.6.1 mirrors it
  (``GR00T_N1_7_DEFAULTS``: ``select_layer`` 16, 32 DiT layers, ``vl_self_attention_cfg``, ``state_dropout_prob``
  0.2, ``use_flash_attention`` false).
- ``n1.7-tiny``: the same structure at toy widths for CPU tests (2.34 M parameters, most of them in the 32
  embodiment slots of the action encoder): a 2-block vision tower with 8-px patches and one deepstack merger, a
  4-layer LLM truncated to 3, 2 VL self-attention blocks, a 4-block DiT, 32 / 32 / 16 padding, on the 263-token
  byte tokenizer of :mod:`.tokenizer` (Qwen3-VL's control-token strings; ``<|image_pad|>`` is the image token),
  with 48-px frames (9 image tokens each).

Both carry the N1.7 processor's image settings (``shortest_image_edge``, ``crop_fraction`` 0.95), which the shards
and the processor read for a preset base model.
"""

from __future__ import annotations

import copy
from typing import Any

from ..presets import build_preset
from .configuration import COSMOS_REASON2_2B_CONFIG, Gr00tN1d7Config
from .tokenizer import (
    TINY_IMAGE_TOKEN_ID,
    TINY_VIDEO_TOKEN_ID,
    TINY_VISION_END_ID,
    TINY_VISION_START_ID,
    TINY_VOCAB_SIZE,
)

RELEASED_3B_PARAMETERS = 3_144_016_000


def _n17_3b() -> dict[str, Any]:
    return {
        "vlm_config": copy.deepcopy(COSMOS_REASON2_2B_CONFIG),
        "select_layer": 16,
        "tune_top_llm_layers": 0,
        "use_flash_attention": False,
        "state_dropout_prob": 0.2,
        "shortest_image_edge": 256,
        "crop_fraction": 0.95,
        "diffusion_model_cfg": {"num_layers": 32},
        "vl_self_attention_cfg": {
            "positional_embeddings": None,
            "num_layers": 4,
            "num_attention_heads": 32,
            "attention_head_dim": 64,
            "dropout": 0.2,
            "final_dropout": True,
        },
    }


def _n17_tiny() -> dict[str, Any]:
    return {
        "model_name": "groot-ft/n1.7-tiny",
        "vlm_config": {
            # The tiny byte tokenizer's ids of Qwen3-VL's control tokens.
            "image_token_id": TINY_IMAGE_TOKEN_ID,
            "vision_start_token_id": TINY_VISION_START_ID,
            "vision_end_token_id": TINY_VISION_END_ID,
            "video_token_id": TINY_VIDEO_TOKEN_ID,
            "tie_word_embeddings": True,
            "text_config": {
                "vocab_size": TINY_VOCAB_SIZE + 1,  # 264: one id to spare
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 4,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-6,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": [4, 2, 2],  # sums to head_dim / 2, as [24, 20, 20] for 128
                    "mrope_interleaved": True,
                },
                "tie_word_embeddings": True,
                "pad_token_id": 0,
            },
            "vision_config": {
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "in_channels": 3,
                "patch_size": 8,
                "temporal_patch_size": 2,
                "spatial_merge_size": 2,
                "num_position_embeddings": 16,  # a 4 x 4 learned grid, interpolated to each image's grid
                "out_hidden_size": 64,
                "deepstack_visual_indexes": [0],
            },
        },
        "select_layer": 3,
        "backbone_embedding_dim": 64,
        "max_state_dim": 32,
        "max_action_dim": 32,
        "action_horizon": 16,
        "hidden_size": 64,
        "input_embedding_dim": 96,
        "max_seq_len": 64,
        "state_dropout_prob": 0.2,
        "shortest_image_edge": 48,
        "crop_fraction": 0.95,
        "diffusion_model_cfg": {
            "num_layers": 4,
            "num_attention_heads": 4,
            "attention_head_dim": 24,
            "dropout": 0.1,
            "output_dim": 64,
        },
        "vl_self_attention_cfg": {
            "positional_embeddings": None,
            "num_layers": 2,
            "num_attention_heads": 4,
            "attention_head_dim": 16,
            "dropout": 0.1,
            "final_dropout": True,
        },
        "model_dtype": "float32",
        "use_flash_attention": False,
    }


N17_PRESETS = {"n1.7-3b": _n17_3b, "n1.7-tiny": _n17_tiny}


def n17_preset(name: str, **overrides) -> Gr00tN1d7Config:
    """Config for a named N1.7 preset with keyword overrides of its fields.

    Dict-valued fields (``diffusion_model_cfg``, ``vl_self_attention_cfg``, ``vlm_config``) are merged key by
    key into the preset's (one level deep), so ``n17_preset("n1.7-tiny", diffusion_model_cfg={"num_layers": 2})``
    keeps the tiny widths.
    """
    return build_preset(N17_PRESETS, name, Gr00tN1d7Config, overrides, family="N1.7")
