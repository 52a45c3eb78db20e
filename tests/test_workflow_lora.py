"""The demo workflow with LoRA and activation checkpointing: the release holds merged weights that load with
AutoModel without peft and serve through Gr00tPolicy, and equal the unmerged model the trainer last held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, run_workflow

pytestmark = pytest.mark.slow

MAX_STEPS = 40


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora_workflow") / "run"
    run_workflow([
        "--configfile", "config/demo.yaml",
        "--config", f"output_dir={out}", "demo_episodes=6", f"max_steps={MAX_STEPS}", "save_steps=20",
        "logging_steps=5", "save_total_limit=1", "eval_steps=20", "main_process_port=29557",
        "open_loop_eval_episodes=1", "lora_rank=4", "lora_alpha=8", "activation_checkpointing=True", "learning_rate=1e-3",
    ], out)
    return out


def test_lora_run_trains_and_packages_merged_weights_and_adapter(lora_run):
    from groot_ft.manifest import verify_output

    out = lora_run
    log = (out / "logs" / "finetune.log").read_text()
    assert "LoRA rank 4 (alpha 8, dropout 0) on llm, dit" in log and "activation checkpointing:" in log
    records = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines() if '"loss"' in x]
    first, last = np.mean([r["loss"] for r in records[:2]]), np.mean([r["loss"] for r in records[-2:]])
    assert last < 0.85 * first, f"loss did not fall: {first:.4f} -> {last:.4f}"  # 40 steps: ~1.45 -> ~1.17
    for rel in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (out / rel).is_file() and (out / "release" / rel).is_file(), rel
    assert verify_output(out).ok, verify_output(out).summary()


def test_release_loads_without_peft_and_serves(lora_run):
    """A fresh interpreter that never imports peft: AutoModel and Gr00tPolicy read the release as a plain model."""
    release = lora_run / "release"
    dataset = lora_run.parent / "demo_dataset"
    script = f"""
import sys
import numpy as np
import groot_ft
from transformers import AutoModel
from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.data.video import read_frames
from groot_ft.modality import load_modality_config
from groot_ft.policy import Gr00tPolicy

model = AutoModel.from_pretrained({str(release)!r})
assert type(model).__name__ == "Gr00tN1d6" and not model.lora_parts
assert not any("lora" in name or "base_layer" in name for name, _ in model.named_parameters())
dataset = LeRobotDataset({str(dataset)!r})
cfg = load_modality_config({str(PROJECT_ROOT / "config" / "modality" / "demo.yaml")!r})
episode = dataset.load_episode(0, cfg)
obs = {{
    "video": {{k: read_frames(dataset.video_path(0, dataset.video_original_key(k)), [3])[None]
               for k in cfg.video.modality_keys}},
    "state": {{k: v[3:4][None] for k, v in episode.state.items()}},
    "language": {{cfg.language.modality_keys[0]: [[episode.language[3]]]}},
}}
action = Gr00tPolicy({str(release)!r}, "new_embodiment", device="cpu").get_action(obs)
assert action["arm"].shape == (1, 16, 3) and all(np.isfinite(a).all() for a in action.values())
assert "peft" not in sys.modules, "loading the release imported peft"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_release_equals_the_unmerged_model_the_trainer_held(lora_run):
    """The last checkpoint's DeepSpeed module state is the unmerged LoRA model: rebuilt with adapters, it gives the
    release's outputs to float rounding."""
    import torch

    import groot_ft.model as gm
    from groot_ft.model.lora import LoraSettings, add_lora

    out = lora_run
    release, _ = gm.create_model(out / "release")
    unmerged, tokenizer = gm.create_model("tiny", tune_visual=True)
    add_lora(unmerged, LoraSettings(4, 8, 0.0, ("llm", "dit")))
    (states,) = (out / f"checkpoint-{MAX_STEPS}" / "training_state").rglob("mp_rank_00_model_states.pt")
    unmerged.load_state_dict(torch.load(states, map_location="cpu", weights_only=False)["module"], strict=True)

    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        samples.append({
            "state": rng.uniform(-1, 1, (1, 32)).astype(np.float32),
            "images": rng.integers(0, 256, (2, 3, 48, 48), dtype=np.uint8),
            "text": f"move the arm to target {i}",
            "embodiment_id": 10,
        })
    batch = gm.Gr00tCollator(tokenizer, unmerged.config)(samples)
    actions = [m.get_action(**batch, generator=torch.Generator().manual_seed(0))["action_pred"]
               for m in (unmerged, release)]
    torch.testing.assert_close(actions[1], actions[0], rtol=1e-5, atol=1e-5)


def test_base_model_and_adapter_alone_rebuild_the_release(lora_run):
    """adapter/ holds everything the run changed (LoRA weights + the fully trained modules as modules_to_save): peft
    puts it on the base model (the tiny preset's seeded weights) and merges it into the release's weights."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    import groot_ft.model as gm

    base, _ = gm.create_model("tiny", tune_visual=True)
    rebuilt = PeftModel.from_pretrained(base, lora_run / "release" / "adapter").merge_and_unload().state_dict()
    release = load_file(str(lora_run / "release" / "model.safetensors"))
    assert rebuilt.keys() == release.keys()
    for key, tensor in release.items():
        torch.testing.assert_close(rebuilt[key], tensor, rtol=0, atol=1e-6, msg=key)
