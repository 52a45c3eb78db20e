"""Incremental statistics: the per-episode cache, the CLI and report, and the Snakemake rule that uses them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from groot_ft.stats import CACHE_FORMAT, main, run_stats, summary_flags
from groot_ft.stats.report import HISTOGRAMS_PLOT, RANGES_PLOT, REPORT_FILENAME, write_stats_report
from tests.test_stats import demo_config, tree_snapshot, write_dataset

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = [40, 3, 57, 25, 33]


def cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*.npys"))


def assert_same_result(a, b) -> None:
    assert a.by_numerics == b.by_numerics
    assert a.histograms == b.histograms


def test_rerun_recomputes_only_what_changed(tmp_path):
    ds, cache = tmp_path / "ds", tmp_path / "cache"
    write_dataset(ds, LENGTHS)
    write_dataset(tmp_path / "other", LENGTHS, seed=1)
    cfg = demo_config()
    before = tree_snapshot(ds)

    cold = run_stats(ds, cfg, cache_dir=cache)
    assert (cold.recomputed, cold.cached, cold.episodes) == (5, 0, 5)
    assert len(cache_entries(cache)) == 5
    assert tree_snapshot(ds) == before
    fresh = run_stats(ds, cfg)  # no cache at all: the same numbers
    assert_same_result(cold, fresh)

    warm = run_stats(ds, cfg, cache_dir=cache)
    assert (warm.recomputed, warm.cached) == (0, 5)
    assert_same_result(warm, cold)

    # one episode's data changes: only it is decoded again; the result equals a from-scratch run
    target = "data/chunk-000/episode_000002.parquet"
    shutil.copy(tmp_path / "other" / target, ds / target)
    changed = run_stats(ds, cfg, cache_dir=cache)
    assert (changed.recomputed, changed.cached) == (1, 4)
    assert_same_result(changed, run_stats(ds, cfg))
    assert changed.stats != cold.stats
    assert len(cache_entries(cache)) == 5  # the stale entry was pruned

    # an added episode (same first five episodes, byte for byte): one recomputation
    grown = tmp_path / "grown"
    write_dataset(grown, LENGTHS + [30])
    shutil.copy(tmp_path / "other" / target, grown / target)
    added = run_stats(grown, cfg, cache_dir=cache)
    assert (added.recomputed, added.cached) == (1, 5)
    assert_same_result(added, run_stats(grown, cfg))

    # another action horizon is another stats plan: every entry is recomputed
    other_cfg = demo_config(action_deltas=(0, 1, 2))
    replanned = run_stats(ds, other_cfg, cache_dir=cache)
    assert replanned.recomputed == 5
    assert_same_result(replanned, run_stats(ds, other_cfg))


def test_damaged_or_foreign_cache_entries_are_recomputed(tmp_path):
    ds, cache = tmp_path / "ds", tmp_path / "cache"
    write_dataset(ds, LENGTHS)
    cfg = demo_config()
    ref = run_stats(ds, cfg, cache_dir=cache)
    entries = cache_entries(cache)
    entries[0].write_bytes(b"not an entry")
    good = entries[1].read_bytes()
    with open(entries[1], "rb") as fh:  # the same records under another format tag
        assert str(np.load(fh)) == CACHE_FORMAT
        rest = fh.read()
    with open(entries[1], "wb") as fh:
        np.save(fh, np.array("someone.else/1"))
        fh.write(rest)
    entries[2].write_bytes(good[: len(good) // 2])  # truncated
    again = run_stats(ds, cfg, cache_dir=cache)
    assert (again.recomputed, again.cached) == (3, 2)
    assert_same_result(again, ref)
    assert entries[1].read_bytes() == good  # rewritten
    unrelated = cache / "notes.txt"
    unrelated.write_text("kept")
    run_stats(ds, cfg, cache_dir=cache)
    assert unrelated.read_text() == "kept"  # pruning only touches entry files


def test_result_report_facts(tmp_path):
    write_dataset(tmp_path / "ds", LENGTHS)
    res = run_stats(tmp_path / "ds", demo_config(), histogram_bins=7)
    summary = res.summary()
    assert summary["numerics"] == "upstream" and summary["passes"] == 2
    assert summary["counts"]["feature:action"] == sum(LENGTHS)
    dev = summary["max_relative_difference_to_float64"]
    assert set(dev) == {"stats", "relative"} and dev["stats"]["min"] == 0.0 and 0 < dev["stats"]["mean"] < 1e-5
    assert summary["float64"]["stats"] == res.by_numerics["float64"][0]
    hist = res.histograms["observation.state"]
    counts = np.asarray(hist["counts"])
    assert counts.shape == (6, 7) and (counts.sum(axis=1) == sum(LENGTHS)).all()
    assert hist["min"] == res.stats["observation.state"]["min"]


def test_cli_writes_files_report_and_uses_the_cache(tmp_path, capsys):
    ds, out = tmp_path / "ds", tmp_path / "out"
    write_dataset(ds, LENGTHS)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(demo_config().to_dict()))
    argv = [str(ds), "--modality-config", str(cfg_path), "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "stats: 5 episodes, 5 recomputed, 0 from cache" in text
    for rel in ("stats.json", "relative_stats.json", REPORT_FILENAME, RANGES_PLOT, HISTOGRAMS_PLOT):
        assert (out / rel).is_file(), rel
        assert str(out / rel) in text
    assert (out / RANGES_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / REPORT_FILENAME).read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert report["flags"] == json.loads(json.dumps(summary_flags(stats) + summary_flags(
        json.loads((out / "relative_stats.json").read_text()))))
    assert report["flag_counts"]["constant"] >= 1  # the -0.0 state dimension
    assert report["recomputed_episodes"] == 5 and set(report["histograms"]) == set(stats)
    assert len(cache_entries(out / "cache")) == 5

    assert main(argv) == 0
    assert "stats: 5 episodes, 0 recomputed, 5 from cache" in capsys.readouterr().out
    assert json.loads((out / "stats.json").read_text()) == stats

    out2 = tmp_path / "out2"
    assert main([str(ds), "--out", str(out2), "--no-cache", "--no-report", "--numerics", "float64"]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ["stats.json"]
    with pytest.raises(SystemExit):
        main([str(ds), "--out", str(tmp_path / "o3"), "--cache", str(ds / "cache")])
    assert not (ds / "cache").exists()


def test_write_stats_report_without_histograms(tmp_path):
    stats = {"timestamp": {"mean": [1.0], "std": [0.0], "min": [1.0], "max": [1.0], "q01": [1.0], "q99": [1.0]}}
    paths = write_stats_report(tmp_path, stats, None, summary_flags(stats))
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [REPORT_FILENAME, RANGES_PLOT, HISTOGRAMS_PLOT]
    report = json.loads(paths[0].read_text())
    assert report["flag_counts"] == {"constant": 1} and report["relative"] == {}


def test_snakemake_stats_rule_uses_the_episode_cache(tmp_path):
    """The workflow's stats rule keeps its per-episode cache under {OUT}/.cache/stats: with the cache filled by an
    earlier run and then one episode changed, the rule recomputes just that episode (its log says so). One
    Snakemake run only: each costs seconds of start-up (both Snakemake and the rule import torch via groot_ft)."""
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent))
    if snakemake is None:
        pytest.skip("snakemake is not installed next to this interpreter")
    ds, out = tmp_path / "ds", tmp_path / "run"
    write_dataset(ds, LENGTHS)
    write_dataset(tmp_path / "other", LENGTHS, seed=1)
    cfg = demo_config()
    cfg_path = tmp_path / "modality.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    (out / "validation").mkdir(parents=True)
    (out / "validation" / "report.json").write_text("{}")  # stands in for the validate rule's output
    assert run_stats(ds, cfg, cache_dir=out / ".cache" / "stats").recomputed == 5  # an earlier run's cache
    target = "data/chunk-000/episode_000002.parquet"
    shutil.copy(tmp_path / "other" / target, ds / target)

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [snakemake, f"{out}/stats/stats.json", "--cores", "1", "--snakefile", "workflow/Snakefile",
           "--configfile", "config/demo.yaml", "--config", f"dataset={ds}", f"modality_config_path={cfg_path}", f"output_dir={out}",
           "--allowed-rules", "dataset_listing", "stats",  # validation is not this test's subject
           "--nolock"]  # outputs are private to this test; other workflows may run in the same directory
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = out / "logs" / "stats.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-2000:] if log.is_file() else "")
    assert "stats: 5 episodes, 1 recomputed, 4 from cache" in log.read_text()
    for rel in ("stats.json", "relative_stats.json", REPORT_FILENAME, RANGES_PLOT, HISTOGRAMS_PLOT):
        assert (out / "stats" / rel).is_file(), rel
    want = run_stats(ds, cfg)
    assert json.loads((out / "stats" / "stats.json").read_text()) == want.stats
    assert json.loads((out / "stats" / "relative_stats.json").read_text()) == want.relative
    assert len(cache_entries(out / ".cache" / "stats")) == 5


def test_direct_column_decoding_equals_the_readers(tmp_path):
    """column_matrix reads list columns straight from arrow buffers; it must agree with Arrow's own conversion."""
    import pyarrow as pa

    from groot_ft.data.episode_arrays import _arrow_matrix, _buffer_matrix, column_matrix
    from groot_ft.stats import column_array

    v = np.arange(40, dtype=np.float64) - 7.5
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(v), 4)
    large = pa.LargeListArray.from_arrays(pa.array(np.arange(0, 41, 4, dtype=np.int64)), pa.array(v))
    plain = pa.ListArray.from_arrays(pa.array(np.arange(0, 41, 4, dtype=np.int32)), pa.array(v.astype(np.float32)))
    ragged = pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32()))
    cases = [fixed, fixed.slice(3, 5), large, large.slice(2, 4), plain, plain.slice(1, 3), plain.slice(0, 0),
             pa.array(v), pa.array(np.arange(5, dtype=np.int16)).slice(1, 3),
             pa.chunked_array([fixed.slice(0, 2), fixed.slice(2, 3)])]
    for arr in cases:
        table = pa.table({"c": arr})
        direct = isinstance(arr, pa.Array) and len(arr) > 0
        assert (_buffer_matrix(table.column("c")) is not None) == direct, arr.type  # the fast path is taken
        for dtype in (np.float32, None):
            got = column_matrix(table, "c", tmp_path, dtype)
            want = _arrow_matrix(table.column("c"), "c", tmp_path)
            want = want if dtype is None else want.astype(dtype)
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), arr.type
    with pytest.raises(Exception, match="different lengths"):
        column_array(pa.table({"c": ragged}), "c", tmp_path)
