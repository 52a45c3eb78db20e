"""Checkpoint compatibility with upstream GR00T N1.6: tensor names/shapes, config.json mapping, loading a checkpoint.

``upstream_tensors(cfg)`` below writes down, by hand, every tensor an upstream ``Gr00tN1d6`` state dict holds for a
given geometry, as read from the N1.6 sources (NVIDIA/Isaac-GR00T; see docs/model.md for files and commits):

* ``gr00t/model/modules/eagle_backbone.py``: ``self.model`` = vendored ``Eagle3_VLForConditionalGeneration``, LLM
  layers at ``model.language_model.model.layers`` (popped down to ``select_layer``);
* ``.../Eagle-Block2A-2B-v2/modeling_eagle3_vl.py``: ``vision_model`` (vendored ``Siglip2VisionModel``), ``mlp1`` =
  Sequential(LayerNorm(4C), Linear(4C, D), GELU, Linear(D, D)), ``language_model`` = ``Qwen3ForCausalLM``;
* ``.../Eagle-Block2A-2B-v2/modeling_siglip2.py``: ``Siglip2VisionModel.vision_model`` = ``Siglip2VisionTransformer``
  with ``embeddings.{patch_embedding (Linear), position_embedding}``, ``encoder.layers.N``, ``post_layernorm`` and,
  as its config has no ``vision_use_head``, an (unused) attention-pooling ``head``;
* ``gr00t/model/gr00t_n1d6/gr00t_n1d6.py`` + ``embodiment_conditioned_mlp.py``: action head modules and ``W``/``b``
  parameter names and (categories, in, out) layouts;
* ``gr00t/model/modules/dit.py``: DiT block structure on diffusers ``Attention``/``FeedForward``/``TimestepEmbedding``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import groot_ft.model as gm
from groot_ft.model.configuration import EAGLE_BACKBONE

V = "backbone.model.vision_model.vision_model."
L = "backbone.model.language_model.model."
# upstream-only tensors: present in an upstream state dict, not built here, ignored when loading
UPSTREAM_ONLY_PREFIXES = (V + "head.", "backbone.model.language_model.lm_head.")


def upstream_tensors(cfg: gm.Gr00tN1d6Config, *, with_unused: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor of an upstream Gr00tN1d6 state dict with its shape, for the geometry in ``cfg``."""
    vc, tc, dit = cfg.vision_config, cfg.text_config, cfg.diffusion_model_cfg
    dv, iv, p, c = vc.hidden_size, vc.intermediate_size, vc.patch_size, vc.num_channels
    dt, it, hd = tc.hidden_size, tc.intermediate_size, tc.head_dim
    nh, nkv, vocab = tc.num_attention_heads, tc.num_key_value_heads, tc.vocab_size
    shuffle = round(1 / cfg.downsample_ratio) ** 2
    e, s, a = cfg.max_num_embodiments, cfg.max_state_dim, cfg.max_action_dim
    hs, w = cfg.hidden_size, cfg.input_embedding_dim
    t = {}
    # vision tower
    t[V + "embeddings.patch_embedding.weight"] = (dv, c * p * p)
    t[V + "embeddings.patch_embedding.bias"] = (dv,)
    t[V + "embeddings.position_embedding.weight"] = (vc.num_patches, dv)
    for i in range(vc.num_hidden_layers):
        pre = f"{V}encoder.layers.{i}."
        for ln in ("layer_norm1", "layer_norm2"):
            t[pre + ln + ".weight"] = t[pre + ln + ".bias"] = (dv,)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[f"{pre}self_attn.{proj}.weight"], t[f"{pre}self_attn.{proj}.bias"] = (dv, dv), (dv,)
        t[pre + "mlp.fc1.weight"], t[pre + "mlp.fc1.bias"] = (iv, dv), (iv,)
        t[pre + "mlp.fc2.weight"], t[pre + "mlp.fc2.bias"] = (dv, iv), (dv,)
    t[V + "post_layernorm.weight"] = t[V + "post_layernorm.bias"] = (dv,)
    if with_unused:
        t[V + "head.probe"] = (1, 1, dv)
        t[V + "head.attention.in_proj_weight"], t[V + "head.attention.in_proj_bias"] = (3 * dv, dv), (3 * dv,)
        t[V + "head.attention.out_proj.weight"], t[V + "head.attention.out_proj.bias"] = (dv, dv), (dv,)
        t[V + "head.layernorm.weight"] = t[V + "head.layernorm.bias"] = (dv,)
        t[V + "head.mlp.fc1.weight"], t[V + "head.mlp.fc1.bias"] = (iv, dv), (iv,)
        t[V + "head.mlp.fc2.weight"], t[V + "head.mlp.fc2.bias"] = (dv, iv), (dv,)
    # connector
    t["backbone.model.mlp1.0.weight"] = t["backbone.model.mlp1.0.bias"] = (dv * shuffle,)
    t["backbone.model.mlp1.1.weight"], t["backbone.model.mlp1.1.bias"] = (dt, dv * shuffle), (dt,)
    t["backbone.model.mlp1.3.weight"], t["backbone.model.mlp1.3.bias"] = (dt, dt), (dt,)
    # LLM, truncated to select_layer layers
    t[L + "embed_tokens.weight"] = (vocab, dt)
    for i in range(cfg.select_layer):
        pre = f"{L}layers.{i}."
        t[pre + "self_attn.q_proj.weight"] = (nh * hd, dt)
        t[pre + "self_attn.k_proj.weight"] = t[pre + "self_attn.v_proj.weight"] = (nkv * hd, dt)
        t[pre + "self_attn.o_proj.weight"] = (dt, nh * hd)
        t[pre + "self_attn.q_norm.weight"] = t[pre + "self_attn.k_norm.weight"] = (hd,)
        t[pre + "mlp.gate_proj.weight"] = t[pre + "mlp.up_proj.weight"] = (it, dt)
        t[pre + "mlp.down_proj.weight"] = (dt, it)
        t[pre + "input_layernorm.weight"] = t[pre + "post_attention_layernorm.weight"] = (dt,)
    t[L + "norm.weight"] = (dt,)
    if with_unused:
        t["backbone.model.language_model.lm_head.weight"] = (vocab, dt)
    # action head
    h = "action_head."
    t[h + "vlln.weight"] = t[h + "vlln.bias"] = (cfg.backbone_embedding_dim,)
    t[h + "state_encoder.layer1.W"], t[h + "state_encoder.layer1.b"] = (e, s, hs), (e, hs)
    t[h + "state_encoder.layer2.W"], t[h + "state_encoder.layer2.b"] = (e, hs, w), (e, w)
    t[h + "action_encoder.W1.W"], t[h + "action_encoder.W1.b"] = (e, a, w), (e, w)
    t[h + "action_encoder.W2.W"], t[h + "action_encoder.W2.b"] = (e, 2 * w, w), (e, w)
    t[h + "action_encoder.W3.W"], t[h + "action_encoder.W3.b"] = (e, w, w), (e, w)
    t[h + "position_embedding.weight"] = (cfg.max_seq_len, w)
    m = h + "model."
    t[m + "timestep_encoder.timestep_embedder.linear_1.weight"] = (w, 256)
    t[m + "timestep_encoder.timestep_embedder.linear_1.bias"] = (w,)
    t[m + "timestep_encoder.timestep_embedder.linear_2.weight"] = (w, w)
    t[m + "timestep_encoder.timestep_embedder.linear_2.bias"] = (w,)
    for j in range(dit["num_layers"]):
        pre = f"{m}transformer_blocks.{j}."
        kv_in = cfg.backbone_embedding_dim if j % 2 == 0 else w  # even blocks cross-attend to the VL tokens
        t[pre + "norm1.linear.weight"], t[pre + "norm1.linear.bias"] = (2 * w, w), (2 * w,)
        t[pre + "attn1.to_q.weight"], t[pre + "attn1.to_q.bias"] = (w, w), (w,)
        t[pre + "attn1.to_k.weight"], t[pre + "attn1.to_k.bias"] = (w, kv_in), (w,)
        t[pre + "attn1.to_v.weight"], t[pre + "attn1.to_v.bias"] = (w, kv_in), (w,)
        t[pre + "attn1.to_out.0.weight"], t[pre + "attn1.to_out.0.bias"] = (w, w), (w,)
        t[pre + "ff.net.0.proj.weight"], t[pre + "ff.net.0.proj.bias"] = (4 * w, w), (4 * w,)
        t[pre + "ff.net.2.weight"], t[pre + "ff.net.2.bias"] = (w, 4 * w), (w,)
    t[m + "proj_out_1.weight"], t[m + "proj_out_1.bias"] = (2 * w, w), (2 * w,)
    t[m + "proj_out_2.weight"], t[m + "proj_out_2.bias"] = (dit["output_dim"], w), (dit["output_dim"],)
    t[h + "action_decoder.layer1.W"], t[h + "action_decoder.layer1.b"] = (e, hs, hs), (e, hs)
    t[h + "action_decoder.layer2.W"], t[h + "action_decoder.layer2.b"] = (e, hs, a), (e, a)
    if cfg.state_dropout_prob > 0:
        t[h + "mask_token"] = (1, 1, w)
    return t


