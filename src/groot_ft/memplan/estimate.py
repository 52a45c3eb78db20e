"""Per-process GPU memory of a training run under DeepSpeed ZeRO, and the changes that make it fit a card.

What lives on each of the ``N`` processes (``T`` trainable parameters, ``T_g`` the larger of the two AdamW groups,
``W`` all parameters, ``e`` bytes per element of the model dtype):

- weights: DeepSpeed casts the whole module to bf16 on CUDA (fp32 without bf16), so ``W e``; ZeRO-3 keeps ``W e / N``
  plus the parameters it has gathered (at most ``stage3_max_live_parameters``, and never fewer than one layer);
- fp32 master copy of the trainable parameters, ``4 T / N`` (DeepSpeed clones them even when training in fp32), and
  AdamW's two moments, ``8 T / N``; with ``offload_optimizer`` both live in CPU memory;
- gradients: ``e T / N`` under ZeRO-2/3 (``e T`` under ZeRO-1), held from the backward pass until the step, and from
  one micro-batch to the next when accumulating;
- the reduce buckets ZeRO-1/2 allocate for the backward pass: ``reduce_bucket_size`` elements, twice with
  ``overlap_comm``; ZeRO-3 allocates one at start-up and keeps it (5e8 elements unless the config says otherwise);
- the optimizer step's temporaries, one parameter group at a time: the gradient partition flattened and cast to fp32
  (``4 T_g / N``; in bf16 the flattened bf16 copy lives beside it for a moment, ``2 T_g / N`` more); the trainer's
  fused AdamW needs no more. The unfused AdamW the H100 measurement of docs/benchmarks.md ran (``adamw="foreach"``)
  has a ``sqrt(v)`` workspace beside the fp32 copy, later in the step (``4 T_g / N`` with torch's multi-tensor kernel
  on CUDA; on the CPU its single-tensor path divides into a second temporary, ``8 T_g / N``): the larger of the two
  moments counts;
- activations (``memplan.activations``).

The peak is the larger of two moments: the backward pass (weights, optimizer states, buckets, activations and the
gradients already written) and the optimizer step (weights, optimizer states, gradients, step temporaries).
On the H100 of docs/benchmarks.md (foreach AdamW) the step was the peak and did not depend on the batch, as
measured there; with the fused AdamW the step is 2 T_g / N smaller in bf16 (4 T_g / N on the CPU's fp32 path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .activations import ActivationPlan, Geometry, activation_plan
from .shapes import ModelShapes, PlanInputError, model_shapes

GIB = 2**30
# What a CUDA process needs beyond the tensors the plan counts: the CUDA context and kernels (~0.5 GiB on an H100),
# cuBLAS/NCCL workspaces and the caching allocator's fragmentation. A run fits a card when plan + this <= card.
CUDA_RESERVE = 2.0 * GIB


@dataclass(frozen=True)
class ZeroSetup:
    """The parts of a DeepSpeed config that decide memory."""

    stage: int = 2
    offload_optimizer: bool = False
    offload_param: bool = False
    reduce_bucket_size: int = 500_000_000
    overlap_comm: bool = False
    max_live_parameters: int = 1_000_000_000
    bf16: bool | None = None  # None: "auto" (bf16 on CUDA, as the trainer resolves it)

    @classmethod
    def from_file(cls, path: str | Path) -> ZeroSetup:
        try:
            ds = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise PlanInputError(f"deepspeed config {path}: cannot read it as JSON ({exc})") from exc
        zero = ds.get("zero_optimization", {}) or {}

        def device(key: str) -> bool:
            return (zero.get(key) or {}).get("device", "none") in ("cpu", "nvme")

        bf16 = (ds.get("bf16") or {}).get("enabled", "auto")
        stage = int(zero.get("stage", 0))
        return cls(
            stage=stage,
            offload_optimizer=device("offload_optimizer"),
            offload_param=device("offload_param"),
            # DeepSpeed's defaults: 5e8 elements per bucket, overlap_comm off for ZeRO-1/2 and on for ZeRO-3
            reduce_bucket_size=int(float(zero.get("reduce_bucket_size", 5e8))),
            overlap_comm=bool(zero.get("overlap_comm", stage == 3)),
            max_live_parameters=int(float(zero.get("stage3_max_live_parameters", 1e9))),
            bf16=None if bf16 == "auto" else bool(bf16),
        )


@dataclass(frozen=True)
class RunSetup:
    """Everything the plan depends on besides the model's shapes."""

    geometry: Geometry
    zero: ZeroSetup = ZeroSetup()
    world: int = 1
    accumulation: int = 1
    device: str = "cuda"  # cuda: what the finetune job runs on; cpu: the CPU training path (fp32, gloo)
    checkpointing: bool = False
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()
    # the trainer's torch AdamW: "fused" (train/optim.py); "foreach" for runs made before it was fused
    adamw: str = "fused"

    @property
    def bf16(self) -> bool:
        return self.device == "cuda" if self.zero.bf16 is None else self.zero.bf16


