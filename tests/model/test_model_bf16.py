"""Upstream's load_bf16 + backbone_trainable_params_fp32: frozen backbone weights bf16, trainable parameters fp32.

Runs on CPU (bf16 matmuls are supported there, slowly; fine for the tiny preset)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import groot_ft.model as gm


@pytest.fixture
def pair(make_sample):
    """(fp32 model, same weights with bf16 storage applied, batch)."""
    ref, tok = gm.create_model("tiny")
    mixed, _ = gm.create_model("tiny")
    counts = mixed.apply_bf16_weights()
    rng = np.random.default_rng(0)
    batch = gm.Gr00tCollator(tok, ref.config)([make_sample(rng, embodiment_id=i) for i in (10, 3)])
    return ref, mixed, batch, counts


def dtypes(model) -> dict[str, torch.dtype]:
    return {n: p.dtype for n, p in model.named_parameters()}


def test_storage_dtypes_follow_trainability(pair):
    _, model, _, counts = pair
    for name, p in model.named_parameters():
        if name.startswith("action_head."):
            assert p.dtype == torch.float32, name  # the action head is built fp32 upstream
        elif p.requires_grad:
            assert p.dtype == torch.float32, name  # trainable backbone params (top LLM layer) back to fp32
        else:
            assert p.dtype == torch.bfloat16, name
    llm = model.backbone.model.language_model.model
    assert llm.layers[-1].self_attn.q_proj.weight.dtype == torch.float32
    assert llm.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert llm.embed_tokens.weight.dtype == torch.bfloat16
    total = sum(p.numel() for p in model.parameters())
    bf16 = sum(p.numel() for p in model.parameters() if not p.requires_grad and not _in_head(p, model))
    assert counts == {"float32": total - bf16, "bfloat16": bf16}
    assert model.config.load_bf16 and model.config.backbone_trainable_params_fp32


def _in_head(param, model) -> bool:
    return any(param is p for p in model.action_head.parameters())


def test_forward_backward_without_autocast(pair):
    ref, model, batch, _ = pair
    model.train(), ref.train()
    torch.manual_seed(0)
    loss = model(**batch).loss
    torch.manual_seed(0)
    ref_loss = ref(**batch).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, ref_loss, rtol=0.05, atol=0.02)  # same weights up to bf16 rounding
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.dtype == torch.float32, name
        else:
            assert p.grad is None, name


def test_forward_under_bf16_autocast(pair):
    ref, model, batch, _ = pair
    model.train(), ref.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        loss = model(**batch).loss
    torch.manual_seed(0)
    ref_loss = ref(**batch).loss
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.float(), ref_loss, rtol=0.1, atol=0.05)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)


def test_get_action_with_bf16_weights(pair):
    ref, model, batch, _ = pair
    a = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    b = ref.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert a.dtype == torch.float32 and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0.1, atol=0.1)


def test_set_trainable_recasts(pair):
    _, model, _, _ = pair
    model.set_trainable(tune_visual=True)
    assert model.backbone.model.vision_model.vision_model.embeddings.patch_embedding.weight.dtype == torch.float32
    assert model.backbone.model.mlp1[1].weight.dtype == torch.float32
    model.set_trainable(tune_visual=False, tune_top_llm_layers=0)
    assert model.backbone.model.mlp1[1].weight.dtype == torch.bfloat16
    assert model.backbone.model.language_model.layers[-1].mlp.up_proj.weight.dtype == torch.bfloat16
    model.apply_bf16_weights(enable=False)
    assert all(d == torch.float32 for d in dtypes(model).values())


def test_all_bf16_backbone_when_trainable_fp32_is_off(pair):
    ref, model, batch, _ = pair
    model.apply_bf16_weights(trainable_params_fp32=False)
    backbone = {p.dtype for p in model.backbone.parameters()}
    assert backbone == {torch.bfloat16}
    assert {p.dtype for p in model.action_head.parameters()} == {torch.float32}
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.model.language_model.layers[-1].mlp.up_proj.weight.grad.dtype == torch.bfloat16


def test_whole_model_in_bf16(pair):
    """DeepSpeed bf16 and the policy on CUDA cast every weight to bf16: forward and sampling must still work."""
    ref, _, batch, _ = pair
    model = ref.to(torch.bfloat16)
    model.train()
    loss = model(**batch).loss
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    pred = model.get_action(**batch)["action_pred"]
    assert pred.dtype == torch.bfloat16 and torch.isfinite(pred.float()).all()


def test_create_model_applies_it_on_cuda_only_by_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, _ = gm.create_model("tiny", load_bf16=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # no CUDA: default is off
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model, _ = gm.create_model("tiny", load_bf16=True)
    assert model.backbone.model.vision_model.vision_model.post_layernorm.weight.dtype == torch.bfloat16
    model, _ = gm.create_model("tiny", load_bf16=False)  # the tiny preset's own setting
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model, _ = gm.create_model("tiny", bf16_weights=False, load_bf16=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_save_and_reload_bf16_weights(tmp_path, pair):
    _, model, _, _ = pair
    gm.save_model(model, gm.build_tokenizer(), tmp_path)
    loaded, _ = gm.create_model(tmp_path, bf16_weights=False)
    for name, p in model.state_dict().items():
        q = loaded.state_dict()[name]
        assert q.dtype == torch.float32 and torch.equal(q, p.float()), name
    again, _ = gm.create_model(tmp_path, bf16_weights=True)
    assert dtypes(again) == dtypes(model)
