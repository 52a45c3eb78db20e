"""Tests of groot_ft.stats / groot_ft.quantiles: exactness against numpy, mergeability, and parity with upstream."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.modality import ActionType, parse_embodiment_config
from groot_ft.quantiles import RadixSelect, float32_keys, keys_to_float32, linear_ranks, numpy_lerp
from groot_ft.stats import (
    RELATIVE_STAT_KEYS,
    STAT_KEYS,
    StatsError,
    compute_stats,
    main,
    relative_chunks,
    summary_flags,
    write_stats,
)
from tests.feature_accumulator import FeatureAccumulator

ROOT = Path(__file__).resolve().parents[1]
GR1 = ROOT / ".." / "shared" / "datasets" / "gr1.PickNPlace"
PROBS = (0.01, 0.99)

# accumulator settings covering every code path of the radix select
MODES = {
    "default": {},  # small streams answered in one pass from the kept keys, larger ones in two
    "histograms-only": {"raw_limit": 0},  # 16-bit histogram passes
    "tight-budget": {"raw_limit": 0, "hist_budget_bytes": 4096},  # narrow digits, many passes
    "narrow-then-keys": {"hist_budget_bytes": 8 * 2**10},  # narrow first digit, then verbatim keys
}


# --- helpers ---------------------------------------------------------------------------------------------------
def run_accumulator(x: np.ndarray, splits: list[int] | None = None, **kw) -> tuple[dict, int]:
    """Stream ``x`` (split at ``splits``) through a FeatureAccumulator, as many passes as it asks for."""
    acc = FeatureAccumulator(**kw)
    chunks = np.split(x, splits) if splits else [x]
    passes = 0
    while True:
        for chunk in chunks:
            acc.update(chunk)
        passes += 1
        if not acc.end_pass():
            return acc.result(), passes


def run_sharded(x: np.ndarray, splits: list[int], order: np.ndarray, **kw) -> dict:
    """The parallel protocol: one spawned partial per shard and pass, merged into the parent in ``order``."""
    acc = FeatureAccumulator(dim=x.shape[1], **kw)
    chunks = np.split(x, splits)
    while True:
        partials = []
        for chunk in chunks:
            part = acc.spawn()
            part.update(chunk)
            partials.append(part)
        for i in order:
            acc.merge(partials[i])
        if not acc.end_pass():
            return acc.result()


def numpy_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    x64 = x.astype(np.float64)
    q = np.quantile(x64, PROBS, axis=0)
    return {"mean": x64.mean(0), "std": x64.std(0), "min": x.min(0), "max": x.max(0), "q01": q[0], "q99": q[1]}


def upstream_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """What upstream's numpy 1.26 gives for a float32 ``(N, D)`` array (D > 1 or N <= 8192, where numpy 2 agrees).

    mean/std: numpy's own float32 reductions. q01/q99: numpy 1.26's ``_lerp`` of the sorted float32 values, whose
    difference ``b - a`` stays float32 while the rest is float64 (numpy 2 keeps it all in float32).
    """
    assert x.dtype == np.float32 and (x.shape[1] > 1 or len(x) <= 8192)
    s = np.sort(x, axis=0)
    n = len(x)
    out = {"mean": np.mean(x, axis=0), "std": np.std(x, axis=0), "min": x.min(0), "max": x.max(0)}
    for name, q in zip(("q01", "q99"), PROBS):
        virtual = (n - 1) * q
        lo = int(np.floor(virtual))
        hi = min(lo + 1, n - 1)
        gamma = virtual - lo
        a, b = s[lo], s[hi]
        diff = (b - a).astype(np.float64)  # float32 subtraction
        out[name] = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return out


def assert_matches_numpy(res: dict, x: np.ndarray) -> None:
    ref = numpy_reference(x)
    # order statistics and interpolation are exact: bit-identical to numpy's float64 interpolation
    for k in ("min", "max", "q01", "q99"):
        np.testing.assert_array_equal(res[k], ref[k], err_msg=k)
    # ... and within float32 rounding of np.quantile on the float32 data itself (what upstream calls)
    q32 = np.quantile(x, PROBS, axis=0)
    np.testing.assert_allclose(res["q01"], q32[0], rtol=2e-7, atol=1e-37)
    np.testing.assert_allclose(res["q99"], q32[1], rtol=2e-7, atol=1e-37)
    scale = np.abs(x.astype(np.float64)).max(0)
    for k in ("mean", "std"):
        assert_close(res[k], ref[k], rtol=1e-6, atol=1e-12 * scale, what=k)


def assert_close(got, want, rtol: float, atol, what: str = "") -> None:
    """``|got - want| <= atol + rtol * |want|`` elementwise (atol may be an array, unlike assert_allclose)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {bad.sum()} mismatches, first at {first}: {got[first]} vs {want[first]}")


