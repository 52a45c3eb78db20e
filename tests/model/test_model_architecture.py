"""Behaviour pinned to upstream N1.6 (§6.1-6.3): which VL tokens each DiT block sees, AdaLN conditioning, dropout
placement, sinusoidal encodings, pixel-unshuffle channel order, timestep buckets and the Euler sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import groot_ft.model as gm
from groot_ft.model import dit as dit_module
from groot_ft.model import flow_matching as fm
from groot_ft.model.backbone import patchify, pixel_shuffle
from groot_ft.model.dit import AlternateVLDiT
from groot_ft.model.layers import MultiEmbodimentActionEncoder, TimestepEncoder


def small_dit(num_layers=8, every=2, alternate=True, dropout=0.0, interleave=True):
    cfg = {"num_layers": num_layers, "num_attention_heads": 2, "attention_head_dim": 8, "output_dim": 16,
           "dropout": dropout, "final_dropout": True, "interleave_self_attention": interleave}  # fmt: skip
    torch.manual_seed(0)
    return AlternateVLDiT(cfg, cross_attention_dim=12, attend_text_every_n_blocks=every, alternate_vl=alternate).eval()


def vl_inputs(batch=2, length=10):
    torch.manual_seed(1)
    enc = torch.randn(batch, length, 12)
    valid = torch.ones(batch, length, dtype=torch.bool)
    valid[1, :3] = False  # left padding in the second sample
    image = torch.zeros(batch, length, dtype=torch.bool)
    image[:, 5:9] = True  # image tokens in the middle, text around them
    return enc, valid, image


def record_cross_keys(model):
    """Run hooks that capture, per block, the key mask its attention received (None for self-attention)."""
    seen = {}

    def hook(idx):
        def fn(module, args, kwargs):
            context = args[1] if len(args) > 1 else kwargs.get("context")
            mask = args[2] if len(args) > 2 else kwargs.get("context_mask")
            seen[idx] = None if context is None else ("all" if mask is None else mask.clone())

        return fn

    blocks = model.transformer_blocks
    handles = [b.attn1.register_forward_pre_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    return seen, handles


@pytest.mark.parametrize("every", [1, 2, 3])
def test_cross_blocks_see_only_text_or_only_image_keys(every):
    model = small_dit(num_layers=12, every=every)
    enc, valid, image = vl_inputs()
    seen, handles = record_cross_keys(model)
    model(torch.randn(2, 5, 16), enc, torch.tensor([3, 700]), valid, image)
    for h in handles:
        h.remove()
    for idx in range(12):
        if idx % 2 == 1:
            assert seen[idx] is None, idx  # odd blocks: self-attention over state + action tokens
            assert not model.transformer_blocks[idx].is_cross_attention
        elif idx % (2 * every) == 0:  # upstream: text when idx % (2 * attend_text_every_n_blocks) == 0
            assert torch.equal(seen[idx], valid & ~image), idx
        else:
            assert torch.equal(seen[idx], valid & image), idx


def test_text_block_ignores_image_tokens_and_padding():
    """Behavioural check: a single text cross-block's output does not move when image or padded VL tokens change."""
    model = small_dit(num_layers=1)  # block 0: cross-attention to text
    enc, valid, image = vl_inputs()
    x, t = torch.randn(2, 5, 16), torch.tensor([10, 500])
    ref = model(x, enc, t, valid, image)
    changed = enc.clone()
    changed[image] += 5.0
    changed[~valid] -= 3.0
    torch.testing.assert_close(model(x, changed, t, valid, image), ref)
    text_changed = enc.clone()
    text_changed[valid & ~image] += 1.0
    assert not torch.allclose(model(x, text_changed, t, valid, image), ref)


def test_image_block_ignores_text_tokens():
    model = small_dit(num_layers=3)  # blocks: 0 text (cross), 1 self, 2 image (cross)
    model.transformer_blocks[0].attn1.to_out[0].weight.data.zero_()  # silence block 0's text path
    model.transformer_blocks[0].attn1.to_out[0].bias.data.zero_()
    enc, valid, image = vl_inputs()
    x, t = torch.randn(2, 5, 16), torch.tensor([10, 500])
    ref = model(x, enc, t, valid, image)
    text_changed = enc.clone()
    text_changed[~image] += 4.0
    torch.testing.assert_close(model(x, text_changed, t, valid, image), ref)
    image_changed = enc.clone()
    image_changed[image] += 1.0
    assert not torch.allclose(model(x, image_changed, t, valid, image), ref)


