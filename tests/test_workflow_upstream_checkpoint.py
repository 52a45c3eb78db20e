"""Fine-tuning from an upstream-format checkpoint through the whole workflow, then serving it (issue 13).

The checkpoint directory is laid out as `nvidia/GR00T-N1.6-3B` ships: upstream's `config.json` fields, weights under
upstream's tensor names in `model.safetensors` (bf16, with the tensors upstream holds but never uses), and the 3B
checkpoint's own `processor_config.json`, `statistics.json` and `embodiment_id.json`, and no tokenizer files. Only the
network is tiny (random weights). The tokenizer is upstream's Eagle tokenizer, named by `tokenizer_path`. Reads
`../shared` in place and skips when it is absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import groot_ft.model as gm
from tests.conftest import PROJECT_ROOT, run_workflow
from tests.model.test_model_upstream_checkpoint import upstream_config_json, upstream_tensors

pytestmark = pytest.mark.slow

SHARED = PROJECT_ROOT.parent / "shared"
CHECKPOINT_FILES = SHARED / "reference" / "upstream-checkpoints" / "gr00t-n1.6-3b"
EAGLE = SHARED / "reference" / "upstream-checkpoints" / "eagle-block2a-2b-v2"


def tiny_upstream_checkpoint(root: Path) -> Path:
    """Upstream's layout and names at a tiny width: 14-px patches and a 16 x 16 position grid as Eagle's, the real
    151,680-token vocabulary, the 3B checkpoint's padding (128 / 128 / 50) so its processor files apply as they are."""
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "patch_size": 14, "num_patches": 256, "num_channels": 3, "vision_use_head": False}
    text = {"vocab_size": 151680, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "tie_word_embeddings": True}
    cfg = upstream_config_json(
        backbone_embedding_dim=64, select_layer=3, tune_top_llm_layers=1, hidden_size=64, input_embedding_dim=96,
        diffusion_model_cfg={**upstream_config_json()["diffusion_model_cfg"], "num_layers": 4,
                             "num_attention_heads": 4, "attention_head_dim": 24, "output_dim": 64},
        vision_config=vision, text_config=text,
    )
    assert (cfg["max_state_dim"], cfg["max_action_dim"], cfg["action_horizon"]) == (128, 128, 50)
    assert "image_size" not in cfg  # upstream's config has none: native aspect ratio
    parsed = gm.Gr00tN1d6Config.from_dict(cfg)
    gen = torch.Generator().manual_seed(0)
    tensors = {name: (0.02 * torch.randn(shape, generator=gen)).to(torch.bfloat16)
               for name, shape in upstream_tensors(parsed, with_unused=True).items()}
    root.mkdir(parents=True)
    save_file(tensors, str(root / "model.safetensors"), metadata={"format": "pt"})
    (root / "config.json").write_text(json.dumps(cfg))
    for name in ("processor_config.json", "statistics.json", "embodiment_id.json"):
        shutil.copyfile(CHECKPOINT_FILES / name, root / name)
    return root


def test_finetune_an_upstream_format_checkpoint_and_serve_it(gr1_dataset, tmp_path):
    if not (CHECKPOINT_FILES / "processor_config.json").is_file() or not (EAGLE / "vocab.json").is_file():
        pytest.skip(f"upstream checkpoint files or Eagle tokenizer absent under {SHARED / 'reference'}")
    base = tiny_upstream_checkpoint(tmp_path / "GR00T-N1.6-tiny")
    out = tmp_path / "run"
    run_workflow(["--configfile", "config/demo.yaml", "--config", f"dataset={gr1_dataset}",
                  f"base_model_path={base}", f"tokenizer_path={EAGLE}", "embodiment_tag=gr1",
                  "modality_config_path=config/modality/gr1.yaml", f"output_dir={out}", "max_steps=6", "save_steps=6",
                  "logging_steps=3", "main_process_port=29537", "eval_episodes=1", "eval_steps=6",
                  "open_loop_eval_episodes=1", "global_batch_size=4", "num_gpus=1"], out)

    log = (out / "logs" / "finetune.log").read_text()
    assert f"tokenizer: {EAGLE.resolve()} (tokenizer_path)" in log
    assert "gr1 modality config" in log and "color_jitter_params" in log
    provenance = (out / "experiment_cfg" / "processor_provenance.txt").read_text()
    assert "base checkpoint processor_config.json" in provenance
    losses = [json.loads(line)["loss"] for line in (out / "training_log.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert losses and all(np.isfinite(losses))

    # the output directory carries upstream's tokenizer, geometry and gr1 settings
    assert json.loads((out / "config.json").read_text())["image_size"] is None
    kwargs = json.loads((out / "processor_config.json").read_text())["processor_kwargs"]
    assert kwargs["apply_sincos_state_encoding"] and kwargs["shortest_image_edge"] == 256
    from groot_ft.policy import Gr00tPolicy

    policy = Gr00tPolicy(out, "gr1")
    assert len(policy.tokenizer) == 151680 and policy.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == 151669
    rng = np.random.default_rng(0)
    obs = {
        "video": {"ego_view_bg_crop_pad_res256_freq20": rng.integers(0, 255, (2, 1, 256, 256, 3), dtype=np.uint8)},
        "state": {k: rng.normal(size=(2, 1, d)).astype(np.float32)
                  for k, d in (("left_arm", 7), ("right_arm", 7), ("left_hand", 6), ("right_hand", 6), ("waist", 3))},
        "language": {"task": [["pick the pear"], ["pick the meat"]]},
    }
    action = policy.get_action(obs)
    assert action["left_arm"].shape == (2, 16, 7) and action["waist"].shape == (2, 16, 3)
    assert all(np.isfinite(a).all() for a in action.values())
    metrics = json.loads((out / "eval" / "open_loop" / "metrics.json").read_text())  # the workflow's open-loop eval
    assert np.isfinite(metrics["mean_mse"])
