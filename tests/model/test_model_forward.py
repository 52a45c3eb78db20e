"""Forward/get_action shapes, the exact flow-matching objective, masking, state dropout, gradient coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import groot_ft.model as gm
from groot_ft.model import flow_matching as fm


def test_forward_and_get_action_shapes(tiny, batch):
    model, _ = tiny
    model.train()
    out = model(**batch)
    assert isinstance(out, gm.Gr00tN1d6Output)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.action_loss.shape == (3, 16, 32)
    pred = model.get_action(**batch)["action_pred"]
    assert pred.shape == (3, 16, 32) and torch.isfinite(pred).all()
    assert model.training  # get_action restores the caller's mode


def test_backbone_outputs(tiny, batch):
    model, _ = tiny
    out = model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    b, length = batch["input_ids"].shape
    assert out["backbone_features"].shape == (b, length, model.config.backbone_embedding_dim)
    assert torch.equal(out["image_mask"], batch["input_ids"] == model.config.image_token_index)
    assert torch.equal(out["backbone_attention_mask"], batch["attention_mask"].bool())


def test_loss_is_exactly_the_reference_objective(tiny, batch):
    """Replay the RNG draws of forward() and recompute the loss from the formulas in the reference."""
    model, _ = tiny
    model.eval()  # no dropout, so the only random draws are noise and t
    torch.manual_seed(123)
    loss = model(**batch).loss

    head, cfg = model.action_head, model.config
    with torch.no_grad():
        torch.manual_seed(123)
        noise = torch.randn_like(batch["action"])
        s = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0)).sample((3,))
        t = (1 - s) * 0.999
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * batch["action"]
        target = batch["action"] - noise
        bucket = torch.floor(t * 1000).long()
        vl = head.prepare_vl(model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"]))
        state = head.encode_state(batch["state"], batch["embodiment_id"])
        pred = head.predict_velocity(vl, state, x_t, bucket, batch["embodiment_id"])
        mask = batch["action_mask"]
        expected = ((pred - target) ** 2 * mask).sum() / (mask.sum() + 1e-6)
    assert cfg.noise_beta_alpha == 1.5 and cfg.noise_s == 0.999
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)


def test_masked_mse_ignores_padding():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 16, 32), torch.randn(2, 16, 32)
    mask = torch.zeros(2, 16, 32)
    mask[:, :10, :7] = 1
    loss, elementwise = fm.masked_mse(pred, target, mask)
    garbage_pred = pred.clone()
    garbage_pred[mask == 0] = 1e3  # padded steps/dims may hold anything
    loss2, _ = fm.masked_mse(garbage_pred, target, mask)
    assert torch.equal(loss, loss2)
    valid = (pred - target)[mask == 1]
    torch.testing.assert_close(loss, valid.pow(2).mean())
    assert (elementwise[mask == 0] == 0).all()


def test_model_loss_only_counts_valid_entries(tiny, batch):
    model, _ = tiny
    out = model(**batch)
    mask = batch["action_mask"]
    assert (out.action_loss[mask == 0] == 0).all()
    torch.testing.assert_close(out.loss, out.action_loss.sum() / (mask.sum() + 1e-6))


def test_time_sampling_and_buckets():
    torch.manual_seed(0)
    t = fm.sample_time(50_000, 1.5, 1.0, 0.999)
    assert t.min() >= 0 and t.max() < 0.999
    # s ~ Beta(1.5, 1) has mean 0.6, so E[t] = 0.4 * 0.999; the density of t is skewed to 0 (the noisy end)
    assert abs(t.mean().item() - 0.4 * 0.999) < 0.01
    assert (t < 0.5).float().mean() > 0.6
    assert fm.time_bucket(torch.tensor([0.0, 0.2499, 0.25, 0.998]), 1000).tolist() == [0, 249, 250, 998]
    noise, action = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    assert torch.equal(fm.interpolate(noise, action, torch.tensor([0.0])), noise)
    assert torch.equal(fm.interpolate(noise, action, torch.tensor([1.0])), action)


def test_get_action_is_four_euler_steps_from_noise(tiny, batch, monkeypatch):
    model, _ = tiny
    seen = []

    def constant_velocity(vl, state_features, noisy_action, t_bucket, embodiment_id):
        seen.append(t_bucket.tolist())
        return torch.full_like(noisy_action, 2.0)

    monkeypatch.setattr(model.action_head, "predict_velocity", constant_velocity)
    pred = model.get_action(**batch, generator=torch.Generator().manual_seed(7))["action_pred"]
    noise = torch.randn((3, 16, 32), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(pred, noise + 2.0)  # 4 steps of dt = 0.25 at constant velocity 2
    assert seen == [[0] * 3, [250] * 3, [500] * 3, [750] * 3]


def test_get_action_is_reproducible_with_a_generator(tiny, batch):
    model, _ = tiny
    a = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    b = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert torch.equal(a, b)


def test_left_padding_does_not_change_a_sample(tiny, collator, make_sample):
    model, _ = tiny
    model.eval()
    rng = np.random.default_rng(5)
    short, long = make_sample(rng, text="pick"), make_sample(rng, text="a much longer instruction for the robot")
    alone, together = collator([short]), collator([short, long])
    with torch.no_grad():
        fa = model.backbone(alone["input_ids"], alone["attention_mask"], alone["pixel_values"])["backbone_features"]
        fb = model.backbone(together["input_ids"], together["attention_mask"], together["pixel_values"])
    length = alone["input_ids"].shape[1]
    assert torch.isfinite(fb["backbone_features"]).all()
    torch.testing.assert_close(fa[0], fb["backbone_features"][0, -length:], atol=1e-5, rtol=1e-4)


def test_samples_with_different_image_counts(tiny, collator, make_sample):
    model, _ = tiny
    rng = np.random.default_rng(6)
    batch = collator([make_sample(rng, num_images=1), make_sample(rng, num_images=3)])
    assert batch["pixel_values"].shape[0] == 4
    assert torch.isfinite(model(**batch).loss)


def test_image_token_count_mismatch_raises(tiny, batch):
    model, _ = tiny
    bad = dict(batch, pixel_values=batch["pixel_values"][:-1])
    with pytest.raises(ValueError, match="IMG_CONTEXT"):
        model(**bad)


def test_every_trainable_parameter_gets_a_gradient(make_sample):
    """DDP with find_unused_parameters=False needs a gradient on every trainable tensor, even with all flags on."""
    model, tokenizer = gm.create_model(
        "tiny", tune_llm=True, tune_visual=True, state_dropout_prob=0.5, state_additive_noise_scale=0.01
    )
    rng = np.random.default_rng(7)
    batch = gm.Gr00tCollator(tokenizer, model.config)([make_sample(rng) for _ in range(2)])
    model.train()
    model(**batch).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_state_dropout_replaces_state_in_training_only(collator, make_sample):
    model, _ = gm.create_model("tiny", state_dropout_prob=1.0)
    assert model.action_head.mask_token is not None
    rng = np.random.default_rng(8)
    batch = collator([make_sample(rng) for _ in range(2)])
    other = dict(batch, state=torch.randn_like(batch["state"]))
    model.train()
    model.action_head.model.eval()  # silence DiT dropout so both runs see the same computation
    torch.manual_seed(1)
    a = model(**batch).loss
    torch.manual_seed(1)
    b = model(**other).loss
    assert torch.equal(a, b)  # every state was replaced by the mask token
    g = torch.Generator
    pa = model.get_action(**batch, generator=g().manual_seed(0))["action_pred"]
    pb = model.get_action(**other, generator=g().manual_seed(0))["action_pred"]
    assert not torch.equal(pa, pb)  # no state dropout at inference
