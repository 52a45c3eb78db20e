"""`Gr00tN17Collator`: processed samples -> one batch of Qwen3-VL inputs for ``Gr00tN1d7``, as upstream feeds them.

Upstream's N1.7 processor (Isaac-GR00T ``gr00t/model/gr00t_n1d7/processing_gr00t_n1d7.py``; LeRobot 0.6.1
``GrootN17VLMEncodeStep``) renders one user turn per sample with ``Qwen3VLProcessor.apply_chat_template`` (content:
every image first, time-major with the cameras in config order, then the text) and then calls the processor on the
rendered strings with ``padding=True`` and left padding. Qwen3-VL's template adds no system turn and, without
``add_generation_prompt``, no assistant turn, so one sample reads::

    <|im_start|>user\\n<|vision_start|><|image_pad|> x n_1<|vision_end|>...<|vision_start|><|image_pad|> x n_N<|vision_end|>{text}<|im_end|>\\n

where the processor has expanded each ``<|image_pad|>`` to ``n_i = grid_h * grid_w / merge_size^2`` copies.
Control tokens split a string before BPE runs, so tokenising the pieces one by one gives the ids of the whole
string; the instruction is tokenised on its own with control-token strings split, so an instruction cannot inject
``<|image_pad|>`` (upstream would parse it: the one deliberate difference, as N1.6's collator).

Images (Qwen2-VL image processor, the checkpoint backbone's settings): each uint8 image is resized with
:func:`qwen_smart_resize` to multiples of ``patch_size * merge_size`` (32 px for Cosmos-Reason2-2B) with a bicubic,
antialiased resize (torchvision's tensor resize, which transformers' torchvision-backed Qwen2-VL processor runs),
normalised with mean/std 0.5 and cut into patches by :func:`images_to_patches` (each still image repeated to the
temporal patch of 2). ``mm_token_type_ids`` is 1 on image tokens and 0 elsewhere, as transformers 5's processor
returns it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..collator import collate_actions, left_pad, uint8_images
from .backbone import images_to_patches
from .configuration import COSMOS_REASON2_2B
from .tokenizer import IM_END, IM_START, IMAGE_PAD, VISION_END, VISION_START, CONTROL_TOKENS, check_tokenizer

IMAGE_MEAN = 0.5  # Qwen3-VL's image processor: (x / 255 - 0.5) / 0.5
IMAGE_STD = 0.5
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True)
class ImageProcessing:
    """The backbone's image-processor bounds (Qwen2-VL ``size``: ``shortest_edge`` = min pixels, ``longest_edge`` =
    max pixels) and where they came from."""

    min_pixels: int
    max_pixels: int
    source: str


# Qwen3-VL's preprocessor_config.json values (size.shortest_edge / longest_edge), which Cosmos-Reason2-2B keeps; the
# gated repository was not read here. The tiny preset's bounds allow its 48-px frames (9 tokens) without upscaling.
KNOWN_IMAGE_PROCESSING = {
    COSMOS_REASON2_2B: (65536, 16777216),
    "groot-ft/n1.7-tiny": (16 * 16 * 4, 16 * 16 * 4096),
}


def image_processing_for(config, tokenizer_dir: str | Path | None = None) -> ImageProcessing:
    """The backbone's image-processor bounds: the known values for the config's ``model_name``, checked against the
    ``preprocessor_config.json`` beside the tokenizer when there is one (a Cosmos-Reason2-2B snapshot has one); for
    an unknown backbone, that file's. A file that disagrees with what this collator hard-codes (mean/std 0.5, the
    config's patch sizes) or with the known bounds is an error: training and serving must not resize differently."""
    known = KNOWN_IMAGE_PROCESSING.get(config.model_name)
    path = None if tokenizer_dir is None else Path(tokenizer_dir) / "preprocessor_config.json"
    if path is not None and path.is_file():
        data = json.loads(path.read_text())
        size = data.get("size") or {}
        bounds = (size.get("shortest_edge", data.get("min_pixels")), size.get("longest_edge", data.get("max_pixels")))
        vision = config.vlm_config.vision_config
        expected = {"patch_size": vision.patch_size, "merge_size": vision.spatial_merge_size,
                    "temporal_patch_size": vision.temporal_patch_size, "image_mean": [IMAGE_MEAN] * 3,
                    "image_std": [IMAGE_STD] * 3}
        wrong = [f"{k} {data[k]} (expected {v})" for k, v in expected.items() if k in data and data[k] != v]
        if known is not None and None not in bounds and tuple(map(int, bounds)) != known:
            wrong.append(f"min/max pixels {bounds} (expected {known} for {config.model_name})")
        if wrong:
            raise ValueError(f"{path}: {'; '.join(wrong)}")
        if None not in bounds:
            return ImageProcessing(int(bounds[0]), int(bounds[1]), f"{path} (size), agreeing with the model config")
    if known is None:
        raise ValueError(
            f"no image-processor bounds for backbone {config.model_name!r}: put its preprocessor_config.json beside "
            "the tokenizer (tokenizer_path)"
        )
    return ImageProcessing(*known, f"known bounds of {config.model_name} (min_pixels {known[0]}, "
                                    f"max_pixels {known[1]})")