def test_plain_dit_attends_to_all_vl_positions_like_upstream():
    model = small_dit(num_layers=2, alternate=False)
    enc, valid, image = vl_inputs()
    seen, handles = record_cross_keys(model)
    model(torch.randn(2, 5, 16), enc, torch.tensor([3, 7]), valid, image)
    for h in handles:
        h.remove()
    assert seen == {0: "all", 1: None}  # upstream's DiT passes encoder_attention_mask=None


def test_alternate_dit_requires_interleaving():
    with pytest.raises(ValueError, match="interleave"):
        small_dit(interleave=False)
    with pytest.raises(ValueError, match="interleave"):
        gm.preset("tiny", diffusion_model_cfg={"interleave_self_attention": False})


def test_adaln_conditioning_formula():
    """norm1(x, temb) = LN(x) * (1 + scale) + shift with [scale, shift] = linear(silu(temb)) (upstream chunk order)."""
    model = small_dit(num_layers=1)
    norm = model.transformer_blocks[0].norm1
    x, temb = torch.randn(2, 5, 16), torch.randn(2, 16)
    scale, shift = (F.silu(temb) @ norm.linear.weight.T + norm.linear.bias).chunk(2, dim=-1)
    expected = F.layer_norm(x, (16,), eps=1e-5) * (1 + scale[:, None]) + shift[:, None]
    torch.testing.assert_close(norm(x, temb), expected)
    # output stage: [shift, scale] = proj_out_1(silu(temb)), LayerNorm eps 1e-6 without affine, then proj_out_2
    enc, valid, image = vl_inputs()
    t = torch.tensor([3, 999])
    captured = {}
    model.proj_out_2.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    block_out = {}
    model.transformer_blocks[-1].register_forward_hook(lambda m, a, o: block_out.setdefault("h", o))
    model(x, enc, t, valid, image)
    temb2 = model.timestep_encoder(t)
    shift2, scale2 = model.proj_out_1(F.silu(temb2)).chunk(2, dim=-1)
    want = F.layer_norm(block_out["h"], (16,), eps=1e-6) * (1 + scale2[:, None]) + shift2[:, None]
    torch.testing.assert_close(captured["x"], want)


def test_timestep_changes_every_block_output():
    model = small_dit(num_layers=2)
    enc, valid, image = vl_inputs()
    x = torch.randn(2, 5, 16)
    a = model(x, enc, torch.tensor([0, 0]), valid, image)
    b = model(x, enc, torch.tensor([999, 999]), valid, image)
    assert not torch.allclose(a, b)


def test_dropout_placement_matches_upstream(monkeypatch):
    model = small_dit(num_layers=2, dropout=0.3)
    block = model.transformer_blocks[0]
    assert isinstance(block.attn1.to_out[1], torch.nn.Dropout) and block.attn1.to_out[1].p == 0.3
    assert isinstance(block.final_dropout, torch.nn.Dropout) and block.final_dropout.p == 0.3
    assert block.ff.net[1].p == 0.3 and block.ff.net[3].p == 0.3
    assert [type(m).__name__ for m in block.ff.net] == ["GELUProjection", "Dropout", "Linear", "Dropout"]
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dropout_p", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(dit_module.F, "scaled_dot_product_attention", spy)
    model.train()
    enc, valid, image = vl_inputs()
    model(torch.randn(2, 5, 16), enc, torch.tensor([3, 7]), valid, image)
    assert calls == [0.0, 0.0]  # attention probabilities are never dropped (diffusers AttnProcessor2_0)


def test_ff_uses_tanh_gelu():
    model = small_dit(num_layers=1)
    ff = model.transformer_blocks[0].ff
    x = torch.randn(3, 16)
    expected = ff.net[2](F.gelu(ff.net[0].proj(x), approximate="tanh"))
    torch.testing.assert_close(ff(x), expected)


def test_timestep_encoder_matches_diffusers_timesteps_formula():
    """diffusers Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1) -> TimestepEmbedding(256 -> D)."""
    enc = TimestepEncoder(32)
    t = torch.tensor([0, 1, 250, 999])
    half = 128
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1))
    angles = t[:, None].float() * freqs
    proj = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    emb = enc.timestep_embedder
    expected = emb.linear_2(F.silu(emb.linear_1(proj)))
    torch.testing.assert_close(enc(t), expected)