# Key tensors of the shipped N1.6-3B geometry (50 / 128 / 128 padding), written out as literal numbers.
N16_3B_KEY_SHAPES = [
    (V + "embeddings.patch_embedding.weight", (1152, 588)),
    (V + "embeddings.position_embedding.weight", (256, 1152)),
    (V + "encoder.layers.26.mlp.fc1.weight", (4304, 1152)),
    (V + "post_layernorm.weight", (1152,)),
    ("backbone.model.mlp1.0.weight", (4608,)),
    ("backbone.model.mlp1.1.weight", (2048, 4608)),
    ("backbone.model.mlp1.3.weight", (2048, 2048)),
    (L + "embed_tokens.weight", (151680, 2048)),
    (L + "layers.15.self_attn.q_proj.weight", (2048, 2048)),
    (L + "layers.15.self_attn.k_proj.weight", (1024, 2048)),
    (L + "layers.15.self_attn.k_norm.weight", (128,)),
    (L + "layers.15.mlp.down_proj.weight", (2048, 6144)),
    (L + "norm.weight", (2048,)),
    ("action_head.vlln.weight", (2048,)),
    ("action_head.state_encoder.layer1.W", (32, 128, 1024)),
    ("action_head.state_encoder.layer2.W", (32, 1024, 1536)),
    ("action_head.action_encoder.W1.W", (32, 128, 1536)),
    ("action_head.action_encoder.W2.W", (32, 3072, 1536)),
    ("action_head.action_encoder.W3.b", (32, 1536)),
    ("action_head.position_embedding.weight", (1024, 1536)),
    ("action_head.model.timestep_encoder.timestep_embedder.linear_1.weight", (1536, 256)),
    ("action_head.model.transformer_blocks.0.norm1.linear.weight", (3072, 1536)),
    ("action_head.model.transformer_blocks.0.attn1.to_k.weight", (1536, 2048)),  # cross-attention to the VLM
    ("action_head.model.transformer_blocks.1.attn1.to_k.weight", (1536, 1536)),  # self-attention
    ("action_head.model.transformer_blocks.31.ff.net.0.proj.weight", (6144, 1536)),
    ("action_head.model.transformer_blocks.31.ff.net.2.weight", (1536, 6144)),
    ("action_head.model.proj_out_1.weight", (3072, 1536)),
    ("action_head.model.proj_out_2.weight", (1024, 1536)),
    ("action_head.action_decoder.layer1.W", (32, 1024, 1024)),
    ("action_head.action_decoder.layer2.W", (32, 1024, 128)),
    ("action_head.action_decoder.layer2.b", (32, 128)),
]
ABSENT = [
    L + "layers.16.input_layernorm.weight",  # truncated to select_layer=16
    "action_head.model.transformer_blocks.32.norm1.linear.weight",
    "action_head.model.transformer_blocks.0.norm3.weight",  # no affine LayerNorm weights in the DiT
    "action_head.model.transformer_blocks.0.norm1.norm.weight",
    "action_head.mask_token",  # only with state_dropout_prob > 0
]


