"""The tiny N1.7 on CPU: inputs, backbone features, loss and training, sampling with RTC, save / load, trainable flags.

Batches are built here in Qwen3-VL's input format (the N1.7 collator does not exist yet): token ids of the byte
tokenizer's range, ``<img> <IMG_CONTEXT> x n </img>`` per image, left padding, and flattened patches from
:func:`images_to_patches` (checked against transformers' own Qwen2-VL image processor below).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, Qwen2VLImageProcessorPil, Qwen3VLForConditionalGeneration, Qwen3VLModel

from groot_ft.model.n17 import Gr00tN1d7, images_to_patches, n17_preset, rtc_velocity_weights
from groot_ft.model.n17.backbone import truncated_vlm_config
from groot_ft.model.tokenizer import IMG_CONTEXT_ID, SPECIAL_TOKENS

IMG_START, IMG_END = SPECIAL_TOKENS.index("<img>"), SPECIAL_TOKENS.index("</img>")


def tiny_model(seed: int = 0, **overrides) -> Gr00tN1d7:
    overrides.setdefault("state_dropout_prob", 0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Gr00tN1d7(n17_preset("n1.7-tiny", **overrides))


def make_batch(config, text_lengths=(5, 9, 3), images_per_sample=2, image_hw=(32, 48), seed=0) -> dict:
    """Left-padded Qwen3-VL inputs plus state / action for the tiny geometry."""
    rng = np.random.default_rng(seed)
    vision = config.vlm_config.vision_config
    factor = vision.patch_size * vision.spatial_merge_size
    tokens_per_image = (image_hw[0] // factor) * (image_hw[1] // factor)
    rows = []
    for length in text_lengths:
        ids = rng.integers(len(SPECIAL_TOKENS), 260, length).tolist()
        for _ in range(images_per_sample):
            ids += [IMG_START] + [IMG_CONTEXT_ID] * tokens_per_image + [IMG_END]
        rows.append(ids)
    batch, width = len(rows), max(map(len, rows))
    input_ids = torch.zeros(batch, width, dtype=torch.long)
    attention_mask = torch.zeros(batch, width, dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, width - len(ids):] = torch.tensor(ids)
        attention_mask[i, width - len(ids):] = 1
    images = torch.from_numpy(rng.uniform(-1, 1, (batch * images_per_sample, 3, *image_hw)).astype(np.float32))
    pixel_values, grid = images_to_patches(images, vision.patch_size, vision.temporal_patch_size,
                                           vision.spatial_merge_size)
    horizon, dims = config.action_horizon, config.max_action_dim
    action = torch.zeros(batch, horizon, dims)
    mask = torch.zeros(batch, horizon, dims)
    steps = np.cumsum(rng.normal(size=(batch, 12, 7)) * 0.2, axis=1).clip(-1, 1)
    action[:, :12, :7], mask[:, :12, :7] = torch.from_numpy(steps.astype(np.float32)), 1.0
    state = torch.zeros(batch, config.state_history_length, config.max_state_dim)
    state[..., :7] = torch.from_numpy(rng.uniform(-1, 1, (batch, config.state_history_length, 7)).astype(np.float32))
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values": pixel_values,
        "image_grid_thw": grid,
        "state": state,
        "embodiment_id": torch.tensor([10, 10, 3][:batch]),
        "action": action,
        "action_mask": mask,
    }


@pytest.fixture(scope="module")
def built():
    model = tiny_model()
    return model, make_batch(model.config)


# --- inputs and backbone ---------------------------------------------------------------------------------------------
def test_images_to_patches_matches_transformers_qwen2vl_image_processor():
    image = np.random.default_rng(1).uniform(-1, 1, (3, 32, 48)).astype(np.float32)
    processor = Qwen2VLImageProcessorPil(do_resize=False, do_rescale=False, do_normalize=False, patch_size=8,
                                         temporal_patch_size=2, merge_size=2)
    reference = processor(images=[image], return_tensors="pt", input_data_format="channels_first")
    patches, grid = images_to_patches(torch.from_numpy(image)[None], 8, 2, 2)
    assert torch.equal(grid, reference["image_grid_thw"])
    assert torch.equal(patches, reference["pixel_values"])
    with pytest.raises(ValueError, match="multiple of 16"):
        images_to_patches(torch.zeros(1, 3, 24, 32), 8, 2, 2)


def test_backbone_features_are_the_last_kept_layer_before_the_final_norm(built):
    model, batch = built
    model.eval()
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")
    with torch.no_grad():
        out = model.backbone(*(batch[k] for k in keys))
        vlm = model.backbone.model.model
        image_mask = batch["input_ids"] == IMG_CONTEXT_ID
        normed = vlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                     mm_token_type_ids=image_mask.int(), use_cache=False).last_hidden_state
    features = out["backbone_features"]
    assert features.shape == (3, batch["input_ids"].shape[1], model.config.backbone_embedding_dim)
    real = batch["attention_mask"].bool()
    assert torch.allclose(vlm.language_model.norm(features)[real], normed[real], atol=1e-5)
    assert not torch.allclose(features[real], normed[real], atol=1e-2)
    assert torch.equal(out["image_mask"], image_mask) and torch.equal(out["backbone_attention_mask"], real)


def test_left_padding_does_not_change_a_samples_backbone_features(built):
    """Multimodal rotary positions count real tokens only, so a sample's features do not depend on its padding."""
    model, batch = built
    model.eval()
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")
    with torch.no_grad():
        together = model.backbone(*(batch[k] for k in keys))["backbone_features"]
        i = 2  # the shortest text: the most left padding
        real = batch["attention_mask"][i].bool()
        per_sample_patches = batch["pixel_values"].shape[0] // 3
        alone = model.backbone(
            batch["input_ids"][i : i + 1, real],
            batch["attention_mask"][i : i + 1, real],
            batch["pixel_values"][i * per_sample_patches : (i + 1) * per_sample_patches],
            batch["image_grid_thw"][2 * i : 2 * i + 2],
        )["backbone_features"]
    assert torch.allclose(together[i, real], alone[0], atol=1e-5)


