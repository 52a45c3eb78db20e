"""The statistics of one dataset: :func:`run_stats` (both numerics, histograms, cache counters, mergeable state)
and its thin wrapper :func:`compute_stats` (the two files' contents).

Pass 1 decodes (or loads) every episode in index order, merges the float64 partials, sums float32 values for the
upstream means and builds the top-16-bit histograms (or keeps the keys, for small data) of the radix select. Pass 2
sums the squared deviations from the float32 means, resolves the order statistics inside the buckets found in pass
1 and fills per-dimension value histograms for the report's plots (exact counts up to 2**20 frames per feature, an
evenly spaced sample of rows beyond). A third pass is needed only when a ``hist_budget_bytes`` too small for 16-bit
digits forces narrower ones. Chunks of one key are batched across episodes (:class:`Feeder`), episodes are read
ahead on a worker thread, and different keys are fed on parallel threads; none of this changes a single bit of the
results.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.modality import EmbodimentModalityConfig
from groot_ft.quantiles import RadixSelect, float32_keys, linear_ranks, numpy_lerp, upstream_lerp
from groot_ft.stats.common import (
    DEFAULT_HIST_BUDGET_BYTES,
    DEFAULT_HISTOGRAM_BINS,
    DEFAULT_PROBS,
    NUMERICS,
    RELATIVE_STAT_KEYS,
    STAT_KEYS,
    StatsError,
    prob_key,
    split_budget,
)
from groot_ft.stats.episodes import EpisodeData, EpisodeSource
from groot_ft.stats.moments import Moments, UpstreamMoments
from groot_ft.stats.plan import StatsPlan, make_plan

_FEED_BLOCK_VALUES = 2**20  # values of one key batched across episodes before they are fed to the passes
_HISTOGRAM_ROWS = 2**20  # rows per feature counted in the plot histograms (every k-th row beyond that)
_PREFETCH_VALUES = 2**21  # values of the episodes read ahead on a worker thread (8 MiB of float32)


class Feeder:
    """Batches one key's chunks across episodes (bounded) and hands concatenated blocks to a consumer.

    With a thread ``pool``, blocks are consumed on it, one at a time per key and in order (a block waits for the
    previous one), so different keys proceed in parallel (numpy releases the GIL on large arrays).
    """

    def __init__(self, consume, limit: int = _FEED_BLOCK_VALUES, pool: ThreadPoolExecutor | None = None):
        self.consume = consume
        self.limit = limit
        self.pool = pool
        self.future: Future[None] | None = None
        self.parts: list[np.ndarray] = []
        self.values = 0

    def add(self, x: np.ndarray) -> None:
        if len(x) == 0:
            return
        self.parts.append(x)
        self.values += x.size
        if self.values >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        block = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)
        self.parts, self.values = [], 0
        if self.pool is None:
            self.consume(block)
            return
        self.wait()
        self.future = self.pool.submit(self.consume, block)

    def wait(self) -> None:
        """Until the blocks handed over so far are consumed (re-raises the consumer's error)."""
        if self.future is not None:
            future, self.future = self.future, None
            future.result()


class _ValueHistogram:
    """Uniform-bin histogram per dimension on [min, max] (for the report's plots) of every ``stride``-th row."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, bins: int, stride: int = 1):
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.bins = int(bins)
        self.stride = max(1, int(stride))
        self.seen = 0  # rows streamed so far: rows whose global index is a multiple of stride are counted
        width = self.hi - self.lo
        scale = np.divide(self.bins, width, out=np.zeros_like(width), where=width > 0)
        # float32 arithmetic (x - min >= 0 exactly, so truncation is floor); a range so narrow that the scale
        # overflows float32 only loses plotting resolution
        self.lo32 = self.lo.astype(np.float32)
        self.scale32 = np.minimum(scale, 1e30).astype(np.float32)
        self.offsets = np.arange(len(self.lo), dtype=np.int32) * self.bins
        self.counts = np.zeros((len(self.lo), self.bins), dtype=np.int64)

    def update(self, x: np.ndarray) -> None:
        first = -self.seen % self.stride
        self.seen += len(x)
        x = x[first :: self.stride]
        pos = x - self.lo32
        pos *= self.scale32
        idx = pos.astype(np.int32)
        np.minimum(idx, self.bins - 1, out=idx)
        idx += self.offsets
        self.counts += np.bincount(idx.reshape(-1), minlength=self.counts.size).reshape(self.counts.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"min": self.lo.tolist(), "max": self.hi.tolist(), "row_stride": self.stride,
                "counts": self.counts.tolist()}


@dataclass
class StatsState:
    """Mergeable partial statistics of one dataset: float64 moments per key plus access to its (cached) data.

    Produced by :func:`run_stats` (``result.state``); consumed by :func:`merge_mixture_stats`, which re-streams the
    data (from the incremental cache when the run had one) for exact weighted quantiles.
    """

    plan: StatsPlan
    source: EpisodeSource
    episodes: list[int]
    moments: dict[str, Moments]

    def counts(self) -> dict[str, int]:
        return {k: m.count for k, m in self.moments.items()}

    def iter_data(self) -> Iterator[EpisodeData]:
        return _prefetched(self.source.again, self.episodes, budget=8)  # 8 episodes ahead


@dataclass
class StatsResult:
    """Everything one statistics run produced; :attr:`stats` / :attr:`relative` are the files' contents."""

    numerics: str
    by_numerics: dict[str, tuple[dict[str, Any], dict[str, Any] | None]]
    histograms: dict[str, dict[str, Any]]
    state: StatsState
    episodes: int
    recomputed: int
    cached: int
    passes: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def stats(self) -> dict[str, Any]:
        return self.by_numerics[self.numerics][0]

    @property
    def relative(self) -> dict[str, Any] | None:
        return self.by_numerics[self.numerics][1]

    def summary(self) -> dict[str, Any]:
        """Run facts for ``stats_report.json``: counts, cache use, and both numerics side by side."""
        other = "float64" if self.numerics == "upstream" else "upstream"
        deviation: dict[str, dict[str, float]] = {}
        for label, idx in (("stats", 0), ("relative", 1)):
            mine, theirs = self.by_numerics[self.numerics][idx], self.by_numerics[other][idx]
            if not mine or not theirs:
                continue
            dev: dict[str, float] = {}
            for name, entry in mine.items():
                for k, v in entry.items():
                    a, b = np.asarray(v, dtype=np.float64), np.asarray(theirs[name][k], dtype=np.float64)
                    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
                    rel[(a == b)] = 0.0
                    dev[k] = max(dev.get(k, 0.0), float(rel.max()) if rel.size else 0.0)
            deviation[label] = dev
        return {
            "numerics": self.numerics,
            "episodes": self.episodes,
            "recomputed_episodes": self.recomputed,
            "cached_episodes": self.cached,
            "passes": self.passes,
            "counts": self.counts,
            "max_relative_difference_to_" + other: deviation,
            other: {"stats": self.by_numerics[other][0], "relative": self.by_numerics[other][1]},
        }


def _prefetched(
    fetch: Callable[[int], EpisodeData],
    episodes: Sequence[int],
    cost: Callable[[int], int] | None = None,
    budget: int = _PREFETCH_VALUES,
) -> Iterator[EpisodeData]:
    """``fetch(ep)`` for every episode, in order, computed in advance on one worker thread.

    Parquet decoding and large numpy operations release the GIL, so reading the next episodes overlaps with feeding
    the current ones. Episodes are requested ahead while their estimated ``cost`` (values) stays within ``budget``
    (at least one at a time), which bounds the memory held; ``budget=0`` turns prefetching off.
    """
    if budget <= 0:
        for ep in episodes:
            yield fetch(ep)
        return
    cost = cost or (lambda ep: 1)
    pool = ThreadPoolExecutor(1, thread_name_prefix="stats-prefetch")
    try:
        pending: deque[tuple[Future[EpisodeData], int]] = deque()
        in_flight = 0
        todo = deque(episodes)
        while todo or pending:
            while todo and (not pending or in_flight + cost(todo[0]) <= budget):
                ep = todo.popleft()
                pending.append((pool.submit(fetch, ep), cost(ep)))
                in_flight += pending[-1][1]
            future, c = pending.popleft()
            in_flight -= c
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _progress(items: Iterable[Any], enabled: bool, desc: str, total: int) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="episode", file=sys.stderr, total=total)


