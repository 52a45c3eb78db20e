"""Trainable-parameter flags (upstream §6.1 / §6.4) and eval() of frozen modules."""

from __future__ import annotations

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
    assert all_frozen(llm.embed_tokens) and all_frozen(llm.norm)
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
