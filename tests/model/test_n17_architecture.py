"""GR00T N1.7 geometry and tensor names, against the released checkpoint's numbers and upstream's module layout.

Upstream's backbone (``gr00t/model/modules/qwen3_backbone.py``, LeRobot 0.6.1's ``groot_n1_7.py`` alike) is
transformers' ``Qwen3VLForConditionalGeneration`` with every LLM layer above ``select_layer`` popped, held as
``backbone.model``: :func:`upstream_backbone_tensors` builds exactly that (on the meta device) and reads its state
dict. The action head's tensors are written down by hand in :func:`upstream_head_tensors` from upstream's
``Gr00tN1d7ActionHead`` (``gr00t/model/gr00t_n1d7/gr00t_n1d7.py``), ``gr00t/model/modules/dit.py``
(``AlternateVLDiT``, ``SelfAttentionTransformer`` on diffusers ``Attention`` / ``FeedForward``) and
``embodiment_conditioned_mlp.py`` (``W`` (categories, in, out), ``b``). The parameter counts are the released
checkpoint's as the reference records them (LeRobot's defaults = the released config).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import Qwen3VLForConditionalGeneration

from groot_ft.model.n17 import RELEASED_3B_PARAMETERS, Gr00tN1d7, n17_preset

LM_HEAD = "backbone.model.lm_head.weight"  # tied to embed_tokens upstream, not built here


def upstream_backbone_tensors(cfg) -> dict[str, tuple[int, ...]]:
    """Upstream's construction: the full Qwen3-VL, LLM layers popped down to select_layer, under ``backbone.model``."""
    with torch.device("meta"):
        vlm = Qwen3VLForConditionalGeneration(copy.deepcopy(cfg.vlm_config))
    layers = vlm.model.language_model.layers
    while len(layers) > cfg.select_layer:
        layers.pop(-1)
    return {"backbone.model." + k: tuple(v.shape) for k, v in vlm.state_dict().items()}


def upstream_head_tensors(cfg) -> dict[str, tuple[int, ...]]:
    """Every tensor of upstream's Gr00tN1d7ActionHead for the geometry in ``cfg``, written down from its source."""
    e, s, a = cfg.max_num_embodiments, cfg.max_state_dim * cfg.state_history_length, cfg.max_action_dim
    hs, w, vl = cfg.hidden_size, cfg.input_embedding_dim, cfg.backbone_embedding_dim
    dit = cfg.diffusion_model_cfg
    t: dict[str, tuple[int, ...]] = {}

    def linear(name, out_features, in_features):
        t[name + ".weight"], t[name + ".bias"] = (out_features, in_features), (out_features,)

    def category_linear(name, in_features, out_features):
        t[name + ".W"], t[name + ".b"] = (e, in_features, out_features), (e, out_features)

    h = "action_head."
    # AlternateVLDiT: even blocks cross-attend to the VL features, odd blocks self-attend (interleave)
    linear(h + "model.timestep_encoder.timestep_embedder.linear_1", w, 256)
    linear(h + "model.timestep_encoder.timestep_embedder.linear_2", w, w)
    for i in range(dit["num_layers"]):
        pre = f"{h}model.transformer_blocks.{i}."
        kv = w if i % 2 == 1 else vl
        linear(pre + "norm1.linear", 2 * w, w)  # AdaLayerNorm; norm1.norm / norm3 have no affine weights
        linear(pre + "attn1.to_q", w, w)
        linear(pre + "attn1.to_k", w, kv)
        linear(pre + "attn1.to_v", w, kv)
        linear(pre + "attn1.to_out.0", w, w)
        linear(pre + "ff.net.0.proj", 4 * w, w)
        linear(pre + "ff.net.2", w, 4 * w)
    linear(h + "model.proj_out_1", 2 * w, w)
    linear(h + "model.proj_out_2", dit["output_dim"], w)
    # SelfAttentionTransformer: plain BasicTransformerBlocks (affine LayerNorms, attention with bias)
    sa = cfg.vl_self_attention_cfg or {}
    d = sa.get("num_attention_heads", 0) * sa.get("attention_head_dim", 0)
    for i in range(sa.get("num_layers", 0)):
        pre = f"{h}vl_self_attention.transformer_blocks.{i}."
        for norm in ("norm1", "norm3"):
            t[pre + norm + ".weight"] = t[pre + norm + ".bias"] = (d,)
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            linear(pre + "attn1." + proj, d, d)
        linear(pre + "ff.net.0.proj", 4 * d, d)
        linear(pre + "ff.net.2", d, 4 * d)
    category_linear(h + "state_encoder.layer1", s, hs)
    category_linear(h + "state_encoder.layer2", hs, w)
    category_linear(h + "action_encoder.W1", a, w)
    category_linear(h + "action_encoder.W2", 2 * w, w)
    category_linear(h + "action_encoder.W3", w, w)
    category_linear(h + "action_decoder.layer1", dit["output_dim"], hs)
    category_linear(h + "action_decoder.layer2", hs, a)
    t[h + "vlln.weight"] = t[h + "vlln.bias"] = (vl,)
    t[h + "position_embedding.weight"] = (cfg.max_seq_len, w)
    return t


