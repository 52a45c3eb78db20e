"""What GR00T N1.7 is fed: the Qwen3-VL prompt and token layout, the image geometry, the N1.7 processor's
normalisation, and the model-family switch of ``create_model``.

Geometry numbers are the reference's (``../shared/reference/gr00t-n1.7.md``, "Inputs", from LeRobot 0.6.1's port):
240x320 and 480x640 frames -> shortest edge 256, centre crop 0.95, back to 256 -> 256x340 -> smart_resize to
multiples of 32 -> 256x352 -> 16x22 patches -> 88 tokens; 256x256 -> 64 tokens.

The real-vocabulary test builds Qwen3-VL's tokenizer from the Qwen3 BPE files upstream vendors for N1.6 (Eagle's
vocab.json / merges.txt, whose ids 151643..151668 are Qwen3-VL's control tokens) without Eagle's extra tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from groot_ft.model import create_model, make_collator
from groot_ft.model.n17 import n17_preset
from groot_ft.model.n17.collator import Gr00tN17Collator, Qwen3VLImages, qwen_smart_resize, render_prompt
from groot_ft.model.n17.factory import N17ModelError, model_family
from groot_ft.model.n17.tokenizer import N17TokenizerError, build_tiny_tokenizer, load_qwen3vl_tokenizer
from groot_ft.modality import load_modality_config
from groot_ft.processor_n17 import Gr00tN17Processor, load_processor

ROOT = Path(__file__).resolve().parents[2]
EAGLE = ROOT.parent / "shared" / "reference" / "upstream-checkpoints" / "eagle-block2a-2b-v2"
DEMO_CFG = ROOT / "config" / "modality" / "demo.yaml"
TAG = "new_embodiment"
LANG = "annotation.human.task_description"


def sample(images: np.ndarray, text: str, state_dim: int = 32, horizon: int = 16) -> dict:
    return {"images": images, "text": text, "state": np.zeros((1, state_dim), np.float32),
            "action": np.zeros((horizon, state_dim), np.float32), "embodiment_id": 10}


# --- prompt and tokens ------------------------------------------------------------------------------------------------
def test_tiny_prompt_layout_images_first_left_padding_token_types():
    model_cfg = n17_preset("n1.7-tiny")
    tokenizer = build_tiny_tokenizer()
    collator = Gr00tN17Collator(tokenizer, model_cfg)
    rng = np.random.default_rng(0)
    # two cameras at one step, 48x64 each: smart_resize keeps 48x64 (multiples of 16) -> 6x8 patches -> 12 tokens
    short = sample(rng.integers(0, 255, (2, 3, 48, 64), dtype=np.uint8), "go")
    long = sample(rng.integers(0, 255, (2, 3, 48, 64), dtype=np.uint8), "pick up the red cube")
    batch = collator([short, long])
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"]
    assert batch["image_grid_thw"].tolist() == [[1, 6, 8]] * 4
    assert batch["pixel_values"].shape == (4 * 48, 3 * 2 * 8 * 8)
    assert tokenizer.decode(ids[1]) == render_prompt("pick up the red cube", [12, 12])
    assert render_prompt("go", [12, 12]) == ("<|im_start|>user\n" + ("<|vision_start|>" + "<|image_pad|>" * 12
                                             + "<|vision_end|>") * 2 + "go<|im_end|>\n")
    # left padding: the shorter row starts with pad ids under a zero mask
    pad = len(long["text"]) - len(short["text"])
    assert mask[0, :pad].eq(0).all() and mask[0, pad:].eq(1).all() and mask[1].eq(1).all()
    assert ids[0, :pad].eq(tokenizer.pad_token_id).all()
    # token types: 1 exactly on <|image_pad|>, 24 per sample, and every one before the text
    for row in range(2):
        image = ids[row] == tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert torch.equal(types[row].bool(), image) and int(image.sum()) == 24
        text_start = int(torch.nonzero(ids[row] == tokenizer.convert_tokens_to_ids("<|vision_end|>"))[-1]) + 1
        assert not image[text_start:].any()


def qwen3vl_tokenizer_dir(tmp: Path, chat_template: str | None = None) -> Path:
    """Qwen3's BPE with Qwen3-VL's control tokens (ids up to 151668), from upstream's vendored files."""
    out = tmp / "qwen3vl-tokenizer"
    out.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(EAGLE / name, out / name)
    config = json.loads((EAGLE / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {k: v for k, v in config["added_tokens_decoder"].items() if int(k) <= 151668}
    kept = {v["content"] for v in config["added_tokens_decoder"].values()}
    config["additional_special_tokens"] = [t for t in config["additional_special_tokens"] if t in kept]
    for key in ("auto_map", "processor_class", "chat_template"):
        config.pop(key, None)
    if chat_template is not None:
        config["chat_template"] = chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.mark.skipif(not EAGLE.is_dir(), reason="upstream's vendored Qwen3 tokenizer files are not in ../shared")
def test_real_vocabulary_ids_equal_tokenising_the_rendered_prompt(tmp_path):
    tokenizer = load_qwen3vl_tokenizer(qwen3vl_tokenizer_dir(tmp_path), "test")
    config = n17_preset("n1.7-3b")
    collator = Gr00tN17Collator(tokenizer, config)
    assert collator.ids == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                            "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
                            "<|video_pad|>": 151656}
    text = "pick up the apple and place it in the bowl"
    ours = collator.sequence(text, [88, 64])
    whole = tokenizer(render_prompt(text, [88, 64]), add_special_tokens=False)["input_ids"]
    assert ours == whole  # pieces tokenised one by one = the whole string, as upstream tokenises it
    assert ours[:3] == [151644, 872, 198]  # <|im_start|> "user" "\n"
    assert ours.count(151655) == 152 and ours[-2:] == [151645, 198]
    # an instruction cannot inject an image token
    injected = collator.sequence("look <|image_pad|>", [4])
    assert injected.count(151655) == 4


@pytest.mark.skipif(not EAGLE.is_dir(), reason="upstream's vendored Qwen3 tokenizer files are not in ../shared")
def test_a_tokenizer_whose_chat_template_differs_is_refused(tmp_path):
    eagle_template = json.loads((EAGLE / "tokenizer_config.json").read_text())["chat_template"]
    tokenizer = load_qwen3vl_tokenizer(qwen3vl_tokenizer_dir(tmp_path, eagle_template), "test")
    with pytest.raises(ValueError, match="chat template renders"):
        Gr00tN17Collator(tokenizer, n17_preset("n1.7-3b"))


def test_the_n16_byte_tokenizer_cannot_feed_n17():
    from groot_ft.model import build_tokenizer

    with pytest.raises(N17TokenizerError, match="Cosmos-Reason2-2B"):
        Gr00tN17Collator(build_tokenizer(), n17_preset("n1.7-tiny"))


# --- image geometry -----------------------------------------------------------------------------------------------
def processor_3b(**kwargs) -> Gr00tN17Processor:
    return Gr00tN17Processor({TAG: load_modality_config(DEMO_CFG)}, **kwargs).eval()


@pytest.mark.parametrize(("height", "width", "cropped", "resized", "tokens"), [
    (240, 320, (256, 340), (256, 352), 88),
    (480, 640, (256, 340), (256, 352), 88),
    (256, 256, (256, 256), (256, 256), 64),
])
def test_image_geometry_of_the_released_settings(height, width, cropped, resized, tokens):
    transform = processor_3b().image_transform  # shortest edge 256, centre crop 0.95, back to 256 (N1.7 defaults)
    frames = np.random.default_rng(0).integers(0, 255, (1, height, width, 3), dtype=np.uint8)
    images = transform.apply(frames, transform.sample_params(np.random.default_rng(0), False))
    assert images.shape == (1, 3, *cropped) and images.dtype == np.uint8
    config = n17_preset("n1.7-3b")
    vision = config.vlm_config.vision_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert qwen_smart_resize(*cropped, 32, 65536, 16777216) == resized
    out = make_patches(config, images)
    assert out["grid"] == [1, resized[0] // 16, resized[1] // 16]
    assert out["tokens"] == tokens and out["patches"] == (tokens * 4, 3 * 2 * 16 * 16)


def make_patches(config, images: np.ndarray) -> dict:
    """The collator's image half on a config (no tokenizer needed)."""
    qwen = Qwen3VLImages(config)
    resized = qwen.resized_images(images)
    pixels, grid = qwen.patches(resized)
    return {"grid": grid[0].tolist(), "tokens": qwen.image_tokens(*resized[0].shape[1:]), "patches": tuple(pixels.shape)}


def test_smart_resize_bounds():
    assert qwen_smart_resize(256, 340, 32, 65536, 16777216) == (256, 352)
    assert qwen_smart_resize(100, 100, 32, 65536, 16777216) == (256, 256)  # below min_pixels: scaled up
    assert qwen_smart_resize(48, 64, 16, 1024, 1 << 20) == (48, 64)


# --- normalisation ------------------------------------------------------------------------------------------------
def stats_with_percentiles() -> dict:
    # arm: q01/q99 inside min/max; dim 2 constant in the percentiles. gripper likewise.
    arm = {"min": [-10.0, -10.0, 0.0], "max": [10.0, 10.0, 5.0], "q01": [-2.0, 0.0, 3.0], "q99": [2.0, 4.0, 3.0],
           "mean": [0.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0]}
    grip = {"min": [0.0], "max": [1.0], "q01": [0.1], "q99": [0.9], "mean": [0.5], "std": [0.2]}
    rel = {k: [[v] * 3 for _ in range(16)] for k, v in (("min", -1.0), ("max", 1.0), ("q01", -0.5), ("q99", 0.5),
                                                         ("mean", 0.0), ("std", 0.3))}
    return {TAG: {"state": {"arm": arm, "gripper": grip}, "action": {"arm": arm, "gripper": grip},
                  "relative_action": {"arm": rel}}}


def step(arm_state, grip_state, arm_action, grip_action, text="Pick the RED cube!"):
    video = {cam: np.zeros((1, 96, 96, 3), np.uint8) for cam in ("front", "wrist")}
    state = {"arm": np.array([arm_state], np.float32), "gripper": np.array([[grip_state]], np.float32)}
    return {"video": video, "state": state,
            "action": {"arm": np.array(arm_action, np.float32), "gripper": np.array(grip_action, np.float32)},
            "language": {LANG: text}}


def test_percentile_normalisation_padding_and_mask():
    processor = processor_3b(statistics=stats_with_percentiles())
    state = [-2.0, 4.0, 7.0]  # q01 of dim 0, q99 of dim 1, anything on the constant dim 2
    arm = np.tile([0.5, -0.5, 0.0], (16, 1)) + np.asarray(state)  # relative to the state: +-0.5 = relative min/max / 2
    out = processor(step(state, 0.9, arm, np.full((16, 1), 5.0)), TAG)
    assert out["state"].shape == (1, 132) and out["action"].shape == (40, 132)
    np.testing.assert_allclose(out["state"][0, :4], [-1.0, 1.0, 0.0, 1.0], atol=1e-6)
    assert not out["state"][0, 4:].any()
    # relative arm actions use the per-step relative_action min/max (-1, 1), not its q01/q99, as upstream
    np.testing.assert_allclose(out["action"][:16, :3], np.tile([0.5, -0.5, 0.0], (16, 1)), atol=1e-6)
    np.testing.assert_allclose(out["action"][:16, 3], 1.0)  # gripper 5.0 is far above q99: clipped to 1
    mask = out["action_mask"]
    assert mask[:16, :4].all() and not mask[16:].any() and not mask[:, 4:].any()
    beyond = processor(step([-50.0, 50.0, 3.0], 0.1, arm, np.full((16, 1), 0.1)), TAG)["state"][0, :4]
    np.testing.assert_allclose(beyond, [-1.0, 1.0, 0.0, -1.0], atol=1e-6)
    assert out["text"] == "pick the red cube"


def test_empty_instruction_and_processor_files(tmp_path):
    processor = processor_3b(statistics=stats_with_percentiles())
    arm = np.zeros((16, 3), np.float32)
    assert processor(step([0, 0, 3], 0.5, arm, np.zeros((16, 1)), text=""), TAG)["text"] == "perform the task"
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "Gr00tN1d7Processor"
    kwargs = saved["processor_kwargs"]
    assert (kwargs["use_percentiles"], kwargs["max_state_dim"], kwargs["max_action_horizon"]) == (True, 132, 40)
    assert (kwargs["shortest_image_edge"], kwargs["crop_fraction"], kwargs["model_name"]) == (
        256, 0.95, "nvidia/Cosmos-Reason2-2B")
    loaded = load_processor(tmp_path)
    assert type(loaded) is Gr00tN17Processor and loaded.processor_kwargs() == processor.processor_kwargs()
    with pytest.raises(Exception, match="use_mean_std"):
        processor_3b(use_mean_std=True)


def test_letter_box_pads_to_a_centred_square_first(tmp_path):
    processor = processor_3b(letter_box_transform=True)
    frames = np.full((1, 480, 640, 3), 200, np.uint8)
    transform = processor.image_transform
    image = transform.apply(frames, transform.sample_params(np.random.default_rng(0), False))
    # 480x640 -> 640x640 (80 black rows above and below) -> 256x256 -> centre crop 243 -> 256x256
    assert image.shape == (1, 3, 256, 256)
    column = image[0, 0, :, 128].astype(int)
    assert column[0] == 0 and column[-1] == 0 and column[128] == 200
    band = int(np.argmax(column > 100))  # first bright row: 80 * 256/640 = 32, less the crop's 6, times 256/243
    # the band below: centred, up to the crop's odd pixel ((256 - 243) // 2 = 6 rows off the top, 7 off the bottom)
    assert band == 27 and int(np.argmax(column[::-1] > 100)) == 26
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["processor_kwargs"]["letter_box_transform"]
    assert load_processor(tmp_path).image_transform.letter_box


# --- the model-family switch ------------------------------------------------------------------------------------------
def test_family_switch_and_a_released_style_directory_loads_in_fp32(tmp_path):
    assert model_family("n1.7-tiny") == "n1.7" and model_family("tiny") == "n1.6"
    model, tokenizer = create_model("n1.7-tiny")
    assert type(model).__name__ == "Gr00tN1d7" and "n1.7-tiny" in tokenizer.source
    model.to(torch.bfloat16).save_pretrained(tmp_path)  # config.json records bfloat16, as the released one does
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert model_family(tmp_path) == "n1.7"
    loaded, tok = create_model(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert "rebuilt" in tok.source
    assert isinstance(make_collator(tok, loaded.config), Gr00tN17Collator)


def test_n17_errors_name_the_problem():
    with pytest.raises(N17TokenizerError, match="Cosmos-Reason2-2B"):
        create_model("n1.7-3b")
    with pytest.raises(N17ModelError, match="image_size"):
        create_model("n1.7-tiny", image_size=48)
    with pytest.raises(N17ModelError, match="load_bf16"):
        create_model("n1.7-tiny", bf16_weights=True)


def test_a_policy_saved_by_lerobot_is_refused_with_what_to_do(tmp_path):
    """LeRobot's GrootPolicy saves its own policy config (``type: groot``) and ``_groot_model.``-prefixed weights."""
    from safetensors.torch import save_file

    policy = tmp_path / "lerobot_policy"
    policy.mkdir()
    (policy / "config.json").write_text(json.dumps({"type": "groot", "model_version": "n1.7",
                                                    "base_model_path": "nvidia/GR00T-N1.7-3B", "chunk_size": 40}))
    with pytest.raises(N17ModelError, match=r"LeRobot's GrootPolicy.*from \(nvidia/GR00T-N1.7-3B\)"):
        create_model(policy)
    # the weights alone, prefixed, under an N1.7 config.json: the same answer
    model, tokenizer = create_model("n1.7-tiny")
    model.save_pretrained(tmp_path / "prefixed")
    tokenizer.save_pretrained(tmp_path / "prefixed")
    save_file({f"_groot_model.{k}": v.contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "prefixed" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(N17ModelError, match="LeRobot's GrootPolicy"):
        create_model(tmp_path / "prefixed")


@pytest.mark.parametrize("size", [(256, 340), (240, 320), (256, 256)])
def test_images_match_transformers_qwen2vl_image_processor(size):
    """Resize, normalisation and patches against transformers' own Qwen2-VL image processor with Cosmos-Reason2-2B's
    settings (its PIL backend: the torchvision one, whose resize ours follows, is not installed here). Same grid; the
    pixels agree to one uint8 level (PIL's and torch's bicubic round differently: 0.04% of values for 256x340 noise).
    Far larger upscales differ more (PIL's bicubic uses a = -0.5, torch's a = -0.75), documented in docs/model.md."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image = np.random.default_rng(sum(size)).integers(0, 256, (1, 3, *size), dtype=np.uint8)
    qwen = Qwen3VLImages(n17_preset("n1.7-3b"))
    pixels, grid = qwen.patches(qwen.resized_images(image))
    reference = Qwen2VLImageProcessorPil(size={"shortest_edge": 65536, "longest_edge": 16777216}, patch_size=16,
                                         merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3,
                                         image_std=[0.5] * 3)(images=[image[0].transpose(1, 2, 0)], return_tensors="pt")
    assert torch.equal(grid, reference["image_grid_thw"])
    levels = (pixels - reference["pixel_values"].float()).abs() * 127.5  # normalised units -> uint8 levels
    assert float(levels.max()) < 1.0 + 1e-4 and float((levels > 0.5).float().mean()) < 1e-3
    if size == (256, 256):
        assert float(levels.max()) == 0.0  # no resize: bit for bit


@pytest.mark.skipif(not EAGLE.is_dir(), reason="upstream's vendored Qwen3 tokenizer files are not in ../shared")
def test_preprocessor_config_beside_the_tokenizer_is_checked(tmp_path):
    directory = qwen3vl_tokenizer_dir(tmp_path)
    settings = {"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16, "merge_size": 2,
                "temporal_patch_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    (directory / "preprocessor_config.json").write_text(json.dumps(settings))
    tokenizer = load_qwen3vl_tokenizer(directory, "test")
    collator = Gr00tN17Collator(tokenizer, n17_preset("n1.7-3b"))  # finds the file through the tokenizer's path
    assert "preprocessor_config.json (size), agreeing" in collator.image_processing.source
    settings["size"]["longest_edge"] = 1 << 20
    (directory / "preprocessor_config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="min/max pixels"):
        Gr00tN17Collator(tokenizer, n17_preset("n1.7-3b"))