def edge_case_data(n: int, rng: np.random.Generator) -> np.ndarray:
    """Columns: gaussian, heavy ties, constant, constant -0.0, mixed +-0, huge/tiny magnitudes, heavy tail."""
    cols = [
        rng.standard_normal(n) * 3 + 1,
        rng.integers(-2, 3, n).astype(np.float64),  # five values, many ties
        np.full(n, 0.7),
        np.full(n, -0.0),
        rng.choice([-0.0, 0.0, 1.0], n),
        rng.standard_normal(n) * 1e30,
        rng.standard_normal(n) * 1e-40,  # subnormal float32
        rng.standard_cauchy(n) * 1e3,
        np.where(rng.random(n) < 0.02, 1e6, rng.random(n)),  # a few huge outliers
    ]
    return np.stack(cols, axis=1).astype(np.float32)


# --- quantile primitives -----------------------------------------------------------------------------------------
def test_keys_are_order_preserving_and_invertible():
    rng = np.random.default_rng(0)
    special = np.array(
        [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, 1.0, -1.0], dtype=np.float32
    )
    x = np.concatenate([special, (rng.standard_normal(10_000) * 10.0 ** rng.integers(-40, 38, 10_000))])
    x = x.astype(np.float32)
    keys = float32_keys(x)
    assert keys.dtype == np.uint32
    np.testing.assert_array_equal(keys_to_float32(keys).view(np.uint32), x.view(np.uint32))  # bit-exact
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(x[order].astype(np.float64)) >= 0)
    assert float32_keys(np.float32(-0.0)) + 1 == float32_keys(np.float32(0.0))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 101, 1000])
def test_linear_ranks_reproduce_numpy(n):
    rng = np.random.default_rng(n)
    x = np.sort(rng.standard_normal(n))
    probs = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0, 1 / 3]
    lo, hi, gamma = linear_ranks(n, probs)
    np.testing.assert_array_equal(numpy_lerp(x[lo], x[hi], gamma), np.quantile(x, probs))


def test_radix_select_other_probabilities():
    x = np.random.default_rng(1).standard_normal((5000, 3)).astype(np.float32)
    probs = (0.0, 0.1, 0.5, 0.9, 1.0)
    for raw_limit in (None, 0):
        sel = RadixSelect(3, probs, raw_limit=raw_limit)
        while True:
            sel.update(x[:1234])
            sel.update(x[1234:])
            if not sel.end_pass():
                break
        np.testing.assert_array_equal(sel.quantiles(), np.quantile(x.astype(np.float64), probs, axis=0))


# --- accumulator vs numpy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 1000, 200_003])
def test_accumulator_matches_numpy(n, mode):
    rng = np.random.default_rng(n)
    x = edge_case_data(n, rng)
    # uneven partials: a single row, an empty one, and a few random cut points
    cuts = sorted({1, 1, *rng.integers(0, n + 1, 4).tolist()}) if n > 1 else []
    res, passes = run_accumulator(x, cuts, **MODES[mode])
    assert_matches_numpy(res, x)
    assert res["std"][2] == 0.0 and res["std"][3] == 0.0  # constant dims: exactly zero spread
    if mode == "default" and n <= 1000:
        assert passes == 1  # small streams are kept whole and answered in one pass
    if mode == "default" and n > 1000:
        assert passes == 2


