"""Gr00tPolicy on a tiny model saved the way a training output directory looks.

The directory holds config.json + model.safetensors + tokenizer files (``save_model``) and the processor's
processor_config.json / statistics.json / embodiment_id.json, for the demo embodiment (config/modality/demo.yaml:
RELATIVE arm (3 dims) + ABSOLUTE gripper (1 dim), 16 action steps, cameras front + wrist) with synthetic statistics.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import groot_ft.model as gm
from groot_ft.modality import load_modality_config
from groot_ft.policy import Gr00tPolicy
from groot_ft.processor import Gr00tProcessor

ROOT = Path(__file__).resolve().parents[1]
DEMO_CFG = ROOT / "config" / "modality" / "demo.yaml"
TAG = "new_embodiment"
LANG = "annotation.human.task_description"
H = 16

ARM = {"min": [-1.0, -1.0, 0.0], "max": [1.0, 1.0, 2.0], "mean": [0.0, 0.5, 1.0], "std": [0.5, 0.25, 2.0],
       "q01": [-0.5, -0.8, 0.2], "q99": [0.5, 0.8, 1.8]}  # fmt: skip
GRIPPER = {"min": [0.0], "max": [0.08], "mean": [0.04], "std": [0.02], "q01": [0.01], "q99": [0.07]}


def _relative_arm() -> dict[str, list]:
    steps = np.arange(1, H + 1, dtype=np.float64)[:, None] * np.ones((1, 3))  # bounds widen with the step
    scale = {"min": -0.1, "max": 0.1, "q01": -0.05, "q99": 0.05, "mean": 0.01, "std": 0.02}
    return {name: (value * steps).tolist() for name, value in scale.items()}


STATS = {TAG: {"state": {"arm": ARM, "gripper": GRIPPER},
               "action": {"arm": copy.deepcopy(ARM), "gripper": copy.deepcopy(GRIPPER)},
               "relative_action": {"arm": _relative_arm()}}}  # fmt: skip


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("output_dir")
    model, tokenizer = gm.create_model("tiny")
    with torch.no_grad():  # give the untrained decoder a clearly non-zero output so unit checks are meaningful
        model.action_head.action_decoder.layer2.b.normal_(0.0, 2.0)
    gm.save_model(model, tokenizer, out)
    cfg = model.config
    processor = Gr00tProcessor(
        {TAG: load_modality_config(DEMO_CFG)},
        STATS,
        max_state_dim=cfg.max_state_dim,
        max_action_dim=cfg.max_action_dim,
        max_action_horizon=cfg.action_horizon,
        shortest_image_edge=cfg.image_size,
        use_relative_action=True,
    )
    processor.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def observation(batch: int | None = 2, seed: int = 0, arm=(0.2, -0.3, 1.0), gripper=0.03) -> dict:
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    n = 1 if batch is None else batch
    arm_state = np.broadcast_to(np.asarray(arm, np.float32), (n, 1, 3)).copy()
    grip_state = np.full((n, 1, 1), gripper, np.float32)
    obs = {
        "video": {cam: rng.integers(0, 256, (*lead, 1, 64, 80, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": arm_state if batch else arm_state[0], "gripper": grip_state if batch else grip_state[0]},
        "language": {LANG: [["Pick up the red cube"]] * n if batch else ["Pick up the red cube"]},
    }
    return obs


def test_output_dir_layout(output_dir):
    names = {p.name for p in output_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "processor_config.json", "statistics.json",
            "embodiment_id.json"} <= names  # fmt: skip
    assert json.loads((output_dir / "embodiment_id.json").read_text())[TAG] == 10


def test_batched_shapes_per_group(output_dir):
    policy = Gr00tPolicy(output_dir, TAG, device="cpu")
    actions = policy.get_action(observation(batch=3))
    assert set(actions) == {"arm", "gripper"}
    assert actions["arm"].shape == (3, H, 3) and actions["gripper"].shape == (3, H, 1)
    assert actions["arm"].dtype == np.float32 and actions["gripper"].dtype == np.float32
    assert all(np.isfinite(a).all() for a in actions.values())


def test_single_observation(output_dir):
    policy = Gr00tPolicy(output_dir, TAG, device="cpu", seed=5)
    single = policy.get_action(observation(batch=None))
    assert single["arm"].shape == (H, 3) and single["gripper"].shape == (H, 1)
    batched = Gr00tPolicy(output_dir, TAG, device="cpu", seed=5).get_action(observation(batch=1))
    np.testing.assert_array_equal(single["arm"], batched["arm"][0])  # same observation, same seed
    np.testing.assert_array_equal(single["gripper"], batched["gripper"][0])


def test_relative_arm_actions_are_made_absolute(output_dir):
    """With the network made blind to the state, shifting the arm state shifts every arm action by the same offset
    (RELATIVE: action = state[last] + unnormalised delta); the ABSOLUTE gripper does not move."""

    def blind(policy):
        enc = policy.model.action_head.state_encoder.layer2
        with torch.no_grad():
            enc.W.zero_()  # state features become the constant bias: the prediction no longer depends on the state
        return policy

    offset = np.array([0.25, -0.4, 0.5], np.float32)
    base = blind(Gr00tPolicy(output_dir, TAG, device="cpu", seed=1)).get_action(observation(arm=(0.1, 0.2, 0.9)))
    moved = blind(Gr00tPolicy(output_dir, TAG, device="cpu", seed=1)).get_action(
        observation(arm=(0.1 + offset[0], 0.2 + offset[1], 0.9 + offset[2]))
    )
    np.testing.assert_allclose(moved["arm"] - base["arm"], np.broadcast_to(offset, base["arm"].shape), atol=1e-5)
    np.testing.assert_array_equal(moved["gripper"], base["gripper"])
    assert np.abs(base["arm"][0, 0] - np.array([0.1, 0.2, 0.9])).max() <= 0.1 + 1e-6  # step 1: |delta| <= 0.1


def test_actions_are_in_physical_units_within_statistics(output_dir):
    policy = Gr00tPolicy(output_dir, TAG, device="cpu", seed=2)
    obs = observation(batch=4, arm=(0.5, -0.5, 1.5))
    actions = policy.get_action(obs)
    rel = _relative_arm()
    delta = actions["arm"] - obs["state"]["arm"][:, -1:, :]  # relative part, per horizon step
    assert (delta >= np.asarray(rel["min"]) - 1e-5).all() and (delta <= np.asarray(rel["max"]) + 1e-5).all()
    grip = actions["gripper"]
    assert (grip >= GRIPPER["min"][0] - 1e-7).all() and (grip <= GRIPPER["max"][0] + 1e-7).all()
    # the untrained decoder (bias ~ N(0, 2)) saturates many outputs: clipping to [-1, 1] puts them on the bounds
    clipped = np.isclose(np.abs(delta), np.asarray(rel["max"]))
    assert clipped.any() and not clipped.all()
    assert (np.isclose(grip, 0.08) | np.isclose(grip, 0.0)).any()
    # not normalised values: the arm follows the state (z around 1.5), far outside [-1, 1] would be impossible
    assert np.abs(actions["arm"][..., 2] - 1.5).max() <= 1.6 + 1e-5


def test_device_choice_cpu(output_dir):
    policy = Gr00tPolicy(output_dir, TAG, device="cpu")
    assert policy.device == torch.device("cpu")
    assert {p.device.type for p in policy.model.parameters()} == {"cpu"}
    assert {p.dtype for p in policy.model.parameters()} == {torch.float32}
    assert not policy.model.training and not policy.processor.training


def test_unknown_embodiment_raises_key_error(output_dir):
    with pytest.raises(KeyError) as info:
        Gr00tPolicy(output_dir, "gr1", device="cpu")
    message = str(info.value)
    assert "'gr1'" in message and "new_embodiment" in message and "fine-tune" in message


def test_embodiment_tag_enum_spelling(output_dir):
    policy = Gr00tPolicy(output_dir, "NEW_EMBODIMENT", device="cpu")
    assert policy.embodiment_tag == TAG


def test_determinism_with_a_seed(output_dir):
    obs = observation(batch=2, seed=3)
    a = Gr00tPolicy(output_dir, TAG, device="cpu", seed=7)
    b = Gr00tPolicy(output_dir, TAG, device="cpu", seed=7)
    first_a, first_b = a.get_action(obs), b.get_action(obs)
    for key in first_a:
        np.testing.assert_array_equal(first_a[key], first_b[key])
    second_a, second_b = a.get_action(obs), b.get_action(obs)  # the sequence of draws is reproducible too
    for key in second_a:
        np.testing.assert_array_equal(second_a[key], second_b[key])
    assert not np.array_equal(first_a["arm"], second_a["arm"])  # fresh noise on every call
    other = Gr00tPolicy(output_dir, TAG, device="cpu", seed=8).get_action(obs)
    assert not np.array_equal(other["arm"], first_a["arm"])


def test_policy_over_a_model_in_memory_acts_like_the_saved_one(output_dir):
    """``Gr00tPolicy.from_model`` (a model still in memory, e.g. right after training) gives the same actions as
    loading the same weights from the output directory."""
    obs = observation(batch=2, seed=4)
    loaded = Gr00tPolicy(output_dir, TAG, device="cpu", seed=3)
    model, tokenizer = gm.create_model(output_dir, bf16_weights=False)
    model.train()  # the policy must put it into eval mode itself
    in_memory = Gr00tPolicy.from_model(model, tokenizer, Gr00tProcessor.from_pretrained(output_dir), "NEW_EMBODIMENT",
                                       seed=3)
    assert in_memory.embodiment_tag == TAG and in_memory.model_path is None
    assert not in_memory.model.training and not in_memory.processor.training
    expected, got = loaded.get_action(obs), in_memory.get_action(obs)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    with pytest.raises(KeyError, match="'gr1'.*new_embodiment"):
        Gr00tPolicy.from_model(model, tokenizer, Gr00tProcessor.from_pretrained(output_dir), "gr1")
