"""Shared fixtures: the real upstream reference dataset (read in place) and small generated demo datasets; and
:func:`run_workflow`, which the whole-workflow tests run Snakemake with."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GR1 = (PROJECT_ROOT / ".." / "shared" / "datasets" / "gr1.PickNPlace").resolve()
DEMO_MODALITY = PROJECT_ROOT / "config" / "modality" / "demo.yaml"
GR1_MODALITY = PROJECT_ROOT / "config" / "modality" / "gr1.yaml"
BIN = Path(sys.executable).parent  # this environment's tools: snakemake, accelerate, groot-ft


def tools_env() -> dict[str, str]:
    """The environment with this venv's tools first on PATH, as the workflow's shell rules need them."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def run_workflow(args: list[str], out: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    """``snakemake --cores 2 --snakefile workflow/Snakefile *args`` from the project root; a failed run fails the test
    with Snakemake's stderr and the end of every rule log under ``out/logs``."""
    snakemake = shutil.which("snakemake", path=str(BIN)) or "snakemake"
    cmd = [snakemake, "--cores", "2", "--snakefile", "workflow/Snakefile", *args]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=tools_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p.relative_to(out)}\n{p.read_text()[-4000:]}"
                         for p in sorted((out / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{logs}")
    return proc


@pytest.fixture(scope="session")
def gr1_dataset() -> Path:
    if not (GR1 / "meta" / "info.json").is_file():
        pytest.skip(f"gr1.PickNPlace reference dataset not found at {GR1}; skipping")
    return GR1


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small demo dataset generated once per session; treat as read-only (copy it to modify)."""
    from groot_ft.data.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "dataset", episodes=6, seed=0)


@pytest.fixture
def demo_copy(demo_dataset, tmp_path) -> Path:
    dst = tmp_path / "dataset"
    shutil.copytree(demo_dataset, dst)
    return dst
