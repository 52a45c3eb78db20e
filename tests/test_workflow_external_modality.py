"""Issue 15's day one, as a user with a plain LeRobot v2.1 export meets it: a Unitree G1-shaped dataset with nested
`names` and no meta/modality.json goes `groot-ft validate` (its only finding: the missing mapping, whose hint names
`modality init`) -> `groot-ft modality init` (groups split by joint names) -> the whole workflow with the mapping kept
outside the dataset (modality_json_path), under paths with spaces, to the packaged model, without a byte of the
dataset changing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_workflow
from tests.data.g1_export import G1_GROUPS, write_g1_export

pytestmark = pytest.mark.slow


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def chmod_tree(root: Path, read_only: bool) -> None:
    # read-only for the run, so a write into the dataset fails (unless the tests run as root; the digests catch it)
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        os.chmod(p, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) if read_only else mode | stat.S_IWUSR)


def test_plain_export_from_validate_to_package_with_the_mapping_outside(demo_dataset, tmp_path):
    dataset = write_g1_export(demo_dataset, tmp_path / "robot data" / "plain export")
    maps = tmp_path / "mapping files"
    config, mapping = maps / "g1 modality.yaml", maps / "g1 modality.json"
    out = tmp_path / "run output" / "my run"
    before = tree_digest(dataset)
    chmod_tree(dataset, True)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}

    def groot_ft(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bindir / "groot-ft"), *args], env=env, capture_output=True, text=True, timeout=300)

    # 1. validate: the only finding is the missing mapping, and its hint is the command that proposes one
    report = tmp_path / "report.json"
    checked = groot_ft("validate", str(dataset), "--report", str(report))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    judged = json.loads(report.read_text())
    findings = judged["errors"] + judged["warnings"]  # nested names are no finding at all
    assert [(f["code"], f["file"]) for f in findings] == [("META_MISSING", "meta/modality.json")], findings
    assert "groot-ft modality init" in findings[0]["hint"] and "modality_json_path" in findings[0]["hint"]

    # 2. modality init: groups from the nested joint names, written outside the dataset
    maps.mkdir()
    proposed = groot_ft("modality", "init", str(dataset), "--out-config", str(config), "--out-modality-json", str(mapping))
    assert proposed.returncode == 0, proposed.stderr
    state = json.loads(mapping.read_text())["state"]
    assert {k: (v["start"], v["end"]) for k, v in state.items()} == G1_GROUPS
    assert yaml.safe_load(config.read_text())["state"]["modality_keys"] == list(G1_GROUPS)

    # 3. the whole workflow (the demo's small training settings; the user's dataset, config and mapping)
    try:
        run_workflow(["--configfile", "config/demo.yaml", "--config", f"output_dir={out}", f"dataset={dataset}",
                      f"modality_config_path={config}", f"modality_json_path={mapping}", "max_steps=10",
                      "save_steps=10", "logging_steps=5", "eval_episodes=1", "eval_steps=10",
                      "open_loop_eval_episodes=1", "main_process_port=29581"], out)
    finally:
        chmod_tree(dataset, False)

    # the dataset is exactly as it was: no meta/modality.json written into it, no stats, nothing
    assert tree_digest(dataset) == before
    assert not (dataset / "meta" / "modality.json").exists()

    # every stage read the external mapping, and its log says so
    report = json.loads((out / "validation" / "report.json").read_text())
    assert report["ok"] and report["modality_json"] == str(mapping) and report["modality_json_external"]
    said = f"modality mapping: {mapping} (modality_json_path"
    for log in ("validate.log", "stats.log", "run_config.log", "shards_train.log", "shards_eval.log",
                "finetune.log", "eval_open_loop.log"):
        assert said in (out / "logs" / log).read_text(), f"logs/{log} does not name the mapping it used"
    assert f"modality mapping: {mapping.resolve()}" in (out / "logs" / "package.log").read_text()
    run = json.loads((out / "experiment_cfg" / "run.json").read_text())
    assert [d["modality_json_path"] for d in run["datasets"]] == [str(mapping)]
    assert json.loads((out / "shards" / "train" / "manifest.json").read_text())["modality_json"] == str(mapping)
    assert set(json.loads((out / "stats" / "relative_stats.json").read_text())) == {"left_arm", "right_arm"}

    # the packaged model, with the mapping fingerprinted beside the dataset
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"][0]["modality_json"]["path"] == str(mapping)
    assert (out / "release" / "model.safetensors").is_file() and (out / "eval" / "open_loop" / "metrics.json").is_file()
    assert str(mapping) in (out / "README.md").read_text()
    verify = subprocess.run([str(bindir / "groot-ft"), "verify", str(out)], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
