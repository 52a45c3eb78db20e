"""`Gr00tCollator`: a list of processed samples -> one batch of tensors for ``model(**batch)``.

Per-sample input (from the project's processor):
    state (T_s, max_state_dim) float32, action (H, max_action_dim) float32 [optional], action_mask like action
    [optional], images (N_img, 3, H, W) uint8 (frames x cameras, time-major), text str, embodiment_id int.

Token layout of one sample, left-padded across the batch like upstream's Eagle processor:

* upstream's Eagle/Qwen3 tokenizer: the Eagle chat template upstream's N1.6 processor renders (one user turn, no
  assistant turn), with each image expanded as upstream's Eagle processor expands it::

      <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n{text}
      <image 1><img><IMG_CONTEXT> x n_1</img><image 2><img>...</img><|im_end|>\\n

  tokenised as one string, exactly as upstream does (``{text}`` with the processor's language normalisation);
* this project's byte tokenizer (presets): ``{text bytes}[<img><IMG_CONTEXT> x n</img>] x N_img``.

Images (upstream geometry, ``config.image_size`` None): each image keeps its aspect ratio and is resized with
:func:`smart_resize` to multiples of ``config.image_factor`` (28 px for Eagle: 14-px patches, 2x2 pixel shuffle) with
PIL's bicubic filter, then normalised with mean/std 0.5; ``n_i = (h/28) * (w/28)``: 81 tokens for a 256 x 256 frame
(-> 252 x 252). With a square ``config.image_size`` (the small presets) every image is squashed to that square.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .tokenizer import (
    CHAT_END,
    CHAT_START,
    CHAT_SYSTEM_PREAMBLE,
    IMG_CONTEXT_TOKEN,
    IMG_END_TOKEN,
    IMG_START_TOKEN,
    special_token_ids,
    uses_chat_prompt,
)

IMAGE_MEAN = 0.5  # upstream Eagle/SigLIP2 normalisation: (x / 255 - 0.5) / 0.5 -> [-1, 1]
IMAGE_STD = 0.5
# upstream's Eagle processor bounds (in units of the token factor): at least 4 tokens, at most 4096, no side over
# 500 patches, aspect ratio at most 200
MIN_TOKENS = 4
MAX_TOKENS = 4096
MAX_SIDE_PATCHES = 500
MAX_ASPECT_RATIO = 200


# --- batch pieces both families' collators use (N1.7: n17/collator.py) -----------------------------------------------
def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``input_ids`` and ``attention_mask`` (B, longest), left-padded as upstream's processors pad."""
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            input_ids[row, length - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, length - len(seq) :] = 1
    return input_ids, attention_mask


