"""Gr00tPolicy: load a fine-tuned output directory (or checkpoint) and turn observations into actions.

Observation and action dicts follow upstream's policy API::

    observation = {
        "video": {"front": uint8 (B, T, H, W, 3), ...},
        "state": {"arm": float32 (B, T, D), ...},
        "language": {"annotation.human.task_description": [["move the arm to the red target"]] * B},
    }
    action = policy.get_action(observation)   # {"arm": float32 (B, T_action, D), ...} in physical units

Unbatched observations (no leading B) are accepted and give unbatched actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from groot_ft.embodiment import normalize_tag
from groot_ft.errors import UserKeyError


class UnknownEmbodimentError(UserKeyError):
    """The model has no modality config for the asked embodiment tag."""


class Gr00tPolicy:
    def __init__(self, model_path: str | Path, embodiment_tag: str, device: str | torch.device = "cpu",
                 seed: int | None = 0):
        from groot_ft.model import create_model
        from groot_ft.processor_n17 import load_processor

        self.model_path = Path(model_path)
        # create_model checks for missing weights and also reads upstream checkpoints (which ship no tokenizer)
        model, tokenizer = create_model(self.model_path, bf16_weights=False)
        processor = load_processor(self.model_path)  # N1.6's or N1.7's, as processor_config.json names it
        self._attach(model, tokenizer, processor, embodiment_tag, device, seed)

    @classmethod
    def from_model(cls, model, tokenizer, processor, embodiment_tag: str, device: str | torch.device = "cpu",
                   seed: int | None = 0) -> Gr00tPolicy:
        """A policy over a model already in memory (e.g. right after training), without a round trip to disk.
        The model is moved and cast in place, as when loading."""
        policy = cls.__new__(cls)
        policy.model_path = None
        policy._attach(model, tokenizer, processor, embodiment_tag, device, seed)
        return policy

    def _attach(self, model, tokenizer, processor, embodiment_tag, device, seed) -> None:
        from groot_ft.model import make_collator

        self.embodiment_tag = normalize_tag(embodiment_tag)
        self.device = torch.device(device)
        self.model, self.tokenizer = model, tokenizer
        self.model.eval()
        # bf16 weights on GPU as upstream serves them; CPU keeps fp32 (bf16 matmuls are slow there)
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model.to(self.device, dtype)
        self.processor = processor.eval()
        if self.embodiment_tag not in self.processor.modality_configs:
            known = ", ".join(sorted(self.processor.modality_configs))
            raise UnknownEmbodimentError(f"{self.model_path or 'this model'}: no modality config for embodiment "
                           f"{self.embodiment_tag!r} (it knows: {known}); fine-tune on that embodiment first")
        self.modality_config = self.processor.modality_configs[self.embodiment_tag]
        self.collator = make_collator(self.tokenizer, self.model.config)
        self.generator = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)

    def _split(self, observation: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        cfg = self.modality_config
        first_video = np.asarray(observation["video"][cfg.video.modality_keys[0]])
        batched = first_video.ndim == 5
        if not batched:
            observation = {
                "video": {k: np.asarray(v)[None] for k, v in observation["video"].items()},
                "state": {k: np.asarray(v)[None] for k, v in observation["state"].items()},
                "language": {k: [v] for k, v in observation["language"].items()},
            }
        batch = first_video.shape[0] if batched else 1
        steps = []
        for b in range(batch):
            language = {}
            for key, values in observation["language"].items():
                item = values[b]
                language[key] = item[0] if isinstance(item, (list, tuple)) else item
            steps.append({
                "video": {k: np.asarray(v[b]) for k, v in observation["video"].items()},
                "state": {k: np.asarray(v[b], dtype=np.float32) for k, v in observation["state"].items()},
                "language": language,
            })
        return steps, batched

    @torch.no_grad()
    def get_action(self, observation: dict[str, Any]) -> dict[str, np.ndarray]:
        steps, batched = self._split(observation)
        samples = [self.processor(step, self.embodiment_tag) for step in steps]
        batch = self.collator(samples)
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for key, value in batch.items():
            if torch.is_tensor(value) and value.is_floating_point():
                batch[key] = value.to(self.model.dtype)
        # the policy's own generator: repeatable actions without touching the process-wide RNG
        pred = self.model.get_action(**batch, generator=self.generator)["action_pred"].float().cpu().numpy()
        states = {k: np.stack([s["state"][k] for s in steps]) for k in self.modality_config.state.modality_keys}
        actions = self.processor.decode_action(pred, self.embodiment_tag, states)
        if not batched:
            actions = {k: v[0] for k, v in actions.items()}
        return actions