def test_truncation_keeps_the_first_layers_of_the_full_llm(built):
    """Upstream pops the LLM layers above select_layer: the features equal the untruncated Qwen3-VL's hidden state
    after layer select_layer - 1 when both hold the same weights."""
    model, batch = built
    model.eval()
    config = model.config
    full = Qwen3VLModel(config.vlm_config).eval()  # all 4 tiny LLM layers
    result = full.load_state_dict(model.backbone.model.model.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert sorted({k.split(".")[2] for k in result.missing_keys}) == ["3"]  # only the popped layer is new
    image_mask = batch["input_ids"] == IMG_CONTEXT_ID
    with torch.no_grad():
        ours = model.backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                              batch["image_grid_thw"])["backbone_features"]
        hidden = full(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                      mm_token_type_ids=image_mask.int(), use_cache=False, output_hidden_states=True).hidden_states
    assert len(hidden) == 5  # embeddings + 4 layers
    real = batch["attention_mask"].bool()
    assert torch.allclose(ours[real], hidden[config.select_layer][real], atol=1e-5)


def test_vl_self_attention_has_no_mask_as_upstream(built):
    """Upstream's VL self-attention attends over every position, padding included: what a padded position holds
    reaches the real tokens (the DiT's cross-attention, by contrast, masks padding)."""
    model, _ = built
    model.eval()
    attention = model.action_head.vl_self_attention
    x = torch.randn(1, 6, model.config.backbone_embedding_dim)
    changed = x.clone()
    # Position 0 stands for left padding; a random change (a uniform shift would be normed away by norm1).
    changed[0, 0] = torch.randn(x.shape[-1])
    with torch.no_grad():
        assert not torch.allclose(attention(x)[0, 1:], attention(changed)[0, 1:])


def test_deepstack_and_vision_tower_receive_gradients_when_tuned():
    model = tiny_model(tune_visual=True)
    batch = make_batch(model.config)
    model.train()
    model(**batch).loss.backward()
    visual = model.backbone.model.visual
    for name in ("deepstack_merger_list.0.linear_fc2.weight", "merger.linear_fc2.weight", "patch_embed.proj.weight"):
        grad = visual.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


