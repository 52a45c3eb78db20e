"""The demo workflow fine-tuning GR00T N1.7 from an upstream-format checkpoint directory: every rule runs (2 DeepSpeed
processes on CPU) with LoRA adapters on the LLM and the DiT, and the packaged output (merged weights, no peft needed)
serves actions with real-time chunking.

The directory is laid out as `nvidia/GR00T-N1.7-3B` ships: `config.json` with upstream's fields (bfloat16, written
by transformers 4.57), `model.safetensors` in bf16 under upstream's tensor names with the tied `lm_head` that
upstream's Qwen3-VL class holds, no processor files. Only the network is tiny (the `n1.7-tiny` geometry; its
`vlm_config` is the one field upstream's file does not have, since no hub repository names this backbone), with its
byte tokenizer beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import run_workflow

pytestmark = pytest.mark.slow

MAX_STEPS = 20


RTC = {"action_horizon": 16, "rtc_overlap_steps": 8, "rtc_frozen_steps": 3, "rtc_ramp_rate": 5.0}


def upstream_format_n17(root: Path) -> Path:
    from transformers import Qwen3VLForConditionalGeneration

    from groot_ft.model.n17 import Gr00tN1d7, n17_preset
    from groot_ft.model.n17.backbone import truncated_vlm_config
    from groot_ft.model.n17.tokenizer import build_tiny_tokenizer

    config = n17_preset("n1.7-tiny")
    torch.manual_seed(0)
    vlm = Qwen3VLForConditionalGeneration(truncated_vlm_config(config))  # upstream's class: lm_head included
    tensors = {"backbone.model." + k: v for k, v in vlm.state_dict().items()}
    tensors.update({"action_head." + k: v for k, v in Gr00tN1d7(config).action_head.state_dict().items()})
    assert "backbone.model.lm_head.weight" in tensors
    root.mkdir(parents=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, str(root / "model.safetensors"),
              metadata={"format": "pt"})
    fields = {**config.to_dict(), "architectures": ["Gr00tN1d7"], "torch_dtype": "bfloat16",
              "model_dtype": "bfloat16", "transformers_version": "4.57.3"}
    fields.pop("dtype", None)
    (root / "config.json").write_text(json.dumps(fields))
    build_tiny_tokenizer().save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def n17_run(tmp_path_factory) -> Path:
    base = upstream_format_n17(tmp_path_factory.mktemp("n17-base") / "GR00T-N1.7-tiny")
    out = tmp_path_factory.mktemp("wf-n17") / "run"
    run_workflow(["--configfile", "config/demo.yaml",
                  "--config", f"base_model_path={base}", f"output_dir={out}", "demo_episodes=6",
                  f"max_steps={MAX_STEPS}", "save_steps=10", "logging_steps=5", "save_total_limit=2",
                  "main_process_port=29579", "eval_steps=10", "lora_rank=4", "lora_alpha=8",
                  "lora_targets=[llm,dit]"], out, timeout=1200)
    return out


def test_every_rule_runs_for_n17(n17_run):
    from groot_ft.manifest import verify_output

    out = n17_run
    assert json.loads((out / "config.json").read_text())["model_type"] == "Gr00tN1d7"
    assert json.loads((out / "processor_config.json").read_text())["processor_class"] == "Gr00tN1d7Processor"
    finetune_log = (out / "logs" / "finetune.log").read_text()
    assert "GR00T-N1.7-tiny" in finetune_log and "(fresh weights)" not in finetune_log  # the directory's weights
    assert "state_dropout_prob: 0.2 (upstream's GR00T N1.7 fine-tuning default" in finetune_log
    assert "LoRA rank 4 (alpha 8, dropout 0) on llm, dit: 45 Linear layers" in finetune_log  # 3 x 7 + 4 x 6
    for rel in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                "release/adapter/adapter_config.json"):
        assert (out / rel).is_file(), rel
    package_log = (out / "logs" / "package.log").read_text()
    assert "is not 'Gr00tN1d6Processor'" not in package_log and "ignoring unknown" not in package_log
    metrics = json.loads((out / "eval" / "open_loop" / "metrics.json").read_text())
    assert np.isfinite(metrics["mean_mse"])
    result = verify_output(out)
    assert result.ok, result.summary()


def observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video": {cam: rng.integers(0, 255, (1, 96, 96, 3), dtype=np.uint8) for cam in ("front", "wrist")},
        "state": {"arm": rng.normal(size=(1, 3)).astype(np.float32), "gripper": np.full((1, 1), 0.5, np.float32)},
        "language": {"annotation.human.task_description": ["move the arm to the blue target"]},
    }


def test_the_packaged_n17_serves_actions_with_rtc(n17_run):
    from groot_ft.policy import Gr00tPolicy

    policy = Gr00tPolicy(n17_run, "new_embodiment", device="cpu", seed=0)
    assert not policy.model.lora_parts  # the merged weights, under upstream's names
    first = policy.get_action(observation(0), options=RTC)  # unbatched in, unbatched out; nothing to continue yet
    assert first["arm"].shape == (16, 3) and first["gripper"].shape == (16, 1)
    assert policy.last_info["rtc_applied"] is False
    second = policy.get_action(observation(1), options=RTC)
    assert policy.last_info["rtc_applied"] is True
    start, frozen = RTC["action_horizon"] - RTC["rtc_overlap_steps"], RTC["rtc_frozen_steps"]
    for key in first:  # the committed rows of the previous chunk come back as they were returned
        np.testing.assert_allclose(second[key][:frozen], first[key][start:start + frozen], rtol=0, atol=1e-5,
                                   err_msg=key)
