"""Trainable-parameter flags (upstream §6.1 / §6.4) and eval() of frozen modules."""

from __future__ import annotations

import itertools

import pytest

import groot_ft.model as gm


def n_params(module, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def all_frozen(module) -> bool:
    return n_params(module, trainable=True) == 0


def all_trainable(module) -> bool:
    return n_params(module, trainable=False) == 0


def parts(model):
    vlm, head = model.backbone.model, model.action_head
    return {
        "vision": vlm.vision_model,
        "mlp1": vlm.mlp1,
        "llm": vlm.language_model,
        "projector": [head.state_encoder, head.action_encoder, head.action_decoder, head.position_embedding],
        "dit": head.model,
        "vlln": head.vlln,
    }


def test_default_finetune_flags():
    model, _ = gm.create_model("tiny")  # tune_llm=False, tune_visual=False, top 1 LLM layer, rest of head on
    p = parts(model)
    assert all_frozen(p["vision"]) and all_frozen(p["mlp1"])
    llm = p["llm"]
    assert len(llm.layers) == 3  # 4-layer config truncated to select_layer=3
    assert all(all_frozen(layer) for layer in llm.layers[:-1]) and all_trainable(llm.layers[-1])
    assert all_frozen(llm.model.embed_tokens) and all_frozen(llm.model.norm)
    assert all(all_trainable(m) for m in p["projector"])
    assert all_trainable(p["dit"]) and all_trainable(p["vlln"])
    expected = n_params(model.action_head) + n_params(llm.layers[-1])
    assert n_params(model, trainable=True) == expected


@pytest.mark.parametrize(
    "flags, frozen, trainable",
    [
        ({"tune_llm": True}, ["vision", "mlp1"], ["llm", "dit", "vlln"]),
        ({"tune_visual": True}, [], ["vision", "mlp1", "dit"]),
        ({"tune_projector": False}, ["projector", "vision"], ["dit", "vlln"]),
        ({"tune_diffusion_model": False}, ["dit"], ["projector", "vlln"]),
        ({"tune_vlln": False}, ["vlln"], ["dit", "projector"]),
        ({"tune_top_llm_layers": 0}, ["llm", "vision", "mlp1"], ["dit"]),
    ],
)
def test_flag_combinations(flags, frozen, trainable):
    model, _ = gm.create_model("tiny", **flags)
    p = parts(model)

    def modules(name):
        return p[name] if isinstance(p[name], list) else [p[name]]

    for name in frozen:
        assert all(all_frozen(m) for m in modules(name)), name
    for name in trainable:
        assert all(all_trainable(m) for m in modules(name)), name


def test_top_llm_layers_train_even_when_llm_frozen():
    model, _ = gm.create_model("tiny", tune_llm=False, tune_top_llm_layers=2)
    layers = model.backbone.model.language_model.layers
    assert all_frozen(layers[0]) and all_trainable(layers[1]) and all_trainable(layers[2])


def test_everything_frozen_but_dit():
    model, _ = gm.create_model("tiny", tune_top_llm_layers=0, tune_projector=False, tune_vlln=False)
    assert n_params(model, trainable=True) == n_params(model.action_head.model)


def test_mask_token_follows_projector_flag():
    model, _ = gm.create_model("tiny", state_dropout_prob=0.3)
    assert model.action_head.mask_token.requires_grad
    model.set_trainable(tune_projector=False)
    assert not model.action_head.mask_token.requires_grad and not model.config.tune_projector
    with pytest.raises(ValueError):
        model.set_trainable(tune_everything=True)


def test_frozen_modules_stay_in_eval_mode():
    model, _ = gm.create_model("tiny")
    model.train()
    vlm = model.backbone.model
    assert not vlm.vision_model.training and not vlm.mlp1.training
    assert not vlm.language_model.layers[0].training and vlm.language_model.layers[-1].training
    assert model.action_head.model.training
    model.set_trainable(tune_visual=True)
    model.train()
    assert vlm.vision_model.training
    model.eval()
    assert not any(m.training for m in model.modules())


# ---------------------------------------------------------------------------------------------------------------------
# Every combination of the upstream flags, with counts computed from the tiny preset's dimensions (not from the modules)


def tiny_part_sizes(cfg) -> dict[str, int]:
    """Parameter count of each part of the tiny model, from its config, by upstream's module structure."""
    vc, tc, dit = cfg.vision_config, cfg.text_config, cfg.diffusion_model_cfg
    lin = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    dv, iv = vc.hidden_size, vc.intermediate_size
    vision = lin(vc.num_channels * vc.patch_size**2, dv) + vc.num_patches * dv + 2 * dv  # embeddings + post-LN
    vision += vc.num_hidden_layers * (4 * dv + 4 * lin(dv, dv) + lin(dv, iv) + lin(iv, dv))
    dt, it, hd = tc.hidden_size, tc.intermediate_size, tc.head_dim
    q, kv = tc.num_attention_heads * hd, tc.num_key_value_heads * hd
    llm_layer = lin(dt, q, False) + 2 * lin(dt, kv, False) + lin(q, dt, False)  # q, k, v, o projections
    llm_layer += 2 * hd + 3 * lin(dt, it, False) + 2 * dt  # q/k norms, gate/up/down, two RMSNorms
    e, w, hs = cfg.max_num_embodiments, cfg.input_embedding_dim, cfg.hidden_size
    cat = lambda i, o: e * (i * o + o)  # noqa: E731 - category-specific linear: W (E, i, o) + b (E, o)
    cross_kv = cfg.backbone_embedding_dim
    def block(kv_in):  # AdaLN linear, to_q, to_k/to_v (from kv_in), to_out.0, ff in, ff out
        return lin(w, 2 * w) + lin(w, w) + 2 * lin(kv_in, w) + lin(w, w) + lin(w, 4 * w) + lin(4 * w, w)

    n = dit["num_layers"]
    dit_size = lin(256, w) + lin(w, w) + lin(w, 2 * w) + lin(w, dit["output_dim"])
    dit_size += sum(block(cross_kv if j % 2 == 0 else w) for j in range(n))
    mlp1_in = dv * round(1 / cfg.downsample_ratio) ** 2
    return {
        "vision": vision,
        "mlp1": 2 * mlp1_in + lin(mlp1_in, dt) + lin(dt, dt),
        "llm_embed": tc.vocab_size * dt,
        "llm_layer": llm_layer,
        "llm_norm": dt,
        "projector": cat(cfg.max_state_dim, hs) + cat(hs, w)  # state encoder
        + cat(cfg.max_action_dim, w) + cat(2 * w, w) + cat(w, w)  # action encoder W1-W3
        + cfg.max_seq_len * w  # position embedding
        + cat(hs, hs) + cat(hs, cfg.max_action_dim),  # action decoder
        "mask_token": w,
        "dit": dit_size,
        "vlln": 2 * cfg.backbone_embedding_dim,
    }


def expected_trainable(sizes, *, tune_llm, tune_visual, tune_projector, tune_diffusion_model, tune_vlln, top, layers,
                       dropout) -> int:  # fmt: skip
    llm = sizes["llm_embed"] + layers * sizes["llm_layer"] + sizes["llm_norm"]
    n = llm if tune_llm else min(top, layers) * sizes["llm_layer"]  # top layers train regardless of tune_llm
    n += (sizes["vision"] + sizes["mlp1"]) if tune_visual else 0
    n += (sizes["projector"] + (sizes["mask_token"] if dropout else 0)) if tune_projector else 0
    n += sizes["dit"] if tune_diffusion_model else 0
    n += sizes["vlln"] if tune_vlln else 0
    return n


@pytest.fixture(scope="module", params=[0.0, 0.5], ids=["no-dropout", "state-dropout"])
def tiny_for_flags(request):
    model, _ = gm.create_model("tiny", state_dropout_prob=request.param)
    sizes = tiny_part_sizes(model.config)
    total = sizes["vision"] + sizes["mlp1"] + sizes["llm_embed"] + 3 * sizes["llm_layer"] + sizes["llm_norm"]
    total += sizes["projector"] + sizes["dit"] + sizes["vlln"] + (sizes["mask_token"] if request.param else 0)
    assert n_params(model) == total  # the formula accounts for every parameter
    return model, sizes, request.param


def test_tiny_part_sizes_match_modules(tiny_for_flags):
    model, sizes, _ = tiny_for_flags
    vlm, head = model.backbone.model, model.action_head
    assert n_params(vlm.vision_model) == sizes["vision"] == 81_728
    assert n_params(vlm.mlp1) == sizes["mlp1"]
    assert n_params(vlm.language_model.layers[0]) == sizes["llm_layer"]
    assert n_params(head.model) == sizes["dit"] == 566_848
    projector = [head.state_encoder, head.action_encoder, head.action_decoder, head.position_embedding]
    assert sum(n_params(m) for m in projector) == sizes["projector"]


COMBOS = list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize("top", [0, 1, 3])
@pytest.mark.parametrize("flags", COMBOS, ids=["".join("1" if f else "0" for f in c) for c in COMBOS])
def test_trainable_count_for_every_flag_combination(tiny_for_flags, flags, top):
    """flags = (tune_llm, tune_visual, tune_projector, tune_diffusion_model, tune_vlln)."""
    model, sizes, dropout = tiny_for_flags
    names = ("tune_llm", "tune_visual", "tune_projector", "tune_diffusion_model", "tune_vlln")
    model.set_trainable(**dict(zip(names, flags)), tune_top_llm_layers=top)
    want = expected_trainable(sizes, **dict(zip(names, flags)), top=top, layers=3, dropout=dropout)
    assert n_params(model, trainable=True) == want


@pytest.mark.parametrize("flags", [COMBOS[5], COMBOS[18], COMBOS[31]])
def test_fresh_model_and_set_trainable_agree(flags):
    names = ("tune_llm", "tune_visual", "tune_projector", "tune_diffusion_model", "tune_vlln")
    fresh, _ = gm.create_model("tiny", **dict(zip(names, flags)))
    switched, _ = gm.create_model("tiny")
    switched.set_trainable(**dict(zip(names, flags)))
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == [
        n for n, p in switched.named_parameters() if p.requires_grad
    ]


def test_default_finetune_trainable_count_is_exact():
    model, _ = gm.create_model("tiny")
    sizes = tiny_part_sizes(model.config)
    assert n_params(model, trainable=True) == sizes["projector"] + sizes["dit"] + sizes["vlln"] + sizes["llm_layer"]
    assert n_params(model, trainable=True) == 2_075_488
