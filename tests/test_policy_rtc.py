"""Real-time chunking through ``Gr00tPolicy.get_action(observation, options=...)`` on an N1.7 output directory.

The directory is written the way training writes one (``save_model`` + the N1.7 processor's files) from the
``n1.7-tiny`` preset with the demo embodiment (RELATIVE arm, ABSOLUTE gripper, 16 steps) and test_policy.py's
statistics; no training step is needed for the property checked: frozen rows are copied, whatever the weights.
The same checks on a trained checkpoint are in test_n17_train.py (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import groot_ft.model as gm
from groot_ft.modality import load_modality_config
from groot_ft.policy import Gr00tPolicy, PolicyOptionsError
from groot_ft.processor_n17 import Gr00tN17Processor
from tests.test_policy import DEMO_CFG, H, STATS, TAG, observation
from tests.test_policy import output_dir as n16_output_dir  # noqa: F401  (the N1.6 directory, for the refusal)

# test_policy.py's statistics with RELATIVE arm bounds equal on every step: a row moved to the front of the next chunk
# stays within its new row's normalisation range (per-step bounds would clip it there, as they clip any output).
RTC_STATS = {TAG: {**STATS[TAG], "relative_action": {"arm": {
    name: [[value] * 3] * H for name, value in
    {"min": -0.4, "max": 0.4, "q01": -0.2, "q99": 0.2, "mean": 0.0, "std": 0.1}.items()}}}}  # fmt: skip
OPTIONS = {"action_horizon": H, "rtc_overlap_steps": 8, "rtc_frozen_steps": 3, "rtc_ramp_rate": 5.0}


@pytest.fixture(scope="module")
def n17_output_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("n17_output_dir")
    model, tokenizer = gm.create_model("n1.7-tiny")
    with torch.no_grad():  # a clearly non-zero decoder output, so copied rows differ from freshly sampled ones
        model.action_head.action_decoder.layer2.b.normal_(0.0, 2.0)
    gm.save_model(model, tokenizer, out)
    cfg = model.config
    processor = Gr00tN17Processor({TAG: load_modality_config(DEMO_CFG)}, RTC_STATS, max_state_dim=cfg.max_state_dim,
                                  max_action_dim=cfg.max_action_dim, max_action_horizon=cfg.action_horizon,
                                  shortest_image_edge=48)
    processor.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frozen_rows_match(previous: dict, new: dict, options: dict) -> None:
    start = options["action_horizon"] - options["rtc_overlap_steps"]
    frozen = options["rtc_frozen_steps"]
    for key in previous:
        np.testing.assert_allclose(new[key][..., :frozen, :], previous[key][..., start : start + frozen, :],
                                   rtol=0, atol=1e-5, err_msg=key)


def test_rtc_frozen_rows_equal_the_kept_chunk(n17_output_dir):
    policy = Gr00tPolicy(n17_output_dir, TAG, device="cpu", seed=0)
    first = policy.get_action(observation(batch=2, seed=0), options=OPTIONS)  # nothing kept yet: plain sampling
    assert policy.last_info == {"rtc_applied": False, "frozen_values_replaced": 0}
    second = policy.get_action(observation(batch=2, seed=1), options=OPTIONS)
    frozen_rows_match(first, second, OPTIONS)
    # the model itself reproduced every frozen value (nothing clipped with these statistics): none was replaced
    assert policy.last_info == {"rtc_applied": True, "frozen_values_replaced": 0}
    frozen = OPTIONS["rtc_frozen_steps"]
    # the overlap rows after the frozen ones are denoised further, not copied
    assert not np.allclose(second["arm"][:, frozen:8], first["arm"][:, 8 + frozen :], atol=1e-3)
    third = policy.get_action(observation(batch=2, seed=2), options=OPTIONS)  # continues the second chunk
    frozen_rows_match(second, third, OPTIONS)
    assert policy.last_info["frozen_values_replaced"] == 0
    # conditioning reaches past the frozen rows: the same seed without a previous chunk samples another chunk
    plain = Gr00tPolicy(n17_output_dir, TAG, device="cpu", seed=0)
    plain.get_action(observation(batch=2, seed=0))
    unconditioned = plain.get_action(observation(batch=2, seed=1))
    assert not np.allclose(unconditioned["arm"][:, frozen:], second["arm"][:, frozen:], atol=1e-3)


def test_rtc_with_an_explicit_previous_chunk_in_physical_units(n17_output_dir):
    """An unbatched observation with a chunk the caller made up (upstream passes it with the step); RELATIVE arm
    rows are re-expressed against the current state and come back in the same absolute units."""
    policy = Gr00tPolicy(n17_output_dir, TAG, device="cpu", seed=3)
    arm_state = np.array([0.2, -0.3, 1.0], np.float32)
    steps = np.arange(1, H + 1, dtype=np.float32)[:, None]
    previous = {"arm": arm_state + 0.01 * steps * np.array([1.0, -1.0, 0.5], np.float32),
                "gripper": np.full((H, 1), 0.02, np.float32) + 0.001 * steps}
    options = {"rtc_overlap_steps": 6, "rtc_frozen_steps": 6, "rtc_ramp_rate": 2.0}  # action_horizon: the policy's
    new = policy.get_action(observation(batch=None), options=options, previous_action=previous)
    assert new["arm"].shape == (H, 3)
    frozen_rows_match(previous, new, {**options, "action_horizon": H})
    assert policy.last_info["frozen_values_replaced"] == 0


def test_without_options_sampling_is_as_before(n17_output_dir):
    """No options: the chunk is what a fresh policy with the same seed gives (a kept chunk changes nothing)."""
    policy = Gr00tPolicy(n17_output_dir, TAG, device="cpu", seed=7)
    fresh = Gr00tPolicy(n17_output_dir, TAG, device="cpu", seed=7)
    policy.get_action(observation(batch=2, seed=0))
    fresh.get_action(observation(batch=2, seed=0))
    a = policy.get_action(observation(batch=2, seed=1))
    b = fresh.get_action(observation(batch=2, seed=1), options=None)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # after reset(), RTC options on the first call sample exactly as without them (nothing to continue)
    policy.reset()
    fresh.reset()
    c = policy.get_action(observation(batch=2, seed=2), options=OPTIONS)
    d = fresh.get_action(observation(batch=2, seed=2))
    for key in c:
        np.testing.assert_array_equal(c[key], d[key])


def test_bad_rtc_options_are_clear_errors(n17_output_dir):
    policy = Gr00tPolicy(n17_output_dir, TAG, device="cpu")
    obs = observation(batch=1)
    with pytest.raises(PolicyOptionsError, match="rtc_frozen_steps .* <= rtc_overlap_steps"):
        policy.get_action(obs, options={**OPTIONS, "rtc_frozen_steps": 9})
    with pytest.raises(PolicyOptionsError, match="not known"):
        policy.get_action(obs, options={**OPTIONS, "rtc_overlap": 4})
    with pytest.raises(PolicyOptionsError, match="needs rtc_ramp_rate"):
        policy.get_action(obs, options={"rtc_overlap_steps": 4, "rtc_frozen_steps": 1})
    with pytest.raises(PolicyOptionsError, match="pass the RTC options too"):
        policy.get_action(obs, previous_action={"arm": np.zeros((1, H, 3)), "gripper": np.zeros((1, H, 1))})
    with pytest.raises(PolicyOptionsError, match="lacks action group"):
        policy.get_action(obs, options=OPTIONS, previous_action={"arm": np.zeros((1, H, 3))})
    policy.get_action(obs)  # keeps a chunk for one sample
    with pytest.raises(PolicyOptionsError, match="kept chunk is for 1 sample"):
        policy.get_action(observation(batch=2), options=OPTIONS)


def test_rtc_options_on_an_n16_model_are_refused(n16_output_dir):  # noqa: F811
    policy = Gr00tPolicy(n16_output_dir, TAG, device="cpu")
    with pytest.raises(PolicyOptionsError, match="need a GR00T N1.7 model.*Gr00tN1d6"):
        policy.get_action(observation(batch=1), options=OPTIONS)
