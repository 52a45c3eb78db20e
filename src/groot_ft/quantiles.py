"""Exact quantiles of streamed float32 data: a radix select over order-preserving bit patterns, mergeable.

A float32's 32-bit pattern, with the sign bit flipped for positives and all bits inverted for negatives, is an
unsigned integer *key* whose order is the numeric order (``-0.0`` sorts just below ``+0.0``; they compare equal as
floats, so no quantile changes). The ``k``-th smallest value of a column is found one digit of its key at a time:

* pass 1 histograms the top ``b`` bits (16 when the memory budget allows) of every key, one histogram per
  dimension, and once the whole stream has been seen locates the bucket holding each wanted rank by cumulative count;
* every further pass streams the same data again and looks only at keys whose resolved high bits equal a wanted
  bucket ("prefix"): it histograms their next ``b`` bits, or, when the bucket is known to hold few keys (at most as
  many as a histogram has bins, so never more memory), keeps those keys themselves and resolves all remaining bits
  at once. In practice two passes suffice.
* A stream small enough that its keys take no more than a quarter of the first histogram's memory is kept whole
  during pass 1
  and answered in that single pass.

Histograms add and key lists concatenate, so partial states of disjoint shards (episodes, workers) merge exactly, in
any order. Memory is bounded by the byte budget and never grows with the number of frames. The result is
bit-identical to ``np.quantile(x.astype(np.float64), q, axis=0)`` (numpy's default "linear" method, type 7).

Why one module of this size: it is one algorithm. :class:`RadixSelect` and its weighted form
:class:`WeightedRadixSelect` share the key transform, the rank rule, the pass-width choice and the blocked
histogram counting defined at the top, and their pass logic is the same digit-by-digit search; splitting them would
only spread those shared private pieces over modules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

KEY_BITS = 32
MAX_PASS_BITS = 16
MIN_PASS_BITS = 4
DEFAULT_BUDGET_BYTES = 64 * 2**20
_COUNT_BLOCK = 2**19  # histogram bins counted per bincount call (bounds that temporary to 4 MiB)
_SELECT_BLOCK = 2**22  # key elements gathered per block in the later passes
_LUT_ENTRIES = 2**23  # later passes find each key's group in a (dim x 2**resolved) table when it is this small
_LOOKUP_BLOCK = 2**20  # keys looked up at once
_LOW32 = (1 << KEY_BITS) - 1


def float32_keys(x: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (same shape)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    flip = x.view(np.int32) >> 31  # all ones for negative values, else zero
    flip |= np.int32(-(2**31))  # ... and the sign bit always
    keys = flip.view(np.uint32)
    np.bitwise_xor(keys, x.view(np.uint32), out=keys)
    return keys


def keys_to_float32(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`float32_keys`."""
    k = np.asarray(keys).astype(np.uint32)
    negative = (k >> np.uint32(31)) == 0
    return np.where(negative, ~k, k ^ np.uint32(0x80000000)).astype(np.uint32).view(np.float32)


