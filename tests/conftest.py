"""Shared fixtures: the real upstream reference dataset (read in place) and small generated demo datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GR1 = (PROJECT_ROOT / ".." / "shared" / "datasets" / "gr1.PickNPlace").resolve()
DEMO_MODALITY = PROJECT_ROOT / "config" / "modality" / "demo.yaml"
GR1_MODALITY = PROJECT_ROOT / "config" / "modality" / "gr1.yaml"


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