# --- training ----------------------------------------------------------------------------------------------------------
def test_loss_is_finite_and_falls_over_a_few_optimizer_steps():
    model = tiny_model()
    batch = make_batch(model.config)

    def fixed_loss():
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)  # the same noise and flow-matching times before and after
            return float(model(**batch).loss)

    before = fixed_loss()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for step in range(25):
        torch.manual_seed(step)
        loss = model(**batch).loss
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = fixed_loss()
    assert math.isfinite(before) and after < 0.7 * before, (before, after, losses)


def test_masked_loss_ignores_padding_and_matches_its_elements(built):
    model, batch = built
    model.eval()
    torch.manual_seed(5)
    out = model(**batch)
    mask = batch["action_mask"]
    assert torch.equal(out.action_loss * (1 - mask), torch.zeros_like(mask))
    assert torch.allclose(out.loss, out.action_loss.sum() / (mask.sum() + 1e-6))


def test_state_history_is_one_token_and_dropout_zeroes_it():
    model = tiny_model(state_history_length=2, state_dropout_prob=1.0)
    batch = make_batch(model.config)
    assert batch["state"].shape == (3, 2, 32)
    head = model.action_head
    assert head.state_encoder.layer1.W.shape == (32, 64, 64)
    ids = batch["embodiment_id"]
    model.train()
    assert torch.equal(head.encode_state(batch["state"], ids), torch.zeros(3, 1, 96))
    model.eval()
    kept = head.encode_state(batch["state"], ids)
    assert kept.shape == (3, 1, 96) and kept.abs().sum() > 0
    # The steps are concatenated in order: (s_0, s_1) and (s_1, s_0) are different inputs.
    swapped = head.encode_state(batch["state"].flip(1), ids)
    assert not torch.allclose(kept, swapped)
    with pytest.raises(ValueError, match="state_history_length=2"):
        head.encode_state(batch["state"][:, :1], ids)
    assert not any("mask_token" in name for name, _ in model.named_parameters())


# --- sampling ------------------------------------------------------------------------------------------------------------
def test_get_action_shape_buckets_and_determinism(built):
    model, batch = built
    model.train()
    buckets = []
    hook = model.action_head.model.timestep_encoder.register_forward_hook(
        lambda _m, args, _out: buckets.append(args[0].tolist()))
    try:
        first = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    finally:
        hook.remove()
    assert first.shape == (3, 16, 32) and torch.isfinite(first).all()
    assert buckets == [[b] * 3 for b in (0, 250, 500, 750)]  # 4 Euler steps at t = 0, 1/4, 2/4, 3/4
    assert model.training  # sampling leaves the caller's mode alone
    again = model.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
    assert torch.equal(first, again)
    noise = torch.randn(3, 16, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.get_action(**batch, noise=noise)["action_pred"], first)
    other = model.get_action(**batch, generator=torch.Generator().manual_seed(1))["action_pred"]
    assert not torch.allclose(first, other)


def test_rtc_velocity_weights_follow_upstreams_ramp():
    weights = rtc_velocity_weights(horizon=8, overlap=5, frozen=2, ramp_rate=6.0)
    ramp = [1 - math.exp(-6.0 * t) for t in (0.25, 0.5, 0.75)]
    expected = [0.0, 0.0] + [r / (1 - math.exp(-6.0)) for r in ramp] + [1.0, 1.0, 1.0]
    assert weights.tolist() == pytest.approx(expected, abs=1e-6)
    assert weights.tolist() == pytest.approx([0, 0, 0.77880, 0.95257, 0.99134, 1, 1, 1], abs=1e-5)
    assert rtc_velocity_weights(4, 0, 0, 6.0).tolist() == [1.0] * 4


