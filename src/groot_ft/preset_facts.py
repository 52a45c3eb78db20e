"""What the data stages need to know about each model preset, without importing the model package (torch and
transformers take seconds to import, and every workflow rule is a fresh process). tests/test_hub.py checks this table
against the presets themselves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresetFacts:
    image_edge: int  # the working image size: a square image_size, else the processor's shortest edge
    max_state_dim: int
    max_action_dim: int
    action_horizon: int


PRESET_FACTS = {
    "tiny": PresetFacts(48, 32, 32, 16),
    "mid": PresetFacts(224, 64, 64, 16),
    "n1.6-3b": PresetFacts(256, 128, 128, 50),
    # N1.7 works at its processor's shortest edge; Qwen3-VL resizes the rest
    "n1.7-tiny": PresetFacts(48, 32, 32, 16),
    "n1.7-3b": PresetFacts(256, 132, 132, 40),
}
