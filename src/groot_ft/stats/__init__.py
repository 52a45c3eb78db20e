"""Normalisation statistics (``stats.json``, ``relative_stats.json``) with upstream GR00T N1.6's exact numbers.

Upstream (``gr00t/data/stats.py``, numpy 1.26.4) loads every frame into memory and calls numpy on float32 arrays. We
stream episodes in episode-index order instead, with memory bounded independently of the number of frames, and
reproduce upstream's files bit for bit (verified on gr1.PickNPlace: both shipped files are matched exactly).

What is computed
----------------
``stats.json``: every ``info.json`` feature whose dtype contains "float", cast to float32 (as upstream), per dimension
``mean, std (population), min, max, q01, q99``. ``relative_stats.json``: for every RELATIVE action key, over every
episode and window start ``i in range(L - action.delta_indices[-1])``, the chunk ``action[delta_indices + i, group] -
state[state.delta_indices[-1] + i, reference group]`` (subtracted in the parquet dtype, then cast to float32, as
upstream does), stats per (horizon step, dimension) as ``(T, D)`` nested lists ``max, min, q01, q99, mean, std``.

Numerics (``numerics=``)
------------------------
* ``"upstream"`` (default for the written files, which are consumed as upstream's): mean/std exactly as numpy 1.26's
  ``np.mean``/``np.std(axis=0)`` of the C-contiguous ``(N, D)`` float32 array compute them: a float32 running sum
  that adds one row after the other (D > 1), or, for single-column features, numpy's pairwise sum over blocks of
  8192 values (its reduction buffer); ``mean = sum / N``; ``std = sqrt(sum((x - mean)**2) / N)``, every step rounded
  to float32 (:class:`UpstreamMoments`, two passes in fixed episode order). q01/q99 interpolate the exact order
  statistics as numpy 1.26 does for float32 data (difference in float32, the rest in float64,
  :func:`~groot_ft.quantiles.upstream_lerp`). Upstream's float32 accumulation is off from the true moments by up
  to ~1e-5 relative (mean/std) and ~4e-3 for the std of a near-constant relative dimension; we keep its numbers
  because the files stand in for upstream's.
* ``"float64"``: mean/std from per-episode float64 two-pass partials merged with Chan et al.'s formula (accurate to
  float64 rounding), quantiles ``np.quantile(x.astype(float64))``. These are always computed too and reported next
  to the upstream ones (``stats_report.json``); they are also the mergeable states used by the incremental cache
  and by mixtures (:func:`merge_mixture_stats`).

min/max and the order statistics behind q01/q99 are exact in both modes: a multi-pass radix select over float32 bit
patterns (:mod:`groot_ft.quantiles`), whose memory is bounded by ``hist_budget_bytes``.

Incremental cache (``cache_dir=``)
----------------------------------
Upstream-exact float32 moments depend on every value and on the order of the rows, and exact quantiles on every
value, so neither can be merged from small summaries. The cache therefore keeps what is expensive to get per
episode, keyed by content, and re-streams it cheaply:

* one file ``<cache>/<kk>/<key>.npys`` (a sequence of ``.npy`` records) per episode, with
  ``key = sha256(format, stats plan, episode content)``: the stats plan covers the float feature columns and their
  widths, the RELATIVE groups (columns and slices), the action delta indices and the reference state index; the
  episode content is the sha256 of the episode's parquet file (v3 layouts: of the shared file plus the episode's
  row range);
* it holds the episode's decoded, validated float32 feature matrices, the native-dtype action/state slices of every
  RELATIVE group (4x smaller than the float32 windows they expand to), and the episode's float64 partial moments
  (count, mean, M2, min, max) of every feature and relative key.

A run hashes every episode file (cheap, no decoding), decodes and validates only episodes whose key has no entry
(``StatsResult.recomputed``; editing or adding one episode recomputes one), merges all float64 partials in episode
order, and streams the cached matrices (no parquet decoding, no validation) through the exact passes: numpy work
linear in the frames, but nothing per episode that is expensive. Memory stays bounded (one batch of episodes at a
time plus the histograms); the cache costs about as much disk as the dataset's float columns. Entries no longer
referenced are pruned after a successful run (``prune_cache``). Without a cache, the first pass spills the decoded
arrays to an unlinked temporary file that later passes read back instead of decoding parquet again.

Modules
-------
* :mod:`~groot_ft.stats.common`: file names, key orders, defaults, :class:`StatsError`;
* :mod:`~groot_ft.stats.moments`: :class:`UpstreamMoments` (upstream's float32 mean/std) and :class:`Moments`
  (mergeable float64);
* :mod:`~groot_ft.stats.plan`: :class:`StatsPlan` (features, RELATIVE groups) and :func:`relative_chunks`;
* :mod:`~groot_ft.stats.episodes`: per-episode data, decoded from parquet or from the incremental cache;
* :mod:`~groot_ft.stats.compute`: the passes, :func:`run_stats` and :func:`compute_stats`;
* :mod:`~groot_ft.stats.mixture`: :func:`merge_mixture_stats` (weighted mixtures with exact quantiles);
* :mod:`~groot_ft.stats.report`: :func:`write_stats`, :func:`summary_flags`, ``stats_report.json`` and plots;
* :mod:`~groot_ft.stats.cli`: ``groot-ft stats`` (also ``python -m groot_ft.stats``).

Dependencies run one way, in that order; this package re-exports the public names.
"""

from groot_ft.stats.common import (
    CACHE_FORMAT,
    DEFAULT_HIST_BUDGET_BYTES,
    DEFAULT_HISTOGRAM_BINS,
    DEFAULT_PROBS,
    NUMERICS,
    RELATIVE_STAT_KEYS,
    RELATIVE_STATS_FILENAME,
    STAT_KEYS,
    STATS_FILENAME,
    StatsError,
    prob_key,
)
from groot_ft.stats.moments import NUMPY_REDUCE_BUFSIZE, Moments, UpstreamMoments, pairwise_sum_f32
from groot_ft.stats.plan import StatsPlan, make_plan, relative_chunks
from groot_ft.stats.episodes import EpisodeData, EpisodeSource, column_array
from groot_ft.stats.compute import StatsResult, StatsState, compute_stats, run_stats
from groot_ft.stats.mixture import merge_mixture_stats
from groot_ft.stats.report import (
    HISTOGRAMS_PLOT,
    RANGES_PLOT,
    REPORT_FILENAME,
    summary_flags,
    write_stats,
    write_stats_report,
)
from groot_ft.stats.cli import main

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_HISTOGRAM_BINS",
    "DEFAULT_HIST_BUDGET_BYTES",
    "DEFAULT_PROBS",
    "HISTOGRAMS_PLOT",
    "NUMERICS",
    "NUMPY_REDUCE_BUFSIZE",
    "RANGES_PLOT",
    "RELATIVE_STATS_FILENAME",
    "RELATIVE_STAT_KEYS",
    "REPORT_FILENAME",
    "STATS_FILENAME",
    "STAT_KEYS",
    "EpisodeData",
    "EpisodeSource",
    "Moments",
    "StatsError",
    "StatsPlan",
    "StatsResult",
    "StatsState",
    "UpstreamMoments",
    "column_array",
    "compute_stats",
    "main",
    "make_plan",
    "merge_mixture_stats",
    "pairwise_sum_f32",
    "prob_key",
    "relative_chunks",
    "run_stats",
    "summary_flags",
    "write_stats",
    "write_stats_report",
]
