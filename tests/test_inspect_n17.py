"""groot-ft inspect for GR00T N1.7 bases: the tiny preset on the demo dataset, and the 3B geometry on upstream's gr1
demo with Qwen3-VL's vocabulary (built from the Qwen3 BPE files in ../shared; skipped when they are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from groot_ft.cli import main as cli_main
from groot_ft.stats import compute_stats, write_stats
from groot_ft.modality import load_modality_config
from tests.model.test_n17_inputs import EAGLE, qwen3vl_tokenizer_dir

ROOT = Path(__file__).resolve().parents[1]
GR1 = ROOT.parent / "shared" / "datasets" / "gr1.PickNPlace"


def test_inspect_n17_tiny_on_the_demo(demo_dataset, tmp_path, capsys):
    cfg = ROOT / "config" / "modality" / "demo.yaml"
    stats, relative = compute_stats(demo_dataset, load_modality_config(cfg))
    write_stats(tmp_path / "stats", stats, relative)
    out = tmp_path / "inspect"
    argv = ["inspect", "--base-model", "n1.7-tiny", "--dataset", str(demo_dataset), "--modality-config", str(cfg),
            "--embodiment-tag", "new_embodiment", "--stats", str(tmp_path / "stats"), "--step", "3",
            "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    provenance = (out / "provenance.txt").read_text()
    assert "(Gr00tN1d7)" in provenance and "N1.7 tiny byte tokenizer" in provenance
    assert "processor class: Gr00tN1d7Processor" in provenance
    # demo frames are 96x96: the processor's 48-px edge, crop 0.95, back to 48; smart_resize keeps 48 -> 6x6 -> 9
    assert provenance.count("96x96 -> processor 48x48 -> smart_resize 48x48 -> patches 6x6 -> 9 tokens") == 2
    tensors = load_file(str(out / "inputs.safetensors"))
    assert tensors["image_grid_thw"].tolist() == [[1, 6, 6]] * 2
    assert int(tensors["mm_token_type_ids"].sum()) == 18 and tensors["pixel_values"].shape == (72, 384)
    assert tensors["state"].shape == (1, 32) and tensors["action"].shape == (16, 32)
    prompt = (out / "prompt.txt").read_text()
    assert prompt.startswith("<|im_start|>user\n<|vision_start|><|image_pad|>") and prompt.endswith("<|im_end|>\n")
    ids = (out / "token_ids.txt").read_text().split()
    assert len(ids) == tensors["input_ids"].shape[1]


@pytest.mark.skipif(not (EAGLE.is_dir() and GR1.is_dir()), reason="../shared reference files absent")
def test_inspect_n17_3b_geometry_on_gr1(tmp_path, capsys):
    tokenizer = qwen3vl_tokenizer_dir(tmp_path)
    out = tmp_path / "inspect"
    argv = ["inspect", "--base-model", "n1.7-3b", "--tokenizer", str(tokenizer), "--dataset", str(GR1),
            "--modality-config", str(ROOT / "config" / "modality" / "gr1.yaml"), "--embodiment-tag", "gr1",
            "--step", "100", "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    provenance = (out / "provenance.txt").read_text()
    assert "256x256 -> processor 256x256 -> smart_resize 256x256 -> patches 16x16 -> 64 tokens" in provenance
    assert "known bounds of nvidia/Cosmos-Reason2-2B" in provenance
    tensors = load_file(str(out / "inputs.safetensors"))
    ids = tensors["input_ids"][0]
    assert ids[:3].tolist() == [151644, 872, 198] and ids[3] == 151652 and ids[-2:].tolist() == [151645, 198]
    assert int((ids == 151655).sum()) == 64 and tensors["pixel_values"].shape == (256, 1536)
    assert tensors["state"].shape == (1, 132) and tensors["action"].shape == (40, 132)
    assert tensors["action_mask"][:16].any() and not tensors["action_mask"][16:].any()