def test_rtc_keeps_the_frozen_rows_of_the_previous_chunk(built):
    model, batch = built
    noise = torch.randn(3, 16, 32, generator=torch.Generator().manual_seed(2))
    previous = model.get_action(**batch, noise=noise)["action_pred"]
    options = {"action_horizon": 12, "rtc_overlap_steps": 6, "rtc_frozen_steps": 2, "rtc_ramp_rate": 6.0}
    chunk = model.get_action(**batch, noise=noise, previous_action=previous, options=options)["action_pred"]
    # Rows [0, frozen) start at the previous chunk's rows [horizon - overlap, ...) and never move.
    assert torch.equal(chunk[:, :2], previous[:, 6:8])
    assert not torch.allclose(chunk[:, 2:6], previous[:, 8:12])  # ramped rows still denoise
    # No overlap: plain sampling.
    none = dict(options, rtc_overlap_steps=0, rtc_frozen_steps=0)
    assert torch.equal(model.get_action(**batch, noise=noise, previous_action=previous, options=none)["action_pred"],
                       previous)
    with pytest.raises(ValueError, match="both previous_action and options"):
        model.get_action(**batch, noise=noise, options=options)
    with pytest.raises(ValueError, match="rtc_ramp_rate"):
        model.get_action(**batch, previous_action=previous,
                         options={k: v for k, v in options.items() if k != "rtc_ramp_rate"})
    with pytest.raises(ValueError, match="action_horizon"):
        model.get_action(**batch, previous_action=previous, options=dict(options, action_horizon=4))


# --- save / load -----------------------------------------------------------------------------------------------------------
def test_save_and_load_round_trip_through_auto_classes(tmp_path, built):
    model, batch = built
    with torch.no_grad():
        model.action_head.position_embedding.weight.add_(0.5)  # non-initial values survive too
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_type"] == "Gr00tN1d7" and meta["architectures"] == ["Gr00tN1d7"]
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, Gr00tN1d7)
    before, after = model.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys() == load_file(tmp_path / "model.safetensors").keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    # Same weights -> the same loss under one seed and the same actions from one noise (this also checks that the
    # rotary frequencies, which are not saved, are rebuilt identically).
    model.train(), loaded.train()
    torch.manual_seed(3)
    a = model(**batch).loss
    torch.manual_seed(3)
    assert torch.equal(a, loaded(**batch).loss)
    noise = torch.randn(3, 16, 32)
    assert torch.equal(model.get_action(**batch, noise=noise)["action_pred"],
                       loaded.get_action(**batch, noise=noise)["action_pred"])
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad]


def test_an_upstream_layout_checkpoint_loads_one_to_one(tmp_path):
    """A checkpoint written under upstream's names, with the tied lm_head upstream's Qwen3-VL class holds: every
    tensor lands where upstream has it; the lm_head is the only key left over."""
    config = n17_preset("n1.7-tiny")
    torch.manual_seed(7)
    upstream_vlm = Qwen3VLForConditionalGeneration(truncated_vlm_config(config))
    tensors = {"backbone.model." + k: torch.randn_like(v) for k, v in upstream_vlm.state_dict().items()}
    assert "backbone.model.lm_head.weight" in tensors
    head = Gr00tN1d7(config).action_head  # the head's tensors, checked by name in test_n17_architecture
    tensors.update({"action_head." + k: torch.randn_like(v) for k, v in head.state_dict().items()})
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, tmp_path / "model.safetensors")
    config.save_pretrained(tmp_path)

    model, info = Gr00tN1d7.from_pretrained(tmp_path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"]
    assert set(info["unexpected_keys"]) <= {"backbone.model.lm_head.weight"}
    state = model.state_dict()
    assert set(state) == set(tensors) - {"backbone.model.lm_head.weight"}
    for key, value in state.items():
        assert value.dtype == torch.float32 and torch.equal(value, tensors[key].to(torch.bfloat16).float()), key
    batch = make_batch(model.config)
    model.train()
    assert torch.isfinite(model(**batch).loss)


# --- trainable flags ---------------------------------------------------------------------------------------------------
def test_trainable_flags_follow_upstream():
    model = tiny_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("backbone.") for n in trainable)  # N1.7 default: backbone frozen
    assert any(n.startswith("action_head.vl_self_attention.") for n in trainable)
    model.set_trainable(tune_vlln=False, tune_top_llm_layers=1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("action_head.vl_self_attention.", "action_head.vlln.")) for n in trainable)
    llm = "backbone.model.model.language_model."
    assert {n.split(".")[5] for n in trainable if n.startswith(llm + "layers.")} == {"2"}
    assert llm + "norm.weight" not in trainable and llm + "embed_tokens.weight" not in trainable
    model.train()
    assert not model.action_head.vl_self_attention.training and model.action_head.model.training
    with pytest.raises(ValueError, match="unknown trainable flags"):
        model.set_trainable(tune_vision=True)


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    """Dropout in the DiT and VL self-attention: checkpointing must replay the same masks; the top LLM layer trains."""
    model = tiny_model(tune_top_llm_layers=1)
    batch = make_batch(model.config)

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        model.train()
        torch.manual_seed(0)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.action_head.vl_self_attention.transformer_blocks[0].gradient_checkpointing
    ckpt_loss, ckpt_grads = loss_and_grads()
    assert torch.equal(loss, ckpt_loss) and grads.keys() == ckpt_grads.keys()
    assert any(n.startswith("backbone.model.model.language_model.layers.2.") for n in grads)
    for name in grads:
        assert torch.allclose(grads[name], ckpt_grads[name], atol=1e-6), name


