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

Passes
------
Pass 1 decodes (or loads) every episode in index order, merges the float64 partials, sums float32 values for the
upstream means and builds the top-16-bit histograms (or keeps the keys, for small data) of the radix select. Pass 2
sums the squared deviations from the float32 means, resolves the order statistics inside the buckets found in pass
1 (one table look-up per value) and fills per-dimension value histograms for the report's plots (exact counts up
to 2**20 frames per feature, an evenly spaced sample of rows beyond). A third pass is needed only when a
``hist_budget_bytes`` too small for 16-bit digits forces narrower ones. Chunks of one key are batched across
episodes (``_FEED_BLOCK_VALUES``), episodes are read ahead on a worker thread, and different keys are fed on
parallel threads; none of this changes a single bit of the results.

Mixtures
--------
:func:`merge_mixture_stats` combines datasets of one embodiment with mix weights: upstream's weighted mean/variance
(weights normalised; ``mean = sum w mu``, ``var = sum w (sigma^2 + mu^2) - mean^2``, written in the algebraically
equal, cancellation-free form ``sum w (sigma^2 + (mu - mean)^2)``), elementwise min/max, and *exact* weighted
quantiles (defined in :class:`~groot_ft.quantiles.WeightedRadixSelect`; equal to the pooled ``np.quantile`` when the
weights are proportional to the frame counts, or for relative keys to the window counts) instead of upstream's min
of q01s / max of q99s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from groot_ft.data.lerobot import DatasetError, LeRobotDataset, column_matrix
from groot_ft.modality import ActionType, EmbodimentModalityConfig, load_modality_config
from groot_ft.quantiles import (
    DEFAULT_BUDGET_BYTES,
    RadixSelect,
    WeightedRadixSelect,
    float32_keys,
    linear_ranks,
    numpy_lerp,
    upstream_lerp,
)

STATS_FILENAME = "stats.json"
RELATIVE_STATS_FILENAME = "relative_stats.json"
STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")  # upstream's order in stats.json
RELATIVE_STAT_KEYS = ("max", "min", "q01", "q99", "mean", "std")  # upstream's order in relative_stats.json
DEFAULT_PROBS = (0.01, 0.99)
DEFAULT_HIST_BUDGET_BYTES = 256 * 2**20  # all histograms of one compute_stats call together
DEFAULT_HISTOGRAM_BINS = 50  # per-dimension value histograms for the report's plots
NUMERICS = ("upstream", "float64")
CACHE_FORMAT = "groot_ft.stats.episode/1"
NUMPY_REDUCE_BUFSIZE = 8192  # numpy's default ufunc buffer: 1-D float reductions are pairwise within such blocks
_PW_BLOCKSIZE = 128  # numpy's pairwise-summation leaf size
_WINDOW_BLOCK_VALUES = 2**22  # relative-chunk values materialised at once
_FEED_BLOCK_VALUES = 2**20  # values of one key batched across episodes before they are fed to the passes
_HISTOGRAM_ROWS = 2**20  # rows per feature counted in the plot histograms (every k-th row beyond that)
_PREFETCH_VALUES = 2**21  # values of the episodes read ahead on a worker thread (8 MiB of float32)
_CACHE_NAME = re.compile(r"^[0-9a-f]{64}\.npys$")


class StatsError(ValueError):
    """Statistics cannot be computed; the message names the column/group, episode and what to do."""


class NonFiniteError(StatsError):
    """A chunk given to an accumulator holds NaN or infinity."""

    def __init__(self, message: str, row: int, dim: int, value: float):
        super().__init__(message)
        self.row, self.dim, self.value = row, dim, value


def _prob_key(p: float) -> str:
    pct = p * 100
    return f"q{round(pct):02d}" if math.isclose(pct, round(pct)) else f"q{pct:g}"


# ---------------------------------------------------------------------------------------------------------------
# upstream's float32 moments, streamed