def test_action_encoder_formula():
    """W3(swish(W2([W1(a), sinusoid(bucket)]))) with sinusoid = [sin(t f), cos(t f)], f_k = 10000^(-k / (D/2))."""
    torch.manual_seed(0)
    encoder = MultiEmbodimentActionEncoder(action_dim=4, hidden_size=8, num_embodiments=3)
    for lin in (encoder.W1, encoder.W2, encoder.W3):
        torch.nn.init.normal_(lin.W, std=0.3)
        torch.nn.init.normal_(lin.b, std=0.3)
    actions, buckets, ids = torch.randn(2, 5, 4), torch.tensor([7, 640]), torch.tensor([2, 0])
    out = encoder(actions, buckets, ids)
    for b in range(2):
        k = ids[b]
        a_emb = actions[b] @ encoder.W1.W[k] + encoder.W1.b[k]
        freqs = torch.exp(-torch.arange(4) * math.log(10000.0) / 4)
        tau = torch.cat([torch.sin(buckets[b] * freqs), torch.cos(buckets[b] * freqs)]).expand(5, 8)
        x = torch.cat([a_emb, tau], dim=-1) @ encoder.W2.W[k] + encoder.W2.b[k]
        x = x * torch.sigmoid(x)
        torch.testing.assert_close(out[b], x @ encoder.W3.W[k] + encoder.W3.b[k])


def test_category_specific_layers_use_each_samples_slot():
    model, _ = gm.create_model("tiny")
    enc = model.action_head.state_encoder
    x = torch.randn(3, 1, 32)
    ids = torch.tensor([10, 0, 31])
    out = enc(x, ids)
    for b in range(3):
        k = ids[b]
        h = torch.relu(x[b] @ enc.layer1.W[k] + enc.layer1.b[k])
        torch.testing.assert_close(out[b], h @ enc.layer2.W[k] + enc.layer2.b[k])
    with pytest.raises(ValueError, match="embodiment ids"):
        enc(x, torch.tensor([0, 1, 32]))


def test_pixel_shuffle_channel_order_is_pixel_unshuffle():
    """Upstream's pixel_shuffle_back: output channel c*4 + i*2 + j = channel c of patch (2r + i, 2s + j)."""
    h = w = 4
    c = 3
    feats = torch.arange(2 * h * w * c, dtype=torch.float32).reshape(2, h * w, c)
    out = pixel_shuffle(feats, h, w, 2)
    assert out.shape == (2, 4, 12)
    grid = feats.reshape(2, h, w, c)
    for r in range(2):
        for s in range(2):
            token = r * 2 + s  # row-major output tokens
            for ch in range(c):
                for i in range(2):
                    for j in range(2):
                        assert out[1, token, ch * 4 + i * 2 + j] == grid[1, 2 * r + i, 2 * s + j, ch]


def test_patchify_matches_upstream_convert_images_to_patches():
    """Patch features in (row, col, channel) order within a patch, patches row-major."""
    img = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches, mask, shapes = patchify(img, 2)
    assert patches.shape == (2, 6, 12) and shapes.tolist() == [[2, 3], [2, 3]] and mask.all()
    # patch (1, 2) of image 1: rows 2-3, cols 4-5
    expected = img[1, :, 2:4, 4:6].permute(1, 2, 0).reshape(-1)
    assert torch.equal(patches[1, 1 * 3 + 2], expected)


def test_vlln_is_layernorm_on_backbone_features(tiny, batch):
    model, _ = tiny
    head = model.action_head
    assert isinstance(head.vlln, torch.nn.LayerNorm) and head.vlln.normalized_shape == (64,)
    out = model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    vl = head.prepare_vl(out)
    torch.testing.assert_close(vl["features"], head.vlln(out["backbone_features"]))
    assert gm.create_model("tiny", use_vlln=False)[0].action_head.vlln.__class__ is torch.nn.Identity


