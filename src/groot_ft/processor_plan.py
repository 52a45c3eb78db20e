"""The compiled per-embodiment (un)normalisation plan of :class:`groot_ft.processor.Gr00tProcessor`.

:func:`build_plan` turns one embodiment's statistics and modality config into a :class:`Plan` of per-group
:class:`Group` s (min/max, mean/std or sin/cos; absolute or RELATIVE actions); :func:`normalize` /
:func:`unnormalize` apply one group's maths. Split out of the processor module, which owns the per-sample work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from groot_ft.modality import ActionRepresentation, ActionType, EmbodimentModalityConfig
from groot_ft.processor_stats import STAT_NAMES, ProcessorError


@dataclass
class Group:
    """How one state/action group is (un)normalised."""

    key: str
    dim: int
    out_dim: int
    method: str  # "minmax" | "meanstd" | "sincos"
    offset: np.ndarray | None = None  # min (or q01) / mean; (D,) or (T, D) for relative actions
    spread: np.ndarray | None = None  # max-min / std, with 1 where constant
    constant: np.ndarray | None = None  # dims where max ~= min (or std ~= 0): normalised to 0
    relative: bool = False
    reference_key: str | None = None
    unsupported: str | None = None  # reason this group cannot be processed (raised on use)


@dataclass
class Plan:
    tag: str
    embodiment_id: int
    config: EmbodimentModalityConfig
    state: list[Group] = field(default_factory=list)
    action: list[Group] = field(default_factory=list)

    @property
    def state_dim(self) -> int:
        return sum(g.out_dim for g in self.state)

    @property
    def action_dim(self) -> int:
        return sum(g.dim for g in self.action)

    @property
    def action_steps(self) -> int:
        return len(self.config.action.delta_indices)


def normalize(x: np.ndarray, g: Group) -> np.ndarray:
    if g.method == "sincos":
        return np.concatenate([np.sin(x), np.cos(x)], axis=-1)
    if g.method == "minmax":
        y = 2.0 * (x - g.offset) / g.spread - 1.0
    else:
        y = (x - g.offset) / g.spread
    return np.where(g.constant, 0.0, y) if g.constant.any() else y


def clip_unit(y: np.ndarray) -> np.ndarray:
    """``np.clip(y, -1, 1)`` in place on a fresh array, as two ufunc calls (np.clip's wrappers cost more per sample
    than the clipping of a few dozen values)."""
    np.maximum(y, -1.0, out=y)
    return np.minimum(y, 1.0, out=y)


def unnormalize(y: np.ndarray, g: Group) -> np.ndarray:
    if g.method == "minmax":
        # constant dims: spread is 1 in the plan, so use the true (zero) width to return min exactly
        width = np.where(g.constant, 0.0, g.spread)
        return (y + 1.0) / 2.0 * width + g.offset
    if g.method == "meanstd":
        return y * np.where(g.constant, 0.0, g.spread) + g.offset
    raise ProcessorError(f"group {g.key!r}: {g.method} encoding cannot be inverted")


def as_numpy(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor (any dtype/device)
        value = value.detach().float().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProcessorError(f"{where}: expected a numeric array, got {type(value).__name__}") from exc


def _group_stats(tag: str, tag_stats: Mapping[str, Any], section: str, key: str) -> Mapping[str, Any]:
    groups = tag_stats.get(section)
    if not isinstance(groups, Mapping) or key not in groups:
        have = ", ".join(groups) if isinstance(groups, Mapping) else "none"
        hint = (
            " (RELATIVE action keys need relative_action statistics: generate meta/relative_stats.json "
            "or set use_relative_action=False)"
            if section == "relative_action"
            else ""
        )
        raise ProcessorError(
            f"embodiment {tag!r}: missing {section} statistics for key {key!r} (have: {have}){hint}"
        )
    return groups[key]


def _stat(
    tag: str, section: str, key: str, stats: Mapping[str, Any], name: str, shape: tuple[int, ...] | None
) -> np.ndarray:
    if name not in stats:
        raise ProcessorError(f"embodiment {tag!r}: {section} statistics for key {key!r} lack {name!r}")
    arr = np.asarray(stats[name], dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise ProcessorError(
            f"embodiment {tag!r}: {section} statistics {key!r}.{name} have shape {arr.shape}, expected {shape}"
            + (
                " (relative stats are per horizon step; regenerate relative_stats.json for this horizon)"
                if section == "relative_action"
                else ""
            )
        )
    if not np.all(np.isfinite(arr)):
        raise ProcessorError(f"embodiment {tag!r}: {section} statistics {key!r}.{name} contain NaN/inf")
    return arr


def _make_group(
    tag: str,
    section: str,
    key: str,
    stats: Mapping[str, Any],
    mean_std: bool,
    steps: int | None,
    use_percentiles: bool,
) -> Group:
    # dimension: from any stat present (relative stats are (T, D))
    probe = next((stats[n] for n in STAT_NAMES if n in stats), None)
    if probe is None:
        raise ProcessorError(f"embodiment {tag!r}: {section} statistics for key {key!r} are empty")
    probe_arr = np.asarray(probe, dtype=np.float64)
    dim = int(probe_arr.shape[-1]) if probe_arr.ndim else 1
    shape = (dim,) if steps is None else (steps, dim)
    if mean_std:
        method, lo_name, hi_name = "meanstd", "mean", "std"
    else:
        method = "minmax"
        lo_name, hi_name = ("q01", "q99") if use_percentiles else ("min", "max")
    lo = _stat(tag, section, key, stats, lo_name, shape)
    hi = _stat(tag, section, key, stats, hi_name, shape)
    if method == "minmax":
        constant = np.isclose(hi, lo)
        spread = np.where(constant, 1.0, hi - lo)
    else:
        constant = np.isclose(hi, 0.0)
        spread = np.where(constant, 1.0, hi)
    return Group(key=key, dim=dim, out_dim=dim, method=method, offset=lo, spread=spread, constant=constant)


def build_plan(
    tag: str,
    cfg: EmbodimentModalityConfig,
    embodiment_id: int,
    tag_stats: Mapping[str, Any],
    *,
    use_percentiles: bool,
    apply_sincos_state_encoding: bool,
    use_relative_action: bool,
    max_state_dim: int,
    max_action_dim: int,
) -> Plan:
    """Compile one embodiment's (un)normalisation plan from its statistics; raise ProcessorError on any mismatch."""
    plan = Plan(tag=tag, embodiment_id=embodiment_id, config=cfg)
    sincos = set(cfg.state.sin_cos_embedding_keys or ()) if apply_sincos_state_encoding else set()
    state_mean_std = set(cfg.state.mean_std_embedding_keys or ())
    for key in cfg.state.modality_keys:
        stats = _group_stats(tag, tag_stats, "state", key)
        if key in sincos:
            probe = next((stats[n] for n in STAT_NAMES if n in stats), None)
            if probe is None:
                raise ProcessorError(f"embodiment {tag!r}: state statistics for key {key!r} are empty")
            dim = len(probe)
            plan.state.append(Group(key=key, dim=dim, out_dim=2 * dim, method="sincos"))
        else:
            plan.state.append(_make_group(tag, "state", key, stats, key in state_mean_std, None, use_percentiles))
    state_dims = {g.key: g.dim for g in plan.state}
    action_mean_std = set(cfg.action.mean_std_embedding_keys or ())
    steps = plan.action_steps
    for key in cfg.action.modality_keys:
        ac = cfg.action_config_for(key)
        relative = use_relative_action and ac.rep is ActionRepresentation.RELATIVE
        if relative:
            stats = _group_stats(tag, tag_stats, "relative_action", key)
            # min/max even with use_percentiles: upstream's StateActionProcessor replaces a relative key's
            # normalisation parameters with its raw relative_action statistics, whose "min"/"max" it then reads.
            group = _make_group(tag, "relative_action", key, stats, key in action_mean_std, steps, False)
            group.relative = True
            group.reference_key = cfg.reference_state_key(key)
            ref_dim = state_dims.get(group.reference_key)
            if ref_dim is None:
                raise ProcessorError(
                    f"embodiment {tag!r}: RELATIVE action {key!r} needs state key {group.reference_key!r}, "
                    "which state.modality_keys lacks"
                )
            if ref_dim != group.dim:
                raise ProcessorError(
                    f"embodiment {tag!r}: RELATIVE action {key!r} has {group.dim} dims but its reference state "
                    f"{group.reference_key!r} has {ref_dim}"
                )
            if ac.type is ActionType.EEF:
                group.unsupported = (
                    f"embodiment {tag!r}: RELATIVE EEF action {key!r} (SE(3) composition) is not supported; "
                    "use NON_EEF or ABSOLUTE"
                )
        else:
            stats = _group_stats(tag, tag_stats, "action", key)
            group = _make_group(tag, "action", key, stats, key in action_mean_std, None, use_percentiles)
        if ac.rep is ActionRepresentation.DELTA:
            group.unsupported = f"embodiment {tag!r}: DELTA action representation ({key!r}) is not supported"
        plan.action.append(group)
    if plan.state_dim > max_state_dim:
        raise ProcessorError(
            f"embodiment {tag!r}: state groups need {plan.state_dim} dims "
            f"({', '.join(f'{g.key}={g.out_dim}' for g in plan.state)}) but max_state_dim is {max_state_dim}"
        )
    if plan.action_dim > max_action_dim:
        raise ProcessorError(
            f"embodiment {tag!r}: action groups need {plan.action_dim} dims "
            f"({', '.join(f'{g.key}={g.dim}' for g in plan.action)}) but max_action_dim is {max_action_dim}"
        )
    return plan
