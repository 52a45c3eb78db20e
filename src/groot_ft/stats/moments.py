"""Streamed mean and standard deviation: upstream's float32 numbers, and mergeable float64 moments.

* :class:`UpstreamMoments`: ``np.mean``/``np.std(axis=0)`` of a float32 array exactly as numpy 1.26 computes them
  (float32 sums in numpy's order, :func:`pairwise_sum_f32` for single columns), over two passes in a fixed order;
  not mergeable.
* :class:`Moments`: count, float64 mean and M2, float32 min/max, merged with Chan et al.'s formula; the per-episode
  partials of the incremental cache and the inputs of mixtures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groot_ft.stats.common import StatsError

NUMPY_REDUCE_BUFSIZE = 8192  # numpy's default ufunc buffer: 1-D float reductions are pairwise within such blocks
_PW_BLOCKSIZE = 128  # numpy's pairwise-summation leaf size


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
