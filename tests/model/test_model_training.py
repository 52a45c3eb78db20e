"""Training behaviour: gradient checkpointing equivalence, overfitting a small batch. (The step time is a benchmark:
``scripts/bench_model.py``, docs/benchmarks.md "Tiny model step time".)"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import groot_ft.model as gm


def loss_and_grads(model, batch, seed=0):
    model.zero_grad(set_to_none=True)
    model.train()
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_gradient_checkpointing_gives_same_loss_and_grads(tiny, batch):
    model, _ = tiny  # includes dropout 0.1 in the DiT: checkpointing must replay the same masks
    loss, grads = loss_and_grads(model, batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renamed it activation_checkpointing_enable
        model.gradient_checkpointing_enable()
    block = model.action_head.model.transformer_blocks[0]
    llm_top = model.backbone.model.language_model.layers[-1]
    assert block.gradient_checkpointing and llm_top.gradient_checkpointing

    calls = {"block": 0}
    # transformers checkpoints the block's forward (its own hooks stay outside) and torch stops the replay once
    # the saved tensors are rebuilt (the last submodule may not finish), so count calls of the first submodule.
    handle = block.attn1.register_forward_hook(lambda *_: calls.__setitem__("block", calls["block"] + 1))
    ckpt_loss, ckpt_grads = loss_and_grads(model, batch)
    handle.remove()
    assert calls["block"] == 2  # forward once, recomputed once in backward: checkpointing is really on

    assert torch.equal(loss, ckpt_loss)
    assert grads.keys() == ckpt_grads.keys()
    assert any("language_model.model.layers.2" in n for n in grads)  # trainable top LLM layer above frozen ones
    for name in grads:
        torch.testing.assert_close(grads[name], ckpt_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_loss_falls_when_overfitting_a_small_batch(make_sample):
    """60-100 Adam steps at lr 1e-3 on a fixed batch must clearly lower the (noisy, per-step resampled) loss."""
    model, tokenizer = gm.create_model("tiny")
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, text=f"pick object number {i}", embodiment_id=10) for i in range(4)]
    batch = gm.Gr00tCollator(tokenizer, model.config)(samples)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    torch.manual_seed(0)
    losses = []
    for _ in range(80):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert np.isfinite(losses).all()
    assert last < 0.7 * first, (first, last)  # typically ~1.15 -> ~0.5
