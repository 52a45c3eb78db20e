"""LoRA (model/lora.py) and activation checkpointing on the model itself: which parameters train, the adapter count
from the layer shapes, merged weights against the unmerged model and against peft's own merge, the adapter file in
peft's format, and gradients with and without checkpointing. The training runs (DeepSpeed, resume, the workflow) are in
tests/test_train.py and tests/test_workflow_lora.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import groot_ft.model as gm
from groot_ft.model.lora import (
    LoraConfigError,
    LoraSettings,
    add_lora,
    lora_modules,
    merged_state_dict,
    parameter_counts,
    save_adapter,
)

# The mid preset's widths (1024-wide Qwen3, SigLIP2-base tower at 224 px, 768-wide DiT) with fewer layers, so a
# forward + backward takes seconds on CPU: 2 of 3 LLM layers kept, 2 vision layers, 2 DiT blocks.
MID_FEW_LAYERS = {
    "vision_config": {"num_hidden_layers": 2},
    "text_config": {"num_hidden_layers": 3},
    "select_layer": 2,
    "tune_top_llm_layers": 1,
    "diffusion_model_cfg": {"num_layers": 2},
}
# Module-name prefixes of what each part's tune_* flag covers (frozen when the part carries adapters).
PART_SCOPES = {
    "llm": ("backbone.model.language_model.",),
    "visual": ("backbone.model.vision_model.", "backbone.model.mlp1."),
    "dit": ("action_head.model.",),
}


def expected_adapter_parameters(config, targets, rank: int) -> int:
    """rank x (in + out) summed over the adapted Linear layers, from the config's dimensions alone."""
    total = 0
    if "llm" in targets:
        t = config.text_config
        hidden, inter = t.hidden_size, t.intermediate_size
        q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
        per_layer = (hidden + q) + 2 * (hidden + kv) + (q + hidden) + 2 * (hidden + inter) + (inter + hidden)
        total += config.select_layer * per_layer
    if "visual" in targets:
        v = config.vision_config
        per_layer = 4 * (2 * v.hidden_size) + 2 * (v.hidden_size + v.intermediate_size)
        total += v.num_hidden_layers * per_layer
    if "dit" in targets:
        dit = config.diffusion_model_cfg
        inner = dit["num_attention_heads"] * dit["attention_head_dim"]
        for idx in range(dit["num_layers"]):
            kv_in = inner if idx % 2 == 1 else config.backbone_embedding_dim  # odd blocks self-attend
            total += 2 * inner + 2 * (kv_in + inner) + 2 * inner + 5 * inner + 5 * inner  # q, k, v, out, ff in/out
    return rank * total


def trainable_outside(model, targets) -> int:
    """Trainable parameters of the plain model (tune_* flags) outside the parts that will carry adapters."""
    scopes = tuple(prefix for part in targets for prefix in PART_SCOPES[part])
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith(scopes))


@pytest.mark.parametrize(
    ("preset", "overrides", "targets"),
    [
        ("tiny", {"tune_visual": True}, ("llm", "dit")),
        ("tiny", {"tune_llm": True, "tune_visual": True}, ("llm", "visual", "dit")),
        ("tiny", {}, ("visual",)),
        ("mid", MID_FEW_LAYERS, ("llm", "visual", "dit")),
    ],
    ids=["tiny-llm-dit", "tiny-all", "tiny-visual", "mid-few-layers-all"],
)
def test_trainable_parameters_are_the_adapters_plus_the_other_parts_flags(preset, overrides, targets):
    model, _ = gm.create_model(preset, **overrides)
    rank = 16
    others = trainable_outside(model, targets)
    counts = add_lora(model, LoraSettings(rank, 32, 0.0, targets))
    expected = expected_adapter_parameters(model.config, targets, rank)
    assert counts["adapters"] == expected
    assert counts["trainable"] == expected + others
    assert counts["adapted_modules"] == len(lora_modules(model))
    for name, param in model.named_parameters():
        is_adapter = ".lora_A." in name or ".lora_B." in name
        in_target = name.startswith(tuple(p for part in targets for p in PART_SCOPES[part]))
        if in_target:  # a targeted part trains through its adapters only, whatever its tune_* flag says
            assert param.requires_grad == is_adapter, name
    # the rule survives a later change of flags
    model.set_trainable(tune_llm=True)
    if "llm" in targets:
        assert not model.backbone.model.language_model.model.layers[0].self_attn.q_proj.base_layer.weight.requires_grad


