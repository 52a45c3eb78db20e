"""Per-sample processor: normalises state/action, prepares images and text, pads to the model's fixed sizes.

Re-implements upstream GR00T N1.6's ``Gr00tN1d6Processor`` contract (``upstream-gr00t-n16.md`` §3.3, §5) without the
VLM tokenisation, which the model's collator does:

* input: one unbatched step ``{"video": {cam: uint8 (T, H, W, 3)}, "state": {group: (T_s, D)},
  "action": {group: (T_a, D)} (optional in eval), "language": {key: str}}``;
* output: ``{"state": float32 (T_s, max_state_dim), "action": float32 (max_action_horizon, max_action_dim),
  "action_mask": float32 (same), "images": uint8 (T*V, 3, H', W'), "text": str, "embodiment_id": int}``.

Normalisation per group (in ``modality_keys`` order): min/max -> [-1, 1] (q01/q99 with ``use_percentiles``; dims
with max ~= min give 0), z-score for ``mean_std_embedding_keys``, sin/cos for state ``sin_cos_embedding_keys`` when
``apply_sincos_state_encoding`` (doubles the dim). ``clip_outliers`` clips min/max-normalised states and every
normalised action (upstream quirk: z-scored actions are clipped too). RELATIVE action keys (``use_relative_action``)
become ``action - state[last row]`` of the reference state group and are normalised with the per-step (T, D)
``relative_action`` statistics. :meth:`Gr00tProcessor.decode_action` inverts all of this.

The three files written by :meth:`Gr00tProcessor.save_pretrained` use upstream's names and keys, so a checkpoint
directory can be read by either implementation's loader.

The statistics helpers live in :mod:`groot_ft.processor_stats` and the compiled per-group normalisation plan in
:mod:`groot_ft.processor_plan`; their public names are re-exported here.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.embodiment import EMBODIMENT_TAG_TO_ID, MAX_NUM_EMBODIMENTS, embodiment_id, normalize_tag
from groot_ft.image_transforms import ImageTransform
from groot_ft.io import atomic_write_json
from groot_ft.modality import EmbodimentModalityConfig, ModalityConfigError, parse_embodiment_config
from groot_ft.processor_plan import Plan, as_numpy, build_plan, clip_unit, normalize, unnormalize
from groot_ft.processor_stats import (  # noqa: F401 (re-exported: importable from here as before)
    DEFAULT_ACTION_COLUMN,
    DEFAULT_STATE_COLUMN,
    STAT_NAMES,
    ProcessorError,
    statistics_from_dataset_stats,
    to_jsonable,
)

log = logging.getLogger(__name__)

PROCESSOR_CONFIG_NAME = "processor_config.json"
STATISTICS_NAME = "statistics.json"
EMBODIMENT_ID_NAME = "embodiment_id.json"
PROCESSOR_CLASS = "Gr00tN1d6Processor"

_NON_WORD = re.compile(r"[^\w\s]")


def formalize_language(text: str) -> str:
    """Upstream's text normalisation: lowercase, then drop every character that is not a word character or space."""
    return _NON_WORD.sub("", text.lower())


# --------------------------------------------------------------------------------------------------------------------
# the processor


