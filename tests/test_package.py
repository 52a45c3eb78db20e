"""package and verify on a real (2-step, 2-process DeepSpeed) training run: model card, manifest provenance, release
copy without optimizer states, and verify naming every damaged, missing or unlisted file."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from groot_ft import manifest as mf
from groot_ft.cli import main as cli
from tests.conftest import PROJECT_ROOT
from tests.test_policy import observation
from tests.test_train import _run, prepared  # noqa: F401 - the module fixture that builds stats and shards

PORT = 29812


@pytest.fixture(scope="module")
def packaged(prepared, tmp_path_factory) -> Path:  # noqa: F811
    dataset, root = prepared
    out = tmp_path_factory.mktemp("packaged") / "run"
    _run(dataset, root, out, PORT, max_steps=2, save_steps=2, logging_steps=1)
    assert cli(["package", str(out), "--stats", str(root / "stats")]) == 0
    return out


@pytest.fixture
def damaged(packaged, tmp_path) -> Path:
    """A copy of the packaged run to break (copytree copies hard links as separate files)."""
    return Path(shutil.copytree(packaged, tmp_path / "run"))


def _verify(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli(["verify", str(path)])
    return code, capsys.readouterr().out


def test_verify_passes_on_a_fresh_package(packaged, capsys):
    code, out = _verify(packaged, capsys)
    assert code == 0, out
    manifest = json.loads((packaged / "manifest.json").read_text())
    assert out.startswith(f"OK: {len(manifest['artifacts'])} artifacts")
    assert f"{manifest['release']['files']} in release/" in out


def test_manifest_records_provenance(packaged, prepared):  # noqa: F811
    dataset, _ = prepared
    manifest = json.loads((packaged / "manifest.json").read_text())
    cfg = yaml.safe_load((packaged / "experiment_cfg" / "config.yaml").read_text())
    canonical = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert manifest["config_hash"] == hashlib.sha256(canonical).hexdigest()
    assert manifest["dataset_fingerprint"] == mf.dataset_fingerprint(dataset)["fingerprint"]
    [entry] = manifest["datasets"]
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert (entry["total_episodes"], entry["total_frames"]) == (info["total_episodes"], info["total_frames"])
    assert entry["files"] == len(mf.dataset_files(dataset))
    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (PROJECT_ROOT / "src" / "groot_ft").resolve() == Path(mf.__file__).resolve().parent:
        assert manifest["git_commit"] == head.stdout.strip()
    import torch
    import transformers

    versions = manifest["package_versions"]
    assert versions["torch"] == torch.__version__ and versions["transformers"] == transformers.__version__
    assert versions["python"] == platform.python_version() and versions["groot-ft"]
    assert set(mf.VERSIONED_PACKAGES) <= set(versions)
    assert manifest["metrics"]["final_step"] == 2 and np.isfinite(manifest["metrics"]["final_loss"])
    for rel, entry in manifest["artifacts"].items():
        assert hashlib.sha256((packaged / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert not any("training_state" in rel or rel.startswith(("logs/", "release/")) for rel in manifest["artifacts"])
    assert {"README.md", "model.safetensors", "plots/loss.png", "checkpoint-2/model.safetensors"} <= set(
        manifest["artifacts"])
    release_sha = hashlib.sha256((packaged / "release" / "manifest.json").read_bytes()).hexdigest()
    assert manifest["release"]["manifest_sha256"] == release_sha


def test_model_card(packaged, prepared):  # noqa: F811
    dataset, _ = prepared
    card = (packaged / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "groot-ft" and {"robotics", "gr00t", "lerobot"} <= set(front["tags"])
    manifest = json.loads((packaged / "manifest.json").read_text())
    for text in (manifest["dataset_fingerprint"], manifest["config_hash"], str(dataset.resolve()),
                 '`["front", "wrist"]`', "annotation.human.task_description", "AutoModel.from_pretrained",
                 "policy.get_action(observation)", 'embodiment_tag="new_embodiment"', '"arm": (16, 3)',
                 f"{manifest['metrics']['final_loss']:.6g}"):
        assert text in card, text
    assert (packaged / "release" / "README.md").read_text() == card


def test_release_loads_without_optimizer_state(packaged):
    import groot_ft  # noqa: F401
    from transformers import AutoModel

    from groot_ft.policy import Gr00tPolicy

    release = packaged / "release"
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "processor_config.json", "statistics.json", "embodiment_id.json",
            "experiment_cfg/config.yaml", "README.md", "manifest.json"} <= files
    assert not [f for f in files if "training_state" in f or "checkpoint-" in f or "optim" in f]
    assert "training_log.jsonl" not in files and "wandb_config.json" not in files
    # same filesystem: the release shares the weights' bytes instead of copying them
    assert (release / "model.safetensors").stat().st_ino == (packaged / "model.safetensors").stat().st_ino
    assert type(AutoModel.from_pretrained(release)).__name__ == "Gr00tN1d6"
    action = Gr00tPolicy(release, "new_embodiment", device="cpu").get_action(observation(batch=None))
    assert action["arm"].shape == (16, 3) and all(np.isfinite(a).all() for a in action.values())


def test_release_shipped_alone_verifies(packaged, tmp_path, capsys):
    shipped = Path(shutil.copytree(packaged / "release", tmp_path / "shipped"))
    code, out = _verify(shipped, capsys)
    assert code == 0, out
    (shipped / "tokenizer.json").write_text("{}")
    code, out = _verify(shipped, capsys)
    assert code == 1 and "  - tokenizer.json: changed" in out


def test_verify_names_every_problem(damaged, capsys):
    weights = damaged / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    (damaged / "processor" / "statistics.json").unlink()
    (damaged / "release" / "config.json").unlink()
    (damaged / "notes.txt").write_text("written after packaging")
    (damaged / "release" / "checkpoint-2" / "training_state").mkdir(parents=True)
    (damaged / "release" / "checkpoint-2" / "training_state" / "optim_states.pt").write_bytes(b"x")
    code, out = _verify(damaged, capsys)
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    expected = {
        "model.safetensors: changed: sha256": "restore it",
        "processor/statistics.json: missing": "restore it",
        "release/config.json: missing": "restore it",
        "notes.txt: not listed": "delete it",
        "release/checkpoint-2/training_state/optim_states.pt: optimizer": "delete it",
    }
    for start, hint in expected.items():
        assert any(p.startswith(f"  - {start}") and hint in p for p in problems), (start, out)
    assert out.startswith(f"FAILED: {len(problems)} problem(s)")


def test_verify_ignores_snakemake_directory_markers(damaged, capsys):
    (damaged / "release" / ".snakemake_timestamp").touch()  # Snakemake marks directory() outputs this way
    code, out = _verify(damaged, capsys)
    assert code == 0, out


def test_verify_checks_the_release_manifest_itself(damaged, capsys):
    manifest = json.loads((damaged / "release" / "manifest.json").read_text())
    manifest["artifacts"].pop("config.json")
    (damaged / "release" / "manifest.json").write_text(json.dumps(manifest))
    code, out = _verify(damaged, capsys)
    assert code == 1
    assert "release/manifest.json: differs from the one the run manifest records" in out
    assert "release/config.json: not listed" in out


def test_verify_without_manifest(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    code, out = _verify(tmp_path, capsys)
    assert code == 1 and f"{tmp_path / 'manifest.json'}: missing; run `groot-ft package {tmp_path}`" in out


def test_repackaging_is_deterministic_and_bad_input_changes_nothing(damaged, prepared, capsys):  # noqa: F811
    _, root = prepared
    before = json.loads((damaged / "manifest.json").read_text())
    assert cli(["package", str(damaged), "--stats", str(root / "stats")]) == 0
    after = json.loads((damaged / "manifest.json").read_text())
    assert after["artifacts"] == before["artifacts"]
    assert {k: v for k, v in after.items() if k not in ("created", "release")} == {
        k: v for k, v in before.items() if k not in ("created", "release")}
    snapshot = {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file() and "logs" not in p.parts}
    capsys.readouterr()
    assert cli(["package", str(damaged), "--dataset", str(damaged / "nowhere")]) == 2  # bad input
    err = capsys.readouterr().err
    assert f"{damaged / 'nowhere'}: the run's dataset is not there" in err and "--dataset" in err
    assert {p: p.read_bytes() for p in damaged.rglob("*") if p.is_file() and "logs" not in p.parts} == snapshot


def test_mixture_runs_fingerprint_every_dataset(damaged, prepared, tmp_path, capsys):  # noqa: F811
    dataset, _ = prepared
    second = Path(shutil.copytree(dataset, tmp_path / "second"))
    (second / "meta" / "tasks.jsonl").write_text('{"task_index": 0, "task": "another task"}\n')
    conf_path = damaged / "experiment_cfg" / "conf.yaml"
    conf = yaml.safe_load(conf_path.read_text())
    conf["data"]["datasets"] = [{"path": str(dataset), "embodiment_tag": "new_embodiment"},
                                {"path": str(second), "embodiment_tag": "new_embodiment"}]
    conf_path.write_text(yaml.safe_dump(conf))
    assert cli(["package", str(damaged)]) == 0
    manifest = json.loads((damaged / "manifest.json").read_text())
    members = [mf.dataset_fingerprint(dataset)["fingerprint"], mf.dataset_fingerprint(second)["fingerprint"]]
    assert [d["fingerprint"] for d in manifest["datasets"]] == members and members[0] != members[1]
    assert manifest["dataset_fingerprint"] == mf.combined_fingerprint(manifest["datasets"]) not in members
    card = (damaged / "README.md").read_text()
    assert str(second.resolve()) in card and manifest["dataset_fingerprint"] in card
    assert _verify(damaged, capsys)[0] == 0


def test_run_description_names_the_datasets_and_stays_out_of_the_release(damaged, prepared, tmp_path, capsys):  # noqa: F811
    from groot_ft.config import RunDataset, RunDescription

    dataset, _ = prepared
    moved = Path(shutil.copytree(dataset, tmp_path / "moved dataset"))  # where the workflow says it is now
    entry = RunDataset("", str(moved), "new_embodiment", "config/modality/demo.yaml", 1.0, [0], [], "s", "t", None)
    RunDescription(str(damaged), [entry]).save(damaged / "experiment_cfg" / "run.json")
    assert cli(["package", str(damaged), "--run", str(damaged / "experiment_cfg" / "run.json")]) == 0
    manifest = json.loads((damaged / "manifest.json").read_text())
    assert [d["fingerprint"] for d in manifest["datasets"]] == [mf.dataset_fingerprint(moved)["fingerprint"]]
    assert str(moved.resolve()) in (damaged / "README.md").read_text()
    # this machine's paths are bookkeeping of the run directory, not part of the model handed on
    assert not (damaged / "release" / "experiment_cfg" / "run.json").exists()
    assert (damaged / "release" / "experiment_cfg" / "config.yaml").is_file()
    assert _verify(damaged, capsys)[0] == 0
    (damaged / "experiment_cfg" / "run.json").write_text("{}")
    capsys.readouterr()
    assert cli(["package", str(damaged), "--run", str(damaged / "experiment_cfg" / "run.json")]) == 2
    assert "run.json: not a version 1 run description" in capsys.readouterr().err


def test_dataset_fingerprint_follows_content(demo_copy, tmp_path):
    first = mf.dataset_fingerprint(demo_copy)
    assert mf.dataset_fingerprint(demo_copy) == first  # stable
    moved = Path(shutil.copytree(demo_copy, tmp_path / "elsewhere"))
    assert mf.dataset_fingerprint(moved)["fingerprint"] == first["fingerprint"]  # bytes count, not paths or mtimes
    episode = sorted((demo_copy / "data").rglob("*.parquet"))[1]
    table = pq.read_table(episode)
    column = table.column_names.index("action")
    values = table.column("action").to_pylist()
    values[0] = [v + 0.5 for v in values[0]]
    pq.write_table(table.set_column(column, "action", pa.array(values, table.schema.field("action").type)), episode)
    changed = mf.dataset_fingerprint(demo_copy)
    assert changed["fingerprint"] != first["fingerprint"] and changed["files"] == first["files"]


def test_config_hash_ignores_yaml_layout(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("max_steps: 2\nlearning_rate: 0.0003\ntune_llm: false\n")
    b.write_text("# reformatted\ntune_llm: no\nlearning_rate: 3.0e-4\nmax_steps:   2\n")
    assert mf.config_hash(a) == mf.config_hash(b)
    b.write_text("tune_llm: false\nlearning_rate: 3.0e-4\nmax_steps: 3\n")
    assert mf.config_hash(a) != mf.config_hash(b)


def test_git_info_outside_a_checkout(tmp_path):
    pkg = tmp_path / "site-packages" / "groot_ft"
    pkg.mkdir(parents=True)
    info = mf.git_info(pkg)
    assert info["commit"] is None and info["dirty"] is None and info["reason"].startswith(f"{pkg.resolve()} is not in")


def test_manifest_and_card_record_the_model_family(packaged):
    manifest = json.loads((packaged / "manifest.json").read_text())
    assert manifest["model_family"] == {"model_type": "Gr00tN1d6", "family": "GR00T N1.6"}
    release = json.loads((packaged / "release" / "manifest.json").read_text())
    assert release["model_family"] == manifest["model_family"]
    card = (packaged / "README.md").read_text()
    assert "A GR00T N1.6 vision-language-action policy (`Gr00tN1d6`" in card
    assert "gr00t-n1.6" in yaml.safe_load(card.split("---\n")[1])["tags"]


def test_an_n17_run_is_recorded_as_n17(damaged):
    """The family comes from the output's config.json model_type (an N1.7 run writes Gr00tN1d7)."""
    from groot_ft.model_card import render_model_card

    config = json.loads((damaged / "config.json").read_text())
    (damaged / "config.json").write_text(json.dumps({**config, "model_type": "Gr00tN1d7"}))
    assert mf.model_family(damaged) == {"model_type": "Gr00tN1d7", "family": "GR00T N1.7"}
    manifest = {**json.loads((damaged / "manifest.json").read_text()), "model_family": mf.model_family(damaged)}
    card = render_model_card(damaged, manifest)
    assert "A GR00T N1.7 vision-language-action policy (`Gr00tN1d7`" in card
    assert "gr00t-n1.7" in yaml.safe_load(card.split("---\n")[1])["tags"]
    (damaged / "config.json").write_text(json.dumps({**config, "model_type": None}))
    with pytest.raises(mf.ManifestError, match="no model_type"):
        mf.model_family(damaged)
