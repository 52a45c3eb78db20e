"""Numeric parity of our GR00T N1.7 with LeRobot 0.6.1's port (an independent implementation with its own parity
tests against upstream), on one tiny geometry with identical weights and inputs.

Opt-in (it builds a separate environment, ~1.5 min and ~1.5 GB the first time): ``make parity-lerobot``, or
``GROOT_FT_LEROBOT=1 pytest tests/model/test_n17_lerobot_parity.py``; ``GROOT_FT_LEROBOT_PYTHON=/path/to/python``
uses an environment built before. LeRobot declares Python >= 3.12 and torch < 2.12, so it cannot share ours:
``../shared/tools/lerobot-0.6.1/lerobot-env.sh`` builds it on Python 3.11 with CPU torch 2.13.0, and the extras its
``groot`` policy imports are added here. ``lerobot_n17_runner.py`` runs inside it.

Both sides load the same weights through upstream's tensor names (every parameter perturbed so that zero-initialised
parts count too) and see the same batch (our collator's Qwen3-VL inputs: 3 left-padded samples, 2 cameras each, 3
embodiments). Compared: the backbone features (last kept LLM layer, before the final norm), the features after vlln
and the VL self-attention, the state token, the velocity prediction and the loss at fixed flow-matching noise and
time, and the actions sampled (4 Euler steps) from fixed noise, with and without real-time chunking. And the images:
our processor crop and Qwen2-VL steps against LeRobot's OpenCV crop and transformers' own image processor.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from groot_ft.model.n17 import Gr00tN1d7, n17_preset
from groot_ft.model.n17.collator import Gr00tN17Collator
from groot_ft.model.n17.tokenizer import build_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT.parent / "shared" / "tools" / "lerobot-0.6.1"
RUNNER = Path(__file__).with_name("lerobot_n17_runner.py")
# What LeRobot's `groot` policy imports beyond the dataset side that lerobot-env.sh installs (versions that worked:
# see TOOLS/README.md), constrained to that environment's torch.
GROOT_EXTRAS = ["transformers>=5.4,<5.6", "diffusers>=0.38,<0.40", "peft>=0.18,<1", "timm>=1.0,<1.1",
                "dm-tree>=0.1.8,<1"]
# Float32 on one CPU, same operations in a different order: a few ulps of the values compared.
TOLERANCE = 1e-5
RTC_OPTIONS = {"action_horizon": 12, "rtc_overlap_steps": 6, "rtc_frozen_steps": 2, "rtc_ramp_rate": 6.0}


def _lerobot_python() -> str:
    given = os.environ.get("GROOT_FT_LEROBOT_PYTHON")
    if given:
        return given
    if os.environ.get("GROOT_FT_LEROBOT") != "1":
        pytest.skip("LeRobot 0.6.1 parity runs when asked: `make parity-lerobot` (GROOT_FT_LEROBOT=1) builds its "
                    "separate environment with ../shared/tools/lerobot-0.6.1/lerobot-env.sh")
    if not (TOOLS / "lerobot-env.sh").is_file():
        pytest.skip(f"{TOOLS}/lerobot-env.sh is absent: the LeRobot environment cannot be built here")
    built = subprocess.run(["bash", str(TOOLS / "lerobot-env.sh")], capture_output=True, text=True)
    assert built.returncode == 0, f"lerobot-env.sh failed:\n{built.stderr[-3000:]}"
    python = built.stdout.strip().splitlines()[-1]
    probe = f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import tvshim, lerobot.policies.groot.groot_n1_7, tree"
    if subprocess.run([python, "-c", probe], capture_output=True).returncode != 0:
        constraints = Path(python).parents[1] / "constraints.txt"
        extras = subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(constraints), *GROOT_EXTRAS],
                                capture_output=True, text=True)
        assert extras.returncode == 0, f"installing LeRobot's groot extras failed:\n{extras.stderr[-3000:]}"
    return python


def _parity_model() -> Gr00tN1d7:
    """The tiny N1.7 with every parameter moved off its initial value (zero-initialised gates and biases, unit norms),
    so no part of either implementation can hide behind a zero."""
    torch.manual_seed(0)
    model = Gr00tN1d7(n17_preset("n1.7-tiny", state_dropout_prob=0.0))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _batch(config) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    tokenizer = build_tiny_tokenizer()
    samples = []
    for text, embodiment in (("go", 10), ("pick up the red cube and place it in the bowl", 3), ("open it", 31)):
        state = np.zeros((1, config.max_state_dim), np.float32)
        state[:, :9] = rng.uniform(-1, 1, (1, 9))
        action = np.zeros((config.action_horizon, config.max_action_dim), np.float32)
        action[:12, :7] = np.cumsum(rng.normal(size=(12, 7)) * 0.2, axis=0).clip(-1, 1)
        samples.append({"images": rng.integers(0, 255, (2, 3, 48, 64), dtype=np.uint8), "text": text,
                        "state": state, "action": action, "embodiment_id": embodiment})
    batch = Gr00tN17Collator(tokenizer, config)(samples)
    batch["action_mask"][:, 12:] = 0  # only the first 12 steps are real, as a shorter embodiment's horizon
    batch["action_mask"][:, :, 7:] = 0
    return batch


def _lerobot_config(config) -> dict:
    """Our config as LeRobot's ``GR00TN17Config`` fields (the same names as upstream's), float32."""
    ours = config.to_dict()
    for key in ("vlm_config", "model_name", "architectures", "transformers_version", "model_type", "_name_or_path"):
        ours.pop(key, None)
    return {**ours, "dtype": "float32", "model_dtype": "float32", "load_bf16": False}


@pytest.fixture(scope="module")
def lerobot_python() -> str:
    return _lerobot_python()


def _run(python: str, mode: str, work: Path) -> None:
    ran = subprocess.run([python, str(RUNNER), mode, str(work), str(TOOLS)], capture_output=True, text=True)
    assert ran.returncode == 0, f"LeRobot's side failed:\n{ran.stderr[-4000:]}"


@pytest.fixture(scope="module")
def outputs(lerobot_python, tmp_path_factory):
    work = tmp_path_factory.mktemp("lerobot-n17")
    model = _parity_model()
    config = model.config
    batch = _batch(config)
    generator = torch.Generator().manual_seed(2)
    shape = batch["action"].shape
    fixed = {
        "fm_noise": torch.randn(shape, generator=generator),
        "fm_time": torch.tensor([0.05, 0.5, 0.93]),  # buckets 50, 500, 930
        "sample_noise": torch.randn(shape, generator=generator),
        "previous_action": torch.randn(shape, generator=generator).clamp(-1, 1),
    }
    (work / "backbone").mkdir()
    # LeRobot builds the untruncated Qwen3-VL from this and pops the layers above select_layer, as upstream does.
    config.vlm_config.save_pretrained(work / "backbone")
    (work / "lerobot_config.json").write_text(json.dumps(_lerobot_config(config)))
    (work / "rtc_options.json").write_text(json.dumps(RTC_OPTIONS))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, work / "weights.safetensors")
    save_file({**{k: v.contiguous() for k, v in batch.items() if k != "mm_token_type_ids"}, **fixed},
              work / "inputs.safetensors")
    _run(lerobot_python, "model", work)
    theirs = load_file(work / "lerobot_outputs.safetensors")
    theirs["grads"] = load_file(work / "lerobot_grads.safetensors")
    report = json.loads((work / "lerobot_report.json").read_text())
    return model, batch, fixed, theirs, report


def _ours(model, batch, fixed) -> dict[str, torch.Tensor]:
    head = model.action_head
    out = {}
    with torch.no_grad():
        backbone = model._backbone(batch["input_ids"], batch["attention_mask"], batch["pixel_values"],
                                   batch["image_grid_thw"], batch["mm_token_type_ids"])
        out["backbone_features"] = backbone["backbone_features"]
        vl = head.prepare_vl(backbone)
        out["vl_features"] = vl["features"]
        out["state_features"] = head.encode_state(batch["state"], batch["embodiment_id"])
        decoded = []
        hook = head.action_decoder.register_forward_hook(lambda _m, _i, o: decoded.append(o))
        # The model's own forward, with its two random draws replaced by the fixed noise and time.
        with mock.patch("torch.randn_like", lambda *a, **k: fixed["fm_noise"].clone()), \
                mock.patch("groot_ft.model.flow_matching.sample_time", lambda *a, **k: fixed["fm_time"].clone()):
            loss = model(**batch)
        hook.remove()
        out["loss"] = loss.loss.reshape(1)
        out["action_loss"] = loss.action_loss
        out["velocity"] = decoded[0][:, -batch["action"].shape[1]:]
        out["action_pred"] = model.get_action(**batch, noise=fixed["sample_noise"])["action_pred"]
        out["action_pred_rtc"] = model.get_action(**batch, noise=fixed["sample_noise"],
                                                  previous_action=fixed["previous_action"],
                                                  options=RTC_OPTIONS)["action_pred"]
    return out


def test_weights_load_one_to_one_into_lerobot(outputs):
    model, _, _, _, report = outputs
    # LeRobot builds Qwen3VLForConditionalGeneration, whose lm_head is tied to embed_tokens: the one key we do not
    # write (upstream's checkpoint has it; it never touches GR00T's features).
    assert report["missing_keys"] == ["backbone.model.lm_head.weight"], report
    assert report["unexpected_keys"] == [], report
    assert report["parameters"] == sum(p.numel() for p in model.parameters()), report


def test_every_compared_value_matches_lerobot(outputs):
    model, batch, fixed, theirs, report = outputs
    ours = _ours(model, batch, fixed)
    image_mask = (batch["input_ids"] == model.config.vlm_config.image_token_id)
    assert torch.equal(theirs["image_mask"].bool(), image_mask)
    differences = {}
    for key, value in ours.items():
        other = theirs[key]
        assert other.shape == value.shape, (key, other.shape, value.shape)
        # Padded positions included: the VL self-attention has no mask, so what they hold reaches the real tokens.
        scale = float(value.abs().max())
        differences[key] = (float((value - other).abs().max()), scale)
    print(json.dumps({"versions": {k: report[k] for k in ("lerobot", "transformers", "torch")},
                      "max_abs_difference_and_scale": differences}, indent=1), file=sys.stderr)
    for key, (diff, scale) in differences.items():
        assert diff <= TOLERANCE * max(1.0, scale), (key, diff, scale)


def test_the_gradient_of_the_loss_matches_lerobot_for_every_parameter(outputs):
    """One training step's gradient at the fixed noise and time, every parameter trainable (the vision tower and the
    LLM included): what an optimizer step would apply is the same on both sides."""
    model, batch, fixed, theirs, _ = outputs
    grads = theirs["grads"]
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for param in model.parameters():
            param.requires_grad_(True)
            param.grad = None
        with mock.patch("torch.randn_like", lambda *a, **k: fixed["fm_noise"].clone()), \
                mock.patch("groot_ft.model.flow_matching.sample_time", lambda *a, **k: fixed["fm_time"].clone()):
            model(**batch).loss.backward()
        # the LLM's final norm gets none on either side: the features are read before it
        ours = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(trainable[name])
            param.grad = None
    assert ours.keys() == grads.keys()
    worst, worst_name = 0.0, ""
    for name, grad in ours.items():
        scale = max(1.0, float(grad.abs().max()))
        diff = float((grad - grads[name]).abs().max()) / scale
        if diff > worst:
            worst, worst_name = diff, name
    print(json.dumps({"parameters": len(ours), "max_relative_gradient_difference": worst, "at": worst_name}),
          file=sys.stderr)
    assert worst <= 10 * TOLERANCE, (worst_name, worst)


def test_rtc_frozen_rows_are_the_previous_chunk_on_both_sides(outputs):
    _, _, fixed, theirs, _ = outputs
    h, overlap, frozen = (RTC_OPTIONS[k] for k in ("action_horizon", "rtc_overlap_steps", "rtc_frozen_steps"))
    start = h - overlap
    assert torch.equal(theirs["action_pred_rtc"][:, :frozen], fixed["previous_action"][:, start:start + frozen])


# --- images: the crop and Qwen2-VL's resize, normalisation and patches ------------------------------------------------
GR1_VIDEO = ROOT.parent / "shared" / "datasets" / "gr1.PickNPlace" / "videos" / "chunk-000" / \
    "observation.images.ego_view" / "episode_000000.mp4"


def _frame_groups() -> dict[str, np.ndarray]:
    """Real frames where ../shared has them (gr1's 256x256 ego view, and one upscaled to 480x640 and 240x320 so the
    crop's downsampling and Qwen2-VL's resize to 256x352 both run on real content); a smooth synthetic scene
    otherwise."""
    if GR1_VIDEO.is_file():
        from groot_ft.data.video import read_frames

        frames = read_frames(GR1_VIDEO, [0, 60, 120])
    else:
        yy, xx = np.mgrid[0:256, 0:256] / 256.0
        scene = np.stack([np.sin(6 * xx + 3 * yy), np.cos(5 * yy), np.sin(9 * xx * yy)], -1) * 100 + 128
        frames = np.repeat(scene[None].clip(0, 255).astype(np.uint8), 3, 0)
    groups = {"square": frames}
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    for name, size in (("480x640", (480, 640)), ("240x320", (240, 320))):
        big = torch.nn.functional.interpolate(tensor, size=size, mode="bicubic", antialias=True)
        groups[name] = big.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return groups


def _psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def test_image_pixels_match_lerobots_crop_and_qwen2vl_processor(lerobot_python, tmp_path):
    """The released checkpoint's settings (shortest edge 256, centre crop 0.95, Cosmos-Reason2-2B's 16-px patches),
    without and with letter_box_transform: our eval-time crop and Qwen2-VL steps against LeRobot's cv2 path and
    transformers' own image processor."""
    from groot_ft.modality import load_modality_config
    from groot_ft.model.n17.collator import Qwen3VLImages
    from groot_ft.processor_n17 import Gr00tN17Processor

    config = n17_preset("n1.7-3b")
    vision = config.vlm_config.vision_config
    qwen = Qwen3VLImages(config)
    modality = {"new_embodiment": load_modality_config(ROOT / "config" / "modality" / "demo.yaml")}
    transforms = {"": Gr00tN17Processor(modality).eval().image_transform,
                  "_letterbox": Gr00tN17Processor(modality, letter_box_transform=True).eval().image_transform}
    groups = _frame_groups()
    save_file({f"frames_{k}": torch.from_numpy(v) for k, v in groups.items()}, tmp_path / "images_inputs.safetensors")
    (tmp_path / "images_config.json").write_text(json.dumps({
        "shortest_image_edge": 256, "crop_fraction": 0.95, "patch_size": vision.patch_size,
        "temporal_patch_size": vision.temporal_patch_size, "merge_size": vision.spatial_merge_size,
        "min_pixels": qwen.image_processing.min_pixels, "max_pixels": qwen.image_processing.max_pixels}))
    _run(lerobot_python, "images", tmp_path)
    theirs = load_file(tmp_path / "lerobot_images.safetensors")
    report = {}
    for (group, frames), (suffix, transform) in itertools.product(groups.items(), transforms.items()):
        name = group + suffix
        cropped = transform.apply(frames, transform.sample_params(np.random.default_rng(0), False))  # (N, 3, h, w)
        their_crop = theirs[f"cropped_{name}"].permute(0, 3, 1, 2)
        assert tuple(cropped.shape) == tuple(their_crop.shape), name
        pixels, grid = qwen.patches(qwen.resized_images(cropped))
        assert torch.equal(grid, theirs[f"grid_{name}"]), name
        crop_diff = (torch.from_numpy(cropped).int() - their_crop.int()).abs()
        pixel_diff = (pixels - theirs[f"pixel_values_{name}"]).abs()
        # and Qwen2-VL's steps alone, on LeRobot's crop: isolates the resize / normalisation / patch order
        same_crop, _ = qwen.patches(qwen.resized_images(their_crop.numpy()))
        qwen_diff = (same_crop - theirs[f"pixel_values_{name}"]).abs()
        report[name] = {
            "crop": list(cropped.shape[2:]), "grid": grid[0].tolist(),
            "crop_max_levels": int(crop_diff.max()), "crop_psnr_db": round(_psnr(torch.from_numpy(cropped),
                                                                                  their_crop, 255), 1),
            "pixels_max": float(pixel_diff.max()), "pixels_psnr_db": round(_psnr(pixels, theirs[
                f"pixel_values_{name}"], 2.0), 1),
            "qwen_steps_max_levels": round(float(qwen_diff.max()) * 127.5, 2),
        }
    print(json.dumps(report, indent=1), file=sys.stderr)
    for name, r in report.items():
        # Qwen2-VL's steps on the same crop: within one uint8 level (torch's bicubic in both; rounding of the
        # fused normalisation), bit for bit where no resize runs
        assert r["qwen_steps_max_levels"] <= 1.01, (name, r)
        # the crop follows OpenCV's INTER_AREA: rounding apart, the same (57-60 dB measured)
        assert r["crop_max_levels"] <= 1 and r["crop_psnr_db"] >= 50 and r["pixels_psnr_db"] >= 50, (name, r)
