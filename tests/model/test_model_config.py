"""Config fields/defaults, presets, validation, and upstream-size parameter counts on the meta device."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen3Config, Siglip2VisionConfig

import groot_ft.model as gm
from groot_ft.model.configuration import AUGMENTATION_KEYS


def test_defaults_match_upstream():
    cfg = gm.Gr00tN1d6Config()
    assert cfg.model_type == "Gr00tN1d6"
    expected = {
        "backbone_embedding_dim": 2048,
        "hidden_size": 1024,
        "input_embedding_dim": 1536,
        "max_state_dim": 29,
        "max_action_dim": 29,
        "action_horizon": 16,
        "max_seq_len": 1024,
        "max_num_embodiments": 32,
        "select_layer": 16,
        "tune_top_llm_layers": 4,
        "tune_llm": False,
        "tune_visual": False,
        "tune_projector": True,
        "tune_diffusion_model": True,
        "tune_vlln": True,
        "state_dropout_prob": 0.0,
        "use_vlln": True,
        "add_pos_embed": True,
        "attend_text_every_n_blocks": 2,
        "num_inference_timesteps": 4,
        "noise_beta_alpha": 1.5,
        "noise_beta_beta": 1.0,
        "noise_s": 0.999,
        "num_timestep_buckets": 1000,
        "backbone_trainable_params_fp32": True,
        "model_dtype": "bfloat16",
    }
    assert {k: getattr(cfg, k) for k in expected} == expected
    dit = cfg.diffusion_model_cfg
    assert (dit["num_layers"], dit["num_attention_heads"], dit["attention_head_dim"], dit["output_dim"]) == (
        32,
        32,
        48,
        1024,
    )
    assert isinstance(cfg.vision_config, Siglip2VisionConfig) and isinstance(cfg.text_config, Qwen3Config)
    assert cfg.text_config.num_hidden_layers == 28 and cfg.vision_config.num_hidden_layers == 27


def test_tiny_preset_geometry():
    cfg = gm.preset("tiny")
    assert cfg.image_size == 48 and cfg.num_image_tokens == 9
    assert cfg.image_token_index == 3 and cfg.text_config.vocab_size == len(gm.build_tokenizer())
    assert (cfg.action_horizon, cfg.max_state_dim, cfg.max_action_dim) == (16, 32, 32)
    assert cfg.select_layer < cfg.text_config.num_hidden_layers


def test_preset_overrides_and_unknown_name():
    cfg = gm.preset("tiny", action_horizon=8, tune_llm=True)
    assert cfg.action_horizon == 8 and cfg.tune_llm
    with pytest.raises(KeyError):
        gm.preset("huge")
    with pytest.raises(TypeError, match="tune_lm"):
        gm.preset("tiny", tune_lm=True)  # a misspelt flag must not be stored silently


def test_preset_dict_overrides_merge_into_the_preset():
    cfg = gm.preset("tiny", diffusion_model_cfg={"num_layers": 2}, text_config={"num_hidden_layers": 5})
    assert cfg.diffusion_model_cfg["num_layers"] == 2 and cfg.diffusion_model_cfg["attention_head_dim"] == 24
    assert cfg.text_config.num_hidden_layers == 5 and cfg.text_config.hidden_size == 64


def test_partial_diffusion_cfg_keeps_other_defaults():
    cfg = gm.preset("tiny")
    assert cfg.diffusion_model_cfg["interleave_self_attention"] is True
    assert cfg.diffusion_model_cfg["num_layers"] == 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"input_embedding_dim": 100}, "input_embedding_dim"),
        ({"backbone_embedding_dim": 32}, "backbone_embedding_dim"),
        ({"select_layer": 9}, "select_layer"),
        ({"image_size": 50}, "image_size"),
        ({"num_image_tokens": 4}, "num_image_tokens"),
        ({"action_horizon": 500}, "max_seq_len"),
    ],
)
def test_invalid_combinations_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        gm.preset("tiny", **overrides)


def test_filtered_dict_drops_augmentation_keys():
    d = gm.preset("tiny").to_filtered_dict()
    assert not set(AUGMENTATION_KEYS) & set(d)
    assert "action_horizon" in d


def test_config_dict_round_trip():
    cfg = gm.preset("tiny")
    again = gm.Gr00tN1d6Config.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_n16_3b_preset_builds_on_meta_with_upstream_sizes():
    cfg = gm.preset("n1.6-3b")
    assert (cfg.action_horizon, cfg.max_state_dim, cfg.max_action_dim) == (50, 128, 128)
    # upstream geometry: native aspect ratio, one token per 28 x 28 pixels (14-px patches, 2 x 2 pixel shuffle)
    assert cfg.image_size is None and cfg.num_image_tokens is None and cfg.image_factor == 28
    with torch.device("meta"):
        model = gm.Gr00tN1d6(cfg)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    total, head, dit = count(model), count(model.action_head), count(model.action_head.model)
    # Upstream estimates: total ~2.95 B, action head ~1.41 B, DiT ~1.08 B; default fine-tune trainable ~1.6 B.
    assert 2.90e9 < total < 3.00e9
    assert 1.38e9 < head < 1.45e9
    assert 1.05e9 < dit < 1.12e9
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 1.55e9 < trainable < 1.70e9
    assert len(model.backbone.model.language_model.layers) == 16