@pytest.fixture(scope="module")
def n16_meta():
    with torch.device("meta"):
        return gm.Gr00tN1d6(gm.preset("n1.6-3b"))


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, shape", N16_3B_KEY_SHAPES, ids=[n for n, _ in N16_3B_KEY_SHAPES])
def test_n16_3b_key_tensor_shapes(n16_meta, name, shape):
    assert _shapes(n16_meta).get(name) == shape


@pytest.mark.parametrize("name", ABSENT)
def test_n16_3b_absent_tensors(n16_meta, name):
    assert name not in _shapes(n16_meta)


@pytest.mark.parametrize("preset_name", ["tiny", "mid", "n1.6-3b"])
def test_state_dict_is_exactly_upstreams_minus_unused_tensors(preset_name, n16_meta):
    """Every tensor we hold has upstream's name and shape, and we hold every upstream tensor except the unused ones."""
    if preset_name == "n1.6-3b":
        model = n16_meta
    else:
        with torch.device("meta"):
            model = gm.Gr00tN1d6(gm.preset(preset_name))
    expected = upstream_tensors(model.config)
    ours = _shapes(model)
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    wrong = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert wrong == {}


def test_n16_3b_parameter_counts(n16_meta):
    counts = {k: int(torch.Size(v).numel()) for k, v in upstream_tensors(n16_meta.config).items()}
    assert sum(p.numel() for p in n16_meta.parameters()) == sum(counts.values()) == 2_960_729_840