@dataclass
class MemoryPlan:
    """Bytes per process, by component, and the peak."""

    setup: RunSetup
    shapes: ModelShapes
    activations: ActivationPlan
    weights: dict[str, float] = field(default_factory=dict)  # dtype -> bytes
    master: float = 0.0
    optimizer: float = 0.0
    gradients: float = 0.0
    buckets: float = 0.0
    step_temporaries: float = 0.0

    @property
    def static(self) -> float:
        # ZeRO-3 allocates its reduce bucket once, at start-up; ZeRO-1/2 allocate theirs for each backward pass
        persistent = self.buckets if self.setup.zero.stage >= 3 else 0.0
        return sum(self.weights.values()) + self.master + self.optimizer + persistent

    @property
    def gradients_in_backward(self) -> float:
        """Gradient bytes outside the buckets while activations are still alive. DeepSpeed copies gradients into
        its reduce bucket and allocates the whole gradient partition when the first full bucket is flushed: with more
        trainable parameters per process than a bucket holds, that happens early in the backward pass (the action
        head and DiT, most of the trainable parameters, come first) and all of it is counted; with fewer, only at
        the end of the backward pass, when the activations are gone. Gradients accumulated over micro-batches are
        held throughout."""
        per_process = self.shapes.trainable / self.setup.world
        if self.setup.accumulation > 1 or per_process > self.setup.zero.reduce_bucket_size:
            return self.gradients
        return 0.0

    @property
    def backward_peak(self) -> float:
        per_backward = self.buckets if self.setup.zero.stage < 3 else 0.0
        return self.static + per_backward + self.gradients_in_backward + self.activations.total

    @property
    def step_peak(self) -> float:
        return self.static + self.gradients + self.step_temporaries

    @property
    def peak(self) -> float:
        return max(self.backward_peak, self.step_peak)

    @property
    def peak_phase(self) -> str:
        return "optimizer step" if self.step_peak >= self.backward_peak else "backward pass"

    def needed(self) -> float:
        """What a card must hold: the peak plus the CUDA reserve (no reserve on the CPU path)."""
        return self.peak + (CUDA_RESERVE if self.setup.device == "cuda" else 0.0)

    def fits(self, card_bytes: float) -> bool:
        return self.needed() <= card_bytes

    def to_dict(self) -> dict:
        s, sh, a = self.setup, self.shapes, self.activations
        return {
            "device": s.device,
            "dtype": "bf16" if s.bf16 else "fp32",
            "zero_stage": s.zero.stage,
            "world_size": s.world,
            "offload_optimizer": s.zero.offload_optimizer,
            "per_gpu_batch": s.geometry.batch,
            "gradient_accumulation_steps": s.accumulation,
            "sequence_length": s.geometry.seq_len,
            "activation_checkpointing": s.checkpointing,
            "lora_rank": s.lora_rank,
            "lora_targets": list(s.lora_targets) if s.lora_rank else [],
            "parameters": sh.total,
            "trainable_parameters": sh.trainable,
            "lora_parameters": sh.lora_params,
            "bytes": {
                **{f"weights_{k}": v for k, v in self.weights.items()},
                "master_fp32": self.master,
                "optimizer_states": self.optimizer,
                "gradients": self.gradients,
                "reduce_buckets": self.buckets,
                "optimizer_step_temporaries": self.step_temporaries,
                **{f"activations_{k}": v for k, v in a.by_part.items()},
                "activations_backward_workspace": a.workspace,
                "backward_peak": self.backward_peak,
                "step_peak": self.step_peak,
                "peak": self.peak,
                "needed_on_card": self.needed(),
            },
            "peak_phase": self.peak_phase,
        }


