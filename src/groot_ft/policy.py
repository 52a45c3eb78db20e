"""Gr00tPolicy: load a fine-tuned output directory (or checkpoint) and turn observations into actions.

Observation and action dicts follow upstream's policy API::

    observation = {
        "video": {"front": uint8 (B, T, H, W, 3), ...},
        "state": {"arm": float32 (B, T, D), ...},
        "language": {"annotation.human.task_description": [["move the arm to the red target"]] * B},
    }
    action = policy.get_action(observation)   # {"arm": float32 (B, T_action, D), ...} in physical units

Unbatched observations (no leading B) are accepted and give unbatched actions.

Real-time chunking (RTC, GR00T N1.7 only), as upstream's ``get_action(observation, options)``::

    options = {"action_horizon": 16, "rtc_overlap_steps": 8, "rtc_frozen_steps": 2, "rtc_ramp_rate": 5.0}
    chunk = policy.get_action(observation, options=options)            # first call: nothing to continue, plain
    chunk = policy.get_action(next_observation, options=options)       # starts from the previous chunk's tail
    chunk = policy.get_action(next_observation, options=options, previous_action=chunk_sent)  # or name it
    policy.reset()                                                     # new episode: forget the kept chunk

The previous chunk is in physical units, as ``get_action`` returned it; the policy normalises it against the
current state through the processor (as upstream's processor does with a step's actions), so the first
``rtc_frozen_steps`` rows of the new chunk equal rows ``[action_horizon - rtc_overlap_steps, ...)`` of the previous
one, in physical units (they are returned as given: already committed; ``policy.last_info`` counts values the
model's chunk did not reproduce because the normalisation clipped them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from groot_ft.embodiment import normalize_tag
from groot_ft.errors import UserError, UserKeyError

# The RTC options the N1.7 model reads (upstream's names); ``action_horizon`` is the previous chunk's real horizon.
RTC_OPTIONS = ("action_horizon", "rtc_overlap_steps", "rtc_frozen_steps", "rtc_ramp_rate")


class UnknownEmbodimentError(UserKeyError):
    """The model has no modality config for the asked embodiment tag."""


class PolicyOptionsError(UserError, ValueError):
    """``get_action`` options (or the previous chunk) the model cannot use; the message says why."""


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
        self._previous_action: dict[str, np.ndarray] | None = None  # the last chunk returned (batched), for RTC
        # about the last get_action, as upstream's info dict: whether RTC applied, how many frozen values the model's
        # chunk did not reproduce (clipped by the normalisation) and were replaced by the committed ones
        self.last_info: dict[str, Any] = {}

    def reset(self) -> None:
        """Forget the kept chunk (a new episode): the next RTC call samples from noise alone."""
        self._previous_action = None

    def _rtc_options(self, options: dict[str, Any] | None) -> dict[str, float] | None:
        """The RTC options checked against the model and embodiment; None when none are given."""
        if not options:
            return None
        unknown = sorted(set(options) - set(RTC_OPTIONS))
        if unknown:
            raise PolicyOptionsError(f"get_action options {unknown} are not known (known: {', '.join(RTC_OPTIONS)})")
        if getattr(self.model.config, "model_type", None) != "Gr00tN1d7":
            raise PolicyOptionsError(
                f"real-time chunking options ({', '.join(sorted(options))}) need a GR00T N1.7 model; "
                f"{self.model_path or 'this model'} is {getattr(self.model.config, 'model_type', '?')} (N1.6 has no "
                "RTC: call get_action without options)"
            )
        steps = len(self.modality_config.action.delta_indices)
        # the policy knows the chunk's real horizon, so action_horizon may be left out (upstream requires it)
        merged = {"action_horizon": steps, **options}
        missing = [key for key in RTC_OPTIONS if key not in merged]
        if missing:
            raise PolicyOptionsError(f"real-time chunking needs {', '.join(missing)} in options "
                                     f"(all of: {', '.join(RTC_OPTIONS)})")
        try:
            horizon, overlap, frozen = (int(merged[k]) for k in RTC_OPTIONS[:3])
            rate = float(merged["rtc_ramp_rate"])
        except (TypeError, ValueError):
            raise PolicyOptionsError(f"RTC options must be numbers, got {options!r}") from None
        if any(float(merged[k]) != int(merged[k]) for k in RTC_OPTIONS[:3]):
            raise PolicyOptionsError(f"{', '.join(RTC_OPTIONS[:3])} must be whole numbers of steps, got {options!r}")
        if not 0 <= frozen <= overlap <= horizon <= steps:
            raise PolicyOptionsError(
                f"RTC needs 0 <= rtc_frozen_steps ({frozen}) <= rtc_overlap_steps ({overlap}) <= action_horizon "
                f"({horizon}) <= the embodiment's {steps} action steps"
            )
        if not np.isfinite(rate):
            raise PolicyOptionsError(f"rtc_ramp_rate must be finite, got {rate}")
        return {"action_horizon": horizon, "rtc_overlap_steps": overlap, "rtc_frozen_steps": frozen,
                "rtc_ramp_rate": rate}

    def _previous_steps(self, previous: dict[str, Any], batched: bool, batch: int) -> list[dict[str, np.ndarray]]:
        """The previous chunk (physical units, per action group) split per sample, shape-checked."""
        keys = self.modality_config.action.modality_keys
        steps = len(self.modality_config.action.delta_indices)
        missing = [k for k in keys if k not in previous]
        if missing:
            raise PolicyOptionsError(f"previous_action lacks action group(s) {missing} (needs: {', '.join(keys)})")
        arrays = {k: np.asarray(previous[k], dtype=np.float32) for k in keys}
        if not batched:
            arrays = {k: v[None] for k, v in arrays.items()}
        for key, value in arrays.items():
            if value.ndim != 3 or value.shape[0] != batch or value.shape[1] != steps:
                raise PolicyOptionsError(f"previous_action[{key!r}] has shape {np.shape(previous[key])}; expected "
                                         f"{'(B, T, D) with B = ' + str(batch) if batched else '(T, D)'}, "
                                         f"T = {steps}, as get_action returned it")
        return [{k: v[b] for k, v in arrays.items()} for b in range(batch)]

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
    def get_action(self, observation: dict[str, Any], options: dict[str, Any] | None = None, *,
                   previous_action: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """An action chunk per action group in physical units. ``options``: RTC settings (N1.7, see the module
        docstring); ``previous_action``: the chunk to continue (default: the one this policy returned last)."""
        rtc = self._rtc_options(options)
        steps, batched = self._split(observation)
        if previous_action is not None and rtc is None:
            raise PolicyOptionsError("previous_action is only used for real-time chunking: pass the RTC options too")
        previous = previous_action if previous_action is not None else self._previous_action
        if rtc is not None and previous is not None:
            if previous is self._previous_action:  # kept batched whatever the caller's layout
                kept_batch = next(iter(previous.values())).shape[0]
                if kept_batch != len(steps):
                    raise PolicyOptionsError(f"the kept chunk is for {kept_batch} sample(s), this observation has "
                                             f"{len(steps)}; call reset() or pass previous_action")
                per_sample = self._previous_steps(previous, True, len(steps))
            else:
                per_sample = self._previous_steps(previous, batched, len(steps))
            # Shift in physical units, then normalise: row i of the new chunk continues row start + i of the old
            # one, and is normalised with row i's statistics and the current state (RELATIVE groups), exactly as
            # decode_action below reads row i back. Upstream normalises the old chunk at its own row positions,
            # which with per-step RELATIVE statistics does not give back the old physical values.
            start, overlap = rtc["action_horizon"] - rtc["rtc_overlap_steps"], rtc["rtc_overlap_steps"]
            shifted = [{k: _shift_rows(v, start, overlap) for k, v in chunk.items()} for chunk in per_sample]
            steps = [{**step, "action": chunk} for step, chunk in zip(steps, shifted, strict=True)]
            rtc = {**rtc, "action_horizon": overlap}  # the shifted chunk's overlap rows are its first ones
        else:
            rtc = None  # nothing to continue (first call of an episode): plain sampling, as upstream
        samples = [self.processor(step, self.embodiment_tag) for step in steps]
        batch = self.collator(samples)
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        for key, value in batch.items():
            if torch.is_tensor(value) and value.is_floating_point():
                batch[key] = value.to(self.model.dtype)
        # the policy's own generator: repeatable actions without touching the process-wide RNG
        extra = {} if rtc is None else {"previous_action": batch["action"], "options": rtc}
        pred = self.model.get_action(**batch, generator=self.generator, **extra)["action_pred"]
        pred = pred.float().cpu().numpy()
        states = {k: np.stack([s["state"][k] for s in steps]) for k in self.modality_config.state.modality_keys}
        actions = self.processor.decode_action(pred, self.embodiment_tag, states)
        self.last_info = {"rtc_applied": rtc is not None, "frozen_values_replaced": 0}
        if rtc is not None and rtc["rtc_frozen_steps"]:
            # Frozen rows are actions already committed (sent while this chunk was computed): they are returned as
            # given. The model reproduces them to float precision unless a value lies outside its new row's
            # normalisation range (RELATIVE groups with per-step statistics, a state that moved), where the
            # processor clipped it; last_info counts such values.
            frozen = rtc["rtc_frozen_steps"]
            for key, value in actions.items():
                committed = np.stack([chunk[key][:frozen] for chunk in shifted])
                off = ~np.isclose(value[:, :frozen], committed, rtol=1e-5, atol=1e-5)
                self.last_info["frozen_values_replaced"] += int(off.sum())
                value[:, :frozen] = committed
        self._previous_action = {k: v.copy() for k, v in actions.items()}
        if not batched:
            actions = {k: v[0] for k, v in actions.items()}
        return actions


def _shift_rows(chunk: np.ndarray, start: int, count: int) -> np.ndarray:
    """``chunk`` (T, D) with rows ``[start, start + count)`` moved to the front; the rest repeat the last of them
    (placeholders the model never reads: only the first ``count`` rows are copied in)."""
    rows = chunk[start : start + count]
    filler = np.repeat(chunk[start + count - 1 : start + count] if count else chunk[-1:], len(chunk) - count, axis=0)
    return np.concatenate([rows, filler], axis=0).astype(np.float32)