def test_position_embedding_added_to_action_tokens_only(tiny, batch, monkeypatch):
    model, _ = tiny
    head = model.action_head
    captured = {}
    monkeypatch.setattr(head.model, "forward", lambda tokens, **kw: captured.setdefault("t", tokens) * 0 + 0)
    monkeypatch.setattr(head.action_decoder, "forward", lambda x, ids: x[..., :32])
    vl = head.prepare_vl(model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"]))
    state = head.encode_state(batch["state"], batch["embodiment_id"])
    noisy = torch.randn(3, 16, 32)
    buckets = torch.tensor([1, 2, 3])
    head.predict_velocity(vl, state, noisy, buckets, batch["embodiment_id"])
    tokens = captured["t"]
    assert tokens.shape == (3, 1 + 16, 96)  # [state tokens, action tokens]
    torch.testing.assert_close(tokens[:, :1], state)
    expected = head.action_encoder(noisy, buckets, batch["embodiment_id"]) + head.position_embedding.weight[:16]
    torch.testing.assert_close(tokens[:, 1:], expected)


# ---------------------------------------------------------------------------------------------------------------------
# flow matching


def test_time_bucket_matches_upstream_truncation():
    torch.manual_seed(0)
    t = fm.sample_time(10_000, 1.5, 1.0, 0.999)
    assert torch.equal(fm.time_bucket(t, 1000), (t * 1000).long())  # upstream: (t * num_timestep_buckets).long()
    edges = torch.tensor([0.0, 0.000999, 0.001, 0.5, 0.7499999, 0.75, 0.998999])
    assert fm.time_bucket(edges, 1000).tolist() == [0, 0, 1, 500, 749, 750, 998]
    assert fm.time_bucket(t, 1000).max() <= 998  # t < 0.999 never reaches bucket 999


def test_time_distribution_is_beta_1p5_1_reflected_and_scaled():
    torch.manual_seed(0)
    t = fm.sample_time(200_000, 1.5, 1.0, 0.999)
    s = 1 - t / 0.999  # s ~ Beta(1.5, 1): CDF s^1.5
    for q in (0.1, 0.3, 0.5, 0.9):
        assert abs((s <= q).float().mean().item() - q**1.5) < 0.005


def test_euler_timesteps_and_buckets_for_other_step_counts(tiny, batch, monkeypatch):
    model, _ = tiny
    seen = []

    def velocity(vl, state_features, noisy_action, t_bucket, embodiment_id):
        seen.append(int(t_bucket[0]))
        return torch.ones_like(noisy_action)

    monkeypatch.setattr(model.action_head, "predict_velocity", velocity)
    gen = torch.Generator().manual_seed(3)
    pred = model.get_action(**batch, num_inference_timesteps=8, generator=gen)["action_pred"]
    assert seen == [0, 125, 250, 375, 500, 625, 750, 875]
    noise = torch.randn((3, 16, 32), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(pred, noise + 1.0)  # 8 steps of dt = 1/8 at velocity 1
    seen.clear()
    model.config.num_inference_timesteps = 4
    model.get_action(**batch)
    assert seen == [0, 250, 500, 750]
    assert fm.euler_timesteps(4) == [0.0, 0.25, 0.5, 0.75]


def test_training_uses_one_time_per_sample_and_upstream_interpolation(tiny, batch, monkeypatch):
    model, _ = tiny
    model.eval()
    captured = {}

    def velocity(vl, state_features, noisy_action, t_bucket, embodiment_id):
        captured["x"], captured["bucket"] = noisy_action, t_bucket
        return torch.zeros_like(noisy_action)

    monkeypatch.setattr(model.action_head, "predict_velocity", velocity)
    torch.manual_seed(11)
    loss = model(**batch).loss
    torch.manual_seed(11)
    noise = torch.randn_like(batch["action"])
    t = fm.sample_time(3, 1.5, 1.0, 0.999)
    torch.testing.assert_close(captured["x"], (1 - t)[:, None, None] * noise + t[:, None, None] * batch["action"])
    assert torch.equal(captured["bucket"], (t * 1000).long())
    mask = batch["action_mask"]
    target = batch["action"] - noise
    torch.testing.assert_close(loss, (target**2 * mask).sum() / (mask.sum() + 1e-6))


def test_no_state_dropout_or_noise_at_inference(make_sample):
    model, tok = gm.create_model("tiny", state_dropout_prob=1.0, state_additive_noise_scale=10.0)
    batch = gm.Gr00tCollator(tok, model.config)([make_sample(np.random.default_rng(0))])
    a = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    b = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert torch.equal(a, b)