def plan_memory(shapes: ModelShapes, setup: RunSetup) -> MemoryPlan:
    """The per-process plan of one run (``shapes`` must already carry the run's tune flags and LoRA)."""
    e = 2 if setup.bf16 else 4
    n = setup.world
    z = setup.zero
    dtype = "bf16" if setup.bf16 else "fp32"
    plan = MemoryPlan(setup=setup, shapes=shapes, activations=activation_plan(
        shapes, setup.geometry, e=e, m=1 if setup.device == "cuda" else e, checkpointing=setup.checkpointing,
        lora_rank=setup.lora_rank, lora_targets=setup.lora_targets))
    t, w = shapes.trainable, shapes.total
    t_group = max(shapes.decay, shapes.no_decay)
    if z.stage >= 3:
        gathered = min(max(z.max_live_parameters, shapes.largest_layer_params), w)
        plan.weights[dtype] = (0.0 if z.offload_param else w * e / n) + gathered * e
    else:
        plan.weights[dtype] = float(w * e)
    if not z.offload_optimizer:
        plan.master = 4.0 * t / n
        plan.optimizer = 8.0 * t / n
        # Two moments of the step: DeepSpeed flattens the group's gradients in the model dtype and casts that copy to
        # fp32, both alive for a moment in bf16 (e T_g); later AdamW's own workspace sits beside the fp32 copy.
        adam_workspace = 0 if setup.adamw == "fused" else 4 if setup.device == "cuda" else 8
        flattened = e if e != 4 else 0
        plan.step_temporaries = (4.0 + max(flattened, adam_workspace)) * t_group / n
    plan.gradients = e * t / (n if z.stage >= 2 else 1)
    plan.buckets = z.reduce_bucket_size * e * (2 if z.overlap_comm and z.stage < 3 else 1)
    return plan


