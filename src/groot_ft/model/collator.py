"""`Gr00tCollator`: a list of processed samples -> one batch of tensors for ``model(**batch)``.

Per-sample input (from the project's processor):
    state (T_s, max_state_dim) float32, action (H, max_action_dim) float32 [optional], action_mask like action
    [optional], images (N_img, 3, H, W) uint8 (frames x cameras, time-major), text str, embodiment_id int.

Token layout of one sample (left-padded across the batch, like upstream's Eagle processor):
    <text bytes...> [<img> <IMG_CONTEXT> x num_image_tokens </img>] x N_img
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .tokenizer import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN, special_token_ids

IMAGE_MEAN = 0.5  # upstream Eagle/SigLIP2 normalisation: (x / 255 - 0.5) / 0.5 -> [-1, 1]
IMAGE_STD = 0.5


class Gr00tCollator:
    def __init__(self, tokenizer, config, max_text_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.image_size = int(config.image_size)
        self.num_image_tokens = int(config.num_image_tokens)
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
        self.pad_id = int(tokenizer.pad_token_id)
        self.image_block = (
            [ids[IMG_START_TOKEN]] + [ids[IMG_CONTEXT_TOKEN]] * self.num_image_tokens + [ids[IMG_END_TOKEN]]
        )

    # --- text ---------------------------------------------------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        # split_special_tokens: an instruction containing "<img>" must not inject image tokens.
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if self.max_text_tokens is not None:
            ids = ids[: self.max_text_tokens]
        return list(ids)

    def sequence(self, text: str, num_images: int) -> list[int]:
        return self.text_ids(text) + self.image_block * num_images

    # --- images -------------------------------------------------------------------------------------------------------
    def images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float32 (N, 3, S, S) in [-1, 1]; resized only if not already S x S.

        Non-square frames are squashed (bilinear, antialiased), not cropped, so the whole field of view is kept;
        float input is taken to be in [0, 1] already.
        """
        arr = np.asarray(images)
        if arr.ndim != 4 or arr.shape[1] != 3:
            raise ValueError(f"images must be (N_img, 3, H, W), got {arr.shape}")
        x = torch.from_numpy(np.ascontiguousarray(arr)).float()
        if arr.dtype == np.uint8:
            x = x / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size) and x.shape[0] > 0:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
            x = x.clamp_(0.0, 1.0)
        return (x - IMAGE_MEAN) / IMAGE_STD

    # --- batch --------------------------------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        sequences, pixel_values = [], []
        for sample in samples:
            pixels = self.images(sample["images"])
            sequences.append(self.sequence(str(sample["text"]), pixels.shape[0]))
            pixel_values.append(pixels)

        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
        for row, seq in enumerate(sequences):  # left padding
            if seq:
                input_ids[row, length - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                attention_mask[row, length - len(seq) :] = 1

        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            # All images of the batch, sample by sample, in the order of their <IMG_CONTEXT> blocks.
            "pixel_values": torch.cat(pixel_values, dim=0),
            "state": self._stack(samples, "state", (None, self.max_state_dim)),
            "embodiment_id": torch.tensor([int(s["embodiment_id"]) for s in samples], dtype=torch.long),
        }
        has_action = ["action" in s and s["action"] is not None for s in samples]
        if any(has_action):
            if not all(has_action):
                raise ValueError("either all samples of a batch carry 'action' or none does")
            shape = (self.action_horizon, self.max_action_dim)
            batch["action"] = self._stack(samples, "action", shape)
            if all(s.get("action_mask") is not None for s in samples):
                batch["action_mask"] = self._stack(samples, "action_mask", shape)
            else:
                batch["action_mask"] = torch.ones_like(batch["action"])
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