def pairwise_sum_f32(a: np.ndarray) -> np.float32:
    """numpy's pairwise summation of a 1-D float32 array, in float32, reproduced operation by operation.

    ``numpy/core/src/umath/loops_utils.h.src``: fewer than 8 values are added in order to 0; up to 128 values use
    eight interleaved accumulators combined as ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))`` plus the leftover values in
    order; longer arrays split at ``n/2`` rounded down to a multiple of 8 and add the halves' sums.
    """
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    n = len(a)
    if n < 8:
        res = np.float32(0.0)
        for v in a:
            res = np.float32(res + v)
        return res
    if n <= _PW_BLOCKSIZE:
        m = n - n % 8
        r = np.add.accumulate(a[:m].reshape(-1, 8), axis=0)[-1]  # lane j: a[j] + a[8 + j] + ... in order
        res = np.float32((r[0] + r[1]) + (r[2] + r[3])) + np.float32((r[4] + r[5]) + (r[6] + r[7]))
        for v in a[m:]:
            res = np.float32(res + v)
        return np.float32(res)
    leaves = n // _PW_BLOCKSIZE
    if n % _PW_BLOCKSIZE == 0 and leaves & (leaves - 1) == 0:  # 128 * 2**k values: a balanced tree, vectorised
        r = np.add.accumulate(a.reshape(leaves, _PW_BLOCKSIZE // 8, 8), axis=1)[:, -1, :]
        s = ((r[:, 0] + r[:, 1]) + (r[:, 2] + r[:, 3])) + ((r[:, 4] + r[:, 5]) + (r[:, 6] + r[:, 7]))
        while len(s) > 1:
            s = s[0::2] + s[1::2]
        return np.float32(s[0])
    n2 = n // 2
    n2 -= n2 % 8
    return np.float32(pairwise_sum_f32(a[:n2]) + pairwise_sum_f32(a[n2:]))


class UpstreamMoments:
    """``np.mean(x, axis=0)`` and ``np.std(x, axis=0)`` of float32 ``x`` as numpy 1.26 computes them, streamed.

    ``x`` is the row-wise concatenation of every chunk given to :meth:`update`, in order. Pass 0 accumulates the
    float32 sum (rows added one after the other when ``dim > 1``; numpy's pairwise sum per 8192-value block when
    ``dim == 1``, where numpy reduces a contiguous column), ``mean = float32(sum / N)``; pass 1 streams the same
    chunks again and sums ``(x - mean)**2`` the same way; ``std = sqrt(float32(sum / N))``. Bit-identical to numpy
    1.26 (and so to upstream's files); not mergeable, since float32 sums depend on order.
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.pass_index = 0
        self._sum = np.zeros(self.dim, dtype=np.float32)
        self._pending: list[np.ndarray] = []  # dim == 1: values of the current, not yet full, 8192-block
        self._pending_n = 0
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def done(self) -> bool:
        return self.pass_index >= 2

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).reshape(-1, self.dim)
        if len(x) == 0:
            return
        if self.pass_index == 0:
            self.count += len(x)
            values = x
        elif self.pass_index == 1:
            assert self.mean is not None
            values = x - self.mean
            np.multiply(values, values, out=values)
        else:
            raise RuntimeError("upstream moments are complete; no further pass is needed")
        if self.dim == 1:
            self._add_column(values.reshape(-1))
        else:
            self._add_rows(values, owned=self.pass_index == 1)

    def _add_rows(self, values: np.ndarray, owned: bool) -> None:
        # (((s + x0) + x1) + ...): fold the running sum into the first row, then numpy's row-by-row reduction
        if not owned:
            values = values.copy()
        values[0] += self._sum
        self._sum = np.add.reduce(values, axis=0)

    def _add_column(self, values: np.ndarray) -> None:
        self._pending.append(values)
        self._pending_n += len(values)
        if self._pending_n < NUMPY_REDUCE_BUFSIZE:
            return
        flat = np.concatenate(self._pending)
        full = len(flat) - len(flat) % NUMPY_REDUCE_BUFSIZE
        total = self._sum[0]
        for start in range(0, full, NUMPY_REDUCE_BUFSIZE):
            total = np.float32(total + pairwise_sum_f32(flat[start : start + NUMPY_REDUCE_BUFSIZE]))
        self._sum[0] = total
        rest = flat[full:].copy()
        self._pending, self._pending_n = ([rest] if len(rest) else []), len(rest)

    def end_pass(self) -> bool:
        """Close a pass; True while another pass over the same chunks is needed."""
        if self.pass_index >= 2:
            return False
        if self.count == 0:
            raise StatsError("no samples: mean and std are undefined")
        if self._pending_n:
            self._sum[0] = np.float32(self._sum[0] + pairwise_sum_f32(np.concatenate(self._pending)))
        self._pending, self._pending_n = [], 0
        # numpy divides by the count as an integer scalar: in float32 for counts below 2**16 (value-based casting in
        # numpy 1.x), in float64 otherwise and always in numpy 2; rounding float64 quotients of float32 values to
        # float32 is innocuous, so the float64 division reproduces every case
        quotient = (self._sum.astype(np.float64) / self.count).astype(np.float32)
        if self.pass_index == 0:
            self.mean = quotient
        else:
            self.std = np.sqrt(quotient)
        self._sum = np.zeros(self.dim, dtype=np.float32)
        self.pass_index += 1
        return self.pass_index < 2


# ---------------------------------------------------------------------------------------------------------------
# mergeable float64 moments


@dataclass
class Moments:
    """count, float64 mean and M2 (sum of squared deviations), float32 min/max of ``(n, dim)`` samples; mergeable."""

    count: int
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Moments:
        return cls(
            0,
            np.zeros(dim),
            np.zeros(dim),
            np.full(dim, np.inf, dtype=np.float32),
            np.full(dim, -np.inf, dtype=np.float32),
        )

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """Two-pass float64 moments of a chunk (``x`` float32 ``(n, dim)``, finite)."""
        if len(x) == 0:
            return cls.empty(x.shape[1])
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        x64 -= mean
        return cls(len(x), mean, np.einsum("ij,ij->j", x64, x64), x.min(axis=0), x.max(axis=0))

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.m2, 0.0) / max(1, self.count))

    def merge(self, other: Moments) -> None:
        """Chan et al.'s parallel update (in place); merge in a fixed order for bit-stable results."""
        if other.count == 0:
            return
        if self.count == 0:  # (an empty state may not even know its width yet)
            self.count = other.count
            self.mean, self.m2 = other.mean.copy(), other.m2.copy()
            self.min, self.max = other.min.copy(), other.max.copy()
            return
        if other.dim != self.dim:
            raise StatsError(f"cannot merge moments of {other.dim} dimensions into {self.dim}")
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + np.square(delta) * (self.count * other.count / n)
        self.count = n
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)

    def to_array(self) -> np.ndarray:
        return np.stack([self.mean, self.m2, self.min.astype(np.float64), self.max.astype(np.float64)])

    @classmethod
    def from_array(cls, count: int, arr: np.ndarray) -> Moments:
        arr = np.asarray(arr, dtype=np.float64)
        return cls(int(count), arr[0].copy(), arr[1].copy(), arr[2].astype(np.float32), arr[3].astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# a general streaming accumulator (float64 moments + radix select), for sharded/parallel use outside run_stats


class FeatureAccumulator:
    """Streaming, mergeable, exact per-dimension statistics of float32 samples ``(n, dim)``.

    Protocol: ``update`` every chunk of the data (or ``merge`` partial states made with :meth:`spawn`, e.g. one per
    episode or worker), then ``end_pass()``; while it returns True, stream the same data again (only the quantile
    histograms are refined in later passes). :meth:`result` gives ``mean, std, min, max`` and one ``qNN`` per
    probability. Partial states serialise with :meth:`state_dict` / :meth:`save` (npz) for incremental caching.

    Moments are float64 (chunk mean and M2 by two passes, Chan merge); min/max/quantiles are exact and independent
    of chunking and merge order, mean/std agree to float64 rounding.
    """

    def __init__(
        self,
        dim: int | None = None,
        *,
        name: str = "",
        probs: Sequence[float] = DEFAULT_PROBS,
        hist_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        raw_limit: int | None = None,
    ):
        self.name = name
        self.raw_limit = raw_limit
        self.probs = tuple(float(p) for p in probs)
        self.hist_budget_bytes = int(hist_budget_bytes)
        self.dim: int | None = None
        self.count = 0
        self.mean = self.m2 = self.min = self.max = np.zeros(0)
        self.select: RadixSelect | None = None
        if dim is not None:
            self._init_dim(dim)

    def _init_dim(self, dim: int) -> None:
        if dim < 1:
            raise StatsError(f"{self.name or 'feature'}: needs at least one dimension, got {dim}")
        self.dim = int(dim)
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)
        self.min = np.full(dim, np.inf, dtype=np.float32)
        self.max = np.full(dim, -np.inf, dtype=np.float32)
        self.select = RadixSelect(dim, self.probs, self.hist_budget_bytes, self.raw_limit)

    @property
    def pass_index(self) -> int:
        return 0 if self.select is None else self.select.pass_index

    @property
    def done(self) -> bool:
        return self.select is not None and self.select.done

    # --- streaming ------------------------------------------------------------------------------------------
    def update(self, x: np.ndarray) -> None:
        """Add a chunk of samples: float32 ``(n, dim)`` (a 1-D array is one dimension). Rejects NaN/inf."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise StatsError(f"{self.name or 'feature'}: expected an (n, dim) array, got shape {x.shape}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.shape[0] == 0:
            return
        if self.dim is None:
            self._init_dim(x.shape[1])
        if x.shape[1] != self.dim:
            raise StatsError(f"{self.name or 'feature'}: expected {self.dim} dimensions, got {x.shape[1]}")
        assert self.select is not None
        if self.select.pass_index == 0:
            finite = np.isfinite(x)
            if not finite.all():
                row, dim = (int(i) for i in np.argwhere(~finite)[0])
                value = float(x[row, dim])
                raise NonFiniteError(
                    f"{self.name or 'feature'}: row {row} dimension {dim} is {value}; statistics of non-finite "
                    "data are meaningless",
                    row,
                    dim,
                    value,
                )
            n = x.shape[0]
            x64 = x.astype(np.float64)
            mean_b = x64.mean(axis=0)
            m2_b = np.square(x64 - mean_b).sum(axis=0)
            self._merge_moments(n, mean_b, m2_b, x.min(axis=0), x.max(axis=0))
        self.select.update_keys(float32_keys(x))

    def _merge_moments(
        self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray, min_b: np.ndarray, max_b: np.ndarray
    ) -> None:
        n_a = self.count
        if n_b == 0:
            return
        if n_a == 0:
            self.mean, self.m2 = mean_b.astype(np.float64).copy(), m2_b.astype(np.float64).copy()
        else:
            n = n_a + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + np.square(delta) * (n_a * n_b / n)
        self.count = n_a + n_b
        self.min = np.minimum(self.min, min_b)
        self.max = np.maximum(self.max, max_b)

    def spawn(self) -> FeatureAccumulator:
        """An empty partial state for the current pass (e.g. one episode), to be :meth:`merge`-d back."""
        other = FeatureAccumulator(
            name=self.name, probs=self.probs, hist_budget_bytes=self.hist_budget_bytes, raw_limit=self.raw_limit
        )
        if self.dim is not None:
            other._init_dim(self.dim)
            assert self.select is not None
            other.select = self.select.spawn()
        return other

    def merge(self, other: FeatureAccumulator) -> None:
        """Fold in a partial state of the same pass (exact histograms; Chan merge of moments in pass 0)."""
        if other.dim is None or (other.count == 0 and other.pass_index == 0):
            return
        if self.dim is None:
            self._init_dim(other.dim)
        if other.dim != self.dim or other.probs != self.probs:
            raise StatsError(f"{self.name or 'feature'}: cannot merge states of different dims or probabilities")
        assert self.select is not None and other.select is not None
        if other.pass_index != self.pass_index:
            raise StatsError(f"{self.name or 'feature'}: cannot merge states of different passes")
        if self.pass_index == 0:
            self._merge_moments(other.count, other.mean, other.m2, other.min, other.max)
        self.select.merge(other.select)

    def end_pass(self) -> bool:
        """Close the current pass over the data; True when the same data must be streamed once more."""
        if self.select is None or (self.pass_index == 0 and self.count == 0):
            raise StatsError(f"{self.name or 'feature'}: no samples, statistics are undefined")
        return self.select.end_pass()

    # --- results --------------------------------------------------------------------------------------------
    def result(self) -> dict[str, np.ndarray]:
        """``{"mean", "std", "min", "max", "q01", "q99", ...}`` as float64 arrays of shape ``(dim,)``."""
        if not self.done:
            raise StatsError(f"{self.name or 'feature'}: statistics need more passes over the data")
        assert self.select is not None
        quantiles = self.select.quantiles()
        out = {
            "mean": self.mean.copy(),
            "std": np.sqrt(np.maximum(self.m2, 0.0) / self.count),
            "min": self.min.astype(np.float64),
            "max": self.max.astype(np.float64),
        }
        for p, q in zip(self.probs, quantiles):
            out[_prob_key(p)] = q
        return out

    # --- serialisation (for incremental caching of per-episode partial states) -------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": "groot_ft.FeatureAccumulator/1",
            "name": self.name,
            "probs": np.asarray(self.probs, dtype=np.float64),
            "hist_budget_bytes": self.hist_budget_bytes,
            "raw_limit": -1 if self.raw_limit is None else self.raw_limit,
            "dim": -1 if self.dim is None else self.dim,
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
        }
        if self.select is not None:
            state.update({f"select.{k}": v for k, v in self.select.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureAccumulator:
        fmt = str(np.asarray(state.get("format", "")))
        if fmt != "groot_ft.FeatureAccumulator/1":
            raise StatsError(f"unknown accumulator state format {fmt!r}")
        acc = cls(
            name=str(np.asarray(state["name"])),
            probs=[float(p) for p in np.asarray(state["probs"]).ravel()],
            hist_budget_bytes=int(np.asarray(state["hist_budget_bytes"])),
            raw_limit=None if int(np.asarray(state["raw_limit"])) < 0 else int(np.asarray(state["raw_limit"])),
        )
        dim = int(np.asarray(state["dim"]))
        if dim < 0:
            return acc
        acc._init_dim(dim)
        acc.count = int(np.asarray(state["count"]))
        acc.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        acc.m2 = np.asarray(state["m2"], dtype=np.float64).copy()
        acc.min = np.asarray(state["min"], dtype=np.float32).copy()
        acc.max = np.asarray(state["max"], dtype=np.float32).copy()
        acc.select = RadixSelect.from_state_dict({k[7:]: v for k, v in state.items() if k.startswith("select.")})
        return acc

    def save(self, path: str | Path) -> None:
        """Write the state as an ``.npz`` file."""
        np.savez_compressed(Path(path), **{k: np.asarray(v) for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, path: str | Path) -> FeatureAccumulator:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls.from_state_dict({k: data[k] for k in data.files})


# ---------------------------------------------------------------------------------------------------------------
# what to compute for a dataset, and the per-episode data behind it


@dataclass(frozen=True)
class _RelativeSpec:
    key: str
    action_column: str
    action_start: int
    action_end: int
    state_column: str
    state_start: int
    state_end: int

    @property
    def dim(self) -> int:
        return self.action_end - self.action_start


@dataclass(frozen=True)
class StatsPlan:
    """The accumulators of one dataset: float features, RELATIVE groups, and the window geometry."""

    features: tuple[tuple[str, int], ...]  # (column, dims per info.json)
    specs: tuple[_RelativeSpec, ...]
    deltas: tuple[int, ...] = (0,)
    ref_index: int = 0

    @property
    def horizon(self) -> int:
        return len(self.deltas)

    def keys(self) -> list[str]:
        return [f"feature:{f}" for f, _ in self.features] + [f"relative:{s.key}" for s in self.specs]

    def declared_dims(self) -> dict[str, int]:
        dims = {f"feature:{f}": d for f, d in self.features}
        dims.update({f"relative:{s.key}": s.dim * self.horizon for s in self.specs})
        return dims

    @property
    def columns(self) -> list[str]:
        cols = {f for f, _ in self.features}
        for s in self.specs:
            cols.update((s.action_column, s.state_column))
        return sorted(cols)

    def fingerprint(self) -> str:
        doc = {
            "format": CACHE_FORMAT,
            "features": [list(f) for f in self.features],
            "relative": [
                [s.key, s.action_column, s.action_start, s.action_end, s.state_column, s.state_start, s.state_end]
                for s in self.specs
            ],
            "deltas": list(self.deltas),
            "ref_index": self.ref_index,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def relative_chunks(
    action: np.ndarray,
    state: np.ndarray,
    action_delta_indices: Sequence[int],
    state_reference_index: int,
    *,
    block_values: int = _WINDOW_BLOCK_VALUES,
) -> Iterator[np.ndarray]:
    """Yield blocks ``(windows, T, D)`` float32 of ``action[deltas + i] - state[state_reference_index + i]``.

    Windows ``i in range(L - max(deltas))``; the difference is taken in the arrays' own dtype and then cast to
    float32, as upstream does. Memory is bounded by ``block_values`` elements per block.
    """
    deltas = np.asarray(action_delta_indices, dtype=np.int64)
    length = min(len(action), len(state))
    windows = length - int(deltas.max())
    if windows <= 0:
        return
    per_block = max(1, block_values // max(1, deltas.size * action.shape[1]))
    for start in range(0, windows, per_block):
        starts = np.arange(start, min(windows, start + per_block), dtype=np.int64)
        chunk = action[starts[:, None] + deltas[None, :]]  # (w, T, D)
        reference = state[starts + state_reference_index]  # (w, D)
        yield (chunk - reference[:, None, :]).astype(np.float32)


def _float_features(dataset: LeRobotDataset) -> list[str]:
    return [name for name, feat in dataset.features.items() if "float" in str(feat.get("dtype", ""))]


def _feature_dim(dataset: LeRobotDataset, name: str) -> int:
    shape = dataset.features.get(name, {}).get("shape") or [1]
    try:
        return max(1, int(np.prod([int(s) for s in shape])))
    except (TypeError, ValueError):
        return 1


def _relative_specs(dataset: LeRobotDataset, cfg: EmbodimentModalityConfig) -> list[_RelativeSpec]:
    keys = sorted(cfg.relative_action_keys())  # upstream writes them in sorted order
    if not keys:
        return []
    where = f"modality config {cfg.source}"
    if cfg.state.delta_indices[-1] != cfg.action.delta_indices[0]:
        raise StatsError(
            f"{where}: RELATIVE actions need state.delta_indices[-1] == action.delta_indices[0] "
            f"({cfg.state.delta_indices[-1]} != {cfg.action.delta_indices[0]}); the reference state must be the "
            "first action step"
        )
    if min(cfg.action.delta_indices) < 0:
        raise StatsError(
            f"{where}: RELATIVE actions need non-negative action.delta_indices, got {list(cfg.action.delta_indices)}"
        )
    if cfg.action.delta_indices[-1] != max(cfg.action.delta_indices):
        raise StatsError(
            f"{where}: action.delta_indices must end with their largest offset, got {list(cfg.action.delta_indices)}"
        )
    eef = [k for k in keys if cfg.action_config_for(k).type is ActionType.EEF]
    if eef:
        raise StatsError(
            f"{where}: RELATIVE EEF actions ({', '.join(eef)}) need pose composition, which is not supported "
            "(upstream raises NotImplementedError too); use NON_EEF or an ABSOLUTE representation"
        )
    specs = []
    for key in keys:
        a = dataset.group_slice("action", key)
        s = dataset.group_slice("state", cfg.reference_state_key(key))
        if a.dim != s.dim:
            raise StatsError(
                f"{dataset.root / 'meta/modality.json'}: RELATIVE action.{key} has {a.dim} dims but its reference "
                f"state.{cfg.reference_state_key(key)} has {s.dim}; they must match to subtract"
            )
        specs.append(_RelativeSpec(key, a.column, a.start, a.end, s.column, s.start, s.end))
    return specs


def make_plan(dataset: LeRobotDataset, modality_config: EmbodimentModalityConfig | None = None) -> StatsPlan:
    """The statistics a dataset gets: every float feature, plus the RELATIVE groups of ``modality_config``."""
    features = tuple((f, _feature_dim(dataset, f)) for f in _float_features(dataset))
    specs = tuple(_relative_specs(dataset, modality_config)) if modality_config is not None else ()
    if not features and not specs:
        raise StatsError(f"{dataset.root / 'meta/info.json'}: no float features to compute statistics for")
    if specs:
        assert modality_config is not None
        return StatsPlan(
            features,
            specs,
            tuple(int(d) for d in modality_config.action.delta_indices),
            int(modality_config.state.delta_indices[-1]),
        )
    return StatsPlan(features, specs)


def _matrix(table: pa.Table, column: str, path: Path, dtype: Any = np.float32) -> np.ndarray:
    """A numeric (fixed-size) list or scalar column as an ``(rows, dim)`` array (``dtype=None``: parquet dtype)."""
    try:
        return column_matrix(table, column, path, dtype=dtype)
    except DatasetError as exc:
        raise StatsError(str(exc)) from None


def _native_matrix(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """A numeric column as an ``(rows, dim)`` array in its parquet dtype (no float32 cast)."""
    return _matrix(table, column, path, dtype=None)


def _check_finite(x: np.ndarray, where: str, row_offset: int = 0) -> None:
    """Raise a StatsError naming ``where`` (with ``{row}``), the row and dimension of the first non-finite value."""
    if np.isfinite(x).all():
        return
    row, dim = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
    raise StatsError(
        f"{where.replace('{row}', str(row_offset + row))}, dimension {dim} is {float(x[row, dim])}; statistics of "
        "non-finite data are meaningless; fix or drop the episode (dataset validation reports this too)"
    )


class EpisodeData:
    """One episode's inputs to the statistics (float32 feature matrices, native RELATIVE slices) and, once
    computed, its float64 partial moments per accumulator key; what an incremental cache entry holds."""

    def __init__(self, index: int, arrays: dict[str, np.ndarray], moments: dict[str, Moments] | None = None):
        self.index = index
        self.arrays = arrays  # "x{j}": feature j float32 (n, dim); "a{j}" / "s{j}": RELATIVE group j action / state
        self.moments = moments

    def matrices(self, plan: StatsPlan, keys: set[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """``(key, float32 (n, dim))`` chunks in row order: the features, then the relative windows in blocks."""
        for j, (f, _) in enumerate(plan.features):
            key = f"feature:{f}"
            if keys is None or key in keys:
                yield key, self.arrays[f"x{j}"]
        for j, s in enumerate(plan.specs):
            key = f"relative:{s.key}"
            if keys is None or key in keys:
                for block in relative_chunks(self.arrays[f"a{j}"], self.arrays[f"s{j}"], plan.deltas, plan.ref_index):
                    yield key, block.reshape(len(block), -1)

    @classmethod
    def decode(cls, ds: LeRobotDataset, plan: StatsPlan, episode_index: int, *, moments: bool = True) -> EpisodeData:
        """Read, check (finite, widths) and, with ``moments``, summarise one episode from its parquet data."""
        path = ds.data_path(episode_index)
        try:
            table = ds.read_episode_table(episode_index, plan.columns)
        except DatasetError as exc:
            raise StatsError(str(exc)) from None
        arrays: dict[str, np.ndarray] = {}
        for j, (f, _) in enumerate(plan.features):
            try:
                matrix = np.ascontiguousarray(_matrix(table, f, path))
            except StatsError:
                raise
            except (ValueError, pa.ArrowException) as exc:
                raise StatsError(f"{path}: cannot read column {f} as floats: {exc}") from None
            _check_finite(matrix, f"{path}: column {f}: episode {episode_index}, row {{row}}")
            arrays[f"x{j}"] = matrix
        native: dict[str, np.ndarray] = {}
        for j, s in enumerate(plan.specs):
            for col in (s.action_column, s.state_column):
                if col not in native:
                    native[col] = _native_matrix(table, col, path)
            action = native[s.action_column][:, s.action_start : s.action_end]
            state = native[s.state_column][:, s.state_start : s.state_end]
            if action.shape[1] != s.dim or state.shape[1] != s.dim:
                raise StatsError(
                    f"{path}: group {s.key} slices [{s.action_start}:{s.action_end}] of {s.action_column} and "
                    f"[{s.state_start}:{s.state_end}] of {s.state_column} exceed the columns' widths "
                    f"({native[s.action_column].shape[1]}, {native[s.state_column].shape[1]})"
                )
            arrays[f"a{j}"] = np.ascontiguousarray(action)
            arrays[f"s{j}"] = np.ascontiguousarray(state)
        data = cls(episode_index, arrays)
        if moments:
            data.moments = data._compute_moments(plan, path)
        return data

    def with_moments(self, ds: LeRobotDataset, plan: StatsPlan) -> EpisodeData:
        """Compute (and check) the partial moments if they are missing; returns self."""
        if self.moments is None:
            self.moments = self._compute_moments(plan, ds.data_path(self.index))
        return self

    def _compute_moments(self, plan: StatsPlan, path: Path) -> dict[str, Moments]:
        out: dict[str, Moments] = {}
        for j, (f, _) in enumerate(plan.features):
            out[f"feature:{f}"] = Moments.of(self.arrays[f"x{j}"])
        for j, s in enumerate(plan.specs):
            acc = Moments.empty(s.dim * plan.horizon)
            first = 0
            for block in relative_chunks(self.arrays[f"a{j}"], self.arrays[f"s{j}"], plan.deltas, plan.ref_index):
                flat = block.reshape(len(block), -1)
                _check_finite(
                    flat,
                    f"{path}: relative action {s.key} ({s.action_column} minus {s.state_column}): episode "
                    f"{self.index}, window {{row}} (dimension index = step * {s.dim} + joint)",
                    first,
                )
                acc.merge(Moments.of(flat))
                first += len(block)
            out[f"relative:{s.key}"] = acc
        return out

    # --- cache entries ---------------------------------------------------------------------------------------
    def save(self, path: Path, plan: StatsPlan) -> None:
        """Write the entry atomically (temp file + rename): a sequence of ``.npy`` records (format tag, JSON list
        of record names, then the arrays), read back with ``np.load(allow_pickle=False)``; no zip, no CRC."""
        assert self.moments is not None
        payload: dict[str, np.ndarray] = {"episode": np.array(self.index, dtype=np.int64)}
        payload.update(self.arrays)
        for i, key in enumerate(plan.keys()):
            m = self.moments[key]
            payload[f"count{i}"] = np.array(m.count, dtype=np.int64)
            payload[f"moments{i}"] = m.to_array()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.array(CACHE_FORMAT))
                np.save(fh, np.array(json.dumps(list(payload))))
                for array in payload.values():
                    np.save(fh, array)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, plan: StatsPlan, *, moments: bool = True) -> EpisodeData:
        """Read an entry written by :meth:`save` (raises ValueError/OSError on a foreign or damaged file)."""
        with open(path, "rb") as fh:
            try:
                if str(np.load(fh, allow_pickle=False)) != CACHE_FORMAT:
                    raise ValueError(f"{path}: not a {CACHE_FORMAT} entry")
                names = json.loads(str(np.load(fh, allow_pickle=False)))
                data = {name: np.load(fh, allow_pickle=False) for name in names}
            except EOFError:
                raise ValueError(f"{path}: truncated cache entry") from None
            if fh.read(1):
                raise ValueError(f"{path}: trailing data after the cache entry")
        arrays = {f"x{j}": data[f"x{j}"] for j in range(len(plan.features))}
        arrays.update({f"{p}{j}": data[f"{p}{j}"] for j in range(len(plan.specs)) for p in ("a", "s")})
        mom = None
        if moments:
            mom = {
                key: Moments.from_array(int(data[f"count{i}"]), data[f"moments{i}"])
                for i, key in enumerate(plan.keys())
            }
        return cls(int(data["episode"]), arrays, mom)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class EpisodeSource:
    """Per-episode :class:`EpisodeData` of one dataset, from an incremental cache where possible.

    :meth:`first` (the first pass) hashes the episode's data, loads the cache entry of that content or decodes and
    validates the parquet rows and writes the entry, and counts ``recomputed`` (decoded) and ``cached`` episodes.
    :meth:`again` (later passes) reads the entry, or decodes once more when there is no cache.
    """

    def __init__(self, ds: LeRobotDataset, plan: StatsPlan, cache_dir: str | Path | None = None):
        self.ds = ds
        self.plan = plan
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.entries: dict[int, Path] = {}
        self.recomputed = 0
        self.cached = 0
        self._plan_fp = plan.fingerprint()
        self._digests: dict[Path, str] = {}
        self._spill: Any = None  # without a cache: an anonymous temp file of decoded arrays, in episode order
        self._spill_names = [f"x{j}" for j in range(len(plan.features))]
        self._spill_names += [f"{p}{j}" for j in range(len(plan.specs)) for p in ("a", "s")]

    def open_spill(self) -> None:
        """Without a cache, keep the first pass's decoded arrays in an unlinked temp file (page cache / disk, not
        process memory) so that later passes read them back instead of decoding parquet again. Passes must then
        visit the episodes in the same order; :meth:`close_spill` ends it."""
        if self.cache_dir is None and self._spill is None:
            import tempfile

            self._spill = tempfile.TemporaryFile(prefix="groot_ft_stats_")
            self._spill_done = False

    def rewind_spill(self) -> None:
        if self._spill is not None:
            self._spill_done = True
            self._spill.seek(0)

    def close_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def entry_key(self, episode_index: int) -> str:
        """sha256 of (cache format, stats plan, the episode's data bytes)."""
        path = self.ds.data_path(episode_index)
        if path not in self._digests:
            try:
                self._digests = {path: _file_sha256(path)}  # shared v3 files are hashed once, in order
            except FileNotFoundError:
                raise StatsError(f"{path}: parquet file of episode {episode_index} is missing") from None
        rows = self.ds.episode_rows(episode_index)
        content = f"{self._digests[path]}:{episode_index if rows is not None else ''}:{rows or ''}"
        return hashlib.sha256(f"{self._plan_fp}\n{content}".encode()).hexdigest()

    def first(self, episode_index: int) -> EpisodeData:
        """The episode with its moments; without a cache, the caller computes them (:meth:`EpisodeData.with_moments`,
        on its own thread, which balances the work of the reading and the feeding thread)."""
        if self.cache_dir is None:
            self.recomputed += 1
            data = EpisodeData.decode(self.ds, self.plan, episode_index, moments=False)
            if self._spill is not None:
                np.save(self._spill, np.int64(episode_index))
                for name in self._spill_names:
                    np.save(self._spill, data.arrays[name])
            return data
        key = self.entry_key(episode_index)
        path = self.cache_dir / key[:2] / f"{key}.npys"
        self.entries[episode_index] = path
        if path.is_file():
            try:
                data = EpisodeData.load(path, self.plan)
                self.cached += 1
                return data
            except (OSError, ValueError, KeyError, json.JSONDecodeError):  # damaged or foreign: recompute it
                pass
        data = EpisodeData.decode(self.ds, self.plan, episode_index)
        data.save(path, self.plan)
        self.recomputed += 1
        return data

    def again(self, episode_index: int) -> EpisodeData:
        path = self.entries.get(episode_index)
        if path is not None:
            return EpisodeData.load(path, self.plan, moments=False)
        if self._spill is not None and self._spill_done:
            if int(np.load(self._spill)) != episode_index:
                raise RuntimeError("statistics passes visited the episodes in different orders")
            return EpisodeData(episode_index, {name: np.load(self._spill) for name in self._spill_names})
        return EpisodeData.decode(self.ds, self.plan, episode_index, moments=False)

    def prune(self) -> int:
        """Delete cache entries that this source's episodes no longer use; return how many."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        keep = set(self.entries.values())
        removed = 0
        for sub in self.cache_dir.iterdir():
            if not (sub.is_dir() and len(sub.name) == 2):
                continue
            for entry in sub.iterdir():
                if _CACHE_NAME.match(entry.name) and entry not in keep:
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed


# ---------------------------------------------------------------------------------------------------------------
# dataset statistics


class _Feeder:
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


def _split_budget(dims: dict[str, int], budget: int) -> dict[str, int]:
    per_dim = budget / max(1, sum(dims.values()))
    return {k: max(1, int(per_dim * d)) for k, d in dims.items()}


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
) -> StatsResult:
    """Compute the statistics of a dataset (both numerics), streaming episodes in episode-index order.

    Reads only the needed parquet columns (never video); nothing is written except cache entries under
    ``cache_dir`` (see the module docstring). Two passes over the episodes (more only under a tight
    ``hist_budget_bytes``, the bound on all quantile histograms together); ``raw_limit`` is a tuning/testing knob
    of :class:`~groot_ft.quantiles.RadixSelect` (0 = histograms only); episodes are read ahead on a
    worker thread up to ``prefetch_values`` values (0: no read-ahead), and different keys are fed on up to
    ``threads`` threads (default: one per CPU; results do not depend on it).
    """
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    plan = make_plan(ds, modality_config)
    episodes = [e.index for e in sorted(ds.episodes, key=lambda e: e.index)]
    if not episodes:
        raise StatsError(f"{ds.root / 'meta/episodes.jsonl'}: no episodes")
    source = EpisodeSource(ds, plan, cache_dir)
    row_values = sum(d for _, d in plan.features) + sum(2 * s.dim * plan.horizon for s in plan.specs)
    lengths = {e.index: max(1, int(e.length)) for e in ds.episodes}
    keys = plan.keys()
    budgets = _split_budget(plan.declared_dims(), hist_budget_bytes)
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
    feeders = {k: _Feeder(consumer(k), pool=pool) for k in keys}
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
        out[_prob_key(p)] = row
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


# ---------------------------------------------------------------------------------------------------------------
# mixtures


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
    budgets = _split_budget({k: first.moments[k].dim for k in keys}, hist_budget_bytes)
    selects = {
        k: WeightedRadixSelect(
            first.moments[k].dim, [s.moments[k].count for s in states], weights, probs, budgets[k], raw_limit
        )
        for k in keys
    }
    active = set(keys)
    while active:
        for i, state in enumerate(states):
            feeders = {k: _Feeder(lambda block, k=k, i=i: selects[k].update(i, block)) for k in active}
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
            out[_prob_key(prob)] = row
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


# ---------------------------------------------------------------------------------------------------------------
# output


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a sibling temp file (normal umask permissions), fsync it, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x") as fh:
            json.dump(data, fh, indent=4, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_stats(out_dir: str | Path, stats: dict[str, Any], relative_stats: dict[str, Any] | None) -> list[Path]:
    """Write ``out_dir/stats.json`` and (unless None) ``out_dir/relative_stats.json`` atomically; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / STATS_FILENAME]
    _atomic_write_json(written[0], stats)
    if relative_stats is not None:
        written.append(out / RELATIVE_STATS_FILENAME)
        _atomic_write_json(written[1], relative_stats)
    return written


