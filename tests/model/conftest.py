"""Shared fixtures for the model tests: the tiny preset and synthetic processed samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import groot_ft.model as gm


def _make_sample(
    rng: np.random.Generator,
    *,
    text: str = "pick the pear from the counter",
    num_images: int = 2,
    image_hw: tuple[int, int] = (48, 48),
    state_steps: int = 1,
    action_dims: int = 7,
    action_steps: int = 16,
    embodiment_id: int = 10,
    with_action: bool = True,
) -> dict:
    """A sample shaped like the project's processor output (tiny preset sizes: 32 dims, horizon 16)."""
    state = np.zeros((state_steps, 32), np.float32)
    state[:, :action_dims] = rng.uniform(-1, 1, (state_steps, action_dims))
    sample = {
        "state": state,
        "images": rng.integers(0, 256, (num_images, 3, *image_hw), dtype=np.uint8),
        "text": text,
        "embodiment_id": embodiment_id,
    }
    if with_action:
        action = np.zeros((16, 32), np.float32)
        mask = np.zeros_like(action)
        steps = np.cumsum(rng.normal(size=(action_steps, action_dims)) * 0.2, axis=0)
        action[:action_steps, :action_dims] = np.clip(steps, -1, 1)
        mask[:action_steps, :action_dims] = 1.0
        sample["action"], sample["action_mask"] = action, mask
    return sample


@pytest.fixture
def make_sample():
    """The sample factory, as a fixture so test modules need no imports from this folder."""
    return _make_sample


@pytest.fixture(scope="session")
def tokenizer():
    return gm.build_tokenizer()


@pytest.fixture
def tiny():
    """A fresh tiny model (seeded, so identical every time) and its tokenizer."""
    return gm.create_model("tiny")


@pytest.fixture
def collator(tokenizer):
    return gm.Gr00tCollator(tokenizer, gm.preset("tiny"))


@pytest.fixture
def batch(collator):
    rng = np.random.default_rng(0)
    texts = ["pick the pear", "place the sweet potato in the plate", "open the drawer"]
    return collator([_make_sample(rng, text=t, embodiment_id=i) for i, t in enumerate(texts)])


@pytest.fixture(autouse=True)
def _seed_and_single_thread():
    # One intra-op thread: the tiny model's ops are too small to gain from more, and on a busy 2-core machine
    # (CI runs other jobs) extra threads spin and make these tests several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
