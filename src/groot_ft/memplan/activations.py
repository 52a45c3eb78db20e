"""Activation memory of one training micro-batch, counted from the architecture.

Autograd keeps, for every operation whose inputs or weights need a gradient, the tensors its backward formula reads.
Counting them per layer type gives bytes per token as a sum of the layer's widths; the per-layer lists below were
read off the code of each layer and checked tensor by tensor with ``torch.autograd.graph.saved_tensors_hooks``
(``tests/test_memplan.py`` compares the totals with the hooks on the ``tiny`` preset, with tune flags, peft's LoRA
and the model's gradient checkpointing; docs/benchmarks.md also on ``mid``). Notation: ``e`` bytes
per element of the model's dtype (2 in bf16, 4 in fp32), ``m`` bytes per element of a dropout mask (1 on CUDA, whose
fused dropout keeps a bool mask; ``e`` on the CPU, which keeps the scaled noise tensor), ``d`` the hidden width,
``q = heads x head_dim``, ``kv = kv_heads x head_dim``, ``ff`` the MLP width.

Terms are split by why they are kept: ``x`` terms are needed to pass the gradient to the layer's input, ``w`` terms
(the inputs of Linear layers) for the Linear weights' gradients, ``n`` terms (the normalised operands of RMSNorm
weights, the DiT's input to its timestep modulation) for the norm and modulation weights. A trainable layer keeps all
three; a layer with LoRA adapters keeps ``x`` and ``w`` (``lora_A`` reads the Linear's input; its own norms stay
frozen); a frozen layer that the gradient must cross to reach something trainable below it keeps only ``x``; a frozen
layer with nothing trainable below it keeps nothing.

- Qwen3 decoder layer (per token): RMSNorm upcasts to fp32 and keeps that copy and ``rsqrt`` (``4d + 4``, x; only
  when the input carries a gradient) and the normalised operand of its weight (``e d``, w) and its output, the
  projections' input (``e d``, w); q/k RMSNorm the same on ``q`` and ``kv`` widths (``4q + 4H + e q``,
  ``4kv + 4KV + e kv``); SDPA (flash / memory-efficient kernels on CUDA, the flash kernel on the CPU) keeps rotated
  q, k, v, its output and the fp32 log-sum-exp (``e(2q + 2kv) + 4H``), not the L x L matrix; the second RMSNorm
  ``4d + 4 + 2 e d``; the SwiGLU MLP keeps gate, silu(gate), up (``3 e ff``, x) and the down projection's input
  (``e ff``, w). Rotary cos/sin (``2 e head_dim``) are kept once per model, not per layer.
- SigLIP2 encoder layer (per patch): LayerNorm input and its two fp32 statistics (``e d + 8``, x) and output
  (``e d``, w), twice; SDPA q, k, v, output, lse (``4 e d + 4H``); the MLP's GELU input (``e ff``, x) and output
  (``e ff``, w). Patch embedding keeps its input (``3 p^2 e``, w).
- mlp1 (per image token after the pixel shuffle, width ``4 d_vision``): LayerNorm ``e 4dv + 8`` (x) and
  ``e 4dv`` (w); GELU input ``e d_llm`` (x) and output ``e d_llm`` (w).
- DiT block (per state/action token, width ``D``): adaptive LayerNorm input, normalised and modulated values
  (``2 e D`` x, ``e D`` w); attention q, (k, v for a self-attention block), output and lse (``e(2 + 2) D + 4H``);
  two dropout masks on the attention branch (``2 m D``); the second LayerNorm (``e D`` x, ``e D`` w); the
  feed-forward's GELU input (``4 e D``, x), its dropout mask (``4 m D``), the second Linear's input (``4 e D``, w)
  and the final dropout mask (``m D``). A cross-attention block keeps k and v over the vision-language tokens
  instead (``2 e D`` per VL token); their input, the LayerNormed backbone features, is kept once for all blocks.
- Action head: the action encoder (``e (A + 4D)`` per action token: W1's input, the concatenation, swish input and
  W3's input), the decoder (``e (out + hidden)``), the loss (``3 e A``), the DiT's output norm (``3 e D``) and the
  backbone features' LayerNorm (``2 e d + 8`` per VL token).

Activation checkpointing keeps only each checkpointed layer's input (``e d`` per token) and recomputes one layer at
a time in the backward pass, so one layer's full set is added back. ``BACKWARD_WORKSPACE`` (below) covers the
gradients of activations that exist while one layer's backward runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# While one layer's backward runs, the gradients of its activations exist next to what is still kept: counted as one
# largest layer's kept bytes. Calibrated on the CPU (docs/benchmarks.md, mid preset, ZeRO-2): with it the planned
# backward-pass peak is 0.6% and 0.1% below the measured one (default flags; tune_visual), without it 1.9% and 1.4%.
BACKWARD_WORKSPACE = 1.0


@dataclass(frozen=True)
class Geometry:
    """What one sample puts through the model."""

    batch: int  # per-GPU micro-batch
    seq_len: int  # vision-language tokens (text + image tokens + markers), padded to the batch's longest
    images: int  # images per sample (cameras x frames)
    patches: int  # SigLIP2 patches per image
    image_tokens: int  # LLM tokens per image after the pixel shuffle
    state_tokens: int  # state tokens into the DiT
    horizon: int  # action tokens into the DiT


@dataclass
class LayerCost:
    """Bytes a layer keeps for the backward pass at the run's batch, by why they are kept."""

    x: float = 0.0  # for the input's gradient
    w: float = 0.0  # the Linear layers' inputs: for their weight gradients, or their LoRA adapters'
    n: float = 0.0  # the operands of norm weights and of the DiT's timestep modulation: for those weights only

    def kept(self, trains: bool, input_grad: bool, adapters: bool = False) -> float:
        if adapters:  # LoRA: the layer's own weights (norms and modulation included) are frozen
            return self.x + self.w
        return self.x + self.w + self.n if trains else (self.x if input_grad else 0.0)