def geometry_for(config, *, batch: int, images: int, text_tokens: int, state_tokens: int = 1,
                 image_edge: tuple[int, int] | None = None) -> Geometry:
    """Token counts of one sample: ``images`` frames at the model's geometry (``image_edge`` (h, w) of the frames
    when the model keeps their aspect ratio; square at ``shortest_image_edge`` when not known)."""
    from groot_ft.model.collator import smart_resize

    patch = config.vision_config.patch_size
    if config.image_size is not None:
        side = config.image_size // patch
        patches, tokens = side * side, config.num_image_tokens
    else:
        h, w = image_edge or (config.shortest_image_edge, config.shortest_image_edge)
        h, w = smart_resize(h, w, config.image_factor, patch)
        patches = (h // patch) * (w // patch)
        tokens = (h // config.image_factor) * (w // config.image_factor)
    seq = text_tokens + images * (tokens + 2)  # each image: <img> + tokens + </img>
    return Geometry(batch=batch, seq_len=seq, images=images, patches=patches, image_tokens=tokens,
                    state_tokens=state_tokens, horizon=config.action_horizon)


# --- what to change when it does not fit ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One edit of the run config, and why it is ranked where it is."""

    label: str  # what to set
    cost: str  # what it costs


def _halve_batch(setup: RunSetup, times: int) -> RunSetup:
    b, acc = setup.geometry.batch >> times, setup.accumulation << times
    return replace(setup, geometry=replace(setup.geometry, batch=b), accumulation=acc)


def _shipped_zero(deepspeed_dir: Path | None, name: str, fallback: ZeroSetup, bf16: bool | None) -> ZeroSetup:
    """A shipped DeepSpeed config beside the run's (its buckets and limits differ from the run's), else ``fallback``."""
    path = None if deepspeed_dir is None else Path(deepspeed_dir) / name
    if path is not None and path.is_file():
        return replace(ZeroSetup.from_file(path), bf16=bf16)
    return fallback


def candidate_changes(setup: RunSetup, deepspeed_dir: Path | None = None) -> list[tuple[Change, object]]:
    """The kinds of change, cheapest first, each as (change, function setup -> changed setup). The batch change is
    one per halving (accumulation doubled, same global batch). ZeRO-3 and CPU offload take their settings from
    ``zero3.json`` / ``zero2_offload.json`` in ``deepspeed_dir`` (the run's DeepSpeed config directory) if there."""
    here = Path(deepspeed_dir) if deepspeed_dir is not None else Path("config/deepspeed")
    zero3 = _shipped_zero(deepspeed_dir, "zero3.json", replace(setup.zero, stage=3, overlap_comm=True), setup.zero.bf16)
    offload = _shipped_zero(deepspeed_dir, "zero2_offload.json", replace(setup.zero, offload_optimizer=True),
                            setup.zero.bf16)
    out = []
    b, halvings = setup.geometry.batch, 0
    while b > 1 and b % 2 == 0:
        b, halvings = b // 2, halvings + 1
        out.append((Change(f"gradient_accumulation_steps: {setup.accumulation << halvings} (per-GPU batch {b}, "
                           "same global batch)", "fewer samples at once: slower steps"),
                    lambda s, k=halvings: _halve_batch(s, k)))
    if not setup.checkpointing:
        out.append((Change("activation_checkpointing: true", "about a third more compute"),
                    lambda s: replace(s, checkpointing=True)))
    if setup.zero.stage < 3 and setup.world > 1:
        out.append((Change(f"deepspeed_config: {here / 'zero3.json'}", "more communication"),
                    lambda s: replace(s, zero=zero3 if not s.zero.offload_optimizer
                                      else replace(zero3, offload_optimizer=True))))
    if setup.lora_rank == 0:
        out.append((Change("lora_rank: 16, lora_targets: [llm, dit]",
                           "trains adapters instead of the LLM's and DiT's own weights"),
                    lambda s: replace(s, lora_rank=16, lora_targets=("llm", "dit"))))
    if not setup.zero.offload_optimizer:
        out.append((Change(f"deepspeed_config: {here / 'zero2_offload.json'}",
                           "optimizer on the CPU: much slower steps, CPU memory for the optimizer"),
                    lambda s: replace(s, zero=offload if s.zero.stage < 3
                                      else replace(s.zero, offload_optimizer=True))))
    return out


def suggestions(shapes_for, setup: RunSetup, card_bytes: float,
                deepspeed_dir: Path | None = None) -> list[tuple[str, float, bool]]:
    """(change, planned need on the card, fits): every single change, cheapest first (of the batch splits only the
    largest batch that fits, or the smallest there is), those that fit first. Then the combination of the fewest
    changes that do not fit alone but fit together, the cheapest such (the order above is the cost order), if any;
    it comes first when no single change fits.

    ``shapes_for(lora_rank, lora_targets)`` counts the model for a LoRA setting (``shapes_factory``)."""
    from itertools import combinations

    def need(new: RunSetup) -> float:
        return plan_memory(shapes_for(new.lora_rank, new.lora_targets), new).needed()

    changes = candidate_changes(setup, deepspeed_dir)
    batch = [c for c in changes if c[0].label.startswith("gradient_accumulation_steps")]
    others = [c for c in changes if c not in batch]
    if batch:
        fitting = [c for c in batch if need(c[1](setup)) <= card_bytes]
        kinds = [fitting[0] if fitting else batch[-1]] + others
    else:
        kinds = others
    rows = [(f"{c.label}  [{c.cost}]", need(apply(setup)), None) for c, apply in kinds]
    out = [(label, n, n <= card_bytes) for label, n, _ in rows]
    alone = [i for i, (_, _, ok) in enumerate(out) if ok]
    out = sorted(out, key=lambda r: not r[2])  # stable: cost order among those that fit, then the rest
    # combinations of the changes that do not fit alone: often cheaper than the one that does (CPU offload)
    rest = [i for i in range(len(kinds)) if i not in alone]
    for size in range(2, len(rest) + 1):
        for combo in combinations(rest, size):
            # with other changes in, the batch split may stop at a larger batch: try each halving, largest first
            options = [[b] for b in batch] if any(kinds[k] in batch for k in combo) else [[]]
            for extra in options:
                picked = [kinds[k] for k in combo if kinds[k] not in batch] + extra
                new = setup
                for _, apply in picked:
                    new = apply(new)
                n = need(new)
                if n <= card_bytes:
                    combined = (" + ".join(c.label for c, _ in picked), n, True)
                    return out[:len(alone)] + [combined] + out[len(alone):] if alone else [combined] + out
    return out


def shapes_factory(config, base_lora_rank: int, base_targets: tuple[str, ...]):
    """Memoised model_shapes for the LoRA settings suggestions try."""
    cache: dict = {}

    def get(rank: int, targets: tuple[str, ...]) -> ModelShapes:
        key = (rank, tuple(targets))
        if key not in cache:
            cache[key] = model_shapes(config, lora_rank=rank, lora_targets=tuple(targets))
        return cache[key]

    get(base_lora_rank, base_targets)
    return get