# --------------------------------------------------------------------------------------------------------------------
# upstream config.json -> our config


def upstream_config_json(**overrides) -> dict:
    """A config.json as upstream's Gr00tN1d6Config.save_pretrained writes it (§1.5 fields; the shipped checkpoint's
    50 / 128 / 128 padding), with no vision_config / text_config."""
    cfg = {
        "architectures": ["Gr00tN1d6"],
        "model_type": "Gr00tN1d6",
        "model_dtype": "bfloat16",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "model_name": EAGLE_BACKBONE,
        "backbone_model_type": "eagle",
        "model_revision": None,
        "tune_top_llm_layers": 4,
        "backbone_embedding_dim": 2048,
        "tune_llm": False,
        "tune_visual": False,
        "select_layer": 16,
        "reproject_vision": False,
        "use_flash_attention": True,
        "load_bf16": True,
        "collator_overwrite_image_inputs": False,
        "eagle_collator": True,
        "backbone_trainable_params_fp32": True,
        "apply_sincos_state_encoding": False,
        "use_relative_action": True,
        "max_state_dim": 128,
        "max_action_dim": 128,
        "action_horizon": 50,
        "hidden_size": 1024,
        "input_embedding_dim": 1536,
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
        "num_inference_timesteps": 4,
        "noise_beta_alpha": 1.5,
        "noise_beta_beta": 1.0,
        "noise_s": 0.999,
        "num_timestep_buckets": 1000,
        "tune_projector": True,
        "tune_diffusion_model": True,
        "tune_vlln": True,
        "state_dropout_prob": 0.0,
        "state_additive_noise_scale": 0.0,
        "max_num_embodiments": 32,
    }
    cfg.update(overrides)
    return cfg


def test_upstream_config_json_maps_onto_our_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(upstream_config_json()))
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(cfg, gm.Gr00tN1d6Config)
    # sub-configs derived from the named backbone (vendored Eagle-Block2A-2B-v2 config.json)
    v, t = cfg.vision_config, cfg.text_config
    assert (v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads, v.patch_size) == (
        1152, 4304, 27, 16, 14,
    )
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads) == (2048, 6144, 28, 16)
    assert (t.num_key_value_heads, t.head_dim, t.vocab_size) == (8, 128, 151680)
    assert cfg.image_token_index == 151669 and cfg.downsample_ratio == 0.5 and cfg.image_factor == 28
    assert cfg.image_size is None  # each image keeps its aspect ratio, as upstream's Eagle processor does
    assert (cfg.action_horizon, cfg.max_state_dim, cfg.max_action_dim, cfg.select_layer) == (50, 128, 128, 16)
    assert cfg.eagle_collator and cfg.use_relative_action
    with torch.device("meta"):
        model = gm.Gr00tN1d6(cfg)
    assert _shapes(model) == upstream_tensors(cfg)


def test_config_without_subconfigs_needs_a_known_backbone():
    with pytest.raises(ValueError, match="known backbone"):
        gm.Gr00tN1d6Config.from_dict(upstream_config_json(model_name="someone/Other-VLM"))


# --------------------------------------------------------------------------------------------------------------------
# loading a synthetic upstream checkpoint