def test_a_bf16_cast_model_trains_and_samples():
    model = tiny_model().to(torch.bfloat16)
    batch = make_batch(model.config)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    assert model.get_action(**batch)["action_pred"].dtype == torch.bfloat16


def test_text_only_batches_run_and_image_tokens_need_pixels(built):
    model, _ = built
    batch = make_batch(model.config, images_per_sample=0)
    del batch["pixel_values"], batch["image_grid_thw"]
    model.train()
    assert torch.isfinite(model(**batch).loss)
    assert model.get_action(**batch)["action_pred"].shape == (3, 16, 32)
    with_images = make_batch(model.config)
    del with_images["pixel_values"]
    with pytest.raises(ValueError, match="image tokens but no pixel_values"):
        model(**with_images)


# --- LoRA -------------------------------------------------------------------------------------------------------------
def test_lora_adapts_the_qwen3vl_llm_and_vision_blocks_and_the_dit(built, tmp_path):
    """N1.7's parts under upstream's names: 7 projections per kept LLM layer, the vision blocks' fused qkv / proj /
    MLP, 6 per DiT block. Targeted parts train through their adapters only; merged weights reproduce the adapted
    model, and peft itself loads the adapter onto the base model."""
    from peft import PeftModel

    from groot_ft.model.lora import LoraSettings, add_lora, lora_modules, merged_state_dict, save_adapter

    _, batch = built
    model = tiny_model(tune_visual=True)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    counts = add_lora(model, LoraSettings(4, 8, 0.0, ("llm", "visual", "dit")))
    adapted = sorted(lora_modules(model))
    cfg = model.config
    assert len(adapted) == 7 * cfg.select_layer + 4 * cfg.vlm_config.vision_config.depth + 6 * 4 == 53
    assert "backbone.model.model.visual.blocks.0.attn.qkv" in adapted
    assert "backbone.model.model.language_model.layers.2.mlp.down_proj" in adapted
    assert "action_head.model.transformer_blocks.3.ff.net.2" in adapted
    assert counts["adapters"] == sum(4 * (linears[n].in_features + linears[n].out_features) for n in adapted)
    scopes = ("backbone.model.model.language_model.", "backbone.model.model.visual.", "action_head.model.")
    for name, param in model.named_parameters():
        if name.startswith(scopes):
            assert param.requires_grad == (".lora_A." in name or ".lora_B." in name), name
    # tune_vlln's VL self-attention is not a LoRA part: it trains fully
    assert all(p.requires_grad for p in model.action_head.vl_self_attention.parameters())

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # adapters of a trained size (B is zero at init)
        for module in lora_modules(model).values():
            module.lora_B["default"].weight.copy_(torch.randn(module.lora_B["default"].weight.shape, generator=gen))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = tiny_model(tune_visual=True)
    merged = merged_state_dict(model, state)
    assert merged.keys() == plain.state_dict().keys()
    plain.load_state_dict(merged, strict=True)
    noise = torch.randn(3, 16, 32, generator=gen)
    ours = model.get_action(**batch, noise=noise)["action_pred"]
    torch.testing.assert_close(plain.get_action(**batch, noise=noise)["action_pred"], ours, rtol=1e-4, atol=1e-4)
    save_adapter(model, state, tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(tiny_model(tune_visual=True), tmp_path / "adapter")
    assert torch.equal(peft_model.get_base_model().get_action(**batch, noise=noise)["action_pred"], ours)