def test_bad_lora_settings_are_clear_errors():
    from groot_ft.config import ConfigError, FinetuneConfig
    from tests.conftest import PROJECT_ROOT

    # the run config catches what it can before any stage runs
    cfg = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml")
    with pytest.raises(ConfigError, match=r"lora_targets: \[\] should be non-empty"):
        cfg.replace(lora_rank=4, lora_targets=[])
    with pytest.raises(ConfigError, match="lora_targets"):
        cfg.replace(lora_rank=4, lora_targets=["mlp1"])
    assert LoraSettings.from_run_config(cfg.replace(lora_rank=0, lora_targets=[])) is None

    model, _ = gm.create_model("tiny")
    with pytest.raises(LoraConfigError, match="lora_targets is empty"):
        add_lora(model, LoraSettings(4, 8, 0.0, ()))
    with pytest.raises(LoraConfigError, match=r"unknown part\(s\) \['mlp1'\]"):
        add_lora(model, LoraSettings(4, 8, 0.0, ("mlp1",)))
    no_dit, _ = gm.create_model("tiny", diffusion_model_cfg={"num_layers": 0})
    with pytest.raises(LoraConfigError, match="no dit layers"):
        add_lora(no_dit, LoraSettings(4, 8, 0.0, ("dit",)))
    add_lora(model, LoraSettings(4, 8, 0.0, ("llm",)))
    with pytest.raises(LoraConfigError, match="already has LoRA adapters"):
        add_lora(model, LoraSettings(4, 8, 0.0, ("dit",)))


def _trained_adapters(model, seed: int = 1) -> None:
    """Give every adapter's B (zero at init) values of a trained size, so merging changes the weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in lora_modules(model).values():
            b = module.lora_B["default"].weight
            b.copy_(torch.randn(b.shape, generator=gen) * 0.05)


def _outputs(model, batch):
    model.eval()
    torch.manual_seed(3)
    loss = model(**batch).loss
    actions = model.get_action(**batch, generator=torch.Generator().manual_seed(4))["action_pred"]
    return loss.detach(), actions


def test_merged_weights_equal_the_unmerged_model_and_peft(batch, tmp_path):
    from peft import PeftModel

    targets = ("llm", "visual", "dit")
    model, _ = gm.create_model("tiny", tune_visual=True)
    add_lora(model, LoraSettings(8, 16, 0.1, targets))
    _trained_adapters(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model, state)

    plain, _ = gm.create_model("tiny", tune_visual=True)
    assert merged.keys() == plain.state_dict().keys()  # upstream's tensor names, nothing of peft's left
    plain.load_state_dict(merged, strict=True)
    loss, actions = _outputs(model, batch)
    merged_loss, merged_actions = _outputs(plain, batch)
    # merging W + s B A in fp32 against x W^T + s (x A^T) B^T: float rounding only
    torch.testing.assert_close(merged_loss, loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(merged_actions, actions, rtol=1e-5, atol=1e-5)
    assert (merged_actions - actions).abs().max() < 1e-5

    # the adapter directory in peft's format: peft loads it onto the base model and merges it to the same weights
    save_adapter(model, state, tmp_path / "adapter")
    base, _ = gm.create_model("tiny", tune_visual=True)  # same seed: the weights the adapters were added to
    peft_model = PeftModel.from_pretrained(base, tmp_path / "adapter")
    peft_loss, peft_actions = _outputs(peft_model.get_base_model(), batch)
    assert torch.equal(peft_loss, loss) and torch.equal(peft_actions, actions)
    peft_merged = peft_model.merge_and_unload().state_dict()
    assert peft_merged.keys() == merged.keys()
    for key, tensor in merged.items():
        assert torch.equal(peft_merged[key], tensor), key


def test_adapter_holds_what_peft_cannot_name_beside_it(tmp_path):
    """With state dropout the learned mask_token sits directly in the action head, which also holds the frozen DiT
    (adapted): peft's modules_to_save cannot name it, so it goes to other_parameters.safetensors."""
    import json

    from safetensors.torch import load_file

    model, _ = gm.create_model("tiny", state_dropout_prob=0.3)
    add_lora(model, LoraSettings(4, 8, 0.0, ("dit",)))
    save_adapter(model, model.state_dict(), tmp_path)
    meta = json.loads((tmp_path / "groot_ft_adapter.json").read_text())
    assert meta["other_parameters"]["names"] == ["action_head.mask_token"]
    assert "action_head.action_encoder" in meta["modules_to_save"]
    other = load_file(str(tmp_path / "other_parameters.safetensors"))
    assert torch.equal(other["action_head.mask_token"], model.action_head.mask_token.detach())
    saved = sum(t.numel() for t in load_file(str(tmp_path / "adapter_model.safetensors")).values())
    assert saved + other["action_head.mask_token"].numel() == parameter_counts(model)["trainable"]