def run_stats(
    dataset: LeRobotDataset | str | Path,
    modality_config: EmbodimentModalityConfig | None = None,
    *,
    numerics: str = "upstream",
    cache_dir: str | Path | None = None,
    prune_cache: bool = True,
    progress: bool = False,
    probs: Sequence[float] = DEFAULT_PROBS,
    hist_budget_bytes: int = DEFAULT_HIST_BUDGET_BYTES,
    raw_limit: int | None = None,
    histogram_bins: int = DEFAULT_HISTOGRAM_BINS,
    prefetch_values: int = _PREFETCH_VALUES,
    threads: int | None = None,
    modality_json: str | Path | None = None,
) -> StatsResult:
    """Compute the statistics of a dataset (both numerics), streaming episodes in episode-index order.

    Reads only the needed parquet columns (never video); nothing is written except cache entries under
    ``cache_dir`` (see the module docstring). Two passes over the episodes (more only under a tight
    ``hist_budget_bytes``, the bound on all quantile histograms together); ``raw_limit`` is a tuning/testing knob
    of :class:`~groot_ft.quantiles.RadixSelect` (0 = histograms only); episodes are read ahead on a
    worker thread up to ``prefetch_values`` values (0: no read-ahead), and different keys are fed on up to
    ``threads`` threads (default: one per CPU; results do not depend on it). ``modality_json``: the modality
    mapping kept outside the dataset (for a path ``dataset``; a :class:`LeRobotDataset` brings its own).
    """
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset, modality_json)
    plan = make_plan(ds, modality_config)
    episodes = [e.index for e in sorted(ds.episodes, key=lambda e: e.index)]
    if not episodes:
        raise StatsError(f"{ds.root / 'meta/episodes.jsonl'}: no episodes")
    source = EpisodeSource(ds, plan, cache_dir)
    row_values = sum(d for _, d in plan.features) + sum(2 * s.dim * plan.horizon for s in plan.specs)
    lengths = {e.index: max(1, int(e.length)) for e in ds.episodes}
    keys = plan.keys()
    budgets = split_budget(plan.declared_dims(), hist_budget_bytes)
    moments: dict[str, Moments | None] = dict.fromkeys(keys)
    selects: dict[str, RadixSelect] = {}
    upstream: dict[str, UpstreamMoments] = {}
    histograms: dict[str, _ValueHistogram] = {}
    pass_no = 0

    def consumer(key: str):
        def consume(block: np.ndarray) -> None:
            if pass_no == 0 and key not in selects:
                selects[key] = RadixSelect(block.shape[1], probs, budgets[key], raw_limit)
                upstream[key] = UpstreamMoments(block.shape[1])
            sel, up = selects[key], upstream[key]
            if block.shape[1] != sel.dim:
                raise StatsError(
                    f"{ds.root}: {key.split(':', 1)[1]} has {block.shape[1]} dimensions in some episodes and "
                    f"{sel.dim} in others"
                )
            if not sel.done:
                sel.update_keys(float32_keys(block))
            if up.pass_index == pass_no and not up.done:
                up.update(block)
            if pass_no == 1 and key in histograms:
                histograms[key].update(block)

        return consume

    if threads is None:
        threads = os.cpu_count() or 1
    workers = min(len(keys), threads)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="stats-feed") if workers > 1 else None
    feeders = {k: Feeder(consumer(k), pool=pool) for k in keys}
    active = set(keys)
    source.open_spill()
    try:
        while active:
            if pass_no > 0:
                source.rewind_spill()
            fetch = source.first if pass_no == 0 else source.again
            stream = _prefetched(fetch, episodes, lambda ep: lengths[ep] * row_values, prefetch_values)
            for data in _progress(stream, progress, f"stats pass {pass_no + 1}", len(episodes)):
                if pass_no == 0:
                    data.with_moments(ds, plan)
                    assert data.moments is not None
                    for key, m in data.moments.items():
                        total = moments[key]
                        if total is None:
                            total = moments[key] = Moments.empty(m.dim)
                        if m.count and total.count and m.dim != total.dim:
                            raise StatsError(
                                f"{ds.root}: {key.split(':', 1)[1]} has {m.dim} dimensions in episode {data.index} "
                                f"but {total.dim} in earlier episodes"
                            )
                        total.merge(m)
                for key, x in data.matrices(plan, active):
                    feeders[key].add(x)
            for key in sorted(active):
                feeders[key].flush()
            for key in sorted(active):
                feeders[key].wait()
                if pass_no == 0 and key not in selects:
                    what = (
                        f"relative action {key.split(':', 1)[1]}: no episode is longer than the action horizon "
                        f"(max delta index {max(plan.deltas)})"
                        if key.startswith("relative:")
                        else f"feature {key.split(':', 1)[1]}: no frames"
                    )
                    raise StatsError(f"{ds.root}: {what}; statistics are undefined")
                more_select = selects[key].end_pass() if not selects[key].done else False
                more_upstream = upstream[key].end_pass()
                if pass_no == 0 and key.startswith("feature:") and histogram_bins > 0:
                    m = moments[key]
                    assert m is not None
                    stride = -(-m.count // _HISTOGRAM_ROWS)  # a bounded, evenly spaced sample of the rows
                    histograms[key] = _ValueHistogram(m.min, m.max, histogram_bins, stride)
                if not (more_select or more_upstream):
                    active.discard(key)
            pass_no += 1
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        source.close_spill()
    if cache_dir is not None and prune_cache:
        source.prune()

    by_numerics: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
    for mode in NUMERICS:
        results = {key: _key_result(selects[key], upstream[key], moments[key], probs, mode) for key in keys}
        stats = {f: {k: results[f"feature:{f}"][k].tolist() for k in STAT_KEYS} for f, _ in plan.features}
        relative = None
        if plan.specs:
            relative = {
                s.key: {
                    k: results[f"relative:{s.key}"][k].reshape(plan.horizon, s.dim).tolist()
                    for k in RELATIVE_STAT_KEYS
                }
                for s in plan.specs
            }
        by_numerics[mode] = (stats, relative)
    final = {k: m for k, m in moments.items() if m is not None}
    return StatsResult(
        numerics=numerics,
        by_numerics=by_numerics,
        histograms={k.split(":", 1)[1]: h.to_dict() for k, h in histograms.items()},
        state=StatsState(plan, source, episodes, final),
        episodes=len(episodes),
        recomputed=source.recomputed,
        cached=source.cached,
        passes=pass_no,
        counts={k: m.count for k, m in final.items()},
    )


def _key_result(
    sel: RadixSelect, up: UpstreamMoments, mom: Moments | None, probs: Sequence[float], numerics: str
) -> dict[str, np.ndarray]:
    assert mom is not None and up.mean is not None and up.std is not None
    if not (mom.count == up.count == sel.count):
        raise RuntimeError("statistics passes saw different numbers of samples (the data changed during the run)")
    values = sel.order_statistics()
    lo, hi, gamma = linear_ranks(sel.count, sel.probs)
    col = {int(r): j for j, r in enumerate(sel.ranks)}
    a = values[:, [col[int(r)] for r in lo]].T
    b = values[:, [col[int(r)] for r in hi]].T
    if numerics == "upstream":
        q = upstream_lerp(a, b, gamma[:, None])
        out = {"mean": up.mean.astype(np.float64), "std": up.std.astype(np.float64)}
    else:
        q = numpy_lerp(a, b, gamma[:, None])
        out = {"mean": mom.mean.copy(), "std": mom.std}
    out["min"] = mom.min.astype(np.float64)
    out["max"] = mom.max.astype(np.float64)
    for p, row in zip(probs, q):
        out[prob_key(p)] = row
    return out


def compute_stats(
    dataset: LeRobotDataset | str | Path,
    modality_config: EmbodimentModalityConfig | None = None,
    *,
    progress: bool = False,
    probs: Sequence[float] = DEFAULT_PROBS,
    hist_budget_bytes: int = DEFAULT_HIST_BUDGET_BYTES,
    raw_limit: int | None = None,
    numerics: str = "upstream",
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(stats_json, relative_stats_json)``; the latter is None without a config or RELATIVE keys.

    A thin wrapper over :func:`run_stats` (which also returns the other numerics, histograms, cache counters and
    the mergeable state). ``numerics="upstream"`` (default) reproduces upstream's files bit for bit;
    ``"float64"`` gives float64-accurate mean/std. ``cache_dir`` enables the incremental per-episode cache.
    """
    result = run_stats(
        dataset,
        modality_config,
        numerics=numerics,
        cache_dir=cache_dir,
        progress=progress,
        probs=probs,
        hist_budget_bytes=hist_budget_bytes,
        raw_limit=raw_limit,
        histogram_bins=0,
    )
    return result.stats, result.relative
