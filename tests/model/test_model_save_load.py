"""save_pretrained / from_pretrained through the Auto classes, and create_model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

import groot_ft.model as gm


def test_bitwise_round_trip_through_auto_classes(tmp_path, tiny, batch):
    model, tokenizer = tiny
    with torch.no_grad():  # make sure non-initial values survive too
        model.action_head.position_embedding.weight.add_(0.5)
    gm.save_model(model, tokenizer, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_type"] == "Gr00tN1d6" and meta["architectures"] == ["Gr00tN1d6"]

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, gm.Gr00tN1d6Config)
    saved, original = config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path", None), original.pop("_name_or_path", None)
    assert saved == original
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, gm.Gr00tN1d6)

    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].dtype == after[key].dtype and torch.equal(before[key], after[key]), key
    on_disk = load_file(tmp_path / "model.safetensors")
    assert on_disk.keys() == before.keys()

    # Same weights and flags -> the same loss under the same seed.
    model.train(), loaded.train()
    torch.manual_seed(3)
    a = model(**batch).loss
    torch.manual_seed(3)
    b = loaded(**batch).loss
    assert torch.equal(a, b)
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad
    ]

    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == loaded.config.image_token_index


def test_upstream_parameter_names(tiny):
    model, _ = tiny
    names = {n for n, _ in model.named_parameters()}
    for prefix in (
        "backbone.model.vision_model.",
        "backbone.model.mlp1.",
        "backbone.model.language_model.",
        "action_head.model.transformer_blocks.",
        "action_head.state_encoder.layer1.W",
        "action_head.action_encoder.W2.W",
        "action_head.action_decoder.layer2.b",
        "action_head.position_embedding.weight",
        "action_head.vlln.weight",
    ):
        assert any(n.startswith(prefix) for n in names), prefix


def test_create_model_from_directory_applies_overrides(tmp_path, tiny):
    model, tokenizer = tiny
    gm.save_model(model, tokenizer, tmp_path)
    loaded, tok = gm.create_model(str(tmp_path), tune_llm=True, tune_visual=True)
    assert loaded.config.tune_llm and loaded.config.tune_visual
    assert all(p.requires_grad for p in loaded.parameters())
    assert not gm.create_model(str(tmp_path))[0].config.tune_llm  # the saved config is untouched
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == loaded.config.image_token_index


def test_loading_with_state_dropout_initialises_a_missing_mask_token(tmp_path, tiny):
    model, tokenizer = tiny
    gm.save_model(model, tokenizer, tmp_path)
    loaded, _ = gm.create_model(str(tmp_path), state_dropout_prob=0.5)
    token = loaded.action_head.mask_token
    assert token is not None and torch.isfinite(token).all() and token.abs().sum() > 0 and token.requires_grad
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_create_model_is_seeded_and_keeps_global_rng(tiny):
    state = torch.random.get_rng_state()
    again, _ = gm.create_model("tiny")
    assert torch.equal(torch.random.get_rng_state(), state)
    first, _ = tiny
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    other, _ = gm.create_model("tiny", seed=1)
    assert not torch.equal(other.action_head.state_encoder.layer1.W, first.action_head.state_encoder.layer1.W)


def test_create_model_without_tokenizer_files_rebuilds_the_tokenizer(tmp_path, tiny):
    model, _ = tiny
    model.save_pretrained(tmp_path)  # weights + config only, like a trainer checkpoint without a processing class
    loaded, tok = gm.create_model(tmp_path)
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == loaded.config.image_token_index


def test_create_model_rejects_unknown_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        gm.create_model(str(tmp_path / "nope"))
