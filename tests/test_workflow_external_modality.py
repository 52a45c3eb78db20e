"""A plain LeRobot export (no meta/modality.json) whose GR00T mapping lives in a separate file (modality_json_path),
under paths with spaces, through the whole workflow to the packaged model, without a byte of the dataset changing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def chmod_tree(root: Path, read_only: bool) -> None:
    # read-only for the run, so a write into the dataset fails (unless the tests run as root; the digests catch it)
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        os.chmod(p, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) if read_only else mode | stat.S_IWUSR)


def test_external_mapping_and_paths_with_spaces_end_to_end(tmp_path):
    from groot_ft.data.demo import write_demo_dataset

    dataset = write_demo_dataset(tmp_path / "robot data" / "plain export", episodes=8, seed=0)
    mapping = tmp_path / "mapping files" / "demo modality.json"
    mapping.parent.mkdir()
    shutil.move(dataset / "meta" / "modality.json", mapping)
    out = tmp_path / "run output" / "my run"
    before = tree_digest(dataset)
    chmod_tree(dataset, True)

    bindir = Path(sys.executable).parent
    snakemake = shutil.which("snakemake", path=str(bindir)) or "snakemake"
    cmd = [snakemake, "--cores", "2", "--snakefile", "workflow/Snakefile", "--config", f"output_dir={out}",
           f"dataset={dataset}", f"modality_json_path={mapping}", "max_steps=10", "save_steps=10", "logging_steps=5",
           "eval_episodes=1", "eval_steps=10", "open_loop_eval_episodes=1", "main_process_port=29541"]
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    try:
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        chmod_tree(dataset, False)
    if proc.returncode:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((out / "logs").glob("*.log")))
        pytest.fail(f"snakemake failed:\n{proc.stderr[-3000:]}\n{logs}")

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
    assert (out / "stats" / "relative_stats.json").is_file()

    # the packaged model, with the mapping fingerprinted beside the dataset
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"][0]["modality_json"]["path"] == str(mapping)
    assert (out / "release" / "model.safetensors").is_file() and (out / "eval" / "open_loop" / "metrics.json").is_file()
    assert str(mapping) in (out / "README.md").read_text()
    verify = subprocess.run([str(bindir / "groot-ft"), "verify", str(out)], env=env, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