def linear_ranks(n: int, probs: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring order statistics and weights of numpy's "linear" quantile method for ``n`` samples.

    Returns ``(lo, hi, gamma)``: the quantile is ``numpy_lerp(x[lo], x[hi], gamma)`` of the sorted sample. Mirrors
    ``numpy.quantile``, including how it clamps at the top end.
    """
    if n < 1:
        raise ValueError("quantiles need at least one sample")
    q = np.asarray(probs, dtype=np.float64)
    if q.ndim != 1 or not np.all((q >= 0) & (q <= 1)):
        raise ValueError(f"quantile probabilities must be a 1-D sequence in [0, 1], got {list(probs)!r}")
    virtual = (n - 1) * q
    lo = np.floor(virtual)
    above = virtual >= n - 1
    gamma = virtual - np.where(above, -1.0, lo)  # numpy takes the last element as index -1, gamma included
    lo = np.where(above, n - 1, lo).astype(np.int64)
    hi = np.where(above, n - 1, lo + 1).astype(np.int64)
    return lo, hi, gamma


def numpy_lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray | float) -> np.ndarray:
    """numpy's quantile interpolation (``numpy.lib._function_base_impl._lerp``), in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    t = np.asarray(gamma, dtype=np.float64)
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def pass_bits(histograms: int, remaining: int, budget_bytes: int, *, balanced: bool = True) -> int:
    """Digit width of a histogram pass: as wide as the budget allows (4..16 bits, <= remaining).

    ``balanced`` spreads the remaining bits evenly over the passes still needed (11+11+10 rather than 15+15+2);
    the first pass takes the widest affordable digit instead, since later passes usually keep keys verbatim and
    finish in one go.
    """
    if remaining <= 0:
        return 0
    per_hist = max(1, budget_bytes // (8 * max(1, histograms)))
    afford = min(remaining, MAX_PASS_BITS, max(MIN_PASS_BITS, int(math.floor(math.log2(per_hist)))))
    if not balanced:
        return afford
    passes = math.ceil(remaining / afford)
    return math.ceil(remaining / passes)


def _count_into(hist_flat: np.ndarray, flat_index: np.ndarray) -> None:
    """``hist_flat[i] += (flat_index == i).sum()``: bincount when dense, unique when sparse."""
    if flat_index.size == 0:
        return
    if flat_index.size * 32 >= hist_flat.size:
        hist_flat += np.bincount(flat_index, minlength=hist_flat.size)
    else:
        values, counts = np.unique(flat_index, return_counts=True)
        hist_flat[values] += counts


class RadixSelect:
    """Exact per-dimension order statistics of a stream of ``(n, dim)`` float32 samples, over one or more passes.

    ``update`` with every chunk of the data (or ``merge`` partial states built with :meth:`spawn`), then call
    :meth:`end_pass`; while it returns True, stream the same data once more. :meth:`quantiles` then gives
    ``np.quantile``'s values. ``raw_limit`` caps how many keys a group may keep verbatim (default: as many as
    fill a quarter of its histogram in pass 1, as many as a histogram row later); 0 forces histograms only.
    """

    _ARRAYS = (
        "group_dim", "group_prefix", "group_row", "expected", "ranks", "t_dim", "t_prefix", "t_resid", "t_group",
        "t_done",
    )  # fmt: skip

    def __init__(
        self,
        dim: int,
        probs: Sequence[float] = (0.01, 0.99),
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        raw_limit: int | None = None,
    ):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.probs = tuple(float(p) for p in probs)
        linear_ranks(1, self.probs)  # validates probs
        self.budget_bytes = int(budget_bytes)
        self.raw_limit = -1 if raw_limit is None else int(raw_limit)
        self.pass_index = 0
        self.count = 0  # samples per dimension (pass 0: seen so far; afterwards: n)
        self.resolved = 0  # key bits known for every unfinished target
        self.bits = pass_bits(self.dim, KEY_BITS, self.budget_bytes, balanced=False)  # digit width of this pass
        # storage of the current pass: a dense histogram (rows x 2**bits) and/or verbatim keys
        self.hist: np.ndarray | None = None
        self.raw: list[np.ndarray] = []  # pass 0: (n_i, dim) uint32 keys; later: int64 (group << 32 | key)
        # plan of a later pass: one group per (dim, prefix) of unfinished targets; group_row: hist row or -1 (raw)
        self.group_dim = self.group_prefix = self.group_row = self.expected = np.zeros(0, dtype=np.int64)
        # targets: one per (dimension, distinct rank), dimension-major; t_prefix holds the full key once t_done
        self.ranks = self.t_dim = self.t_prefix = self.t_resid = self.t_group = np.zeros(0, dtype=np.int64)
        self.t_done = np.zeros(0, dtype=bool)
        self.finished = False

    # --- streaming ------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finished

    def _raw0_limit(self) -> int:
        # rows whose keys (4 bytes per dimension) take a quarter of the histogram (8 bytes per bin and dimension):
        # spilling then briefly holds 1.25 histograms, not 2
        return (1 << (self.bits - 1)) if self.raw_limit < 0 else self.raw_limit

    def _spill0(self) -> None:
        """Pass 0: turn the verbatim keys into the top-digit histogram."""
        self.hist = np.zeros((self.dim, 1 << self.bits), dtype=np.int64)
        for chunk in self.raw:
            self._hist0(chunk)
        self.raw = []

    def _hist0(self, keys: np.ndarray) -> None:
        assert self.hist is not None
        nbins = 1 << self.bits
        # top digits (<= 16 bits), one contiguous row per dimension: each bincount then stays within one
        # dimension's histogram, which is small enough for the CPU caches
        digits = np.ascontiguousarray((keys >> np.uint32(KEY_BITS - self.bits)).astype(np.uint16).T)
        for d in range(self.dim):
            self.hist[d] += np.bincount(digits[d], minlength=nbins)

    def _lookup_table(self) -> np.ndarray:
        """``table[dim << resolved | prefix]`` = 1 + the group of (dim, prefix), 0 for keys in no wanted bucket."""
        key = (self.pass_index, self.resolved, len(self.group_dim))
        if getattr(self, "_lut_key", None) != key:
            lut = np.zeros(self.dim << self.resolved, dtype=np.uint16 if len(self.group_dim) < 2**16 else np.int32)
            lut[(self.group_dim << self.resolved) | self.group_prefix] = np.arange(1, len(self.group_dim) + 1)
            self._lut, self._lut_key = lut, key
        return self._lut

    def _update_by_lookup(self, keys: np.ndarray) -> None:
        """A later pass, one table look-up per key: cheaper than comparing every key with every wanted bucket."""
        lut = self._lookup_table()
        high_shift = np.uint32(KEY_BITS - self.resolved)
        offsets = np.arange(self.dim, dtype=np.uint32) << np.uint32(self.resolved)
        nbins = 1 << self.bits
        low_shift = KEY_BITS - self.resolved - self.bits
        rows_per_block = max(1, _LOOKUP_BLOCK // self.dim)
        for r0 in range(0, len(keys), rows_per_block):
            block = np.ascontiguousarray(keys[r0 : r0 + rows_per_block])
            idx = block >> high_shift
            idx += offsets
            group = lut[idx].reshape(-1)
            hit = np.flatnonzero(group)
            if len(hit) == 0:
                continue
            grp = group[hit].astype(np.int64) - 1
            found = block.reshape(-1)[hit].astype(np.int64)
            row = self.group_row[grp]
            to_raw = row < 0
            if to_raw.any():
                self.raw.append((grp[to_raw] << KEY_BITS) | found[to_raw])
            if not to_raw.all():
                assert self.hist is not None
                dense = ~to_raw
                flat = row[dense] * nbins + ((found[dense] >> low_shift) & (nbins - 1))
                _count_into(self.hist.reshape(-1), flat)

    def update_keys(self, keys: np.ndarray) -> None:
        """Add a chunk of keys (``(n, dim)`` uint32 from :func:`float32_keys`) to the current pass."""
        if self.finished:
            raise RuntimeError("radix select is finished; no further pass is needed")
        keys = np.asarray(keys)
        if keys.ndim != 2 or keys.shape[1] != self.dim or keys.dtype != np.uint32:
            raise ValueError(f"expected (n, {self.dim}) uint32 keys, got {keys.dtype} {keys.shape}")
        n = keys.shape[0]
        if n == 0:
            return
        if self.pass_index == 0:
            self.count += n
            if self.hist is None:
                self.raw.append(np.array(keys, dtype=np.uint32, copy=True))
                if self.count > self._raw0_limit():
                    self._spill0()
            else:
                self._hist0(keys)
            return
        if 0 < self.resolved and self.dim << self.resolved <= _LUT_ENTRIES:
            self._update_by_lookup(keys)
            return
        high_shift = np.uint32(KEY_BITS - self.resolved)
        per_block = max(1, _SELECT_BLOCK // n)
        dense = np.flatnonzero(self.group_row >= 0)
        if len(dense):
            assert self.hist is not None
            nbins = 1 << self.bits
            low_shift = np.uint32(KEY_BITS - self.resolved - self.bits)
            mask = np.uint32(nbins - 1)
            step = max(1, min(per_block, _COUNT_BLOCK // nbins))
            for start in range(0, len(dense), step):
                groups = dense[start : start + step]
                sub = keys[:, self.group_dim[groups]]
                match = (sub >> high_shift).astype(np.int64) == self.group_prefix[groups]
                digits = ((sub >> low_shift) & mask).astype(np.int64)
                rows = self.group_row[groups]
                # rows of consecutive dense groups are consecutive, so one offset vector addresses the block
                flat = (digits + (rows - rows[0]) * nbins)[match]
                _count_into(self.hist[rows[0] : rows[-1] + 1].reshape(-1), flat)
        raw = np.flatnonzero(self.group_row < 0)
        for start in range(0, len(raw), per_block):
            groups = raw[start : start + per_block]
            sub = keys[:, self.group_dim[groups]]
            match = (sub >> high_shift).astype(np.int64) == self.group_prefix[groups]
            r, c = np.nonzero(match)
            if len(r):
                self.raw.append((groups[c] << KEY_BITS) | sub[r, c].astype(np.int64))

    def update(self, x: np.ndarray) -> None:
        """Add a chunk of float32 values ``(n, dim)`` (must be free of NaN)."""
        self.update_keys(float32_keys(x))

    def spawn(self) -> RadixSelect:
        """An empty partial state for the current pass (same plan), e.g. for one shard, to :meth:`merge` back."""
        other = object.__new__(RadixSelect)
        other.__dict__.update(self.__dict__)
        for name in self._ARRAYS:  # end_pass updates some of these in place
            setattr(other, name, getattr(self, name).copy())
        other.raw = []
        if self.pass_index == 0:
            other.count = 0
            other.hist = None
        else:
            other.hist = None if self.hist is None else np.zeros_like(self.hist)
        return other

    def merge(self, other: RadixSelect) -> None:
        """Add a partial state of the same pass and plan (exact; the order of merges does not matter)."""
        if (
            other.dim != self.dim
            or other.probs != self.probs
            or other.pass_index != self.pass_index
            or other.bits != self.bits
            or other.finished != self.finished
            or not np.array_equal(other.group_dim, self.group_dim)
            or not np.array_equal(other.group_prefix, self.group_prefix)
            or not np.array_equal(other.group_row, self.group_row)
        ):
            raise ValueError("cannot merge radix-select states of different passes or plans")
        if self.finished:
            return
        if self.pass_index == 0:
            self.count += other.count
            if self.hist is None and other.hist is None:
                self.raw.extend(other.raw)
                if self.count > self._raw0_limit():
                    self._spill0()
                return
            if self.hist is None:
                self._spill0()
            assert self.hist is not None
            if other.hist is not None:
                self.hist += other.hist
            for chunk in other.raw:
                self._hist0(chunk)
            return
        if self.hist is not None and other.hist is not None:
            self.hist += other.hist
        self.raw.extend(other.raw)

    # --- pass boundaries ------------------------------------------------------------------------------------
    def end_pass(self) -> bool:
        """Resolve this pass; return True when another pass over the same data is needed."""
        if self.finished:
            return False
        if self.pass_index == 0:
            n = int(self.count)
            if n == 0:
                raise ValueError("no samples: quantiles are undefined")
            lo, hi, _ = linear_ranks(n, self.probs)
            self.ranks = np.unique(np.concatenate([lo, hi]))
            nr = len(self.ranks)
            self.t_dim = np.repeat(np.arange(self.dim, dtype=np.int64), nr)
            self.t_prefix = np.zeros(self.dim * nr, dtype=np.int64)
            self.t_resid = np.tile(self.ranks, self.dim)
            self.t_done = np.zeros(self.dim * nr, dtype=bool)
            if self.hist is None:  # the whole stream was kept: select directly
                keys = np.concatenate(self.raw, axis=0)
                self.raw = []
                picked = np.partition(keys, self.ranks, axis=0)[self.ranks]  # (ranks, dim)
                self.t_prefix = picked.T.reshape(-1).astype(np.int64)
                self.t_done[:] = True
                return self._plan(np.zeros(0, dtype=np.int64))
            self.t_group = self.t_dim.copy()
            self.group_dim = np.arange(self.dim, dtype=np.int64)
            self.group_prefix = np.zeros(self.dim, dtype=np.int64)
            self.group_row = np.arange(self.dim, dtype=np.int64)
            self.expected = np.full(self.dim, n, dtype=np.int64)
        active = np.flatnonzero(~self.t_done)
        bucket_count = np.zeros(len(self.t_done), dtype=np.int64)
        # targets whose group kept its keys verbatim: the answer is the resid-th smallest key of the group
        raw_groups = np.flatnonzero(self.group_row < 0)
        packed = np.sort(np.concatenate(self.raw)) if self.raw else np.zeros(0, dtype=np.int64)
        self.raw = []
        got = np.bincount(packed >> KEY_BITS, minlength=len(self.group_dim)) if len(packed) else None
        seen = np.zeros(len(self.group_dim), dtype=np.int64) if got is None else got[: len(self.group_dim)]
        if len(raw_groups) and not np.array_equal(seen[raw_groups], self.expected[raw_groups]):
            raise RuntimeError(_CHANGED)
        t_raw = active[self.group_row[self.t_group[active]] < 0]
        if len(t_raw):
            starts = np.searchsorted(packed, self.t_group[t_raw] << KEY_BITS)
            self.t_prefix[t_raw] = packed[starts + self.t_resid[t_raw]] & _LOW32
            self.t_resid[t_raw] = 0
            self.t_done[t_raw] = True
        # targets of histogram groups: locate the bucket of the wanted rank by cumulative count
        t_dense = active[self.group_row[self.t_group[active]] >= 0]
        if len(t_dense):
            assert self.hist is not None
            hist = self.hist
            nbins = hist.shape[1]
            cum = np.cumsum(hist, axis=1, out=hist)  # in place: the histogram is not needed afterwards
            if not np.array_equal(cum[:, -1], self.expected[self.group_row >= 0]):
                raise RuntimeError(_CHANGED)
            rows = self.group_row[self.t_group[t_dense]]
            digit = np.zeros(len(t_dense), dtype=np.int64)
            stride = int(self.count) + 1  # offsets make a block of rows one increasing sequence for searchsorted
            rows_per_block = max(1, _COUNT_BLOCK // nbins)
            for r0 in range(0, len(cum), rows_per_block):
                r1 = min(len(cum), r0 + rows_per_block)
                sel = np.flatnonzero((rows >= r0) & (rows < r1))
                if len(sel) == 0:
                    continue
                offsets = np.arange(r1 - r0, dtype=np.int64) * stride
                flat = (cum[r0:r1] + offsets[:, None]).ravel()
                local = rows[sel] - r0
                pos = np.searchsorted(flat, self.t_resid[t_dense[sel]] + offsets[local], side="right")
                digit[sel] = pos - local * nbins
            if np.any((digit < 0) | (digit >= nbins)):
                raise RuntimeError(_CHANGED)
            below = np.where(digit > 0, cum[rows, np.maximum(digit - 1, 0)], 0)
            bucket_count[t_dense] = cum[rows, digit] - below
            self.t_resid[t_dense] -= below
            self.t_prefix[t_dense] = (self.t_prefix[t_dense] << self.bits) | digit
            self.resolved += self.bits
            if self.resolved == KEY_BITS:
                self.t_done[t_dense] = True
        self.hist = None
        return self._plan(bucket_count)

    def _plan(self, bucket_count: np.ndarray) -> bool:
        """Groups and storage of the next pass; False when every target is resolved."""
        self.pass_index += 1
        active = np.flatnonzero(~self.t_done)
        self.t_group = np.full(len(self.t_done), -1, dtype=np.int64)
        if len(active) == 0:
            self.finished = True
            self.hist = None
            self.raw = []
            self.group_dim = self.group_prefix = self.group_row = self.expected = np.zeros(0, dtype=np.int64)
            self.bits = 0
            return False
        combined = (self.t_dim[active] << KEY_BITS) | self.t_prefix[active]
        uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        self.t_group[active] = inverse.reshape(-1)
        self.group_dim = uniq >> KEY_BITS
        self.group_prefix = uniq & _LOW32
        self.expected = bucket_count[active[first]]
        remaining = KEY_BITS - self.resolved
        groups = len(uniq)
        if self.raw_limit >= 0:
            limit = self.raw_limit
        else:
            limit = min(1 << min(MAX_PASS_BITS, remaining), self.budget_bytes // (8 * groups))
        is_raw = self.expected <= limit
        dense = np.flatnonzero(~is_raw)
        self.group_row = np.full(groups, -1, dtype=np.int64)
        self.group_row[dense] = np.arange(len(dense), dtype=np.int64)
        raw_bytes = int(self.expected[is_raw].sum()) * 8
        self.bits = pass_bits(len(dense), remaining, max(1, self.budget_bytes - raw_bytes)) if len(dense) else 0
        self.hist = np.zeros((len(dense), 1 << self.bits), dtype=np.int64) if len(dense) else None
        return True

    # --- results --------------------------------------------------------------------------------------------
    def order_statistics(self) -> np.ndarray:
        """``(dim, len(ranks))`` float32: the ``ranks[j]``-th smallest value of every dimension."""
        if not self.finished:
            raise RuntimeError("radix select needs more passes before its values are known")
        return keys_to_float32(self.t_prefix.astype(np.uint32)).reshape(self.dim, len(self.ranks))

    def quantiles(self) -> np.ndarray:
        """``(len(probs), dim)`` float64, equal to ``np.quantile(x.astype(np.float64), probs, axis=0)``."""
        values = self.order_statistics()
        lo, hi, gamma = linear_ranks(int(self.count), self.probs)
        col = {int(r): j for j, r in enumerate(self.ranks)}
        a = values[:, [col[int(r)] for r in lo]].T
        b = values[:, [col[int(r)] for r in hi]].T
        return numpy_lerp(a, b, gamma[:, None])

    # --- serialisation --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain numpy arrays and ints (``np.savez``-able; ``tolist()`` them for JSON)."""
        if self.pass_index == 0:
            raw = np.concatenate(self.raw, axis=0) if self.raw else np.zeros((0, self.dim), dtype=np.uint32)
        else:
            raw = np.concatenate(self.raw) if self.raw else np.zeros(0, dtype=np.int64)
        state: dict[str, Any] = {
            "dim": self.dim,
            "probs": np.asarray(self.probs, dtype=np.float64),
            "budget_bytes": self.budget_bytes,
            "raw_limit": self.raw_limit,
            "pass_index": self.pass_index,
            "count": self.count,
            "resolved": self.resolved,
            "bits": self.bits,
            "finished": int(self.finished),
            "has_hist": int(self.hist is not None),
            "hist": np.zeros((0, 0), dtype=np.int64) if self.hist is None else self.hist,
            "raw": raw,
        }
        state.update({name: getattr(self, name) for name in self._ARRAYS})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> RadixSelect:
        obj = object.__new__(cls)
        obj.dim = int(state["dim"])
        obj.probs = tuple(float(p) for p in np.asarray(state["probs"]).ravel())
        for name in ("budget_bytes", "raw_limit", "pass_index", "count", "resolved", "bits"):
            setattr(obj, name, int(np.asarray(state[name])))
        obj.finished = bool(int(np.asarray(state["finished"])))
        for name in cls._ARRAYS:
            setattr(obj, name, np.asarray(state[name]).reshape(-1).astype(bool if name == "t_done" else np.int64))
        obj.hist = np.array(state["hist"], dtype=np.int64) if int(np.asarray(state["has_hist"])) else None
        raw = np.asarray(state["raw"])
        if obj.pass_index == 0:
            raw = raw.astype(np.uint32).reshape(-1, obj.dim)
        else:
            raw = raw.astype(np.int64).reshape(-1)
        obj.raw = [raw] if len(raw) else []
        return obj


_CHANGED = (
    "radix select: a later pass saw different data than the first (the data changed between passes, or the "
    "passes streamed different rows)"
)


def upstream_lerp(a: np.ndarray, b: np.ndarray, gamma: np.ndarray | float) -> np.ndarray:
    """numpy 1.26's quantile interpolation of float32 order statistics, as upstream's pinned numpy computes it.

    ``numpy.lib.function_base._lerp`` with float32 ``a``/``b`` and float64 ``gamma`` takes the difference ``b - a``
    in float32 and everything else in float64. (numpy >= 2 keeps the whole interpolation in float32, so its
    ``np.quantile`` of float32 data differs from upstream's files in the last float32 bit.)
    """
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    t = np.asarray(gamma, dtype=np.float64)
    diff = (b32 - a32).astype(np.float64)
    return np.where(t >= 0.5, b32.astype(np.float64) - diff * (1 - t), a32.astype(np.float64) + diff * t)


class WeightedRadixSelect:
    """Exact weighted quantiles of several sources of float32 samples (datasets of a mixture), in a few passes.

    Definition. Source ``i`` holds ``n_i`` samples and gets the weight ``p_i`` (normalised to sum to 1). With
    ``N = sum(n_i)``, each of its samples carries the *mass* ``c_i = N * p_i / n_i``, so the masses add up to ``N`` as
    ``N`` unit samples would. Lay the pooled samples in sorted order along ``[0, N)``, each covering an interval as
    long as its mass; ``v(k)`` (``k = 0 .. N-1``) is the value of the sample covering the point ``k``, i.e. the
    smallest value whose cumulative mass exceeds ``k``. The ``q``-quantile is numpy's "linear" rule applied to
    ``v``: ``h = (N - 1) q``, ``v(floor h) + (h - floor h) * (v(floor h + 1) - v(floor h))`` (:func:`linear_ranks`,
    :func:`numpy_lerp`). With ``p_i = n_i / N`` every mass is 1, ``v`` is the pooled sorted sample, and the result is
    exactly ``np.quantile`` of the pooled data (in float64).

    Masses are compared in float64 against ``k + tol`` (``tol`` = 1e-6 of one unit sample): that makes weights that
    are proportional to the counts only up to float rounding give the pooled quantile too; a genuinely weighted
    cumulative mass that lands within ``tol`` above a grid point is treated as on it.

    Protocol (like :class:`RadixSelect`): every pass, :meth:`update` each source with all of its samples (any chunking
    and order), then :meth:`end_pass`; repeat while it returns True. Per-source integer histograms of the next key
    digit (or the keys themselves, for small buckets) keep memory within ``budget_bytes``, whatever ``N``.
    """

    def __init__(
        self,
        dim: int,
        counts: Sequence[int],
        weights: Sequence[float],
        probs: Sequence[float] = (0.01, 0.99),
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        raw_limit: int | None = None,
        tol: float = 1e-6,
    ):
        from fractions import Fraction

        self.dim = int(dim)
        self.counts = np.asarray(counts, dtype=np.int64)
        w = [float(x) for x in weights]
        if self.dim < 1 or len(self.counts) == 0 or len(w) != len(self.counts):
            raise ValueError("need dim >= 1 and one weight per source")
        if not all(math.isfinite(x) and x > 0 for x in w) or np.any(self.counts < 1):
            raise ValueError(f"weights must be finite and > 0 and every source non-empty, got {w}, {self.counts}")
        self.sources = len(w)
        self.n = int(self.counts.sum())
        total = sum(Fraction(x) for x in w)
        # masses as exact rationals first, so that proportional weights give exactly 1.0
        self.mass = np.array(
            [float(Fraction(x) / total * self.n / int(c)) for x, c in zip(w, self.counts)], dtype=np.float64
        )
        self.probs = tuple(float(p) for p in probs)
        lo, hi, gamma = linear_ranks(self.n, self.probs)
        self._lo, self._hi, self._gamma = lo, hi, gamma
        self.positions = np.unique(np.concatenate([lo, hi]))
        self.budget_bytes = int(budget_bytes)
        self.raw_limit = -1 if raw_limit is None else int(raw_limit)
        self.tol = float(tol)
        npos = len(self.positions)
        self.t_dim = np.repeat(np.arange(self.dim, dtype=np.int64), npos)
        self.t_target = np.tile(self.positions.astype(np.float64), self.dim) + self.tol
        self.t_prefix = np.zeros(len(self.t_dim), dtype=np.int64)
        self.t_below = np.zeros((len(self.t_dim), self.sources), dtype=np.int64)  # per-source counts below bucket
        self.t_done = np.zeros(len(self.t_dim), dtype=bool)
        self.resolved = 0
        self.pass_index = 0
        self.finished = False
        self._plan(np.tile(self.counts, (len(self.t_dim), 1)))

    # --- planning ---------------------------------------------------------------------------------------------
    def _plan(self, bucket_counts: np.ndarray) -> bool:
        """Groups (dim, prefix) of the unfinished targets and their storage for the next pass."""
        active = np.flatnonzero(~self.t_done)
        self.t_group = np.full(len(self.t_done), -1, dtype=np.int64)
        if len(active) == 0:
            self.finished = True
            self.hist = None
            self.raw = []
            return False
        combined = (self.t_dim[active] << KEY_BITS) | self.t_prefix[active]
        uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        self.t_group[active] = inverse.reshape(-1)
        self.group_dim = uniq >> KEY_BITS
        self.group_prefix = uniq & _LOW32
        self.expected = bucket_counts[active[first]]  # (groups, sources)
        remaining = KEY_BITS - self.resolved
        groups = len(uniq)
        total = self.expected.sum(axis=1)
        if self.raw_limit >= 0:
            limit = self.raw_limit
        else:
            limit = min(1 << min(MAX_PASS_BITS, remaining), self.budget_bytes // (16 * groups))
        is_raw = total <= limit
        dense = np.flatnonzero(~is_raw)
        self.group_row = np.full(groups, -1, dtype=np.int64)
        self.group_row[dense] = np.arange(len(dense), dtype=np.int64)
        raw_bytes = int(total[is_raw].sum()) * 16
        budget = max(1, self.budget_bytes - raw_bytes)
        self.bits = pass_bits(len(dense) * self.sources, remaining, budget) if len(dense) else 0
        self.hist = (
            np.zeros((self.sources, len(dense), 1 << self.bits), dtype=np.int64) if len(dense) else None
        )
        self.raw = [[] for _ in range(self.sources)]  # per source: int64 (group << 32 | key)
        return True

    @property
    def done(self) -> bool:
        return self.finished

    # --- streaming ----------------------------------------------------------------------------------------------
    def update(self, source: int, x: np.ndarray) -> None:
        """Add float32 samples ``(n, dim)`` of ``source`` to the current pass."""
        self.update_keys(source, float32_keys(np.asarray(x, dtype=np.float32)))

    def update_keys(self, source: int, keys: np.ndarray) -> None:
        if self.finished:
            raise RuntimeError("weighted select is finished; no further pass is needed")
        keys = np.asarray(keys)
        if keys.ndim != 2 or keys.shape[1] != self.dim or keys.dtype != np.uint32:
            raise ValueError(f"expected (n, {self.dim}) uint32 keys, got {keys.dtype} {keys.shape}")
        n = keys.shape[0]
        if n == 0:
            return
        per_block = max(1, _SELECT_BLOCK // n)
        high_shift = KEY_BITS - self.resolved  # int64 shifts: 32 leaves 0, so every key matches an empty prefix
        dense = np.flatnonzero(self.group_row >= 0)
        if len(dense):
            assert self.hist is not None
            nbins = 1 << self.bits
            low_shift = KEY_BITS - self.resolved - self.bits
            step = max(1, min(per_block, _COUNT_BLOCK // nbins))
            hist = self.hist[source]
            for start in range(0, len(dense), step):
                groups = dense[start : start + step]
                sub = keys[:, self.group_dim[groups]].astype(np.int64)
                match = (sub >> high_shift) == self.group_prefix[groups]
                digits = (sub >> low_shift) & (nbins - 1)
                rows = self.group_row[groups]
                flat = (digits + (rows - rows[0]) * nbins)[match]
                _count_into(hist[rows[0] : rows[-1] + 1].reshape(-1), flat)
        raw = np.flatnonzero(self.group_row < 0)
        for start in range(0, len(raw), per_block):
            groups = raw[start : start + per_block]
            sub = keys[:, self.group_dim[groups]].astype(np.int64)
            match = (sub >> high_shift) == self.group_prefix[groups]
            r, c = np.nonzero(match)
            if len(r):
                self.raw[source].append((groups[c] << KEY_BITS) | sub[r, c])

    # --- pass boundaries ------------------------------------------------------------------------------------------
    def _first_exceeding(self, cum: np.ndarray, below: np.ndarray, target: float) -> int:
        """Index of the first column of ``cum`` (sources x bins, cumulative counts) whose mass exceeds target."""
        mass = (below[:, None] + cum).T.astype(np.float64) @ self.mass
        idx = int(np.searchsorted(mass, target, side="right"))
        if idx >= len(mass):
            raise RuntimeError(_CHANGED)
        return idx

    def end_pass(self) -> bool:
        """Resolve this pass; True when another pass over every source is needed."""
        if self.finished:
            return False
        active = np.flatnonzero(~self.t_done)
        bucket_counts = np.zeros((len(self.t_done), self.sources), dtype=np.int64)
        groups = len(self.group_dim)
        # verbatim groups: per group, sorted keys with per-source cumulative counts
        packed = [np.sort(np.concatenate(r)) if r else np.zeros(0, dtype=np.int64) for r in self.raw]
        self.raw = []
        seen = np.stack([np.bincount(p >> KEY_BITS, minlength=groups)[:groups] for p in packed], axis=1)
        raw_groups = self.group_row < 0
        if not np.array_equal(seen[raw_groups], self.expected[raw_groups]):
            raise RuntimeError(_CHANGED)
        t_raw = active[raw_groups[self.t_group[active]]]
        for g in np.unique(self.t_group[t_raw]):
            parts = []
            for s, p in enumerate(packed):
                lo, hi = np.searchsorted(p, [g << KEY_BITS, (g + 1) << KEY_BITS])
                parts.append((p[lo:hi] & _LOW32, np.full(hi - lo, s, dtype=np.int64)))
            keys = np.concatenate([k for k, _ in parts])
            src = np.concatenate([s for _, s in parts])
            order = np.argsort(keys, kind="stable")
            keys, src = keys[order], src[order]
            onehot = np.zeros((len(keys), self.sources), dtype=np.int64)
            onehot[np.arange(len(keys)), src] = 1
            cum = np.cumsum(onehot, axis=0)
            ends = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True])  # last index of every distinct key
            for t in t_raw[self.t_group[t_raw] == g]:
                j = self._first_exceeding(cum[ends].T, self.t_below[t], self.t_target[t])
                self.t_prefix[t] = int(keys[ends[j]])  # the whole key (its high bits are the group's prefix)
                self.t_done[t] = True
        # histogram groups: the bucket of every target by cumulative mass
        t_dense = active[~raw_groups[self.t_group[active]]]
        if len(t_dense):
            assert self.hist is not None
            cum = np.cumsum(self.hist, axis=2, out=self.hist)  # (sources, rows, bins)
            if not np.array_equal(cum[:, :, -1].T, self.expected[self.group_row >= 0]):
                raise RuntimeError(_CHANGED)
            for t in t_dense:
                row = self.group_row[self.t_group[t]]
                c = cum[:, row, :]
                digit = self._first_exceeding(c, self.t_below[t], self.t_target[t])
                prev = c[:, digit - 1] if digit > 0 else np.zeros(self.sources, dtype=np.int64)
                bucket_counts[t] = c[:, digit] - prev
                self.t_below[t] += prev
                self.t_prefix[t] = (self.t_prefix[t] << self.bits) | digit
            self.resolved += self.bits
            if self.resolved == KEY_BITS:
                self.t_done[t_dense] = True
        self.hist = None
        self.pass_index += 1
        return self._plan(bucket_counts)

    # --- results --------------------------------------------------------------------------------------------------
    def quantiles(self) -> np.ndarray:
        """``(len(probs), dim)`` float64 weighted quantiles (see the class docstring)."""
        if not self.finished:
            raise RuntimeError("weighted select needs more passes before its values are known")
        values = keys_to_float32(self.t_prefix.astype(np.uint32)).reshape(self.dim, len(self.positions))
        col = {int(r): j for j, r in enumerate(self.positions)}
        a = values[:, [col[int(r)] for r in self._lo]].T
        b = values[:, [col[int(r)] for r in self._hi]].T
        return numpy_lerp(a, b, self._gamma[:, None])