def summary_flags(
    stats: dict[str, Any],
    *,
    const_tol: float = 1e-6,
    outlier_factor: float = 10.0,
) -> list[dict[str, Any]]:
    """Dimensions worth a look before training, from a stats.json- or relative_stats.json-shaped dict.

    Flags (one dict each, with ``feature``, ``index`` (dimension, or ``[step, dim]`` for relative stats), ``flag``,
    ``message`` and the relevant values):

    * ``constant``: ``max == min`` (min/max normalisation maps the dimension to 0);
    * ``near_constant``: ``std <= const_tol`` or ``np.isclose(max, min)`` (GR00T's min/max normalisation outputs 0
      for such dimensions, exactly as for constant ones);
    * ``q01_eq_q99``: the 1st and 99th percentiles coincide although the dimension varies (percentile
      normalisation would divide by zero / saturate);
    * ``outlier_max`` / ``outlier_min``: ``max > q99 + outlier_factor * (q99 - q01)`` (or the mirror for min) —
      min/max normalisation would squeeze the bulk of the data into a small part of [-1, 1].
    """
    flags: list[dict[str, Any]] = []
    for feature, entry in stats.items():
        if not isinstance(entry, dict) or not {"min", "max", "std"} <= set(entry):
            continue
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in entry.items() if k in STAT_KEYS}
        shape = arrays["max"].shape
        for index in np.ndindex(*shape):
            v = {k: float(a[index]) for k, a in arrays.items() if a.shape == shape}
            idx: int | list[int] = int(index[0]) if len(index) == 1 else [int(i) for i in index]
            lo, hi, std = v["min"], v["max"], v["std"]
            span = hi - lo
            base = {"feature": feature, "index": idx}
            if span == 0:
                flags.append({**base, "flag": "constant", "value": lo,
                              "message": f"constant at {lo:g}; min/max normalisation maps it to 0"})
                continue
            if std <= const_tol or np.isclose(hi, lo):
                flags.append({**base, "flag": "near_constant", "std": std, "min": lo, "max": hi,
                              "message": f"near-constant (std {std:.3g}, range {span:.3g})"})
                continue
            if "q01" not in v or "q99" not in v:
                continue
            q01, q99 = v["q01"], v["q99"]
            iqr = q99 - q01
            if iqr == 0:
                flags.append({**base, "flag": "q01_eq_q99", "q01": q01, "q99": q99, "min": lo, "max": hi,
                              "message": f"q01 == q99 == {q01:g} although the range is [{lo:g}, {hi:g}]"})
                continue
            if hi > q99 + outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_max", "max": hi, "q01": q01, "q99": q99,
                              "message": f"max {hi:g} is {(hi - q99) / iqr:.1f} x (q99 - q01) above q99 {q99:g}"})
            if lo < q01 - outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_min", "min": lo, "q01": q01, "q99": q99,
                              "message": f"min {lo:g} is {(q01 - lo) / iqr:.1f} x (q99 - q01) below q01 {q01:g}"})
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m groot_ft.stats",
        description="Compute GR00T stats.json / relative_stats.json of a dataset (plus stats_report.json and plots), "
        "or, given several datasets and --mix-ratios, of their weighted mixture (one embodiment).",
    )
    parser.add_argument("dataset", type=Path, nargs="+")
    parser.add_argument("--modality-config", type=Path, help="YAML/JSON modality config (for relative_stats.json)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (never the dataset itself)")
    parser.add_argument("--cache", type=Path, nargs="+",
                        help="incremental per-episode cache directory, one per dataset (default: OUT/cache[/i])")
    parser.add_argument("--mix-ratios", type=float, nargs="+", help="mixture weight of each dataset (default 1 each)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every episode and keep no cache")
    parser.add_argument("--numerics", choices=NUMERICS, default="upstream",
                        help="mean/std/quantile arithmetic of the written files (default: upstream's float32)")
    parser.add_argument("--no-report", action="store_true", help="skip stats_report.json and the plots")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    datasets = args.dataset
    for name, given in (("--cache", args.cache), ("--mix-ratios", args.mix_ratios)):
        if given is not None and len(given) != len(datasets):
            parser.error(f"{name} has {len(given)} values for {len(datasets)} dataset(s); give one per dataset")
    if args.no_cache:
        caches: list[Path | None] = [None] * len(datasets)
    elif args.cache:
        caches = list(args.cache)
    else:
        caches = [args.out / "cache"] if len(datasets) == 1 else [args.out / "cache" / str(i) for i in range(len(datasets))]
    for dataset, cache in zip(datasets, caches):
        if args.out.resolve().is_relative_to(dataset.resolve()):
            parser.error(f"--out {args.out} is inside the dataset {dataset}; statistics are never written into it")
        if cache is not None and Path(cache).resolve().is_relative_to(dataset.resolve()):
            parser.error(f"--cache {cache} is inside the dataset {dataset}; nothing is written into it")
    cfg = load_modality_config(args.modality_config) if args.modality_config else None
    try:
        results = [run_stats(d, cfg, numerics=args.numerics, cache_dir=c, progress=args.progress)
                   for d, c in zip(datasets, caches)]
        if len(results) > 1:
            stats, relative = merge_mixture_stats(list(zip(results, args.mix_ratios or [1.0] * len(results))))
            for path in write_stats(args.out, stats, relative):
                print(path)
            for d, r, w in zip(datasets, results, args.mix_ratios or [1.0] * len(results)):
                print(f"stats: {d}: mix ratio {w}, {r.episodes} episodes, {r.recomputed} recomputed, {r.cached} from cache")
            return 0
    except (StatsError, DatasetError) as exc:
        parser.exit(1, f"error: {exc}\n")
    result, cache = results[0], caches[0]
    for path in write_stats(args.out, result.stats, result.relative):
        print(path)
    print(
        f"stats: {result.episodes} episodes, {result.recomputed} recomputed, {result.cached} from cache"
        f"{'' if cache is None else f' ({cache})'}; {result.passes} passes; numerics {result.numerics}"
    )
    flags = summary_flags(result.stats) + summary_flags(result.relative or {})
    if not args.no_report:
        from groot_ft.stats_report import write_stats_report

        for path in write_stats_report(
            args.out, result.stats, result.relative, flags, result.histograms, extra=result.summary()
        ):
            print(path)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for flag in flags:
        grouped.setdefault((flag["feature"], flag["flag"]), []).append(flag)
    for (feature, kind), items in grouped.items():
        where = ", ".join(json.dumps(f["index"]) for f in items[:8]) + (", ..." if len(items) > 8 else "")
        print(f"note: {feature}: {len(items)} x {kind} at {where}; e.g. {items[0]['message']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