def test_large_uneven_shards_and_merge_order_independence():
    rng = np.random.default_rng(7)
    n = 300_000
    x = edge_case_data(n, rng)
    cuts = np.sort(rng.choice(np.arange(1, n), 40, replace=False)).tolist()
    base = run_sharded(x, cuts, np.arange(41), raw_limit=0)
    assert_matches_numpy(base, x)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(41)
        for mode in ("default", "histograms-only"):
            res = run_sharded(x, cuts, order, **MODES[mode])
            for k in ("min", "max", "q01", "q99"):
                np.testing.assert_array_equal(res[k], base[k])
            np.testing.assert_allclose(res["mean"], base["mean"], rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(res["std"], base["std"], rtol=1e-12, atol=1e-300)
    # determinism in a fixed order: bit-identical
    again = run_sharded(x, cuts, np.arange(41), raw_limit=0)
    for k in STAT_KEYS:
        np.testing.assert_array_equal(again[k], base[k])


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0)])
def test_merge_kept_keys_with_spilled_histograms(order):
    """Partials of one pass may be in different storage modes (keys kept vs spilled); merging mixes them exactly."""
    x = edge_case_data(200_000, np.random.default_rng(5))
    res = run_sharded(x, [100, 180_000], np.asarray(order))  # the middle shard alone exceeds the keep limit
    assert_matches_numpy(res, x)


def test_relative_chunks_blocks():
    rng = np.random.default_rng(2)
    action, state = rng.standard_normal((50, 3)), rng.standard_normal((50, 3)).astype(np.float32)
    deltas = (2, 3, 7)
    whole = np.concatenate(list(relative_chunks(action, state, deltas, 2)))
    blocks = list(relative_chunks(action, state, deltas, 2, block_values=20))
    assert len(blocks) > 1 and whole.dtype == np.float32 and whole.shape == (43, 3, 3)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(whole[5], (action[[7, 8, 12]] - state[7]).astype(np.float32))
    assert list(relative_chunks(action[:7], state[:7], deltas, 2)) == []


def test_memory_does_not_grow_with_frames():
    """Kept keys spill into a fixed-size histogram; later passes keep at most bucket-sized key lists."""
    rng = np.random.default_rng(3)
    acc = FeatureAccumulator(dim=4, hist_budget_bytes=4 * 8 * 2**12)  # 12-bit first digit
    x = rng.standard_normal((50_000, 4)).astype(np.float32)
    for chunk in np.array_split(x, 50):
        acc.update(chunk)
    sel = acc.select
    assert sel.hist is not None and sel.hist.shape == (4, 2**12) and sel.raw == []
    assert acc.end_pass()
    for chunk in np.array_split(x, 50):
        acc.update(chunk)
    kept = sum(r.size for r in sel.raw) + (0 if sel.hist is None else sel.hist.size)
    assert kept <= sel.budget_bytes // 8
    assert not acc.end_pass()
    assert_matches_numpy(acc.result(), x)


def test_state_roundtrip_through_npz(tmp_path):
    rng = np.random.default_rng(11)
    x = edge_case_data(20_000, rng)
    want, _ = run_accumulator(x, [5000, 12000], raw_limit=0)
    acc = FeatureAccumulator(raw_limit=0)
    acc.update(x[:5000])
    acc.save(tmp_path / "p0.npz")
    acc = FeatureAccumulator.load(tmp_path / "p0.npz")
    acc.update(x[5000:])
    assert acc.end_pass()
    part = acc.spawn()
    part.update(x[:12000])
    part.save(tmp_path / "p1.npz")
    acc.merge(FeatureAccumulator.load(tmp_path / "p1.npz"))
    acc.update(x[12000:])
    acc.save(tmp_path / "p1b.npz")
    acc = FeatureAccumulator.load(tmp_path / "p1b.npz")
    while acc.end_pass():
        acc.update(x)
    got = acc.result()
    for k in ("min", "max", "q01", "q99"):
        np.testing.assert_array_equal(got[k], want[k])
    for k in ("mean", "std"):  # chunked differently, so equal up to float64 rounding of the merges
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-300)
    # a state in its default one-pass mode (keys kept) round-trips too
    small = FeatureAccumulator()
    small.update(x[:100])
    small.save(tmp_path / "small.npz")
    small = FeatureAccumulator.load(tmp_path / "small.npz")
    small.update(x[100:300])
    assert not small.end_pass()
    assert_matches_numpy(small.result(), x[:300])


