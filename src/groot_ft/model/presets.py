"""Named model configurations.

- ``tiny``: a ~2 M parameter model with N1.6's structure, sized so a CPU step (8 samples x 2 images of 48 px, ~20 text
  tokens, horizon 16) takes well under 0.3 s on one core. Used by the demo workflow and CI.
- ``mid``: ~0.3 B parameters with the same structure, for timing the code paths at a size between the two (a
  SigLIP2-base-like tower at 224 px, a 6-of-12-layer 1024-wide Qwen3, an 8-block 768-wide DiT, 64-dim padding).
- ``n1.6-3b``: upstream's sizes (Eagle SigLIP2 + Qwen3-1.7B truncated to 16 layers, 32-block DiT, and the shipped
  checkpoint's padding sizes 50 / 128 / 128) and upstream's image geometry (native aspect ratio, one token per 28 x 28
  pixels: 81 tokens for a 256 x 256 frame). Building it materialises ~3 B fp32 parameters (~12 GB); build it on
  ``torch.device("meta")`` to inspect shapes or count parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .configuration import EAGLE_TEXT_DEFAULTS, EAGLE_VISION_DEFAULTS, Gr00tN1d6Config
from .tokenizer import IMG_CONTEXT_ID, VOCAB_SIZE


def _tiny() -> dict[str, Any]:
    image_size, patch = 48, 8  # 6 x 6 patches -> pixel shuffle -> 3 x 3 = 9 tokens per image
    return {
        "vision_config": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": patch,
            "num_patches": (image_size // patch) ** 2,
            "num_channels": 3,
            "vision_use_head": False,
        },
        "text_config": {
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "tie_word_embeddings": False,
            "pad_token_id": 0,
        },
        "select_layer": 3,  # 4-layer LLM truncated to 3, as upstream truncates 28 to 16
        "tune_top_llm_layers": 1,
        "backbone_embedding_dim": 64,
        "image_size": image_size,
        "image_token_index": IMG_CONTEXT_ID,
        "shortest_image_edge": image_size,
        "max_state_dim": 32,
        "max_action_dim": 32,
        "action_horizon": 16,
        "hidden_size": 64,
        "input_embedding_dim": 96,
        "max_seq_len": 128,
        "diffusion_model_cfg": {
            "num_layers": 4,
            "num_attention_heads": 4,
            "attention_head_dim": 24,
            "dropout": 0.1,
            "output_dim": 64,
        },
        "model_dtype": "float32",
        "load_bf16": False,
        "use_flash_attention": False,
    }


def _mid() -> dict[str, Any]:
    return {
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 14,
            "num_patches": 256,  # 16 x 16 position grid = 224 px / 14
            "num_channels": 3,
            "vision_use_head": False,
        },
        "text_config": {
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "tie_word_embeddings": False,
            "pad_token_id": 0,
        },
        "select_layer": 6,
        "tune_top_llm_layers": 2,
        "backbone_embedding_dim": 1024,
        "image_size": 224,
        "image_token_index": IMG_CONTEXT_ID,
        "max_state_dim": 64,
        "max_action_dim": 64,
        "action_horizon": 16,
        "hidden_size": 512,
        "input_embedding_dim": 768,
        "max_seq_len": 1024,
        "diffusion_model_cfg": {
            "num_layers": 8,
            "num_attention_heads": 12,
            "attention_head_dim": 64,
            "output_dim": 512,
        },
        "model_dtype": "float32",
        "load_bf16": False,
        "use_flash_attention": False,
    }


def _n16_3b() -> dict[str, Any]:
    # The config defaults are upstream's code defaults; the shipped base checkpoint pads to 50 / 128 / 128.
    return {
        "vision_config": dict(EAGLE_VISION_DEFAULTS),
        "text_config": dict(EAGLE_TEXT_DEFAULTS),
        "action_horizon": 50,
        "max_state_dim": 128,
        "max_action_dim": 128,
    }


PRESETS = {"tiny": _tiny, "mid": _mid, "n1.6-3b": _n16_3b}


def preset(name: str, **overrides) -> Gr00tN1d6Config:
    """Config for a named preset with keyword overrides of its fields.

    Dict-valued fields (``diffusion_model_cfg``, ``vision_config``, ``text_config``) are merged key by key into the
    preset's, so ``preset("tiny", diffusion_model_cfg={"num_layers": 2})`` keeps the tiny widths.
    """
    return build_preset(PRESETS, name, Gr00tN1d6Config, overrides, family="model")


def build_preset(presets: dict, name: str, config_class: type, overrides: dict, family: str):
    """``config_class`` from the preset ``presets[name]`` with ``overrides`` (both families: N1.7 in n17/presets.py).

    Dict-valued overrides are merged one level deep into the preset's dict. ``family`` names the preset family in the
    unknown-preset message ("model", "N1.7").
    """
    if name not in presets:
        raise KeyError(f"unknown {family} preset {name!r}; known: {sorted(presets)}")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:  # PretrainedConfig would silently store a misspelt flag as a new attribute
        raise TypeError(f"unknown {config_class.__name__} fields: {unknown}")
    kwargs = presets[name]()
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(kwargs.get(key), dict):
            value = {**kwargs[key], **value}
        kwargs[key] = value
    return config_class(**kwargs)
