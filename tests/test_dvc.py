"""DVC around the Snakemake workflow (dvc.yaml): tracked dataset, incremental reruns, persisted checkpoints, push/pull.

Everything runs in a temporary git repository holding a copy of the project's committed DVC files (dvc.yaml,
.dvcignore, .dvc/config), workflow/, config/, envs/ and src/ (the code that runs is the installed groot_ft): a fresh
clone. Its first `dvc repro` runs the shipped demo pipeline; the repository is then switched to a dataset tracked
with `dvc add`, as the README tells a user to do with their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DATASET = "data/demo_dataset"  # the defaults in dvc.yaml's vars
RUN = "results/dvc"
INTERMEDIATES = ("validation", "stats", "stats_mixture", "shards", ".cache", "logs")
TINY = {"max_steps": 10, "save_steps": 5, "eval_steps": 5, "logging_steps": 5, "save_total_limit": 2,
        "num_gpus": 1, "global_batch_size": 8, "eval_episodes": 2, "open_loop_eval_episodes": 1,
        "main_process_port": 29711}


def sh(repo: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        logs = "".join(f"--- {p.name}\n{p.read_text()[-3000:]}\n" for p in sorted((repo / RUN / "logs").glob("*.log")))
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n"
                    f"{logs}")
    return proc


def set_config(repo: Path, name: str = "demo.yaml", **changes) -> None:
    """Edit a config file of the clone: by default the settings file dvc.yaml's finetune stage passes."""
    path = repo / "config" / name
    cfg = yaml.safe_load(path.read_text())
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def sha256_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tracked_run_files(repo: Path) -> dict[str, str]:
    """What DVC versions of the run directory: everything but the intermediates .dvcignore excludes."""
    return {k: v for k, v in sha256_tree(repo / RUN).items() if k.split("/")[0] not in INTERMEDIATES}


def stats_line(repo: Path) -> tuple[int, int, int]:
    found = re.search(r"stats: (\d+) episodes, (\d+) recomputed, (\d+) from cache",
                      (repo / RUN / "logs" / "stats.log").read_text())
    assert found, "the stats log has no summary line"
    return tuple(int(x) for x in found.groups())


def manifest(repo: Path, split: str) -> dict:
    return json.loads((repo / RUN / "shards" / split / "manifest.json").read_text())


def fingerprint(repo: Path) -> str:
    return json.loads((repo / RUN / "checkpoint-10" / "trainer_state.json").read_text())["inputs_fingerprint"]


def model_sha(repo: Path) -> str:
    return hashlib.sha256((repo / RUN / "model.safetensors").read_bytes()).hexdigest()


def nudge_actions(parquet: Path) -> None:
    """Edit one episode in place: same length and schema (the dataset stays valid), different action values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    i = table.schema.get_field_index("action")
    col = table.column(i).combine_chunks()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float32) * np.float32(1.05)
    new = pa.FixedSizeListArray.from_arrays(pa.array(values, type=col.type.value_type), type=col.type)
    pq.write_table(table.set_column(i, table.schema.field(i), new), parquet)


@pytest.fixture(scope="module")
def fresh_clone_repro(tmp_path_factory) -> tuple[Path, str]:
    """A fresh clone's first `dvc repro`, nothing else run before it (no `dvc init`: .dvc/ is committed)."""
    repo = tmp_path_factory.mktemp("dvc") / "project"
    repo.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("workflow", "config", "src", "envs"):
        shutil.copytree(PROJECT_ROOT / name, repo / name, symlinks=True, ignore=skip)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, repo / name)
    sh(repo, "git", "init", "-q")
    set_config(repo, **TINY)
    set_config(repo, "config.yaml", demo_episodes=8)
    return repo, sh(repo, "dvc", "repro").stdout


