"""What every part of the statistics stage shares: file names, key orders, defaults and the error type."""

from __future__ import annotations

import math

from groot_ft.errors import UserError

STATS_FILENAME = "stats.json"
RELATIVE_STATS_FILENAME = "relative_stats.json"
STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")  # upstream's order in stats.json
RELATIVE_STAT_KEYS = ("max", "min", "q01", "q99", "mean", "std")  # upstream's order in relative_stats.json
DEFAULT_PROBS = (0.01, 0.99)
DEFAULT_HIST_BUDGET_BYTES = 256 * 2**20  # all histograms of one compute_stats call together
DEFAULT_HISTOGRAM_BINS = 50  # per-dimension value histograms for the report's plots
NUMERICS = ("upstream", "float64")
CACHE_FORMAT = "groot_ft.stats.episode/1"  # part of every cache key (groot_ft.stats.plan.StatsPlan.fingerprint)


class StatsError(UserError, ValueError):
    """Statistics cannot be computed; the message names the column/group, episode and what to do."""


def prob_key(p: float) -> str:
    """The stats.json key of quantile probability ``p``: 0.01 -> ``q01``, 0.99 -> ``q99``, 0.005 -> ``q0.5``."""
    pct = p * 100
    return f"q{round(pct):02d}" if math.isclose(pct, round(pct)) else f"q{pct:g}"


def split_budget(dims: dict[str, int], budget: int) -> dict[str, int]:
    """Share a histogram memory budget between keys in proportion to their dimensions (at least 1 byte each)."""
    per_dim = budget / max(1, sum(dims.values()))
    return {k: max(1, int(per_dim * d)) for k, d in dims.items()}