def qwen_smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: each side rounded (half to even) to a multiple of ``factor``; if the area leaves
    [min_pixels, max_pixels], both sides are scaled from the original size and floored / ceiled to ``factor``."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image of {height}x{width} has an aspect ratio over {MAX_ASPECT_RATIO}")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def render_prompt(text: str, image_tokens: Sequence[int]) -> str:
    """The string Qwen3-VL's chat template renders for one user turn (images, then text) with each ``<|image_pad|>``
    expanded to its token count, as the processor tokenises it."""
    images = "".join(f"{VISION_START}{IMAGE_PAD * n}{VISION_END}" for n in image_tokens)
    return f"{IM_START}user\n{images}{text}{IM_END}\n"


class Qwen3VLImages:
    """The image half of the collator: Qwen2-VL's resize, normalisation and patches for one backbone config (no
    tokenizer needed, so the geometry can be inspected on its own)."""

    def __init__(self, config, image_processing: ImageProcessing | None = None):
        vision = config.vlm_config.vision_config
        self.patch_size = int(vision.patch_size)
        self.merge_size = int(vision.spatial_merge_size)
        self.temporal_patch_size = int(vision.temporal_patch_size)
        self.factor = self.patch_size * self.merge_size
        self.image_processing = image_processing or image_processing_for(config)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        p = self.image_processing
        return qwen_smart_resize(height, width, self.factor, p.min_pixels, p.max_pixels)

    def image_tokens(self, height: int, width: int) -> int:
        return (height // self.patch_size) * (width // self.patch_size) // (self.merge_size**2)

    def resized_images(self, images: np.ndarray) -> list[np.ndarray]:
        """uint8 (N, 3, H, W) -> the uint8 (3, h, w) images the vision tower sees, before normalisation."""
        arr = uint8_images(images)
        out = []
        for image in arr:
            h, w = self.target_size(image.shape[1], image.shape[2])
            if (h, w) != image.shape[1:]:
                x = torch.from_numpy(np.ascontiguousarray(image))[None].float()
                x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
                image = x[0].clamp_(0, 255).round_().to(torch.uint8).numpy()
            out.append(image)
        return out

    def patches(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (3, h, w) images -> flattened patches (sum of h*w/patch^2, C*T*P*P) and ``image_grid_thw``."""
        if not images:
            width = 3 * self.temporal_patch_size * self.patch_size**2
            return torch.zeros(0, width), torch.zeros(0, 3, dtype=torch.long)
        pixels, grids = [], []
        for image in images:
            x = torch.from_numpy(np.ascontiguousarray(image))[None].float().div_(255.0).sub_(IMAGE_MEAN).div_(IMAGE_STD)
            p, g = images_to_patches(x, self.patch_size, self.temporal_patch_size, self.merge_size)
            pixels.append(p)
            grids.append(g)
        return torch.cat(pixels), torch.cat(grids)


class Gr00tN17Collator:
    def __init__(self, tokenizer, config, image_processing: ImageProcessing | None = None):
        self.tokenizer = tokenizer
        self.config = config
        if image_processing is None:  # a tokenizer loaded from a directory remembers it (name_or_path)
            image_processing = image_processing_for(config, getattr(tokenizer, "name_or_path", None) or None)
        self.images = Qwen3VLImages(config, image_processing)
        self.image_processing = self.images.image_processing
        self.patch_size = self.images.patch_size
        self.ids = check_tokenizer(tokenizer, config.vlm_config)
        self.pad_id = int(tokenizer.pad_token_id)
        self.max_state_dim = int(config.max_state_dim)
        self.max_action_dim = int(config.max_action_dim)
        self.action_horizon = int(config.action_horizon)
        self.state_history_length = int(config.state_history_length)
        self.chat_template_check = self._check_chat_template()

    def _check_chat_template(self) -> str:
        """Compare our rendering with the tokenizer's own chat template, where it ships one."""
        if not getattr(self.tokenizer, "chat_template", None):
            return "the tokenizer has no chat template; the prompt follows Qwen3-VL's (one user turn, images first)"
        content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "x"}]
        conversation = [{"role": "user", "content": content}]
        theirs = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        ours = render_prompt("x", [1, 1])
        if theirs != ours:
            raise ValueError(f"the tokenizer's chat template renders {theirs!r} where Qwen3-VL's renders {ours!r}; "
                             "is this nvidia/Cosmos-Reason2-2B's tokenizer?")
        return "the prompt equals the tokenizer's own chat template"

    # --- text ---------------------------------------------------------------------------------------------------------
    def _encode(self, text: str, split_special: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"])

    def sequence(self, text: str, image_tokens: Sequence[int]) -> list[int]:
        ids = [self.ids[IM_START]] + self._encode("user\n")
        for n in image_tokens:
            ids += [self.ids[VISION_START]] + [self.ids[IMAGE_PAD]] * int(n) + [self.ids[VISION_END]]
        ids += self._encode(text, split_special=any(t in text for t in CONTROL_TOKENS))
        return ids + [self.ids[IM_END]] + self._encode("\n")

    # --- images (Qwen3VLImages) -------------------------------------------------------------------------------------
    def image_tokens(self, height: int, width: int) -> int:
        return self.images.image_tokens(height, width)

    def resized_images(self, images: np.ndarray) -> list[np.ndarray]:
        return self.images.resized_images(images)

    # --- batch --------------------------------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        sequences, images = [], []
        for sample in samples:
            resized = self.resized_images(sample["images"])
            images.extend(resized)
            counts = [self.image_tokens(*i.shape[1:]) for i in resized]
            sequences.append(self.sequence(str(sample["text"]), counts))
        input_ids, attention_mask = left_pad(sequences, self.pad_id)  # upstream sets the tokenizer's padding side
        pixel_values, grid = self.images.patches(images)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.ids[IMAGE_PAD]).long(),
            "pixel_values": pixel_values,
            "image_grid_thw": grid,
            "state": self._stack(samples, "state", (self.state_history_length, self.max_state_dim)),
            "embodiment_id": torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.long),
        }
        batch.update(collate_actions(samples, (self.action_horizon, self.max_action_dim), self._stack))
        return batch

    @staticmethod
    def _stack(samples: Sequence[Mapping], key: str, shape: tuple[int, int]) -> torch.Tensor:
        arrays = [np.asarray(s[key], dtype=np.float32) for s in samples]
        for arr in arrays:
            if arr.shape != shape:
                raise ValueError(f"{key} must have shape {shape} (the model's padding), got {arr.shape}")
        return torch.from_numpy(np.stack(arrays))
