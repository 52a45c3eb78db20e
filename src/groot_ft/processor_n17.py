"""`Gr00tN17Processor`: upstream GR00T N1.7's per-sample processor (``Gr00tN1d7Processor``) on N1.6's machinery.

The state/action maths and the image crop are N1.6's (:class:`groot_ft.processor.Gr00tProcessor`, upstream's shared
``StateActionProcessor`` and albumentations path); what N1.7 changes is here:

* defaults: ``use_percentiles`` on (q01/q99 min-max to [-1, 1], clipped, 0 where q01 == q99; relative action
  groups keep their per-step ``relative_action`` min/max, as upstream), padding 132 / 132 / 40, backbone
  ``nvidia/Cosmos-Reason2-2B`` (``model_type`` ``qwen``), shortest edge 256 and crop fraction 0.95;
* language: formalised (lower case, punctuation dropped), and an empty instruction becomes "Perform the task."
  before that (LeRobot 0.6.1's ``prepare_n1_7_language_batch``), so the model reads "perform the task";
* the keys N1.7 adds to ``processor_config.json``: ``exclude_state`` (the state is fed as zeros),
  ``state_dropout_prob`` (in training, a sample's whole state is zeroed with that probability, upstream's
  processor-side dropout), ``letter_box_transform`` (a non-square frame is zero-padded to a centred square before
  the crop, :class:`groot_ft.image_transforms.ImageTransform`'s ``letter_box``), ``use_mean_std`` (recorded; turning
  it on is an error, it is not implemented), ``processor_class`` ``Gr00tN1d7Processor``.

The VLM tokenisation and the Qwen3-VL image geometry are the collator's
(:class:`groot_ft.model.n17.collator.Gr00tN17Collator`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from groot_ft.processor import PROCESSOR_CONFIG_NAME, Gr00tProcessor, ProcessorError

N17_PROCESSOR_CLASS = "Gr00tN1d7Processor"
COSMOS_REASON2_2B = "nvidia/Cosmos-Reason2-2B"
DEFAULT_INSTRUCTION = "Perform the task."


class Gr00tN17Processor(Gr00tProcessor):
    processor_class = N17_PROCESSOR_CLASS

    def __init__(
        self,
        modality_configs,
        statistics=None,
        embodiment_id_mapping=None,
        max_state_dim: int = 132,
        max_action_dim: int = 132,
        max_action_horizon: int = 40,
        shortest_image_edge: int = 256,
        crop_fraction: float = 0.95,
        random_rotation_angle: float | None = None,
        color_jitter_params=None,
        formalize_language: bool = True,
        use_percentiles: bool = True,
        clip_outliers: bool = True,
        apply_sincos_state_encoding: bool = False,
        use_relative_action: bool = True,
        seed: int | None = None,
        model_name: str = COSMOS_REASON2_2B,
        model_type: str = "qwen",
        image_crop_size: Any = None,
        image_target_size: Any = None,
        use_albumentations: bool = True,
        exclude_state: bool = False,
        state_dropout_prob: float = 0.0,
        use_mean_std: bool = False,
        letter_box_transform: bool = False,
    ) -> None:
        # Every argument is spelt out: from_pretrained keeps only the saved keys this signature names.
        if use_mean_std:
            raise ProcessorError("use_mean_std (z-scoring every group) is not implemented for N1.7; use "
                                 "mean_std_embedding_keys in the modality config for single groups")
        if not 0.0 <= float(state_dropout_prob) <= 1.0:
            raise ProcessorError(f"state_dropout_prob must be in [0, 1], got {state_dropout_prob!r}")
        self.letter_box_transform = bool(letter_box_transform)  # read by the base class's image transform
        super().__init__(
            modality_configs, statistics, embodiment_id_mapping, max_state_dim=max_state_dim,
            max_action_dim=max_action_dim, max_action_horizon=max_action_horizon,
            shortest_image_edge=shortest_image_edge, crop_fraction=crop_fraction,
            random_rotation_angle=random_rotation_angle, color_jitter_params=color_jitter_params,
            formalize_language=formalize_language, use_percentiles=use_percentiles, clip_outliers=clip_outliers,
            apply_sincos_state_encoding=apply_sincos_state_encoding, use_relative_action=use_relative_action,
            seed=seed, model_name=model_name, model_type=model_type, image_crop_size=image_crop_size,
            image_target_size=image_target_size, use_albumentations=use_albumentations,
        )
        self.exclude_state = bool(exclude_state)
        self.state_dropout_prob = float(state_dropout_prob)
        self.use_mean_std = False

    def _text(self, plan, language: Any) -> str:
        key = plan.config.language.modality_keys[0]
        if isinstance(language, Mapping) and key in language:
            text = language[key]
            while isinstance(text, (list, tuple, np.ndarray)) and len(text) == 1:
                text = text[0]
            if text is None or (isinstance(text, (str, bytes)) and not text.strip()):
                # LeRobot's default instruction for an empty one, formalised below like any other
                language = {**language, key: DEFAULT_INSTRUCTION}
        return super()._text(plan, language)

    def __call__(self, step, embodiment_tag: str, *, rng: np.random.Generator | None = None) -> dict[str, Any]:
        out = super().__call__(step, embodiment_tag, rng=rng)
        generator = rng if rng is not None else self._rng
        drop = self.training and self.state_dropout_prob > 0 and generator.random() < self.state_dropout_prob
        if self.exclude_state or drop:
            out["state"] = np.zeros_like(out["state"])
        return out

    def processor_kwargs(self) -> dict[str, Any]:
        return {
            **super().processor_kwargs(),
            "letter_box_transform": self.letter_box_transform,
            "use_mean_std": self.use_mean_std,
            "exclude_state": self.exclude_state,
            "state_dropout_prob": self.state_dropout_prob,
        }


def is_n17_config(model_config: Any) -> bool:
    return getattr(model_config, "model_type", None) == "Gr00tN1d7"


def processor_class_for(model_config: Any) -> type[Gr00tProcessor]:
    """The processor class a model's config calls for: N1.7's for ``model_type`` ``Gr00tN1d7``, else N1.6's."""
    return Gr00tN17Processor if is_n17_config(model_config) else Gr00tProcessor


def load_processor(directory: str | os.PathLike[str], **overrides: Any) -> Gr00tProcessor:
    """A saved processor of either family, chosen by its ``processor_config.json``'s ``processor_class``."""
    import json
    from pathlib import Path

    path = Path(directory) / PROCESSOR_CONFIG_NAME
    try:
        declared = json.loads(path.read_text()).get("processor_class")
    except (OSError, ValueError, AttributeError):
        declared = None  # Gr00tProcessor.from_pretrained reports the file's problem with its own message
    cls = Gr00tN17Processor if declared == N17_PROCESSOR_CLASS else Gr00tProcessor
    return cls.from_pretrained(directory, **overrides)