def meta_model(name: str, **overrides) -> Gr00tN1d7:
    with torch.device("meta"):
        return Gr00tN1d7(n17_preset(name, **overrides))


@pytest.fixture(scope="module")
def released():
    return meta_model("n1.7-3b")


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_released_parameter_count_and_breakdown(released):
    """The released nvidia/GR00T-N1.7-3B: 3,144,016,000 parameters, 1,620,515,968 trainable with its flags."""
    m = released
    assert count(m) == RELEASED_3B_PARAMETERS == 3_144_016_000
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 1_620_515_968
    assert count(m.backbone) == 1_523_500_032
    assert count(m.backbone.model.visual) == 406_957_056
    assert count(m.action_head.model) == 1_091_722_240  # DiT
    assert count(m.action_head.vl_self_attention) == 201_433_088
    # The released flags freeze the backbone (tune_llm / tune_visual off, no top layers): the head is what trains.
    assert not any(p.requires_grad for p in m.backbone.parameters())
    assert all(p.requires_grad for p in m.action_head.parameters())


@pytest.mark.parametrize("name", ["n1.7-3b", "n1.7-tiny"])
def test_tensor_names_and_shapes_are_upstreams(name):
    model = meta_model(name, state_history_length=2) if name == "n1.7-tiny" else meta_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    upstream = {**upstream_backbone_tensors(model.config), **upstream_head_tensors(model.config)}
    assert LM_HEAD in upstream
    assert set(upstream) - set(ours) == {LM_HEAD}
    assert set(ours) - set(upstream) == set()
    assert {k: v for k, v in upstream.items() if k != LM_HEAD} == ours


def test_literal_released_shapes(released):
    """A few tensors by their full names, with the shapes the released geometry gives them."""
    shapes = {k: tuple(v.shape) for k, v in released.state_dict().items()}
    v, lm, h = "backbone.model.model.visual.", "backbone.model.model.language_model.", "action_head."
    expected = {
        v + "patch_embed.proj.weight": (1024, 3, 2, 16, 16),  # Conv3d: temporal patch 2, 16 px
        v + "pos_embed.weight": (2304, 1024),  # 48 x 48 learned grid
        v + "blocks.23.attn.qkv.weight": (3072, 1024),
        v + "merger.linear_fc2.weight": (2048, 4096),
        v + "deepstack_merger_list.2.norm.weight": (4096,),
        lm + "embed_tokens.weight": (151936, 2048),
        lm + "layers.15.self_attn.k_proj.weight": (1024, 2048),  # 8 KV heads x 128
        lm + "layers.15.mlp.down_proj.weight": (2048, 6144),
        lm + "norm.weight": (2048,),
        h + "vl_self_attention.transformer_blocks.3.attn1.to_q.weight": (2048, 2048),
        h + "vl_self_attention.transformer_blocks.3.ff.net.0.proj.weight": (8192, 2048),
        h + "model.transformer_blocks.30.attn1.to_k.weight": (1536, 2048),  # cross-attention to the VL features
        h + "model.transformer_blocks.31.attn1.to_k.weight": (1536, 1536),  # self-attention
        h + "state_encoder.layer1.W": (32, 132, 1024),
        h + "action_encoder.W1.W": (32, 132, 1536),
        h + "action_decoder.layer2.W": (32, 1024, 132),
        h + "position_embedding.weight": (1024, 1536),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    for absent in (
        lm + "layers.16.input_layernorm.weight",
        v + "deepstack_merger_list.3.norm.weight",
        h + "model.transformer_blocks.32.norm1.linear.weight",
        h + "vl_self_attention.transformer_blocks.4.norm1.weight",
        h + "mask_token",
        LM_HEAD,
    ):
        assert absent not in shapes


def test_geometry_comes_from_the_config():
    """Upstream's class defaults (12 LLM layers, 16 DiT blocks, no VL self-attention) differ from the release."""
    with torch.device("meta"):
        model = Gr00tN1d7(n17_preset("n1.7-3b", select_layer=12, diffusion_model_cfg={"num_layers": 16},
                                     vl_self_attention_cfg=None))
    assert len(model.backbone.model.language_model.layers) == 12
    assert len(model.action_head.model.transformer_blocks) == 16
    assert isinstance(model.action_head.vl_self_attention, torch.nn.Identity)
    assert not any(k.startswith("action_head.vl_self_attention.") for k in model.state_dict())