def test_accumulator_errors():
    acc = FeatureAccumulator(name="observation.state")
    x = np.zeros((4, 3), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(StatsError, match=r"observation.state: row 2 dimension 1 is nan"):
        acc.update(x)
    x[2, 1] = np.inf
    with pytest.raises(StatsError, match="non-finite"):
        FeatureAccumulator().update(x)
    acc = FeatureAccumulator(dim=3)
    with pytest.raises(StatsError, match="expected 3 dimensions"):
        acc.update(np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(StatsError, match="no samples"):
        FeatureAccumulator(dim=2).end_pass()
    a, b = FeatureAccumulator(dim=2, raw_limit=0), FeatureAccumulator(dim=2, raw_limit=0)
    a.update(np.ones((3, 2), dtype=np.float32))
    b.update(np.ones((3, 2), dtype=np.float32))
    assert a.end_pass()
    with pytest.raises(StatsError, match="different passes"):
        a.merge(b)


# --- synthetic LeRobot dataset -----------------------------------------------------------------------------------
STATE_GROUPS = {"arm": (0, 3), "gripper": (3, 4), "base": (4, 6)}


def write_dataset(root: Path, lengths: list[int], *, seed: int = 0, nan_at: tuple[int, int, int] | None = None) -> dict:
    """A minimal GR00T-flavoured LeRobot v2.0 dataset; returns the arrays written, per episode."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "videos").mkdir()
    features = {
        "observation.state": {"dtype": "float32", "shape": [6]},
        "action": {"dtype": "float64", "shape": [6]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "next.reward": {"dtype": "float64", "shape": [1]},
        "observation.images.front": {"dtype": "video", "shape": [8, 8, 3]},
        "episode_index": {"dtype": "int64", "shape": [1]},
        "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
        "annotation.human.task_description": {"dtype": "int64", "shape": [1]},
    }
    info = {
        "codebase_version": "v2.0",
        "fps": 10,
        "chunks_size": 1000,
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (root / "meta" / "episodes.jsonl").write_text(
        "".join(json.dumps({"episode_index": i, "tasks": ["do it"], "length": n}) + "\n" for i, n in enumerate(lengths))
    )
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "do it"}) + "\n")
    modality = {
        "state": {k: {"start": a, "end": b} for k, (a, b) in STATE_GROUPS.items()},
        "action": {k: {"start": a, "end": b} for k, (a, b) in STATE_GROUPS.items()},
        "video": {"front": {"original_key": "observation.images.front"}},
        "annotation": {"human.task_description": {}},
    }
    (root / "meta" / "modality.json").write_text(json.dumps(modality, indent=4))
    arrays = {"observation.state": [], "action": [], "timestamp": [], "next.reward": []}
    index = 0
    for ep, n in enumerate(lengths):
        walk = np.cumsum(rng.standard_normal((n, 6)) * 0.05, axis=0) + np.array([1.5, -2.0, 0.3, 0.0, 10.0, 0.0])
        state = walk.astype(np.float32)
        state[:, 3] = np.round(rng.random(n))  # binary gripper: ties
        state[:, 5] = -0.0  # constant negative zero
        action = walk + rng.standard_normal((n, 6)) * 1e-3  # float64, close to the state
        action[:, 3] = state[:, 3]
        ts = (np.arange(n, dtype=np.float32) + 1) / 10
        reward = (np.arange(n) == n - 1).astype(np.float64)
        if nan_at is not None and nan_at[0] == ep:
            action[nan_at[1], nan_at[2]] = np.nan
        table = pa.table(
            {
                "observation.state": pa.array(list(state), type=pa.list_(pa.float32())),
                "action": pa.array(list(action), type=pa.list_(pa.float64())),
                "timestamp": pa.array(ts, type=pa.float32()),
                "next.reward": pa.array(reward),
                "episode_index": pa.array(np.full(n, ep, dtype=np.int64)),
                "index": pa.array(np.arange(index, index + n, dtype=np.int64)),
                "task_index": pa.array(np.zeros(n, dtype=np.int64)),
                "annotation.human.task_description": pa.array(np.zeros(n, dtype=np.int64)),
            }
        )
        pq.write_table(table, root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet")
        index += n
        arrays["observation.state"].append(state)
        arrays["action"].append(action)
        arrays["timestamp"].append(ts[:, None])
        arrays["next.reward"].append(reward[:, None])
    return arrays


def demo_config(action_deltas=(0, 1, 2, 3), state_deltas=(0,), reps=("RELATIVE", "ABSOLUTE", "RELATIVE")):
    keys = list(STATE_GROUPS)
    return parse_embodiment_config(
        {
            "video": {"delta_indices": [0], "modality_keys": ["front"]},
            "state": {"delta_indices": list(state_deltas), "modality_keys": keys},
            "action": {
                "delta_indices": list(action_deltas),
                "modality_keys": keys,
                "action_configs": [{"rep": r, "type": "NON_EEF", "format": "DEFAULT"} for r in reps],
            },
            "language": {"delta_indices": [0], "modality_keys": ["annotation.human.task_description"]},
        }
    )


def brute_force_relative(arrays: dict, key: str, deltas, ref: int) -> np.ndarray:
    a, b = STATE_GROUPS[key]
    chunks = []
    for state, action in zip(arrays["observation.state"], arrays["action"]):
        for i in range(len(action) - deltas[-1]):
            rows = np.asarray(deltas) + i
            chunks.append((action[rows, a:b] - state[ref + i, a:b]).astype(np.float32))  # upstream: native dtype
    return np.stack(chunks)


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("numerics", ["upstream", "float64"])
@pytest.mark.parametrize("raw_limit", [None, 0])
@pytest.mark.parametrize("action_deltas", [(0, 1, 2, 3), (1, 3, 4)])
def test_compute_stats_matches_brute_force(tmp_path, action_deltas, raw_limit, numerics):
    ds = tmp_path / "ds"
    lengths = [40, 3, 1, 57, 25]  # includes episodes shorter than the action horizon
    arrays = write_dataset(ds, lengths)
    state_deltas = (-2, action_deltas[0])
    cfg = demo_config(action_deltas, state_deltas)
    before = tree_snapshot(ds)
    stats, rel = compute_stats(ds, cfg, raw_limit=raw_limit, numerics=numerics)
    assert tree_snapshot(ds) == before  # nothing written into the dataset

    assert list(stats) == ["observation.state", "action", "timestamp", "next.reward"]  # float features, info order
    for col, chunks in arrays.items():
        x = np.concatenate(chunks).astype(np.float32)  # upstream casts every column to float32
        assert list(stats[col]) == list(STAT_KEYS)
        got = {k: np.asarray(v) for k, v in stats[col].items()}
        if numerics == "float64":
            assert_matches_numpy(got, x)
        else:  # bit-identical to upstream's numpy on the float32 array
            ref = upstream_reference(x)
            for k in STAT_KEYS:
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{col}.{k}")
        assert all(len(v) == x.shape[1] for v in stats[col].values())

    assert list(rel) == ["arm", "base"]  # RELATIVE keys only, sorted (as upstream)
    for key in rel:
        chunks = brute_force_relative(arrays, key, action_deltas, state_deltas[-1])
        assert list(rel[key]) == list(RELATIVE_STAT_KEYS)
        flat = chunks.reshape(len(chunks), -1)
        ref = numpy_reference(flat) if numerics == "float64" else upstream_reference(flat)
        for k in RELATIVE_STAT_KEYS:
            got = np.asarray(rel[key][k])
            assert got.shape == chunks.shape[1:]
            if k in ("mean", "std") and numerics == "float64":
                np.testing.assert_allclose(got.ravel(), ref[k], rtol=1e-9, atol=1e-15)
            else:
                np.testing.assert_array_equal(got.ravel(), ref[k], err_msg=f"{key}.{k}")


def test_compute_stats_no_relative(tmp_path):
    write_dataset(tmp_path / "ds", [10, 12])
    stats, rel = compute_stats(tmp_path / "ds")
    assert rel is None and "action" in stats
    _, rel = compute_stats(tmp_path / "ds", demo_config(reps=("ABSOLUTE", "ABSOLUTE", "ABSOLUTE")))
    assert rel is None


def test_compute_stats_errors(tmp_path):
    write_dataset(tmp_path / "nan", [10, 12, 9], nan_at=(1, 4, 2))
    with pytest.raises(StatsError, match=r"column action: episode 1, row 4, dimension 2 is nan"):
        compute_stats(tmp_path / "nan")
    ds = LeRobotDataset(tmp_path / "nan")
    del ds.info["features"]["action"]  # only the relative groups read the action column now
    with pytest.raises(StatsError, match=r"relative action arm .*: episode 1, window \d+ .*is nan"):
        compute_stats(ds, demo_config())
    # state.delta_indices[-1] must equal action.delta_indices[0]
    write_dataset(tmp_path / "ok", [10])
    cfg = demo_config()
    bad = dataclasses.replace(cfg, state=dataclasses.replace(cfg.state, delta_indices=(1,)))
    with pytest.raises(StatsError, match=r"state.delta_indices\[-1\] == action.delta_indices\[0\]"):
        compute_stats(tmp_path / "ok", bad)
    eef = dataclasses.replace(
        cfg,
        action=dataclasses.replace(
            cfg.action,
            action_configs=tuple(dataclasses.replace(a, type=ActionType.EEF) for a in cfg.action.action_configs),
        ),
    )
    with pytest.raises(StatsError, match="RELATIVE EEF actions"):
        compute_stats(tmp_path / "ok", eef)
    # every episode shorter than the horizon: relative stats undefined
    write_dataset(tmp_path / "short", [2, 3])
    with pytest.raises(StatsError, match="no episode is longer than the action horizon"):
        compute_stats(tmp_path / "short", demo_config(action_deltas=tuple(range(8))))


def test_write_stats_atomic_json(tmp_path):
    write_dataset(tmp_path / "ds", [20, 30])
    stats, rel = compute_stats(tmp_path / "ds", demo_config(), progress=True)
    out = tmp_path / "out" / "nested"
    paths = write_stats(out, stats, rel)
    assert paths == [out / "stats.json", out / "relative_stats.json"]
    assert json.loads(paths[0].read_text()) == stats
    assert json.loads(paths[1].read_text()) == rel
    assert paths[0].read_text().startswith('{\n    "observation.state": {\n        "mean": [\n')  # indent 4
    assert sorted(p.name for p in out.iterdir()) == ["relative_stats.json", "stats.json"]  # no temp files left
    paths = write_stats(out, stats, None)  # overwrite; relative None -> only stats.json written
    assert paths == [out / "stats.json"]


def test_cli(tmp_path, capsys):
    write_dataset(tmp_path / "ds", [20, 30])
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(demo_config().to_dict()))
    assert main([str(tmp_path / "ds"), "--modality-config", str(cfg_path), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "stats.json" in out and "relative_stats.json" in out
    assert "constant" in out  # the -0.0 state dimension is reported
    with pytest.raises(SystemExit):
        main([str(tmp_path / "ds"), "--out", str(tmp_path / "ds" / "meta")])
    assert not (tmp_path / "ds" / "meta" / "stats.json").exists()


def test_summary_flags():
    stats = {
        "observation.state": {
            "mean": [0.0, 1.0, 0.5, 0.0, 2.0],
            "std": [0.0, 1e-3, 0.5, 0.1, 1.0],
            "min": [0.0, 1.0, 0.0, -0.2, 1.0],
            "max": [0.0, 1.0 + 1e-6, 1.0, 50.0, 3.0],
            "q01": [0.0, 1.0, 0.0, -0.1, 1.0],
            "q99": [0.0, 1.0, 0.0, 0.1, 3.0],
        },
        "arm": {  # relative-stats shape (T, D)
            "max": [[1.0, 0.0], [1.0, 20.0]],
            "min": [[-1.0, 0.0], [-20.0, -1.0]],
            "q01": [[-1.0, 0.0], [-1.0, -1.0]],
            "q99": [[1.0, 0.0], [0.0, 0.2]],
            "mean": [[0.0, 0.0], [0.0, 0.0]],
            "std": [[0.5, 0.0], [0.5, 0.5]],
        },
    }
    flags = {(f["feature"], json.dumps(f["index"]), f["flag"]) for f in summary_flags(stats)}
    assert flags == {
        ("observation.state", "0", "constant"),
        ("observation.state", "1", "near_constant"),
        ("observation.state", "2", "q01_eq_q99"),
        ("observation.state", "3", "outlier_max"),
        ("arm", "[0, 1]", "constant"),
        ("arm", "[1, 0]", "outlier_min"),
        ("arm", "[1, 1]", "outlier_max"),
    }
    assert all(f["message"] for f in summary_flags(stats))


# --- parity with upstream's shipped statistics ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def gr1_dataset() -> Path:
    if not (GR1 / "meta" / "info.json").is_file():
        pytest.skip(f"gr1.PickNPlace reference dataset not found at {GR1}; skipping")
    return GR1


def gr1_relative_config():
    """config/modality/gr1.yaml, restricted to the four RELATIVE groups of the shipped relative_stats.json."""
    data = yaml.safe_load((ROOT / "config" / "modality" / "gr1.yaml").read_text())
    keep = ["left_arm", "left_hand", "right_arm", "right_hand"]
    data["state"]["modality_keys"] = keep
    data["action"]["modality_keys"] = keep
    data["action"]["action_configs"] = [{"rep": "RELATIVE", "type": "NON_EEF", "format": "DEFAULT"}] * 4
    cfg = parse_embodiment_config(data, source="gr1.yaml (relative groups)")
    assert cfg.action.delta_indices == tuple(range(16))
    return cfg


def max_rel_dev(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    dev = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-30)
    dev[ours == ref] = 0.0
    return float(dev.max()) if dev.size else 0.0


def assert_parity(ours: dict, shipped: dict, rtol: float, atol: float = 1e-8) -> dict[str, float]:
    """Every shipped feature/group and stat, same shape, ``|ours - shipped| <= atol + rtol * |shipped|``; returns the
    largest relative deviation per stat (atol only matters for values at exactly zero)."""
    devs: dict[str, float] = {}
    for name, ref in shipped.items():
        assert list(ours[name]) == list(ref), name  # same stats, same order
        for k, ref_v in ref.items():
            got = np.asarray(ours[name][k], dtype=np.float64)
            ref_v = np.asarray(ref_v, dtype=np.float64)
            assert got.shape == ref_v.shape, (name, k)
            np.testing.assert_allclose(got, ref_v, rtol=rtol, atol=atol, err_msg=f"{name}.{k}")
            devs[k] = max(devs.get(k, 0.0), max_rel_dev(got, ref_v))
    return devs


def test_gr1_parity_with_shipped_stats(gr1_dataset, tmp_path):
    """Our stats.json / relative_stats.json of gr1.PickNPlace (its shipped files removed) equal upstream's:
    within 1e-5 / 1e-4 relative as the issue requires, and in fact bit for bit (upstream numerics)."""
    ds = tmp_path / "gr1.PickNPlace"
    shutil.copytree(gr1_dataset, ds)
    shipped = json.loads((ds / "meta" / "stats.json").read_text())
    shipped_rel = json.loads((ds / "meta" / "relative_stats.json").read_text())
    (ds / "meta" / "stats.json").unlink()
    (ds / "meta" / "relative_stats.json").unlink()
    before = tree_snapshot(ds)
    cfg = gr1_relative_config()

    stats, rel = compute_stats(ds, cfg)  # default numerics: upstream
    assert tree_snapshot(ds) == before
    assert not (ds / "meta" / "stats.json").exists() and not (ds / "meta" / "relative_stats.json").exists()
    assert set(shipped) <= set(stats)
    assert list(rel) == list(shipped_rel)

    devs = assert_parity(stats, shipped, rtol=1e-5)
    rel_devs = assert_parity(rel, shipped_rel, rtol=1e-4)
    print(f"\ngr1 stats.json max relative deviation per stat: {devs}")
    print(f"gr1 relative_stats.json max relative deviation per stat: {rel_devs}")
    # stronger than required: the very same numbers, serialised the same way
    for ours, ref in ((stats, shipped), (rel, shipped_rel)):
        for name in ref:
            assert json.dumps(ours[name]) == json.dumps(ref[name]), name

    # the histogram (two-pass) path gives the very same numbers as the default one-pass path
    stats2, rel2 = compute_stats(ds, cfg, raw_limit=0)
    assert stats2 == stats and rel2 == rel

    # float64 numerics: order statistics unchanged up to the interpolation's rounding, moments off by upstream's
    # float32 accumulation error (|x| * eps32 * ~n absolute, so relative only for dims of large offset / spread)
    stats64, rel64 = compute_stats(ds, cfg, numerics="float64")
    for ours, ref in ((stats64, shipped), (rel64, shipped_rel)):
        for name, entry in ref.items():
            scale = np.maximum(np.abs(np.asarray(entry["min"])), np.abs(np.asarray(entry["max"])))
            for k in ("min", "max", "q01", "q99"):
                np.testing.assert_allclose(ours[name][k], entry[k], rtol=1e-7, atol=1e-12, err_msg=f"{name}.{k}")
            for k in ("mean", "std"):
                assert_close(ours[name][k], entry[k], rtol=1e-4, atol=1e-5 * scale, what=f"{name}.{k}")
    print(f"float64 vs shipped: stats {max_rel_dev(stats64['action']['std'], shipped['action']['std']):.3g} "
          f"(action std), relative std {max(max_rel_dev(rel64[k]['std'], shipped_rel[k]['std']) for k in rel64):.3g}")

    # written output round-trips, and lands outside the dataset
    out = tmp_path / "out"
    write_stats(out, stats, rel)
    assert json.loads((out / "stats.json").read_text()) == stats
    assert tree_snapshot(ds) == before
