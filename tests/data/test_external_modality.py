"""A modality mapping kept outside the dataset (config key ``modality_json_path``, ``--modality-json``): the reader,
the validator, the statistics, the config/run description and the package fingerprint read that file instead of
``meta/modality.json``, and nothing is ever written into the dataset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from groot_ft.config import ConfigError, FinetuneConfig, RunDescription
from groot_ft.data.demo import write_demo_dataset
from groot_ft.data.lerobot import DatasetError, LeRobotDataset
from groot_ft.data.validate import validate_dataset
from groot_ft.manifest import dataset_fingerprint
from groot_ft.modality import load_modality_config
from groot_ft.stats import main as stats_main
from groot_ft.stats import run_stats

PROJECT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = PROJECT / "config" / "modality" / "demo.yaml"


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def set_read_only(root: Path, read_only: bool) -> None:
    """chmod the whole tree, so that any write into the dataset fails loudly (root ignores modes; the digests
    still catch it)."""
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        os.chmod(p, mode & ~writable if read_only else mode | stat.S_IWUSR)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """The demo dataset with its meta/modality.json, the reference the split copy must match."""
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", episodes=4, seed=0)


@pytest.fixture(scope="module")
def split(original, tmp_path_factory) -> tuple[Path, Path]:
    """(dataset without meta/modality.json, its mapping outside it), both under paths with spaces; read-only."""
    base = tmp_path_factory.mktemp("split")
    root = base / "plain lerobot export"
    shutil.copytree(original, root)
    mapping = base / "mappings dir" / "demo modality.json"
    mapping.parent.mkdir()
    shutil.move(root / "meta" / "modality.json", mapping)
    set_read_only(root, True)
    yield root, mapping
    set_read_only(root, False)


@pytest.fixture(scope="module")
def demo_cfg():
    return load_modality_config(DEMO_CONFIG)


# ------------------------------------------------------------------------------------------------------ reader


def test_reader_reads_the_external_mapping(original, split):
    root, mapping = split
    ds = LeRobotDataset(root, mapping)
    assert ds.modality == json.loads((original / "meta" / "modality.json").read_text())
    assert ds.modality_json == mapping and ds.modality_json_external
    assert str(mapping) in ds.modality_source and "modality_json_path" in ds.modality_source
    ref = LeRobotDataset(original)
    assert ds.group_slice("state", "arm") == ref.group_slice("state", "arm")
    assert ds.video_original_key("front") == ref.video_original_key("front")
    assert "the dataset's own" in ref.modality_source and not ref.modality_json_external


def test_reader_errors_name_the_mapping_in_force(split, tmp_path):
    root, mapping = split
    with pytest.raises(DatasetError, match=r"meta/modality\.json: file is missing; .* --modality-json FILE "
                                           r"\(config: modality_json_path\)"):
        LeRobotDataset(root).modality  # noqa: B018 - the property read is the test
    missing = tmp_path / "nowhere.json"
    with pytest.raises(DatasetError, match=rf"{missing}: the modality mapping given for .* does not exist"):
        LeRobotDataset(root, missing)
    with pytest.raises(DatasetError, match=rf"{mapping}: state\.torso is not defined"):
        LeRobotDataset(root, mapping).group_slice("state", "torso")
    not_object = tmp_path / "list.json"
    not_object.write_text("[]")
    with pytest.raises(DatasetError, match=rf"{not_object}: a modality mapping must hold a JSON object"):
        LeRobotDataset(root, not_object).modality  # noqa: B018


# ------------------------------------------------------------------------------------------------------ validator


def test_validator_checks_the_external_mapping_instead_of_the_missing_one(split, demo_cfg):
    root, mapping = split
    before = tree_digest(root)
    report = validate_dataset(root, demo_cfg, modality_json=mapping)
    assert report.ok, report.summary_text()
    assert not [f for f in report.findings if f.file == "meta/modality.json"]
    assert report.to_dict()["modality_json"] == str(mapping) and report.to_dict()["modality_json_external"]
    assert f"modality mapping: {mapping}" in report.summary_text()
    assert tree_digest(root) == before


def test_validator_without_the_mapping_says_where_to_put_one(split, demo_cfg):
    root, _ = split
    report = validate_dataset(root, demo_cfg)
    missing = [f for f in report.errors if f.code == "META_MISSING"]
    assert [f.file for f in missing] == ["meta/modality.json"]
    assert "modality_json_path" in missing[0].hint and "modality init" in missing[0].hint
    assert not report.to_dict()["modality_json_external"]


def test_validator_reports_problems_in_the_external_file(split, demo_cfg, tmp_path):
    root, mapping = split
    broken = json.loads(mapping.read_text())
    broken["state"]["arm"]["end"] = 99
    bad = tmp_path / "bad mapping.json"
    bad.write_text(json.dumps(broken))
    report = validate_dataset(root, demo_cfg, modality_json=bad)
    out_of_bounds = [f for f in report.errors if f.code == "MODALITY_SLICE_OUT_OF_BOUNDS"]
    assert out_of_bounds and all(f.file == str(bad) for f in out_of_bounds)

    gone = tmp_path / "gone.json"
    report = validate_dataset(root, demo_cfg, modality_json=gone)
    missing = [f for f in report.errors if f.code == "META_MISSING"]
    assert [f.file for f in missing] == [str(gone)] and "modality_json_path" in missing[0].hint
    assert not [f for f in report.findings if f.file == "meta/modality.json"]


# ------------------------------------------------------------------------------------------------------ stats


def test_stats_with_the_external_mapping_match_the_dataset_with_its_own(original, split, demo_cfg):
    root, mapping = split
    assert demo_cfg.relative_action_keys(), "the demo config must exercise relative_stats (the mapping's slices)"
    ours = run_stats(root, demo_cfg, modality_json=mapping)
    reference = run_stats(original, demo_cfg)
    assert ours.stats == reference.stats and ours.relative == reference.relative


def test_stats_cli_takes_the_mapping_and_refuses_without_it(original, split, tmp_path, capsys):
    root, mapping = split
    before = tree_digest(root)
    out = tmp_path / "stats out"
    rc = stats_main([str(root), "--modality-config", str(DEMO_CONFIG), "--modality-json", str(mapping),
                     "--out", str(out), "--no-cache", "--no-report"])
    assert rc == 0
    assert f"modality mapping: {mapping} (modality_json_path" in capsys.readouterr().out
    ref = tmp_path / "reference"
    assert stats_main([str(original), "--modality-config", str(DEMO_CONFIG), "--out", str(ref), "--no-cache",
                       "--no-report"]) == 0
    for name in ("stats.json", "relative_stats.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    capsys.readouterr()
    assert stats_main([str(root), "--modality-config", str(DEMO_CONFIG), "--out", str(tmp_path / "no"),
                       "--no-cache"]) == 2
    assert "meta/modality.json: file is missing" in capsys.readouterr().err
    assert tree_digest(root) == before


# ------------------------------------------------------------------------------------------------------ config


MODALITY = {"modality_config_path": "config/modality/demo.yaml"}


def test_config_carries_the_mapping_per_dataset(tmp_path):
    single = FinetuneConfig.from_dict({"dataset": "/data/a b", "modality_json_path": "maps/a b.json", **MODALITY})
    assert [s.modality_json_path for s in single.dataset_specs()] == ["maps/a b.json"]
    assert FinetuneConfig.from_dict({"dataset": "/data/a", **MODALITY}).dataset_specs()[0].modality_json_path is None
    mixture = FinetuneConfig.from_dict({**MODALITY, "datasets": [{"path": "/d/one", "modality_json_path": "m/one.json"},
                                                     {"path": "/d/two"}]})
    specs = mixture.dataset_specs()
    assert [s.modality_json_path for s in specs] == ["m/one.json", None]
    with pytest.raises(ConfigError, match="modality_json_path: .* set it per entry|set modality_json_path on each"):
        FinetuneConfig.from_dict({"datasets": [{"path": "/d/one"}], "modality_json_path": "m.json",
                                 **MODALITY}).dataset_specs()
    with pytest.raises(ConfigError, match="modality_json_path"):
        FinetuneConfig.from_dict({"modality_json_path": ""})

    run = RunDescription.resolve(mixture, specs, {"one": [0, 1, 2], "two": [0, 1]},
                                 {n: {"stats_dir": "s", "shards_dir": "t", "eval_shards_dir": None}
                                  for n in ("one", "two")}, str(tmp_path))
    run.save(tmp_path / "run.json")
    loaded = RunDescription.load(tmp_path / "run.json")
    assert [d.modality_json_path for d in loaded.datasets] == ["m/one.json", None]
    # a run description written before the key existed still loads (no external mapping)
    data = json.loads((tmp_path / "run.json").read_text())
    for entry in data["datasets"]:
        del entry["modality_json_path"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert [d.modality_json_path for d in RunDescription.load(tmp_path / "old.json").datasets] == [None, None]


# ------------------------------------------------------------------------------------------------------ package


def test_fingerprint_covers_the_external_mapping(split, tmp_path):
    root, mapping = split
    plain = dataset_fingerprint(root)
    with_mapping = dataset_fingerprint(root, modality_json=mapping)
    assert plain["modality_json"] is None
    assert with_mapping["modality_json"]["path"] == str(mapping.resolve())
    assert with_mapping["fingerprint"] != plain["fingerprint"]
    assert with_mapping["files"] == plain["files"] and with_mapping["bytes"] == plain["bytes"]
    edited = tmp_path / "edited.json"
    edited.write_text(mapping.read_text() + " ")  # bytes count, as for the dataset's own files
    assert dataset_fingerprint(root, modality_json=edited)["fingerprint"] != with_mapping["fingerprint"]
    copy = tmp_path / "same bytes.json"
    shutil.copyfile(mapping, copy)
    assert dataset_fingerprint(root, modality_json=copy)["fingerprint"] == with_mapping["fingerprint"]


# ------------------------------------------------------------------------------------------------------ shards


def test_shards_with_the_external_mapping_equal_those_of_the_dataset_with_its_own(original, split, demo_cfg,
                                                                                    tmp_path, capsys):
    from groot_ft.cli import main as cli_main

    root, mapping = split
    before = tree_digest(root)
    ours, reference = tmp_path / "ours out", tmp_path / "reference"
    common = ["--modality-config", str(DEMO_CONFIG), "--image-edge", "48", "--shard-size", "64", "--seed", "3"]
    assert cli_main(["shards", str(root), "--modality-json", str(mapping), "--out", str(ours), *common]) == 0
    assert f"modality mapping: {mapping} (modality_json_path" in capsys.readouterr().out
    assert cli_main(["shards", str(original), "--out", str(reference), *common]) == 0
    shard_files = sorted(p.name for p in reference.glob("shard_*.arrow"))
    assert shard_files and sorted(p.name for p in ours.glob("shard_*.arrow")) == shard_files
    for name in shard_files:
        assert (ours / name).read_bytes() == (reference / name).read_bytes()
    assert json.loads((ours / "manifest.json").read_text())["modality_json"] == str(mapping.resolve())

    # without the mapping: a clear error naming the missing file, exit 2, no traceback
    assert cli_main(["shards", str(root), "--out", str(tmp_path / "none"), *common]) == 2
    assert "meta/modality.json: file is missing" in capsys.readouterr().err
    assert tree_digest(root) == before


def test_a_flag_that_contradicts_the_run_description_is_refused(split, tmp_path, capsys):
    from groot_ft.cli import main as cli_main

    root, mapping = split
    cfg = FinetuneConfig.from_dict({"dataset": str(root), "modality_json_path": str(mapping), **MODALITY})
    run = RunDescription.resolve(cfg, cfg.dataset_specs(), {"": [0, 1, 2, 3]},
                                 {"": {"stats_dir": "s", "shards_dir": "t", "eval_shards_dir": None}}, str(tmp_path))
    run.save(tmp_path / "run.json")
    other = tmp_path / "other.json"
    shutil.copyfile(mapping, other)
    rc = cli_main(["shards", str(root), "--modality-config", str(DEMO_CONFIG), "--out", str(tmp_path / "s"),
                   "--image-edge", "48", "--split", "train", "--run", str(tmp_path / "run.json"),
                   "--modality-json", str(other)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"--modality-json {other} differs from the mapping the run description records" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------------ inspect


def test_inspect_reads_the_external_mapping_and_records_it(split, tmp_path, capsys):
    from groot_ft.cli import main as cli_main

    root, mapping = split
    before = tree_digest(root)
    stats = tmp_path / "stats dir"
    assert stats_main([str(root), "--modality-config", str(DEMO_CONFIG), "--modality-json", str(mapping),
                       "--out", str(stats), "--no-cache", "--no-report"]) == 0
    out = tmp_path / "inspect out"
    rc = cli_main(["inspect", "--base-model", "tiny", "--dataset", str(root), "--embodiment-tag", "new_embodiment",
                   "--modality-config", str(DEMO_CONFIG), "--modality-json", str(mapping), "--stats", str(stats),
                   "--episode", "1", "--step", "3", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert f"modality mapping: {mapping} (modality_json_path" in (out / "provenance.txt").read_text()
    assert (out / "inputs.safetensors").is_file() and list((out / "images").glob("*.png"))
    assert tree_digest(root) == before


def test_package_keeps_the_recorded_mapping_when_the_dataset_is_passed_again(split, tmp_path):
    import yaml

    from groot_ft.package import PackageError, trained_datasets

    root, mapping = split
    out = tmp_path / "run"
    (out / "experiment_cfg").mkdir(parents=True)
    conf = {"data": {"datasets": [{"path": str(root), "modality_json_path": str(mapping)}]}}
    (out / "experiment_cfg" / "conf.yaml").write_text(yaml.safe_dump(conf))
    assert trained_datasets(out) == [(root, mapping)]
    assert trained_datasets(out, [str(root)]) == [(root, mapping)]  # not silently forgotten
    other = tmp_path / "moved.json"
    assert trained_datasets(out, [str(root)], [str(other)]) == [(root, other)]
    assert trained_datasets(out, [str(root)], ["-"]) == [(root, None)]
    with pytest.raises(PackageError, match="1 --modality-json for 2 --dataset"):
        trained_datasets(out, [str(root), str(root)], [str(other)])
    with pytest.raises(PackageError, match="--modality-json goes with --dataset"):
        trained_datasets(out, None, [str(other)])