def collate_actions(
    samples: Sequence[Mapping], shape: tuple[int, int], stack: Callable[[Sequence[Mapping], str, tuple], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``action`` and ``action_mask`` (all ones where the samples give none) when the samples carry actions, else {}.

    ``stack(samples, key, shape)`` is the collator's own stacking: the families check shapes differently.
    """
    has_action = ["action" in s and s["action"] is not None for s in samples]
    if not any(has_action):
        return {}
    if not all(has_action):
        raise ValueError("either all samples of a batch carry 'action' or none does")
    action = stack(samples, "action", shape)
    if all(s.get("action_mask") is not None for s in samples):
        return {"action": action, "action_mask": stack(samples, "action_mask", shape)}
    return {"action": action, "action_mask": torch.ones_like(action)}


def uint8_images(images) -> np.ndarray:
    """A sample's images as a uint8 (N_img, 3, H, W) array, or a ValueError naming what is off."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"images must be (N_img, 3, H, W), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    return arr


def smart_resize(height: int, width: int, factor: int, patch_size: int) -> tuple[int, int]:
    """Upstream's (Qwen2-VL style) target size: each side rounded to a multiple of ``factor`` (Python's round,
    half to even), the area kept within [4, 4096] x factor^2 pixels by scaling both sides, the aspect ratio kept as
    closely as that allows."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"image of {height}x{width} has an aspect ratio over {MAX_ASPECT_RATIO}")
    max_side = MAX_SIDE_PATCHES * patch_size
    h = min(max(factor, round(height / factor) * factor), max_side)
    w = min(max(factor, round(width / factor) * factor), max_side)
    if h * w > MAX_TOKENS * factor * factor:
        beta = math.sqrt(h * w / (MAX_TOKENS * factor * factor))
        h = math.floor(h / beta / factor) * factor
        w = math.floor(w / beta / factor) * factor
    elif h * w < MIN_TOKENS * factor * factor:
        beta = math.sqrt(MIN_TOKENS * factor * factor / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


class Gr00tCollator:
    def __init__(self, tokenizer, config, max_text_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.image_size = None if config.image_size is None else int(config.image_size)
        self.image_factor = int(config.image_factor)
        self.patch_size = int(config.vision_config.patch_size)
        self.max_state_dim = int(config.max_state_dim)
        self.max_action_dim = int(config.max_action_dim)
        self.action_horizon = int(config.action_horizon)
        self.max_text_tokens = max_text_tokens
        ids = special_token_ids(tokenizer)
        if ids[IMG_CONTEXT_TOKEN] != config.image_token_index:
            raise ValueError(
                f"tokenizer's {IMG_CONTEXT_TOKEN} id {ids[IMG_CONTEXT_TOKEN]} != config.image_token_index "
                f"{config.image_token_index}"
            )
        self.ids = ids
        self.pad_id = int(tokenizer.pad_token_id)
        self.chat = uses_chat_prompt(tokenizer)
        # Strings an instruction must not smuggle in as control tokens (upstream would parse them; ours splits them).
        self._special_strings = tuple(str(t) for t in getattr(tokenizer, "all_special_tokens", ())) + (
            IMG_START_TOKEN, IMG_END_TOKEN, IMG_CONTEXT_TOKEN)

    # --- text ---------------------------------------------------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        # split_special_tokens: an instruction containing "<img>" must not inject image tokens.
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if self.max_text_tokens is not None:
            ids = ids[: self.max_text_tokens]
        return list(ids)

    def image_tokens(self, height: int, width: int) -> int:
        return (height // self.image_factor) * (width // self.image_factor)

    def prompt(self, text: str, image_tokens: Sequence[int]) -> str:
        """The rendered prompt (chat tokenizers): what :meth:`sequence` tokenises."""
        images = "".join(
            f"<image {i}>{IMG_START_TOKEN}{IMG_CONTEXT_TOKEN * n}{IMG_END_TOKEN}" for i, n in enumerate(image_tokens, 1)
        )
        return f"{CHAT_SYSTEM_PREAMBLE}{CHAT_START}user\n{text}{images}{CHAT_END}\n"

    def sequence(self, text: str, image_tokens: Sequence[int]) -> list[int]:
        if not self.chat:
            ids = self.text_ids(text)
            for n in image_tokens:
                ids += [self.ids[IMG_START_TOKEN]] + [self.ids[IMG_CONTEXT_TOKEN]] * n + [self.ids[IMG_END_TOKEN]]
            return ids
        if self.max_text_tokens is not None:
            text = self.tokenizer.decode(self.text_ids(text))
        if not any(s in text for s in self._special_strings):
            # One string, as upstream tokenises it: BPE merges across the text's edges come out the same.
            return list(self.tokenizer(self.prompt(text, image_tokens), add_special_tokens=False)["input_ids"])
        # An instruction holding a control-token string: tokenise it on its own with those strings split.
        head, tail = self.prompt("\0", image_tokens).split("\0")
        encode = self.tokenizer
        return (list(encode(head, add_special_tokens=False)["input_ids"]) + self.text_ids(text)
                + list(encode(tail, add_special_tokens=False)["input_ids"]))

    # --- images -------------------------------------------------------------------------------------------------------
    def resized_images(self, images: np.ndarray) -> list[np.ndarray]:
        """uint8 (N, 3, H, W) -> the uint8 (3, h, w) images the vision tower sees, before normalisation."""
        arr = uint8_images(images)
        if self.image_size is not None:
            side = self.image_size
            if arr.shape[-2:] == (side, side):
                return list(arr)
            x = F.interpolate(torch.from_numpy(np.ascontiguousarray(arr)).float(), size=(side, side), mode="bilinear",
                              antialias=True)
            return list(x.round_().clamp_(0, 255).to(torch.uint8).numpy())
        from PIL import Image

        out = []
        for image in arr:
            h, w = smart_resize(image.shape[1], image.shape[2], self.image_factor, self.patch_size)
            if (h, w) != image.shape[1:]:
                pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
                image = np.asarray(pil.resize((w, h), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
            out.append(image)
        return out

    def square_images(self, images: np.ndarray) -> torch.Tensor:
        """Presets: uint8 (or float in [0, 1]) (N, 3, H, W) -> float32 (N, 3, S, S) in [-1, 1], squashed (bilinear,
        antialiased) unless already S x S, so the whole field of view is kept."""
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[1] != 3:
            raise ValueError(f"images must be (N_img, 3, H, W), got {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).float()
        if arr.dtype == np.uint8:
            x = x / 255.0
        side = self.image_size
        if x.shape[-2:] != (side, side) and x.shape[0] > 0:
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True).clamp_(0.0, 1.0)
        return (x - IMAGE_MEAN) / IMAGE_STD

    @staticmethod
    def normalise(images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 (3, h, w) images -> float32 (N, 3, H, W) in [-1, 1], zero-padded to the largest at the bottom/right."""
        if not images:
            return torch.zeros(0, 3, 1, 1)
        height = max(i.shape[1] for i in images)
        width = max(i.shape[2] for i in images)
        out = torch.zeros(len(images), 3, height, width)
        for k, image in enumerate(images):
            x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0).sub_(IMAGE_MEAN).div_(IMAGE_STD)
            out[k, :, : image.shape[1], : image.shape[2]] = x
        return out

    # --- batch --------------------------------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        sequences, images, squares = [], [], []
        for sample in samples:
            if self.image_size is not None:
                pixels = self.square_images(sample["images"])
                squares.append(pixels)
                sizes = [pixels.shape[-2:]] * pixels.shape[0]
            else:
                resized = self.resized_images(sample["images"])
                images.extend(resized)
                sizes = [i.shape[1:] for i in resized]
            sequences.append(self.sequence(str(sample["text"]), [self.image_tokens(*hw) for hw in sizes]))

        input_ids, attention_mask = left_pad(sequences, self.pad_id)

        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            # All images of the batch, sample by sample, in the order of their <IMG_CONTEXT> blocks.
            "pixel_values": torch.cat(squares) if squares else self.normalise(images),
            "state": self._stack(samples, "state", (None, self.max_state_dim)),
            "embodiment_id": torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.long),
        }
        if len({i.shape for i in images}) > 1:
            batch["image_sizes"] = torch.tensor([i.shape[1:] for i in images], dtype=torch.long)
        batch.update(collate_actions(samples, (self.action_horizon, self.max_action_dim), self._stack))
        return batch

    @staticmethod
    def _stack(samples: Sequence[Mapping], key: str, shape: tuple[int | None, int]) -> torch.Tensor:
        arrays = [np.asarray(s[key], dtype=np.float32) for s in samples]
        for arr in arrays:
            if arr.ndim != 2 or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
                raise ValueError(f"{key} must have shape {shape} (None = any), got {arr.shape}")
        if len({arr.shape for arr in arrays}) > 1:
            raise ValueError(f"{key} shapes differ within the batch: {sorted({a.shape for a in arrays})}")
        return torch.from_numpy(np.stack(arrays))