@pytest.fixture(scope="module")
def repo(fresh_clone_repro) -> Path:
    """The clone switched to a dataset the user tracks: the demo_dataset stage deleted from dvc.yaml, the dataset
    `dvc add`-ed in place (the README's steps for one's own dataset)."""
    repo, _ = fresh_clone_repro
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    del pipeline["stages"]["demo_dataset"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    sh(repo, "dvc", "add", "-q", DATASET)
    return repo


def test_fresh_clone_reproduces_the_demo_pipeline(fresh_clone_repro):
    repo, stdout = fresh_clone_repro
    assert "Running stage 'demo_dataset'" in stdout and "Running stage 'finetune'" in stdout
    assert len(list((repo / DATASET / "data" / "chunk-000").glob("episode_*.parquet"))) == 8
    config = yaml.safe_load((repo / RUN / "experiment_cfg" / "config.yaml").read_text())
    assert config["base_model_path"] == "tiny" and config["max_steps"] == 10  # the demo's settings file on top
    assert (repo / RUN / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def first(repo) -> dict:
    return {"model": model_sha(repo), "fingerprint": fingerprint(repo), "stats": stats_line(repo),
            "eval_episodes": manifest(repo, "eval")["episode_indices"]}


def test_dvc_versions_the_model_and_checkpoints_but_no_intermediate(repo, first):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["finetune"]
    assert [o["path"] for o in lock["outs"]] == [RUN]
    assert any(d["path"] == DATASET for d in lock["deps"])
    assert lock["params"]["config/demo.yaml"]["max_steps"] == 10
    # the directory listing DVC cached for the run directory
    md5 = lock["outs"][0]["md5"]
    listing = json.loads((repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())
    paths = {entry["relpath"] for entry in listing}
    for rel in ("model.safetensors", "config.json", "manifest.json", "processor_config.json",
                "checkpoint-10/model.safetensors", "checkpoint-10/trainer_state.json",
                "checkpoint-5/trainer_state.json",
                "experiment_cfg/config.yaml", "plots/loss.png", "eval/open_loop/metrics.json"):
        assert rel in paths, rel
    assert not {p for p in paths if p.split("/")[0] in INTERMEDIATES}
    assert (repo / RUN / "shards" / "train" / "manifest.json").is_file()  # Snakemake's, next to DVC's files
    assert first["stats"] == (8, 8, 0)


def test_repro_without_changes_is_a_no_op(repo, first):
    logs = {p.name: p.stat().st_mtime_ns for p in (repo / RUN / "logs").glob("*.log")}
    status = sh(repo, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout
    proc = sh(repo, "dvc", "repro")
    assert "didn't change, skipping" in proc.stdout and "Running stage" not in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (repo / RUN / "logs").glob("*.log")} == logs
    # DVC caching the outputs did not make Snakemake think anything is stale
    dry = sh(repo, "snakemake", "-n", "--snakefile", "workflow/Snakefile", "--configfile", "config/demo.yaml",
             "--config", f"dataset={DATASET}", f"output_dir={RUN}")
    assert "Nothing to be done" in dry.stdout, dry.stdout[-4000:]


@pytest.fixture(scope="module")
def episode_changed(repo, first) -> dict:
    changed = next(e for e in range(8) if e not in first["eval_episodes"])
    nudge_actions(repo / DATASET / "data" / "chunk-000" / f"episode_{changed:06d}.parquet")
    proc = sh(repo, "dvc", "repro")
    return {"stdout": proc.stdout, "episode": changed, "model": model_sha(repo), "fingerprint": fingerprint(repo)}


def test_changed_episode_redoes_only_its_work_and_retrains(repo, first, episode_changed):
    assert "Running stage 'finetune'" in episode_changed["stdout"]
    assert stats_line(repo) == (8, 1, 7)
    train, held = manifest(repo, "train"), manifest(repo, "eval")
    assert episode_changed["episode"] in train["episode_indices"]
    assert train["episodes_rebuilt"] == 1 and held["episodes_rebuilt"] == 0
    # the persisted checkpoints were trained on the old episode: they are dropped, not resumed at max_steps
    log = (repo / RUN / "logs" / "finetune.log").read_text()
    assert "training starts over" in log and "resuming from" not in log and "steps 0 -> 10" in log
    assert episode_changed["fingerprint"] != first["fingerprint"]
    assert episode_changed["model"] != first["model"]
    assert "Data and pipelines are up to date." in sh(repo, "dvc", "status").stdout


def test_weight_neutral_change_resumes_from_persisted_checkpoint(repo, episode_changed):
    stats_log = (repo / RUN / "logs" / "stats.log").stat().st_mtime_ns
    set_config(repo, main_process_port=29712)
    proc = sh(repo, "dvc", "repro")
    assert "Running stage 'finetune'" in proc.stdout
    log = (repo / RUN / "logs" / "finetune.log").read_text()
    assert "resuming from" in log and "already reaches max_steps=10" in log
    assert model_sha(repo) == episode_changed["model"]
    assert (repo / RUN / "logs" / "stats.log").stat().st_mtime_ns == stats_log  # nothing upstream reran


def test_push_pull_round_trip(repo, episode_changed, tmp_path):
    sh(repo, "dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"))
    sh(repo, "dvc", "push")
    run, data = tracked_run_files(repo), sha256_tree(repo / DATASET)
    shutil.rmtree(repo / RUN)
    shutil.rmtree(repo / DATASET)
    shutil.rmtree(repo / ".dvc" / "cache")
    sh(repo, "dvc", "pull")
    assert sha256_tree(repo / RUN) == run  # exactly the tracked files, and no intermediate
    assert sha256_tree(repo / DATASET) == data
    assert "Data and pipelines are up to date." in sh(repo, "dvc", "status").stdout