def _loss_and_grads(model, batch, seed=0):
    model.zero_grad(set_to_none=True)
    model.train()
    torch.manual_seed(seed)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("preset", ["tiny", "mid"])
def test_activation_checkpointing_gives_identical_gradients_with_lora(preset, make_sample, tokenizer):
    """Dropout everywhere it can be (DiT 0.1, LoRA 0.1): checkpointing must replay the same masks."""
    overrides = {"tune_visual": True, "diffusion_model_cfg": {"dropout": 0.1}}
    if preset == "mid":
        overrides = {**MID_FEW_LAYERS, **overrides, "diffusion_model_cfg": {"num_layers": 2, "dropout": 0.1}}
    model, _ = gm.create_model(preset, **overrides)
    add_lora(model, LoraSettings(4, 8, 0.1, ("llm", "visual", "dit")))
    _trained_adapters(model)  # B = 0 would leave A without gradient
    cfg = model.config
    edge = cfg.image_size
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, text="pick the pear", image_hw=(edge, edge), embodiment_id=i) for i in range(2)]
    for s in samples:  # mid pads to 64 dims
        s["state"] = np.pad(s["state"], ((0, 0), (0, cfg.max_state_dim - 32)))
        s["action"] = np.pad(s["action"], ((0, 0), (0, cfg.max_action_dim - 32)))
        s["action_mask"] = np.pad(s["action_mask"], ((0, 0), (0, cfg.max_action_dim - 32)))
    batch = gm.Gr00tCollator(tokenizer, cfg)(samples)

    loss, grads = _loss_and_grads(model, batch)
    model.activation_checkpointing_enable()
    calls = {"llm": 0, "visual": 0, "dit": 0}
    hooks = [
        # transformers checkpoints a layer's forward and torch stops the replay once the saved tensors are rebuilt,
        # so count the first submodule of each layer: 2 calls = run once, recomputed once
        model.backbone.model.language_model.layers[0].input_layernorm.register_forward_hook(
            lambda *_: calls.__setitem__("llm", calls["llm"] + 1)),
        model.backbone.model.vision_model.vision_model.encoder.layers[0].layer_norm1.register_forward_hook(
            lambda *_: calls.__setitem__("visual", calls["visual"] + 1)),
        model.action_head.model.transformer_blocks[0].norm1.register_forward_hook(
            lambda *_: calls.__setitem__("dit", calls["dit"] + 1)),
    ]
    ckpt_loss, ckpt_grads = _loss_and_grads(model, batch)
    for h in hooks:
        h.remove()
    assert calls == {"llm": 2, "visual": 2, "dit": 2}

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads.keys() == ckpt_grads.keys() == trainable  # every trainable parameter gets a gradient
    assert torch.equal(loss, ckpt_loss)
    for name in grads:  # bitwise: checkpointing may be switched on when a run resumes
        assert torch.equal(grads[name], ckpt_grads[name]), name


def test_adapters_stay_fp32_on_a_bf16_backbone(make_sample, tokenizer):
    """upstream's load_bf16 + backbone_trainable_params_fp32: frozen base layers bf16, the adapters (trainable) fp32,
    and the forward / backward pass works without autocast."""
    model, _ = gm.create_model("tiny", bf16_weights=True, tune_visual=True)
    add_lora(model, LoraSettings(4, 8, 0.1, ("llm", "visual", "dit")))
    q = model.backbone.model.language_model.layers[0].self_attn.q_proj
    assert q.base_layer.weight.dtype == torch.bfloat16 and q.lora_A["default"].weight.dtype == torch.float32
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    rng = np.random.default_rng(0)
    batch = gm.Gr00tCollator(tokenizer, model.config)([make_sample(rng) for _ in range(2)])
    model.train()
    model(**batch).loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