class Gr00tProcessor:
    """Turns one dataset/policy step into the tensors the GR00T action head and VLM collator consume."""

    processor_class = PROCESSOR_CLASS

    def __init__(
        self,
        modality_configs: Mapping[str, EmbodimentModalityConfig | Mapping[str, Any]],
        statistics: Mapping[str, Any] | None = None,
        embodiment_id_mapping: Mapping[str, int] | None = None,
        max_state_dim: int = 128,
        max_action_dim: int = 128,
        max_action_horizon: int = 50,
        shortest_image_edge: int = 256,
        crop_fraction: float = 0.95,
        random_rotation_angle: float | None = None,
        color_jitter_params: Mapping[str, Any] | None = None,
        formalize_language: bool = True,
        use_percentiles: bool = False,
        clip_outliers: bool = True,
        apply_sincos_state_encoding: bool = False,
        use_relative_action: bool = True,
        seed: int | None = None,
        model_name: str = "groot-ft/tiny",
        model_type: str = "eagle",
        image_crop_size: Any = None,
        image_target_size: Any = None,
        use_albumentations: bool = True,
    ) -> None:
        for name, value in (
            ("max_state_dim", max_state_dim),
            ("max_action_dim", max_action_dim),
            ("max_action_horizon", max_action_horizon),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProcessorError(f"{name} must be a positive integer, got {value!r}")
        if image_crop_size is not None or image_target_size is not None:
            warnings.warn(
                "image_crop_size/image_target_size are ignored: this processor implements upstream's "
                "shortest_image_edge + crop_fraction (albumentations) image path only",
                stacklevel=2,
            )
        if not use_albumentations:
            warnings.warn(
                "use_albumentations=False (upstream's torchvision letterbox path) is not implemented; "
                "using the shortest_image_edge + crop_fraction path",
                stacklevel=2,
            )
        self.max_state_dim = max_state_dim
        self.max_action_dim = max_action_dim
        self.max_action_horizon = max_action_horizon
        self.shortest_image_edge = shortest_image_edge
        self.crop_fraction = float(crop_fraction)
        self.random_rotation_angle = None if random_rotation_angle is None else float(random_rotation_angle)
        self.color_jitter_params = None if color_jitter_params is None else dict(color_jitter_params)
        self.formalize_language = bool(formalize_language)
        self.use_percentiles = bool(use_percentiles)
        self.clip_outliers = bool(clip_outliers)
        self.apply_sincos_state_encoding = bool(apply_sincos_state_encoding)
        self.use_relative_action = bool(use_relative_action)
        self.model_name = model_name
        self.model_type = model_type
        self.image_crop_size = image_crop_size
        self.image_target_size = image_target_size
        self.use_albumentations = bool(use_albumentations)
        try:
            self.image_transform = ImageTransform(
                shortest_image_edge, self.crop_fraction, self.random_rotation_angle, self.color_jitter_params,
                letter_box=getattr(self, "letter_box_transform", False),  # N1.7's option, set before this runs
            )
        except ValueError as exc:
            raise ProcessorError(str(exc)) from exc
        self.training = True
        self.seed = seed
        self._rng = np.random.default_rng(seed)

        self.modality_configs: dict[str, EmbodimentModalityConfig] = {}
        for tag, cfg in modality_configs.items():
            tag = normalize_tag(tag)
            if not isinstance(cfg, EmbodimentModalityConfig):
                try:
                    cfg = parse_embodiment_config(cfg, source=f"modality_configs[{tag}]")
                except ModalityConfigError as exc:
                    raise ProcessorError(str(exc)) from exc
            self.modality_configs[tag] = cfg

        mapping = {normalize_tag(k): v for k, v in (embodiment_id_mapping or {}).items()}
        for tag, value in mapping.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_NUM_EMBODIMENTS:
                raise ProcessorError(
                    f"embodiment id {value!r} for {tag!r} must be an integer in [0, {MAX_NUM_EMBODIMENTS})"
                )
        self.embodiment_id_mapping: dict[str, int] = {**EMBODIMENT_TAG_TO_ID, **mapping}

        for tag, cfg in self.modality_configs.items():
            self._embodiment_id(tag)
            steps = len(cfg.action.delta_indices)
            if steps > max_action_horizon:
                raise ProcessorError(
                    f"embodiment {tag!r}: action.delta_indices has {steps} steps but max_action_horizon is "
                    f"{max_action_horizon} (the model pads actions to that many steps)"
                )

        self._statistics: dict[str, Any] = {}
        self._plans: dict[str, Plan] = {}
        if statistics:
            self.set_statistics(statistics, override=True)

    # ---------------------------------------------------------------- mode / rng

    def train(self, mode: bool = True) -> Gr00tProcessor:
        """Augment images and require actions."""
        self.training = bool(mode)
        return self

    def eval(self) -> Gr00tProcessor:
        """Deterministic centre crop, no rotation/jitter; actions optional."""
        return self.train(False)

    def reseed(self, seed: int | None) -> None:
        """Restart the augmentation RNG (call in each DataLoader worker, e.g. with ``seed + worker_id``)."""
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    # ---------------------------------------------------------------- statistics

    @property
    def statistics(self) -> dict[str, Any]:
        """A copy of the statistics, in ``statistics.json`` structure."""
        return copy.deepcopy(self._statistics)

    def set_statistics(self, statistics: Mapping[str, Any], override: bool = True) -> None:
        """Install ``{tag: {"state"|"action"|"relative_action": {group: {stat: list}}}}``.

        With ``override=False`` a tag that already has statistics keeps them (upstream's
        ``override_pretraining_statistics=False``). Tags with a modality config are validated at once; on error
        nothing changes.
        """
        self._install_statistics(statistics, override=override, strict=True)

    def _install_statistics(self, statistics: Mapping[str, Any], *, override: bool, strict: bool) -> None:
        if not isinstance(statistics, Mapping):
            raise ProcessorError(f"statistics must be a mapping {{tag: {{state, action, ...}}}}, got {statistics!r}")
        new_stats = dict(self._statistics)
        changed: list[str] = []
        for tag, tag_stats in statistics.items():
            tag = normalize_tag(tag)
            if tag in self._statistics and not override:
                log.info("statistics for %r already present; keeping them (override=False)", tag)
                continue
            if not isinstance(tag_stats, Mapping):
                raise ProcessorError(f"statistics[{tag!r}] must be a mapping with state/action sections")
            new_stats[tag] = to_jsonable(tag_stats)
            changed.append(tag)
        new_plans = {}
        for tag in changed:
            if tag not in self.modality_configs:
                continue
            try:
                new_plans[tag] = self._build_plan(tag, new_stats[tag])
            except ProcessorError as exc:
                if strict:
                    raise
                # e.g. a pretraining tag of a base checkpoint that this run never uses: fail only when it is used
                warnings.warn(f"statistics for embodiment {tag!r} cannot be used: {exc}", stacklevel=3)
        self._statistics = new_stats
        for tag in changed:
            self._plans.pop(tag, None)
        self._plans.update(new_plans)

    statistics_from_dataset_stats = staticmethod(statistics_from_dataset_stats)

    def _embodiment_id(self, tag: str) -> int:
        try:
            return embodiment_id(tag, self.embodiment_id_mapping)
        except (KeyError, ValueError) as exc:
            raise ProcessorError(str(exc.args[0]) if exc.args else str(exc)) from exc

    def _build_plan(self, tag: str, tag_stats: Mapping[str, Any]) -> Plan:
        return build_plan(
            tag,
            self.modality_configs[tag],
            self._embodiment_id(tag),
            tag_stats,
            use_percentiles=self.use_percentiles,
            apply_sincos_state_encoding=self.apply_sincos_state_encoding,
            use_relative_action=self.use_relative_action,
            max_state_dim=self.max_state_dim,
            max_action_dim=self.max_action_dim,
        )

    def _plan(self, tag: str) -> Plan:
        tag = normalize_tag(tag)
        plan = self._plans.get(tag)
        if plan is not None:
            return plan
        if tag not in self.modality_configs:
            raise ProcessorError(
                f"unknown embodiment_tag {tag!r}: this processor has modality configs for "
                f"{', '.join(sorted(self.modality_configs)) or 'no tags'}"
            )
        if tag not in self._statistics:
            raise ProcessorError(
                f"embodiment {tag!r} has no statistics; call set_statistics() (e.g. from the dataset's meta/stats.json)"
            )
        plan = self._build_plan(tag, self._statistics[tag])
        self._plans[tag] = plan
        return plan

    def validate(self, embodiment_tag: str) -> None:
        """Check that ``embodiment_tag`` can be processed (config, statistics, sizes); raise ProcessorError if not."""
        plan = self._plan(embodiment_tag)
        for g in plan.action:
            if g.unsupported:
                raise ProcessorError(g.unsupported)

    def dims(self, embodiment_tag: str) -> dict[str, int]:
        """Unpadded sizes for a tag: state_dim, action_dim, action_horizon."""
        plan = self._plan(embodiment_tag)
        return {"state_dim": plan.state_dim, "action_dim": plan.action_dim, "action_horizon": plan.action_steps}

    # ---------------------------------------------------------------- per-sample processing

    @staticmethod
    def _read_group(values: Mapping[str, Any], modality: str, key: str, tag: str, rows: int, dim: int) -> np.ndarray:
        if key not in values:
            raise ProcessorError(
                f"embodiment {tag!r}: step lacks {modality} key {key!r} (has: {', '.join(values) or 'none'})"
            )
        arr = as_numpy(values[key], f"{modality}.{key}")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape != (rows, dim):
            raise ProcessorError(
                f"embodiment {tag!r}: {modality}.{key} has shape {tuple(np.shape(values[key]))}, expected "
                f"({rows}, {dim}) ({rows} = len({modality}.delta_indices), {dim} = dims in the statistics)"
            )
        if not np.isfinite(arr).all():
            raise ProcessorError(f"embodiment {tag!r}: {modality}.{key} contains NaN/inf")
        return arr

    def _encode_state(self, plan: Plan, raw: dict[str, np.ndarray], rows: int) -> np.ndarray:
        out = np.zeros((rows, self.max_state_dim), dtype=np.float32)
        col = 0
        for g in plan.state:
            y = normalize(raw[g.key], g)
            if self.clip_outliers and g.method == "minmax":
                y = clip_unit(y)
            out[:, col : col + g.out_dim] = y
            col += g.out_dim
        return out

    def _encode_action(
        self, plan: Plan, actions: Mapping[str, Any], raw_state: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        steps = plan.action_steps
        action = np.zeros((self.max_action_horizon, self.max_action_dim), dtype=np.float32)
        mask = np.zeros_like(action)
        col = 0
        for g in plan.action:
            if g.unsupported:
                raise ProcessorError(g.unsupported)
            a = self._read_group(actions, "action", g.key, plan.tag, steps, g.dim)
            if g.relative:
                a = a - raw_state[g.reference_key][-1]
            y = normalize(a, g)
            if self.clip_outliers:
                y = clip_unit(y)
            action[:steps, col : col + g.dim] = y
            col += g.dim
        mask[:steps, :col] = 1.0
        return action, mask

    def _text(self, plan: Plan, language: Any) -> str:
        key = plan.config.language.modality_keys[0]
        if not isinstance(language, Mapping) or key not in language:
            have = ", ".join(language) if isinstance(language, Mapping) else "none"
            raise ProcessorError(f"embodiment {plan.tag!r}: step lacks language key {key!r} (has: {have})")
        text = language[key]
        while isinstance(text, (list, tuple, np.ndarray)) and len(text) == 1:
            text = text[0]
        if isinstance(text, bytes):
            text = text.decode()
        if not isinstance(text, str):
            raise ProcessorError(f"embodiment {plan.tag!r}: language.{key} must be one string, got {text!r}")
        return formalize_language(text) if self.formalize_language else text

    def _images(self, plan: Plan, video: Any, rng: np.random.Generator) -> np.ndarray:
        cfg = plan.config.video
        keys = cfg.modality_keys
        if not isinstance(video, Mapping):
            raise ProcessorError(f"embodiment {plan.tag!r}: step lacks a video mapping with keys {list(keys)}")
        frames_per_cam = []
        steps = len(cfg.delta_indices)
        for key in keys:
            if key not in video:
                raise ProcessorError(
                    f"embodiment {plan.tag!r}: step lacks video key {key!r} (has: {', '.join(video) or 'none'})"
                )
            value = video[key]
            arr = np.stack(value) if isinstance(value, (list, tuple)) else np.asarray(value)
            if arr.ndim == 3:
                arr = arr[None]
            if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] != steps:
                raise ProcessorError(
                    f"embodiment {plan.tag!r}: video.{key} has shape {arr.shape}, expected ({steps}, H, W, 3)"
                )
            if arr.dtype != np.uint8:
                raise ProcessorError(f"embodiment {plan.tag!r}: video.{key} must be uint8, got {arr.dtype}")
            frames_per_cam.append(arr)
        params = self.image_transform.sample_params(rng, self.training)
        n_cams = len(keys)
        if all(a.shape == frames_per_cam[0].shape for a in frames_per_cam):
            # (T, V, H, W, 3) -> (T*V, ...): time-major, cameras interleaved per step; one batched pass
            stacked = np.stack(frames_per_cam, axis=1).reshape(-1, *frames_per_cam[0].shape[1:])
            return self.image_transform.apply(stacked, params)
        outs = [self.image_transform.apply(a, params) for a in frames_per_cam]
        if any(o.shape != outs[0].shape for o in outs):
            shapes = {k: o.shape[-2:] for k, o in zip(keys, outs, strict=True)}
            raise ProcessorError(
                f"embodiment {plan.tag!r}: cameras give different image sizes after preprocessing {shapes}; "
                "all cameras of an embodiment need the same aspect ratio"
            )
        return np.stack(outs, axis=1).reshape(steps * n_cams, *outs[0].shape[1:])

    def __call__(
        self, step: Mapping[str, Any], embodiment_tag: str, *, rng: np.random.Generator | None = None
    ) -> dict[str, Any]:
        """Process one unbatched step; ``rng`` overrides the processor's own augmentation RNG for this call."""
        plan = self._plan(embodiment_tag)
        if not isinstance(step, Mapping):
            raise ProcessorError(f"step must be a mapping with video/state/action/language, got {type(step).__name__}")
        states = step.get("state")
        if not isinstance(states, Mapping):
            raise ProcessorError(f"embodiment {plan.tag!r}: step lacks a state mapping")
        state_rows = len(plan.config.state.delta_indices)
        raw_state = {
            g.key: self._read_group(states, "state", g.key, plan.tag, state_rows, g.dim) for g in plan.state
        }
        out: dict[str, Any] = {"state": self._encode_state(plan, raw_state, state_rows)}
        actions = step.get("action")
        if actions:
            if not isinstance(actions, Mapping):
                raise ProcessorError(f"embodiment {plan.tag!r}: step 'action' must be a mapping of groups")
            out["action"], out["action_mask"] = self._encode_action(plan, actions, raw_state)
        elif self.training:
            raise ProcessorError(
                f"embodiment {plan.tag!r}: training mode needs actions (call .eval() for inference without them)"
            )
        out["images"] = self._images(plan, step.get("video"), rng if rng is not None else self._rng)
        out["text"] = self._text(plan, step.get("language"))
        out["embodiment_id"] = plan.embodiment_id
        return out

    # ---------------------------------------------------------------- decoding

    def decode_action(
        self,
        action: Any,
        embodiment_tag: str,
        state: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Padded normalised actions -> per-group actions in physical units (absolute).

        ``action`` is ``(B, H, max_action_dim)`` or ``(H, max_action_dim)`` (numpy or torch); the first
        ``len(action.delta_indices)`` steps and each group's dims are taken, clipped to [-1, 1] and unnormalised.
        RELATIVE groups are made absolute with the last row of ``state[reference key]`` (raw units,
        ``(B, T_s, D)`` or ``(T_s, D)``), which is then required. Returns float32 ``(B, T_a, D)`` per group, or
        ``(T_a, D)`` for unbatched input.
        """
        plan = self._plan(embodiment_tag)
        arr = as_numpy(action, "action")
        unbatched = arr.ndim == 2
        if unbatched:
            arr = arr[None]
        if arr.ndim != 3:
            raise ProcessorError(f"action must be (B, H, D) or (H, D), got shape {np.shape(action)}")
        steps = plan.action_steps
        if arr.shape[1] < steps or arr.shape[2] < plan.action_dim:
            raise ProcessorError(
                f"embodiment {plan.tag!r}: action of shape {np.shape(action)} is smaller than the "
                f"{steps} steps x {plan.action_dim} dims the config needs"
            )
        batch = arr.shape[0]
        out: dict[str, np.ndarray] = {}
        col = 0
        for g in plan.action:
            if g.unsupported:
                raise ProcessorError(g.unsupported)
            y = np.clip(arr[:, :steps, col : col + g.dim], -1.0, 1.0)
            col += g.dim
            x = unnormalize(y, g)
            if g.relative:
                if state is None or g.reference_key not in state:
                    raise ProcessorError(
                        f"embodiment {plan.tag!r}: action {g.key!r} is RELATIVE; decode_action needs "
                        f"state[{g.reference_key!r}] (raw units, last row used as reference)"
                    )
                ref = as_numpy(state[g.reference_key], f"state.{g.reference_key}")
                if ref.ndim == 1:
                    ref = ref[None]
                if ref.ndim == 2:
                    ref = ref[None]
                if ref.ndim != 3 or ref.shape[-1] != g.dim or ref.shape[0] not in (1, batch):
                    raise ProcessorError(
                        f"embodiment {plan.tag!r}: state.{g.reference_key} has shape "
                        f"{np.shape(state[g.reference_key])}, expected ({batch}, T_s, {g.dim}) or (T_s, {g.dim})"
                    )
                x = x + ref[:, -1:, :]
            x = x.astype(np.float32)
            out[g.key] = x[0] if unbatched else x
        return out

    # ---------------------------------------------------------------- persistence

    def processor_kwargs(self) -> dict[str, Any]:
        """The ``processor_kwargs`` block of ``processor_config.json`` (upstream's keys and order)."""
        return {
            "modality_configs": {tag: cfg.to_dict() for tag, cfg in self.modality_configs.items()},
            "image_crop_size": self.image_crop_size,
            "image_target_size": self.image_target_size,
            "use_albumentations": self.use_albumentations,
            "random_rotation_angle": self.random_rotation_angle,
            "color_jitter_params": None if self.color_jitter_params is None else dict(self.color_jitter_params),
            "shortest_image_edge": self.shortest_image_edge,
            "crop_fraction": self.crop_fraction,
            "model_name": self.model_name,
            "model_type": self.model_type,
            "formalize_language": self.formalize_language,
            "max_state_dim": self.max_state_dim,
            "max_action_dim": self.max_action_dim,
            "max_action_horizon": self.max_action_horizon,
            "use_percentiles": self.use_percentiles,
            "clip_outliers": self.clip_outliers,
            "apply_sincos_state_encoding": self.apply_sincos_state_encoding,
            "use_relative_action": self.use_relative_action,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``processor_config.json``, ``statistics.json`` and ``embodiment_id.json`` (each atomically)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        ids = dict(self.embodiment_id_mapping)
        for tag in self.modality_configs:
            ids[tag] = self._embodiment_id(tag)
        files = {
            PROCESSOR_CONFIG_NAME: {"processor_class": self.processor_class, "processor_kwargs": self.processor_kwargs()},
            STATISTICS_NAME: self._statistics,
            EMBODIMENT_ID_NAME: ids,
        }
        written = []
        for name, payload in files.items():
            path = directory / name
            atomic_write_json(path, payload)
            written.append(path)
        return written

    @classmethod
    def from_pretrained(cls, pretrained_dir: str | os.PathLike[str], **overrides: Any) -> Gr00tProcessor:
        """Load the three files of :meth:`save_pretrained` (ours or upstream's).

        ``overrides`` replace saved constructor arguments, except that ``None`` means "keep the saved value"
        (upstream semantics; disable jitter with ``color_jitter_params={}``, rotation with ``0``).
        ``modality_configs`` and ``embodiment_id_mapping`` overrides are merged per tag over the saved ones, and a
        ``statistics`` override is installed with ``override=True`` (strictly validated). Saved statistics of a tag
        that cannot be used (say, a base checkpoint's pretraining tag) only warn here and raise when that tag is used.
        """
        directory = Path(pretrained_dir)
        kwargs, configs = read_processor_config(directory, cls.processor_class)
        modality_configs: dict[str, Any] = dict(configs)
        stats_path = directory / STATISTICS_NAME
        statistics = _read_json(stats_path) if stats_path.exists() else {}
        ids_path = directory / EMBODIMENT_ID_NAME
        mapping = _read_json(ids_path) if ids_path.exists() else {}

        for tag, cfg in (overrides.pop("modality_configs", None) or {}).items():
            modality_configs[normalize_tag(tag)] = cfg
        mapping = {**mapping, **(overrides.pop("embodiment_id_mapping", None) or {})}
        extra_stats = overrides.pop("statistics", None)
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            warnings.warn(
                f"{directory / PROCESSOR_CONFIG_NAME}: ignoring unknown processor_kwargs {unknown}", stacklevel=2
            )
            for key in unknown:
                kwargs.pop(key)
        bad = sorted(set(overrides) - allowed)
        if bad:
            raise TypeError(f"from_pretrained got unexpected overrides {bad}")
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        processor = cls(
            modality_configs=modality_configs, statistics=None, embodiment_id_mapping=mapping, **kwargs
        )
        # statistics for tags whose config is missing here are kept verbatim (upstream saves every known tag)
        processor._install_statistics(statistics, override=True, strict=False)
        if extra_stats:
            processor.set_statistics(extra_stats, override=True)
        return processor


def read_processor_config(
    directory: str | os.PathLike[str], expected_class: str = PROCESSOR_CLASS
) -> tuple[dict[str, Any], dict[str, EmbodimentModalityConfig]]:
    """``processor_config.json`` of ``directory`` (ours or upstream's): its constructor arguments without the
    modality configs, and those parsed per (normalised) embodiment tag. Another ``processor_class`` than
    ``expected_class`` (e.g. an N1.7 file read as N1.6) warns."""
    path = Path(directory) / PROCESSOR_CONFIG_NAME
    config = _read_json(path)
    if not isinstance(config, Mapping) or not isinstance(config.get("processor_kwargs"), Mapping):
        raise ProcessorError(f"{path}: expected {{processor_class, processor_kwargs}}")
    if config.get("processor_class") not in (None, expected_class):
        warnings.warn(f"{path}: processor_class {config.get('processor_class')!r} is not {expected_class!r}; "
                      "reading it anyway", stacklevel=3)
    kwargs = dict(config["processor_kwargs"])
    modality_configs = {}
    for tag, cfg in (kwargs.pop("modality_configs", None) or {}).items():
        try:
            modality_configs[normalize_tag(tag)] = parse_embodiment_config(cfg, source=f"{path}[{tag}]")
        except ModalityConfigError as exc:
            raise ProcessorError(str(exc)) from exc
    return kwargs, modality_configs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ProcessorError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ProcessorError(f"{path}: not valid JSON: {exc}") from exc


