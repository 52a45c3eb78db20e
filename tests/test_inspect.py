"""groot-ft inspect against what upstream's own pipeline feeds the 3B model for gr1 episode 0, step 100 (issue 13).

Reads the checkpoint's files (no weights), upstream's vendored tokenizer, the gr1 dataset and upstream's dump from
``../shared`` in place; skips when they are absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from groot_ft.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHECKPOINT = SHARED / "reference" / "upstream-checkpoints" / "gr00t-n1.6-3b"
TOKENIZER = SHARED / "reference" / "upstream-checkpoints" / "eagle-block2a-2b-v2"
REFERENCE = SHARED / "reference" / "upstream-inputs" / "gr1_episode0_step100.safetensors"
GR1 = SHARED / "datasets" / "gr1.PickNPlace"


@pytest.fixture(scope="module")
def reference():
    missing = [p for p in (CHECKPOINT, TOKENIZER, REFERENCE, GR1) if not p.exists()]
    if missing:
        pytest.skip(f"upstream reference files absent: {', '.join(map(str, missing))} (../shared)")
    from safetensors.numpy import load_file

    return load_file(str(REFERENCE))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two images normalised to [-1, 1] (peak-to-peak 2)."""
    return float(10 * np.log10(4.0 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("modality", [None, "config/modality/gr1.yaml"], ids=["checkpoint-config", "gr1.yaml"])
def test_inspect_reproduces_upstreams_inputs(reference, tmp_path, modality, capsys):
    from safetensors.numpy import load_file

    out = tmp_path / "inspect"
    argv = ["inspect", "--base-model", str(CHECKPOINT), "--tokenizer", str(TOKENIZER), "--dataset", str(GR1),
            "--embodiment-tag", "gr1", "--episode", "0", "--step", "100", "--out", str(out)]
    if modality:
        argv += ["--modality-config", str(ROOT / modality)]
    assert cli_main(argv) == 0
    got = load_file(str(out / "inputs.safetensors"))
    np.testing.assert_array_equal(got["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], reference["attention_mask"])
    assert got["pixel_values"].shape == reference["pixel_values"].shape == (1, 1, 3, 252, 252)
    # 58.6 dB, at most 2 levels apart (OpenCV's INTER_AREA in the crop; the rest is the 252-px bicubic resize)
    assert psnr(got["pixel_values"], reference["pixel_values"]) >= 55.0
    for key in ("state", "action", "action_mask"):
        np.testing.assert_allclose(got[key], reference[key], atol=1e-5, err_msg=key)
    assert got["embodiment_id"].tolist() == [20]

    prompt = (out / "prompt.txt").read_text()
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                             "pick the pear from the counter and place it in the plate<image 1><img><IMG_CONTEXT>")
    assert prompt.count("<IMG_CONTEXT>") == 81 and prompt.endswith("</img><|im_end|>\n")
    (png,) = (out / "images").iterdir()
    from PIL import Image

    assert Image.open(png).size == (252, 252)
    provenance = (out / "provenance.txt").read_text()
    assert f"tokenizer: {TOKENIZER} (tokenizer_path)" in provenance
    assert "statistics: " in provenance and "meta/stats.json" in provenance
    assert "wrote" in capsys.readouterr().out


def test_inspect_without_a_tokenizer_says_where_to_get_one(reference, tmp_path, capsys):
    argv = ["inspect", "--base-model", str(CHECKPOINT), "--dataset", str(GR1), "--embodiment-tag", "gr1",
            "--out", str(tmp_path / "x")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "no tokenizer files" in err and "tokenizer_path" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_inspect_names_a_missing_episode(reference, tmp_path, capsys):
    argv = ["inspect", "--base-model", str(CHECKPOINT), "--tokenizer", str(TOKENIZER), "--dataset", str(GR1),
            "--embodiment-tag", "gr1", "--episode", "999", "--out", str(tmp_path / "x")]
    assert cli_main(argv) == 2
    assert "no episode 999" in capsys.readouterr().err