def _tiny_upstream_dir(tmp_path, *, drop=(), with_unused=True, dtype=torch.bfloat16, **cfg_overrides):
    """An upstream-style checkpoint directory at tiny sizes: upstream's config.json fields (sub-configs given here,
    since the tiny geometry is not a named backbone) and random tensors under upstream's names, incl. unused ones."""
    tiny = gm.preset("tiny")
    cfg_overrides.setdefault("image_token_index", tiny.image_token_index)
    cfg = upstream_config_json(
        backbone_embedding_dim=64,
        select_layer=3,
        tune_top_llm_layers=1,
        max_state_dim=32,
        max_action_dim=32,
        action_horizon=16,
        hidden_size=64,
        input_embedding_dim=96,
        max_seq_len=128,
        diffusion_model_cfg={**upstream_config_json()["diffusion_model_cfg"], "num_layers": 4,
                             "num_attention_heads": 4, "attention_head_dim": 24, "output_dim": 64},  # fmt: skip
        vision_config=tiny.vision_config.to_dict(),
        text_config=tiny.text_config.to_dict(),
        image_size=48,
        **cfg_overrides,
    )
    parsed = gm.Gr00tN1d6Config.from_dict(cfg)
    gen = torch.Generator().manual_seed(0)
    tensors = {
        name: torch.randn(shape, generator=gen).to(dtype)
        for name, shape in upstream_tensors(parsed, with_unused=with_unused).items()
        if name not in drop
    }
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return tensors


def test_create_model_loads_an_upstream_checkpoint(tmp_path, make_sample):
    tensors = _tiny_upstream_dir(tmp_path)  # bf16 tensors, torch_dtype bfloat16, plus lm_head and the SigLIP2 head
    model, tokenizer = gm.create_model(tmp_path)
    state = model.state_dict()
    for name, value in state.items():
        assert value.dtype == torch.float32, name  # loaded in fp32 whatever the file's torch_dtype
        assert torch.equal(value, tensors[name].float()), name
    unused = [n for n in tensors if n.startswith(UPSTREAM_ONLY_PREFIXES)]
    assert unused and not set(unused) & set(state)
    assert model.config.load_bf16 and model.config.eagle_collator  # upstream fields kept
    batch = gm.Gr00tCollator(tokenizer, model.config)([make_sample(np.random.default_rng(0))])
    assert torch.isfinite(model(**batch).loss)


def test_checkpoint_with_only_the_tied_lm_head_copy(tmp_path):
    tensors = _tiny_upstream_dir(tmp_path, drop=(L + "embed_tokens.weight",))
    model, _ = gm.create_model(tmp_path)
    embed = model.backbone.model.language_model.model.embed_tokens.weight
    assert torch.equal(embed, tensors["backbone.model.language_model.lm_head.weight"].float())


def test_missing_weights_raise(tmp_path):
    _tiny_upstream_dir(tmp_path, drop=("action_head.model.proj_out_2.weight",))
    with pytest.raises(ValueError, match="proj_out_2"):
        gm.create_model(tmp_path)


def test_upstream_checkpoint_with_state_dropout_mask_token(tmp_path):
    tensors = _tiny_upstream_dir(tmp_path, state_dropout_prob=0.8)
    model, _ = gm.create_model(tmp_path)
    assert torch.equal(model.action_head.mask_token, tensors["action_head.mask_token"].float())
    without, _ = gm.create_model(tmp_path, state_dropout_prob=0.0)  # an unused mask_token is ignored
    assert without.action_head.mask_token is None


def test_upstream_checkpoint_without_tokenizer_files_is_an_error(tmp_path):
    """Upstream ships no tokenizer in the checkpoint; with a vocabulary the byte tokenizer does not match, no other
    tokenizer may stand in for it (the pretrained embeddings would read unrelated ids): a clear error, before any
    weights are read."""
    _tiny_upstream_dir(tmp_path, image_token_index=200)
    (tmp_path / "model.safetensors").write_bytes(b"not read")  # the check comes before the weights
    with pytest.raises(gm.TokenizerNotFoundError, match="tokenizer_path.*Eagle-Block2A-2B-v2"):
        gm.create_model(tmp_path)


def test_byte_tokenizer_model_without_tokenizer_files_says_so(tmp_path):
    _tiny_upstream_dir(tmp_path)  # the tiny geometry: the byte tokenizer's 260-token vocabulary, <IMG_CONTEXT> = 3
    _, tokenizer = gm.create_model(tmp_path)
    assert tokenizer.source.startswith("byte tokenizer, rebuilt") and str(tmp_path) in tokenizer.source