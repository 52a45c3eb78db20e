"""Upstream numerics: float32 moments and quantile interpolation exactly as upstream's numpy 1.26 computes them."""

from __future__ import annotations

import numpy as np
import pytest

from groot_ft.quantiles import linear_ranks, upstream_lerp
from groot_ft.stats import NUMPY_REDUCE_BUFSIZE, UpstreamMoments, pairwise_sum_f32

NUMPY_MAJOR = int(np.__version__.split(".")[0])


def stream(x: np.ndarray, cuts) -> UpstreamMoments:
    up = UpstreamMoments(x.shape[1])
    parts = np.split(x, cuts)
    while True:
        for part in parts:
            up.update(part)
        if not up.end_pass():
            return up


def numpy126_column_sum(v: np.ndarray) -> np.float32:
    """numpy 1.x's float32 sum of a contiguous column: pairwise within 8192-value buffers, buffers added in order.

    Built from numpy itself: a 1-D reduction of at most 8192 values is one pairwise sum in every numpy version.
    """
    total = np.float32(0.0)
    for start in range(0, len(v), NUMPY_REDUCE_BUFSIZE):
        total = np.float32(total + np.add.reduce(v[start : start + NUMPY_REDUCE_BUFSIZE]))
    return total


def golden_data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) * np.float32(0.5) + np.float32(1000.0)).astype(np.float32)


def f32(bits: list[int]) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("n", [*range(0, 20), 63, 64, 127, 128, 129, 136, 1000, 1001, 4096, 5000, 8191, 8192])
def test_pairwise_sum_is_numpys(n):
    rng = np.random.default_rng(n)
    a = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n) + 100).astype(np.float32)
    a[rng.random(n) < 0.05] = -0.0
    got = pairwise_sum_f32(a)
    assert got.dtype == np.float32
    assert got.tobytes() == np.add.reduce(a).tobytes()  # numpy <= 8192 values: one pairwise sum, any version


@pytest.mark.parametrize("shape", [(1, 2), (7, 3), (1000, 44), (20011, 112), (70000, 2), (5000, 16 * 7)])
def test_upstream_moments_equal_numpy_for_several_columns(shape):
    """Rows are added one after the other (numpy's axis-0 reduction of a C-contiguous array), in any chunking."""
    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * rng.uniform(1e-3, 100, shape[1]) + rng.uniform(-1e4, 1e4, shape[1]))
    x = x.astype(np.float32)
    x[rng.random(shape) < 0.01] = -0.0
    cuts = np.sort(rng.integers(0, shape[0] + 1, 6))
    up = stream(x, cuts)
    assert up.mean.tobytes() == np.mean(x, axis=0).tobytes()
    assert up.std.tobytes() == np.std(x, axis=0).tobytes()
    # a 3-D array reduced over axis 0 (relative_stats' (N, T, D) windows) is the same as its (N, T*D) view
    x3 = x.reshape(shape[0], -1, 2) if shape[1] % 2 == 0 else x[:, :, None]
    assert np.mean(x3, axis=0).tobytes() == up.mean.tobytes()


@pytest.mark.parametrize("n", [5, 8192, 8193, 20000, 50001])
def test_upstream_moments_single_column(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((n, 1)) * 3 + 1e4).astype(np.float32)
    up = stream(x, np.sort(rng.integers(0, n + 1, 5)))
    total = numpy126_column_sum(x[:, 0])
    mean = np.float32(np.float64(total) / n)
    dev = x[:, 0] - mean
    std = np.sqrt(np.float32(np.float64(numpy126_column_sum(dev * dev)) / n))
    assert up.mean.tobytes() == mean.reshape(1).tobytes()
    assert up.std.tobytes() == np.float32(std).reshape(1).tobytes()
    if NUMPY_MAJOR < 2 or n <= NUMPY_REDUCE_BUFSIZE:  # numpy 2 sums a whole column pairwise instead
        assert up.mean.tobytes() == np.mean(x, axis=0).tobytes()
        assert up.std.tobytes() == np.std(x, axis=0).tobytes()


# numpy 1.26.4 (upstream's pin) on golden_data(n, d, seed): np.mean / np.std (float32 bit patterns) and np.quantile
GOLDEN_126 = [
    ((20000, 1, 1), [0x4479FFA4], [0x3EFE7B37], [998.831655883789, 1001.1580859375]),
    ((100003, 1, 2), [0x4479FFF4], [0x3EFFBFFA], [998.8360009765624, 1001.1616760253906]),
    (
        (70001, 3, 3),
        [0x4479FFF9, 0x447A0004, 0x447A0027],
        [0x3EFFCD2D, 0x3EFF4767, 0x3F005459],
        [998.8388671875, 998.84423828125, 998.8322143554688, 1001.15869140625, 1001.1633911132812, 1001.1693115234375],
    ),
    ((2**24 + 5, 1, 4), [0x447A0001], [0x3EFFF1FA], [998.8370361328125, 1001.1621704101562]),
]


@pytest.mark.parametrize("case", GOLDEN_126, ids=lambda c: "x".join(map(str, c[0][:2])))
def test_golden_values_of_upstreams_numpy(case):
    """Bit patterns computed once with numpy 1.26.4; (100003, 1) and (2**24 + 5, 1) differ in numpy 2."""
    (n, d, seed), mean_bits, std_bits, quantiles = case
    x = golden_data(n, d, seed)
    up = stream(x, [n // 3, n // 3, 2 * n // 3 + 1])
    assert up.mean.view(np.uint32).tolist() == mean_bits
    assert up.std.view(np.uint32).tolist() == std_bits
    if n > 200_000:
        return  # the sort below is the slow part; the moments were the point of this case
    s = np.sort(x, axis=0)
    lo, hi, gamma = linear_ranks(n, (0.01, 0.99))
    q = upstream_lerp(s[lo], s[hi], gamma[:, None])
    assert q.ravel().tolist() == quantiles


def test_upstream_lerp_differs_from_float64_lerp_only_in_the_float32_difference():
    a = np.float32([1.0, 1e-8, -3.0, 1000.1])
    b = np.float32([1.0000001, 2.0, 7.5, 1000.3])
    for g in (0.0, 0.25, 0.5, 0.99):
        diff = (b - a).astype(np.float64)
        want = np.where(g >= 0.5, b.astype(np.float64) - diff * (1 - g), a.astype(np.float64) + diff * g)
        assert np.array_equal(upstream_lerp(a, b, g), want)


def test_upstream_moments_protocol():
    up = UpstreamMoments(2)
    with pytest.raises(Exception, match="no samples"):
        up.end_pass()
    up.update(np.ones((3, 2), dtype=np.float32))
    assert up.end_pass() and not up.done
    up.update(np.ones((3, 2), dtype=np.float32))
    assert not up.end_pass() and up.done
    assert up.mean.tolist() == [1.0, 1.0] and up.std.tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError):
        up.update(np.ones((1, 2), dtype=np.float32))