@dataclass
class ActivationPlan:
    """Kept activation bytes by part, the backward working set, and what they assume."""

    by_part: dict[str, float] = field(default_factory=dict)
    largest_layer: float = 0.0  # one layer's full kept set (what checkpointing recomputes; the backward workspace)
    checkpointing: bool = False

    @property
    def kept(self) -> float:
        return sum(self.by_part.values())

    @property
    def workspace(self) -> float:
        return BACKWARD_WORKSPACE * self.largest_layer

    @property
    def total(self) -> float:
        return self.kept + self.workspace


def qwen3_layer(cfg, tokens: int, e: int, input_grad: bool) -> LayerCost:
    t = cfg.text_config
    d, heads, kv_heads, dh, ff = t.hidden_size, t.num_attention_heads, t.num_key_value_heads, t.head_dim, \
        t.intermediate_size
    q, kv = heads * dh, kv_heads * dh
    x = (4 * d + 4 if input_grad else 0) + (4 * q + 4 * heads) + (4 * kv + 4 * kv_heads) \
        + e * (2 * q + 2 * kv) + 4 * heads + (4 * d + 4) + 3 * e * ff
    w = e * d + e * d + e * ff  # the projections' inputs: after each RMSNorm, and the down projection's
    n = e * d + e * q + e * kv + e * d  # the four RMSNorms' normalised operands of their weights
    return LayerCost(x * tokens, w * tokens, n * tokens)


def siglip_layer(cfg, tokens: int, e: int) -> LayerCost:
    v = cfg.vision_config
    d, heads, ff = v.hidden_size, v.num_attention_heads, v.intermediate_size
    x = 2 * (e * d + 8) + 4 * e * d + 4 * heads + e * ff
    w = 2 * e * d + e * ff
    return LayerCost(x * tokens, w * tokens)


def dit_block(cfg, tokens: int, vl_tokens: int, e: int, m: int, cross: bool) -> LayerCost:
    dit = cfg.diffusion_model_cfg
    heads, dim = dit["num_attention_heads"], dit["num_attention_heads"] * dit["attention_head_dim"]
    masks = 7 * m * dim if dit.get("dropout", 0.0) > 0 else 0
    own_kv = 0 if cross else 2 * e * dim
    x = (e * dim + 16) + (2 * e * dim + own_kv + 4 * heads) + masks + (e * dim + 8) + 4 * e * dim
    w = e * dim + e * dim + 4 * e * dim
    n = e * dim  # the normalised input, for the gradient of the timestep modulation's scale
    vl = 2 * e * dim + 1 if cross else 0
    return LayerCost(x * tokens + vl * vl_tokens, w * tokens, n * tokens)


