"""Statistics of a weighted mixture of datasets of one embodiment (:func:`merge_mixture_stats`).

Upstream's weighted mean/variance (weights normalised; ``mean = sum w mu``, ``var = sum w (sigma^2 + mu^2) -
mean^2``, written in the algebraically equal, cancellation-free form ``sum w (sigma^2 + (mu - mean)^2)``),
elementwise min/max, and *exact* weighted quantiles (defined in :class:`~groot_ft.quantiles.WeightedRadixSelect`;
equal to the pooled ``np.quantile`` when the weights are proportional to the frame counts, or for relative keys to
the window counts) instead of upstream's min of q01s / max of q99s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from groot_ft.quantiles import WeightedRadixSelect
from groot_ft.stats.common import (
    DEFAULT_HIST_BUDGET_BYTES,
    DEFAULT_PROBS,
    RELATIVE_STAT_KEYS,
    STAT_KEYS,
    StatsError,
    prob_key,
    split_budget,
)
from groot_ft.stats.compute import Feeder, StatsResult, StatsState


def merge_mixture_stats(
    partials: Sequence[tuple[StatsState | StatsResult, float]],
    *,
    probs: Sequence[float] = DEFAULT_PROBS,
    hist_budget_bytes: int = DEFAULT_HIST_BUDGET_BYTES,
    raw_limit: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Statistics of a weighted mixture of datasets of one embodiment: ``(stats_json, relative_stats_json)``.

    ``partials``: ``(state, weight)`` per dataset (a :class:`StatsState` or the :class:`StatsResult` of
    :func:`run_stats`); weights are normalised to ``p_i``. Keys present in every dataset are merged (their shapes
    must agree): ``mean = sum p_i mu_i``; ``std = sqrt(sum p_i (sigma_i^2 + mu_i^2) - mean^2)`` (upstream's formula,
    evaluated as ``sum p_i (sigma_i^2 + (mu_i - mean)^2)``, from the datasets' float64 moments); min/max
    elementwise; q01/q99 the exact weighted quantiles of :class:`~groot_ft.quantiles.WeightedRadixSelect` (each
    sample of dataset i carries mass ``N p_i / n_i``; proportional weights give the pooled ``np.quantile``). A
    dataset's weight applies to its frames (stats.json keys) and to its windows (relative keys) alike. The datasets'
    data is streamed again (from their caches where their runs had one, else decoded); values are float64.
    """
    if not partials:
        raise StatsError("merge_mixture_stats: no datasets given")
    states = [p.state if isinstance(p, StatsResult) else p for p, _ in partials]
    weights = [float(w) for _, w in partials]
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise StatsError(f"merge_mixture_stats: weights must be finite and > 0, got {weights}")
    first = states[0]
    keys = [k for k in first.plan.keys() if all(k in s.moments for s in states)]
    for k in keys:
        dims = {s.moments[k].dim for s in states}
        if len(dims) != 1:
            raise StatsError(f"merge_mixture_stats: {k.split(':', 1)[1]} has different dimensions {sorted(dims)}")
    if any(s.plan.specs and s.plan.deltas != first.plan.deltas for s in states):
        raise StatsError("merge_mixture_stats: the datasets' action horizons (delta indices) differ")
    total = sum(weights)
    p = [w / total for w in weights]
    budgets = split_budget({k: first.moments[k].dim for k in keys}, hist_budget_bytes)
    selects = {
        k: WeightedRadixSelect(
            first.moments[k].dim, [s.moments[k].count for s in states], weights, probs, budgets[k], raw_limit
        )
        for k in keys
    }
    active = set(keys)
    while active:
        for i, state in enumerate(states):
            feeders = {k: Feeder(lambda block, k=k, i=i: selects[k].update(i, block)) for k in active}
            for data in state.iter_data():
                for key, x in data.matrices(state.plan, active):
                    feeders[key].add(x)
            for f in feeders.values():
                f.flush()
        for k in sorted(active):
            if not selects[k].end_pass():
                active.discard(k)
    results: dict[str, dict[str, np.ndarray]] = {}
    for k in keys:
        ms = [s.moments[k] for s in states]
        mean = sum(pi * m.mean for pi, m in zip(p, ms))
        var = sum(pi * (np.square(m.std) + np.square(m.mean - mean)) for pi, m in zip(p, ms))
        out = {
            "mean": np.asarray(mean, dtype=np.float64),
            "std": np.sqrt(np.maximum(var, 0.0)),
            "min": np.minimum.reduce([m.min for m in ms]).astype(np.float64),
            "max": np.maximum.reduce([m.max for m in ms]).astype(np.float64),
        }
        for prob, row in zip(probs, selects[k].quantiles()):
            out[prob_key(prob)] = row
        results[k] = out
    stats = {f: {s: results[f"feature:{f}"][s].tolist() for s in STAT_KEYS} for f, _ in first.plan.features
             if f"feature:{f}" in results}
    relative = None
    specs = [s for s in first.plan.specs if f"relative:{s.key}" in results]
    if specs:
        relative = {
            s.key: {
                k: results[f"relative:{s.key}"][k].reshape(first.plan.horizon, s.dim).tolist()
                for k in RELATIVE_STAT_KEYS
            }
            for s in specs
        }
    return stats, relative
