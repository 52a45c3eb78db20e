"""Mixtures of datasets of one embodiment: upstream's weighted moments with exact weighted quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from groot_ft.quantiles import WeightedRadixSelect, linear_ranks, numpy_lerp
from groot_ft.stats import RELATIVE_STAT_KEYS, STAT_KEYS, StatsError, merge_mixture_stats, run_stats
from tests.test_stats import brute_force_relative, demo_config, write_dataset

PROBS = (0.01, 0.99)


def weighted_quantile_by_definition(samples: list[np.ndarray], weights: list[float], q: float) -> np.ndarray:
    """The documented definition, literally: masses c_i = N p_i / n_i, v(k) = value covering point k, linear rule."""
    n = np.array([len(s) for s in samples])
    total_n = int(n.sum())
    p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    mass = total_n * p / n
    out = []
    for d in range(samples[0].shape[1]):
        values = np.concatenate([s[:, d] for s in samples]).astype(np.float64)
        masses = np.concatenate([np.full(len(s), m) for s, m in zip(samples, mass)])
        order = np.argsort(values, kind="stable")
        values, cum = values[order], np.cumsum(masses[order])

        def v(k: int) -> float:
            # the smallest value whose cumulative mass (all equal values included) exceeds k
            j = int(np.searchsorted(cum, k + 1e-6, side="right"))
            return values[min(j, len(values) - 1)]

        lo, hi, gamma = linear_ranks(total_n, [q])
        out.append(numpy_lerp(v(int(lo[0])), v(int(hi[0])), gamma[0]))
    return np.asarray(out, dtype=np.float64)


def test_weighted_select_matches_the_definition():
    rng = np.random.default_rng(0)
    samples = [
        (rng.standard_normal((300, 3)) * [1, 5, 0.1] + [0, 10, -3]).astype(np.float32),
        (rng.standard_normal((1200, 3)) * [2, 1, 0.1] + [1, 0, -2]).astype(np.float32),
        np.round(rng.standard_normal((50, 3)) * 4).astype(np.float32),  # ties
    ]
    for weights in ([1, 1, 1], [0.7, 0.2, 0.1], [1e-3, 5, 2]):
        for kw in ({}, {"raw_limit": 0}, {"raw_limit": 0, "budget_bytes": 2048}):
            sel = WeightedRadixSelect(3, [len(s) for s in samples], weights, (0.0, 0.01, 0.37, 0.99, 1.0), **kw)
            while True:
                for i, s in enumerate(samples):
                    for part in np.array_split(s, 3):
                        sel.update(i, part)
                if not sel.end_pass():
                    break
            got = sel.quantiles()
            for j, q in enumerate((0.0, 0.01, 0.37, 0.99, 1.0)):
                np.testing.assert_array_equal(got[j], weighted_quantile_by_definition(samples, weights, q))


def test_weighted_select_rejects_bad_weights():
    with pytest.raises(ValueError):
        WeightedRadixSelect(1, [3, 4], [1.0, 0.0])
    with pytest.raises(ValueError):
        WeightedRadixSelect(1, [3, 4], [1.0])


@pytest.fixture(scope="module")
def three_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    specs = [([40, 3, 57], 0), ([25, 33], 1), ([80, 12, 9, 30], 2)]
    out = []
    for i, (lengths, seed) in enumerate(specs):
        arrays = write_dataset(root / f"ds{i}", lengths, seed=seed)
        out.append((root / f"ds{i}", arrays))
    return out


def test_proportional_weights_give_the_pooled_statistics(three_datasets, tmp_path):
    cfg = demo_config()
    results = [run_stats(ds, cfg, cache_dir=tmp_path / f"cache{i}") for i, (ds, _) in enumerate(three_datasets)]
    frames = [sum(len(a) for a in arrays["action"]) for _, arrays in three_datasets]
    stats, rel = merge_mixture_stats([(r, 2.5 * n) for r, n in zip(results, frames)])
    for col in ("observation.state", "action", "timestamp", "next.reward"):
        x = np.concatenate([np.concatenate(arrays[col]) for _, arrays in three_datasets]).astype(np.float32)
        x64 = x.astype(np.float64)
        got = {k: np.asarray(v) for k, v in stats[col].items()}
        assert list(stats[col]) == list(STAT_KEYS)
        q = np.quantile(x64, PROBS, axis=0)
        np.testing.assert_array_equal(got["q01"], q[0])
        np.testing.assert_array_equal(got["q99"], q[1])
        np.testing.assert_array_equal(got["min"], x.min(0))
        np.testing.assert_array_equal(got["max"], x.max(0))
        np.testing.assert_allclose(got["mean"], x64.mean(0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["std"], x64.std(0), rtol=1e-9, atol=1e-12)
    # relative keys count windows, not frames: proportional to the window counts, they pool too
    windows = [r.counts["relative:arm"] for r in results]
    _, rel = merge_mixture_stats([(r, w) for r, w in zip(results, windows)])
    deltas, ref = cfg.action.delta_indices, cfg.state.delta_indices[-1]
    for key in ("arm", "base"):
        chunks = np.concatenate([brute_force_relative(arrays, key, deltas, ref) for _, arrays in three_datasets])
        flat = chunks.reshape(len(chunks), -1).astype(np.float64)
        assert list(rel[key]) == list(RELATIVE_STAT_KEYS)
        q = np.quantile(flat, PROBS, axis=0)
        np.testing.assert_array_equal(np.asarray(rel[key]["q01"]).ravel(), q[0])
        np.testing.assert_array_equal(np.asarray(rel[key]["q99"]).ravel(), q[1])
        np.testing.assert_allclose(np.asarray(rel[key]["mean"]).ravel(), flat.mean(0), rtol=1e-9, atol=1e-12)
    # the same from the datasets themselves (no cache: their data is decoded again)
    again, _ = merge_mixture_stats([(run_stats(ds, cfg).state, n) for (ds, _), n in zip(three_datasets, frames)])
    assert again == stats


def test_weighted_mixture_follows_upstreams_moments_and_exact_quantiles(three_datasets):
    states = [run_stats(ds, None).state for ds, _ in three_datasets]
    weights = [0.5, 0.3, 0.2]
    stats, rel = merge_mixture_stats(list(zip(states, weights)))
    assert rel is None
    p = np.asarray(weights) / sum(weights)
    for col in ("observation.state", "action"):
        xs = [np.concatenate(arrays[col]).astype(np.float32) for _, arrays in three_datasets]
        mus = [x.astype(np.float64).mean(0) for x in xs]
        sigmas = [x.astype(np.float64).std(0) for x in xs]
        mean = sum(pi * mu for pi, mu in zip(p, mus))
        var = sum(pi * (s**2 + mu**2) for pi, s, mu in zip(p, sigmas, mus)) - mean**2  # upstream's formula
        np.testing.assert_allclose(stats[col]["mean"], mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats[col]["std"], np.sqrt(np.maximum(var, 0)), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(stats[col]["min"], np.min([x.min(0) for x in xs], axis=0))
        np.testing.assert_array_equal(stats[col]["q01"], weighted_quantile_by_definition(xs, weights, 0.01))
        np.testing.assert_array_equal(stats[col]["q99"], weighted_quantile_by_definition(xs, weights, 0.99))
        # upstream would take min(q01_i) / max(q99_i): never inside, usually outside the exact weighted ones
        assert np.all(np.asarray(stats[col]["q01"]) >= np.min([np.quantile(x, 0.01, axis=0) for x in xs], axis=0))


def test_mixture_errors(three_datasets, tmp_path):
    state = run_stats(three_datasets[0][0], None).state
    with pytest.raises(StatsError, match="weights"):
        merge_mixture_stats([(state, 1.0), (state, -1.0)])
    with pytest.raises(StatsError, match="no datasets"):
        merge_mixture_stats([])
    other = tmp_path / "wide"
    write_dataset(other, [10])
    import json

    info = json.loads((other / "meta" / "info.json").read_text())
    info["features"] = {"observation.state": info["features"]["observation.state"]}
    (other / "meta" / "info.json").write_text(json.dumps(info))
    narrow = run_stats(other, None).state
    stats, _ = merge_mixture_stats([(state, 1.0), (narrow, 1.0)])
    assert list(stats) == ["observation.state"]  # only what both datasets have
