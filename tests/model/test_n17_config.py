"""`Gr00tN1d7Config`: a config.json shaped like the released one parses, round trips, and bad geometry fails early."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig

from groot_ft.model.n17 import COSMOS_REASON2_2B, RELEASED_3B_PARAMETERS, Gr00tN1d7, Gr00tN1d7Config, n17_preset


def released_config_json() -> dict:
    """A config.json shaped like nvidia/GR00T-N1.7-3B's: upstream's Gr00tN1d7Config fields (gr00t/configs/model/
    gr00t_n1d7.py) with the released values the reference records (LeRobot 0.6.1's defaults mirror them), plus what
    transformers writes. Written here from those sources, not copied from the hub (no network)."""
    return {
        "architectures": ["Gr00tN1d7"],
        "model_type": "Gr00tN1d7",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.57.3",
        "model_dtype": "bfloat16",
        "model_name": "nvidia/Cosmos-Reason2-2B",
        "backbone_model_type": "qwen",
        "model_revision": None,
        "tune_top_llm_layers": 0,
        "backbone_embedding_dim": 2048,
        "tune_llm": False,
        "tune_visual": False,
        "select_layer": 16,
        "reproject_vision": False,
        "use_flash_attention": True,
        "load_bf16": False,
        "backbone_trainable_params_fp32": True,
        "image_crop_size": None,
        "image_target_size": None,
        "shortest_image_edge": 256,
        "crop_fraction": 0.95,
        "random_rotation_angle": None,
        "color_jitter_params": None,
        "use_albumentations_transforms": True,
        "letter_box_transform": False,
        "extra_augmentation_config": None,
        "formalize_language": True,
        "apply_sincos_state_encoding": False,
        "use_percentiles": True,
        "use_relative_action": False,
        "max_state_dim": 132,
        "max_action_dim": 132,
        "action_horizon": 40,
        "hidden_size": 1024,
        "input_embedding_dim": 1536,
        "state_history_length": 1,
        "add_pos_embed": True,
        "attn_dropout": 0.2,
        "use_vlln": True,
        "max_seq_len": 1024,
        "use_alternate_vl_dit": True,
        "attend_text_every_n_blocks": 2,
        "diffusion_model_cfg": {
            "positional_embeddings": None,
            "num_layers": 32,
            "num_attention_heads": 32,
            "attention_head_dim": 48,
            "norm_type": "ada_norm",
            "dropout": 0.2,
            "final_dropout": True,
            "output_dim": 1024,
            "interleave_self_attention": True,
        },
        "vl_self_attention_cfg": {
            "positional_embeddings": None,
            "num_layers": 4,
            "num_attention_heads": 32,
            "attention_head_dim": 64,
            "dropout": 0.2,
            "final_dropout": True,
        },
        "num_inference_timesteps": 4,
        "noise_beta_alpha": 1.5,
        "noise_beta_beta": 1.0,
        "noise_s": 0.999,
        "num_timestep_buckets": 1000,
        "tune_projector": True,
        "tune_diffusion_model": True,
        "tune_vlln": True,
        "state_dropout_prob": 0.2,
        "exclude_state": False,
        "use_mean_std": False,
        "max_num_embodiments": 32,
    }


def write_config(directory, data: dict):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data, indent=2))
    return directory


def test_released_config_json_parses_with_the_cosmos_reason2_geometry(tmp_path):
    path = write_config(tmp_path / "GR00T-N1.7-3B", released_config_json())
    config = AutoConfig.from_pretrained(path)
    assert isinstance(config, Gr00tN1d7Config) and config.model_name == COSMOS_REASON2_2B
    text, vision = config.vlm_config.text_config, config.vlm_config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (
        28, 2048, 16, 8)
    assert (text.head_dim, text.intermediate_size, text.vocab_size) == (128, 6144, 151936)
    assert text.rope_parameters["rope_theta"] == 5e6 and text.rope_parameters["mrope_section"] == [24, 20, 20]
    assert text.rope_parameters["mrope_interleaved"] is True
    assert (vision.depth, vision.hidden_size, vision.num_heads, vision.patch_size) == (24, 1024, 16, 16)
    assert (vision.temporal_patch_size, vision.spatial_merge_size, vision.num_position_embeddings) == (2, 2, 2304)
    assert list(vision.deepstack_visual_indexes) == [5, 11, 17] and vision.out_hidden_size == 2048
    assert config.vlm_config.image_token_id == 151655
    assert (config.select_layer, config.diffusion_model_cfg["num_layers"], config.num_vl_self_attention_layers) == (
        16, 32, 4)
    assert (config.max_state_dim, config.max_action_dim, config.action_horizon) == (132, 132, 40)
    assert config.shortest_image_edge == 256 and config.crop_fraction == 0.95 and config.use_percentiles

    with torch.device("meta"):
        model = Gr00tN1d7(config)
    assert sum(p.numel() for p in model.parameters()) == RELEASED_3B_PARAMETERS


def test_a_lerobot_saved_config_json_parses_with_its_extra_keys(tmp_path):
    """LeRobot 0.6.1's GR00TN17Config writes two keys NVIDIA's does not (``dtype``, ``rtc_ramp_rate``): kept as is."""
    data = released_config_json() | {"dtype": "bfloat16", "rtc_ramp_rate": 6.0}
    config = Gr00tN1d7Config.from_pretrained(write_config(tmp_path, data))
    assert config.rtc_ramp_rate == 6.0 and config.select_layer == 16


def test_released_config_equals_the_preset_in_geometry(tmp_path):
    released = Gr00tN1d7Config.from_pretrained(write_config(tmp_path, released_config_json()))
    preset = n17_preset("n1.7-3b")
    assert released.vlm_config.to_dict() == preset.vlm_config.to_dict()
    for field in ("select_layer", "diffusion_model_cfg", "vl_self_attention_cfg", "max_state_dim", "max_action_dim",
                  "action_horizon", "hidden_size", "input_embedding_dim", "backbone_embedding_dim",
                  "state_dropout_prob", "tune_top_llm_layers"):
        assert getattr(released, field) == getattr(preset, field), field


@pytest.mark.parametrize("name", ["n1.7-3b", "n1.7-tiny"])
def test_round_trip_through_config_json(tmp_path, name):
    config = n17_preset(name, state_history_length=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "Gr00tN1d7" and "vlm_config" in saved
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, Gr00tN1d7Config)
    a, b = config.to_dict(), loaded.to_dict()
    a.pop("_name_or_path", None), b.pop("_name_or_path", None)
    assert a == b


def test_class_defaults_are_upstreams():
    config = Gr00tN1d7Config()
    assert config.select_layer == 12 and config.diffusion_model_cfg["num_layers"] == 16
    assert config.vl_self_attention_cfg is None and config.num_vl_self_attention_layers == 0
    assert (config.max_state_dim, config.max_action_dim, config.action_horizon) == (132, 132, 40)
    assert config.state_dropout_prob == 0.8 and config.tune_top_llm_layers == 0 and not config.load_bf16
    assert config.state_history_length == 1 and config.use_percentiles


def test_unknown_backbone_without_vlm_config_fails(tmp_path):
    data = released_config_json() | {"model_name": "someone/Other-VLM"}
    with pytest.raises(ValueError, match="known backbone model_name"):
        Gr00tN1d7Config.from_pretrained(write_config(tmp_path, data))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"select_layer": 29}, "select_layer 29"),
        ({"backbone_embedding_dim": 1024}, "backbone_embedding_dim"),
        ({"vl_self_attention_cfg": {"num_layers": 1, "num_attention_heads": 8, "attention_head_dim": 64}},
         "VL self-attention width"),
        ({"vl_self_attention_cfg": {"num_layers": 1, "num_attention_heads": 32, "attention_head_dim": 64,
                                    "positional_embeddings": "sinusoidal"}}, "positional_embeddings"),
        ({"vl_self_attention_cfg": {"num_layers": 1, "num_atention_heads": 32}}, "unknown keys"),
        ({"diffusion_model_cfg": {"attention_head_dim": 40}}, "DiT width"),
        ({"tune_top_llm_layers": 17}, "tune_top_llm_layers"),
        ({"state_history_length": 0}, "state_history_length"),
    ],
)
def test_bad_geometry_fails_at_config_time(overrides, message):
    with pytest.raises(ValueError, match=message):
        n17_preset("n1.7-3b", **overrides)


def test_preset_rejects_unknown_fields_and_names():
    with pytest.raises(TypeError, match="state_histroy_length"):
        n17_preset("n1.7-tiny", state_histroy_length=2)
    with pytest.raises(KeyError, match="n1.7-huge"):
        n17_preset("n1.7-huge")


def test_filtered_dict_drops_augmentation_keys():
    filtered = n17_preset("n1.7-tiny").to_filtered_dict()
    assert "crop_fraction" not in filtered and "color_jitter_params" not in filtered
    assert filtered["max_state_dim"] == 32


def test_a_run_without_state_dropout_prob_gets_upstreams_finetuning_value_for_its_family(tmp_path):
    from groot_ft.model import finetune_state_dropout

    assert finetune_state_dropout(None, "n1.7-tiny")[0] == 0.2  # launch_finetune's N1.7 value, not the config's 0.8
    assert finetune_state_dropout(None, "tiny")[0] == 0.0  # N1.6's FinetuneConfig
    n17_dir = tmp_path / "n17"
    n17_dir.mkdir()
    (n17_dir / "config.json").write_text(json.dumps({"model_type": "Gr00tN1d7"}))
    value, source = finetune_state_dropout(None, n17_dir)
    assert value == 0.2 and "GR00T N1.7 fine-tuning default" in source
    assert finetune_state_dropout(0.5, "n1.7-tiny") == (0.5, "state_dropout_prob from the run config")
    assert finetune_state_dropout(0.0, n17_dir)[0] == 0.0  # an explicit 0 is kept, not taken for "unset"