def activation_plan(shapes, geo: Geometry, *, e: int, m: int, checkpointing: bool = False,
                    lora_rank: int = 0, lora_targets: tuple[str, ...] = ()) -> ActivationPlan:
    """Kept activations of one micro-batch for the run's trainable set (``shapes``: memplan.shapes.ModelShapes)."""
    cfg = shapes.config
    targets = set(lora_targets) if lora_rank > 0 else set()
    plan = ActivationPlan(checkpointing=checkpointing)
    b = geo.batch
    vl_tokens = b * geo.seq_len
    images = b * geo.images
    act_tokens = b * (geo.state_tokens + geo.horizon)
    largest = 0.0

    def add(part: str, nbytes: float) -> None:
        plan.by_part[part] = plan.by_part.get(part, 0.0) + nbytes

    def layer_stack(part: str, costs: list[tuple[LayerCost, bool, bool]], width_in: float,
                    adapters: bool = False) -> None:
        """Sum a stack; checkpointed trainable layers keep only their input (``width_in`` bytes)."""
        nonlocal largest
        for cost, trains, grad_in in costs:
            full = cost.kept(trains, grad_in, adapters)
            largest = max(largest, full)
            add(part, width_in if (checkpointing and trains and full) else full)

    # --- vision tower and mlp1 --------------------------------------------------------------------------------------
    visual_trains = shapes.part_trainable("visual")
    mlp1_trains = shapes.part_trainable("mlp1")
    v = cfg.vision_config
    if visual_trains:
        patch_in = 3 * v.patch_size**2 * e * images * geo.patches
        add("visual", patch_in)
        layer = siglip_layer(cfg, images * geo.patches, e)
        if "visual" in targets:
            layer = LayerCost(layer.x, layer.w + lora_extra(shapes, "visual", lora_rank, images * geo.patches, e)
                              / v.num_hidden_layers, layer.n)
        layer_stack("visual", [(layer, True, True)] * v.num_hidden_layers, e * v.hidden_size * images * geo.patches,
                    adapters="visual" in targets)
        add("visual", (e * v.hidden_size + 8) * images * geo.patches)  # post_layernorm
    image_tokens = images * geo.image_tokens
    if visual_trains or mlp1_trains:
        width = v.hidden_size * round(1 / cfg.downsample_ratio) ** 2  # pixel shuffle: f x f patches a token
        dl = cfg.text_config.hidden_size
        cost = LayerCost((e * width + 8 + e * dl) * image_tokens, (e * width + e * dl) * image_tokens)
        add("mlp1", cost.kept(mlp1_trains, visual_trains))

    # --- language model -----------------------------------------------------------------------------------------------
    layers = cfg.select_layer
    trainable = set(shapes.trainable_llm_layers)
    lora_llm = "llm" in targets
    # the first layer's input carries a gradient when something below trains: the vision side, or embed_tokens
    # (tune_llm without LoRA on the LLM)
    grad_in = visual_trains or mlp1_trains or (bool(cfg.tune_llm) and not lora_llm)
    stack = []
    for i in range(layers):
        trains = i in trainable or lora_llm
        cost = qwen3_layer(cfg, vl_tokens, e, grad_in)
        if lora_llm:
            cost = LayerCost(cost.x, cost.w + lora_extra(shapes, "llm", lora_rank, vl_tokens, e) / layers, cost.n)
        stack.append((cost, trains, grad_in))
        grad_in = grad_in or trains
    d = cfg.text_config.hidden_size
    layer_stack("llm", stack, e * d * vl_tokens, adapters=lora_llm)
    if grad_in:  # rotary cos/sin once, and the final RMSNorm (its weight is the LLM's: trainable only with tune_llm)
        add("llm", 2 * e * cfg.text_config.head_dim * vl_tokens + (4 * d + 4) * vl_tokens)

    # --- action head ----------------------------------------------------------------------------------------------
    dit = cfg.diffusion_model_cfg
    dim = dit["num_attention_heads"] * dit["attention_head_dim"]
    add("head", (2 * e * d + 8) * vl_tokens)  # vlln: kept input and output (the cross-attention blocks' k/v input)
    horizon_tokens = b * geo.horizon
    add("head", e * (cfg.max_action_dim + 4 * dim) * horizon_tokens)  # action encoder
    add("head", e * (dit["output_dim"] + cfg.hidden_size) * horizon_tokens)  # action decoder
    add("head", 3 * e * cfg.max_action_dim * horizon_tokens)  # loss
    add("head", 3 * e * dim * act_tokens)  # the DiT's output norm and projection
    dit_trains = shapes.part_trainable("dit")
    lora_dit = lora_extra(shapes, "dit", lora_rank, act_tokens, e) / max(1, dit["num_layers"]) if "dit" in targets \
        else 0.0
    blocks = []
    for idx in range(dit["num_layers"]):
        cross = not (dit.get("interleave_self_attention", True) and idx % 2 == 1)
        cost = dit_block(cfg, act_tokens, vl_tokens, e, m, cross)
        blocks.append((LayerCost(cost.x, cost.w + lora_dit, cost.n), dit_trains or "dit" in targets, True))
    layer_stack("dit", blocks, e * dim * act_tokens, adapters="dit" in targets)
    plan.largest_layer = largest
    return plan


def lora_extra(shapes, target: str, rank: int, tokens: int, e: int) -> float:
    """LoRA keeps ``lora_A``'s output (``rank`` wide) for ``lora_B``'s gradient, per adapted Linear and token."""
    return float(e * rank * tokens * len(shapes.lora_linears.get(target, ())))
