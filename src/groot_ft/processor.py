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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.embodiment import EMBODIMENT_TAG_TO_ID, MAX_NUM_EMBODIMENTS, embodiment_id, normalize_tag
from groot_ft.image_transforms import ImageTransform
from groot_ft.io import atomic_write_json
from groot_ft.modality import (
    ActionRepresentation,
    ActionType,
    EmbodimentModalityConfig,
    ModalityConfigError,
    parse_embodiment_config,
)

log = logging.getLogger(__name__)

PROCESSOR_CONFIG_NAME = "processor_config.json"
STATISTICS_NAME = "statistics.json"
EMBODIMENT_ID_NAME = "embodiment_id.json"
PROCESSOR_CLASS = "Gr00tN1d6Processor"
STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")
DEFAULT_STATE_COLUMN = "observation.state"
DEFAULT_ACTION_COLUMN = "action"

_NON_WORD = re.compile(r"[^\w\s]")


class ProcessorError(ValueError):
    """A processor input, config or statistics problem; the message names the tag, modality and key."""


def formalize_language(text: str) -> str:
    """Upstream's text normalisation: lowercase, then drop every character that is not a word character or space."""
    return _NON_WORD.sub("", text.lower())


# --------------------------------------------------------------------------------------------------------------------
# statistics helpers


def _to_jsonable(value: Any) -> Any:
    """Deep-copy statistics into plain JSON types (numpy arrays/scalars -> lists/floats)."""
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch tensor
        return value.detach().cpu().tolist()
    return value


def statistics_from_dataset_stats(
    stats_json: Mapping[str, Any],
    relative_stats_json: Mapping[str, Any] | None,
    modality_json: Mapping[str, Any],
    modality_config: EmbodimentModalityConfig | Mapping[str, Any],
) -> dict[str, Any]:
    """One embodiment's processor statistics from a dataset's ``meta/`` files.

    ``stats_json`` is upstream's ``meta/stats.json`` (``{column: {mean, std, min, max, q01, q99}}`` over whole
    parquet columns), ``relative_stats_json`` its ``meta/relative_stats.json`` (``{group: {stat: (T, D) lists}}``)
    or None, ``modality_json`` its ``meta/modality.json``. Every state/action group of ``modality_config`` is sliced
    ``[start:end]`` out of the column its modality.json entry names (``original_key``, default
    ``observation.state`` for state and ``action`` for action). Returns ``{"state": {group: {stat: list}},
    "action": {...}, "relative_action": {group: {stat: (T, D) lists}}}``; wrap it as ``{tag: result}`` for
    :meth:`Gr00tProcessor.set_statistics`. ``relative_action`` holds the config's action keys found in
    ``relative_stats_json`` and is omitted when that is None.
    """
    cfg = (
        modality_config
        if isinstance(modality_config, EmbodimentModalityConfig)
        else parse_embodiment_config(modality_config)
    )
    result: dict[str, Any] = {}
    for modality, default_column in (("state", DEFAULT_STATE_COLUMN), ("action", DEFAULT_ACTION_COLUMN)):
        entries = modality_json.get(modality)
        if not isinstance(entries, Mapping):
            raise ProcessorError(f"modality.json has no {modality!r} section (needed for {modality} statistics)")
        groups: dict[str, Any] = {}
        for key in cfg[modality].modality_keys:
            entry = entries.get(key)
            if not isinstance(entry, Mapping):
                raise ProcessorError(
                    f"modality.json has no {modality} group {key!r} (groups: {', '.join(entries) or 'none'})"
                )
            start, end = entry.get("start"), entry.get("end")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
                raise ProcessorError(
                    f"modality.json {modality}.{key}: needs integer start < end, got start={start!r} end={end!r}"
                )
            column = entry.get("original_key") or default_column
            column_stats = stats_json.get(column)
            if not isinstance(column_stats, Mapping):
                raise ProcessorError(
                    f"stats.json has no column {column!r} (needed for {modality} group {key!r}); "
                    f"columns: {', '.join(stats_json) or 'none'}"
                )
            group: dict[str, list[float]] = {}
            for stat in STAT_NAMES:
                if stat not in column_stats:
                    raise ProcessorError(f"stats.json column {column!r} lacks {stat!r} (needed for {modality}.{key})")
                values = np.asarray(column_stats[stat], dtype=np.float64).reshape(-1)
                if end > values.size:
                    raise ProcessorError(
                        f"modality.json {modality}.{key} slice [{start}:{end}] is outside stats.json column "
                        f"{column!r} {stat} of length {values.size}"
                    )
                group[stat] = values[start:end].tolist()
            groups[key] = group
        result[modality] = groups
    if relative_stats_json is not None:
        relative: dict[str, Any] = {}
        for key in cfg.action.modality_keys:
            if key not in relative_stats_json:
                continue
            entry = relative_stats_json[key]
            group = {}
            for stat, values in entry.items():
                arr = np.asarray(values, dtype=np.float64)
                if arr.ndim != 2:
                    raise ProcessorError(
                        f"relative_stats.json {key}.{stat}: expected a (T, D) list of lists, got shape {arr.shape}"
                    )
                group[stat] = arr.tolist()
            relative[key] = group
        result["relative_action"] = relative
    return result


# --------------------------------------------------------------------------------------------------------------------
# compiled per-embodiment plan


@dataclass
class _Group:
    """How one state/action group is (un)normalised."""

    key: str
    dim: int
    out_dim: int
    method: str  # "minmax" | "meanstd" | "sincos"
    offset: np.ndarray | None = None  # min (or q01) / mean; (D,) or (T, D) for relative actions
    spread: np.ndarray | None = None  # max-min / std, with 1 where constant
    constant: np.ndarray | None = None  # dims where max ~= min (or std ~= 0): normalised to 0
    relative: bool = False
    reference_key: str | None = None
    unsupported: str | None = None  # reason this group cannot be processed (raised on use)


@dataclass
class _Plan:
    tag: str
    embodiment_id: int
    config: EmbodimentModalityConfig
    state: list[_Group] = field(default_factory=list)
    action: list[_Group] = field(default_factory=list)

    @property
    def state_dim(self) -> int:
        return sum(g.out_dim for g in self.state)

    @property
    def action_dim(self) -> int:
        return sum(g.dim for g in self.action)

    @property
    def action_steps(self) -> int:
        return len(self.config.action.delta_indices)


def _normalize(x: np.ndarray, g: _Group) -> np.ndarray:
    if g.method == "sincos":
        return np.concatenate([np.sin(x), np.cos(x)], axis=-1)
    if g.method == "minmax":
        y = 2.0 * (x - g.offset) / g.spread - 1.0
    else:
        y = (x - g.offset) / g.spread
    return np.where(g.constant, 0.0, y) if g.constant.any() else y


def _clip_unit(y: np.ndarray) -> np.ndarray:
    """``np.clip(y, -1, 1)`` in place on a fresh array, as two ufunc calls (np.clip's wrappers cost more per sample
    than the clipping of a few dozen values)."""
    np.maximum(y, -1.0, out=y)
    return np.minimum(y, 1.0, out=y)


def _unnormalize(y: np.ndarray, g: _Group) -> np.ndarray:
    if g.method == "minmax":
        # constant dims: spread is 1 in the plan, so use the true (zero) width to return min exactly
        width = np.where(g.constant, 0.0, g.spread)
        return (y + 1.0) / 2.0 * width + g.offset
    if g.method == "meanstd":
        return y * np.where(g.constant, 0.0, g.spread) + g.offset
    raise ProcessorError(f"group {g.key!r}: {g.method} encoding cannot be inverted")


def _as_numpy(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor (any dtype/device)
        value = value.detach().float().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProcessorError(f"{where}: expected a numeric array, got {type(value).__name__}") from exc


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
                shortest_image_edge, self.crop_fraction, self.random_rotation_angle, self.color_jitter_params
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
        self._plans: dict[str, _Plan] = {}
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
            new_stats[tag] = _to_jsonable(tag_stats)
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

    def _group_stats(self, tag: str, tag_stats: Mapping[str, Any], section: str, key: str) -> Mapping[str, Any]:
        groups = tag_stats.get(section)
        if not isinstance(groups, Mapping) or key not in groups:
            have = ", ".join(groups) if isinstance(groups, Mapping) else "none"
            hint = (
                " (RELATIVE action keys need relative_action statistics: generate meta/relative_stats.json "
                "or set use_relative_action=False)"
                if section == "relative_action"
                else ""
            )
            raise ProcessorError(
                f"embodiment {tag!r}: missing {section} statistics for key {key!r} (have: {have}){hint}"
            )
        return groups[key]

    def _stat(
        self, tag: str, section: str, key: str, stats: Mapping[str, Any], name: str, shape: tuple[int, ...] | None
    ) -> np.ndarray:
        if name not in stats:
            raise ProcessorError(f"embodiment {tag!r}: {section} statistics for key {key!r} lack {name!r}")
        arr = np.asarray(stats[name], dtype=np.float64)
        if shape is not None and arr.shape != shape:
            raise ProcessorError(
                f"embodiment {tag!r}: {section} statistics {key!r}.{name} have shape {arr.shape}, expected {shape}"
                + (
                    " (relative stats are per horizon step; regenerate relative_stats.json for this horizon)"
                    if section == "relative_action"
                    else ""
                )
            )
        if not np.all(np.isfinite(arr)):
            raise ProcessorError(f"embodiment {tag!r}: {section} statistics {key!r}.{name} contain NaN/inf")
        return arr

    def _make_group(
        self, tag: str, section: str, key: str, stats: Mapping[str, Any], mean_std: bool, steps: int | None
    ) -> _Group:
        # dimension: from any stat present (relative stats are (T, D))
        probe = next((stats[n] for n in STAT_NAMES if n in stats), None)
        if probe is None:
            raise ProcessorError(f"embodiment {tag!r}: {section} statistics for key {key!r} are empty")
        probe_arr = np.asarray(probe, dtype=np.float64)
        dim = int(probe_arr.shape[-1]) if probe_arr.ndim else 1
        shape = (dim,) if steps is None else (steps, dim)
        if mean_std:
            method, lo_name, hi_name = "meanstd", "mean", "std"
        else:
            method = "minmax"
            lo_name, hi_name = ("q01", "q99") if self.use_percentiles else ("min", "max")
        lo = self._stat(tag, section, key, stats, lo_name, shape)
        hi = self._stat(tag, section, key, stats, hi_name, shape)
        if method == "minmax":
            constant = np.isclose(hi, lo)
            spread = np.where(constant, 1.0, hi - lo)
        else:
            constant = np.isclose(hi, 0.0)
            spread = np.where(constant, 1.0, hi)
        return _Group(key=key, dim=dim, out_dim=dim, method=method, offset=lo, spread=spread, constant=constant)

    def _build_plan(self, tag: str, tag_stats: Mapping[str, Any]) -> _Plan:
        cfg = self.modality_configs[tag]
        plan = _Plan(tag=tag, embodiment_id=self._embodiment_id(tag), config=cfg)
        sincos = set(cfg.state.sin_cos_embedding_keys or ()) if self.apply_sincos_state_encoding else set()
        state_mean_std = set(cfg.state.mean_std_embedding_keys or ())
        for key in cfg.state.modality_keys:
            stats = self._group_stats(tag, tag_stats, "state", key)
            if key in sincos:
                probe = next((stats[n] for n in STAT_NAMES if n in stats), None)
                if probe is None:
                    raise ProcessorError(f"embodiment {tag!r}: state statistics for key {key!r} are empty")
                dim = len(probe)
                plan.state.append(_Group(key=key, dim=dim, out_dim=2 * dim, method="sincos"))
            else:
                plan.state.append(self._make_group(tag, "state", key, stats, key in state_mean_std, None))
        state_dims = {g.key: g.dim for g in plan.state}
        action_mean_std = set(cfg.action.mean_std_embedding_keys or ())
        steps = plan.action_steps
        for key in cfg.action.modality_keys:
            ac = cfg.action_config_for(key)
            relative = self.use_relative_action and ac.rep is ActionRepresentation.RELATIVE
            if relative:
                stats = self._group_stats(tag, tag_stats, "relative_action", key)
                group = self._make_group(tag, "relative_action", key, stats, key in action_mean_std, steps)
                group.relative = True
                group.reference_key = cfg.reference_state_key(key)
                ref_dim = state_dims.get(group.reference_key)
                if ref_dim is None:
                    raise ProcessorError(
                        f"embodiment {tag!r}: RELATIVE action {key!r} needs state key {group.reference_key!r}, "
                        "which state.modality_keys lacks"
                    )
                if ref_dim != group.dim:
                    raise ProcessorError(
                        f"embodiment {tag!r}: RELATIVE action {key!r} has {group.dim} dims but its reference state "
                        f"{group.reference_key!r} has {ref_dim}"
                    )
                if ac.type is ActionType.EEF:
                    group.unsupported = (
                        f"embodiment {tag!r}: RELATIVE EEF action {key!r} (SE(3) composition) is not supported; "
                        "use NON_EEF or ABSOLUTE"
                    )
            else:
                stats = self._group_stats(tag, tag_stats, "action", key)
                group = self._make_group(tag, "action", key, stats, key in action_mean_std, None)
            if ac.rep is ActionRepresentation.DELTA:
                group.unsupported = f"embodiment {tag!r}: DELTA action representation ({key!r}) is not supported"
            plan.action.append(group)
        if plan.state_dim > self.max_state_dim:
            raise ProcessorError(
                f"embodiment {tag!r}: state groups need {plan.state_dim} dims "
                f"({', '.join(f'{g.key}={g.out_dim}' for g in plan.state)}) but max_state_dim is {self.max_state_dim}"
            )
        if plan.action_dim > self.max_action_dim:
            raise ProcessorError(
                f"embodiment {tag!r}: action groups need {plan.action_dim} dims "
                f"({', '.join(f'{g.key}={g.dim}' for g in plan.action)}) but max_action_dim is {self.max_action_dim}"
            )
        return plan

    def _plan(self, tag: str) -> _Plan:
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
        arr = _as_numpy(values[key], f"{modality}.{key}")
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

    def _encode_state(self, plan: _Plan, raw: dict[str, np.ndarray], rows: int) -> np.ndarray:
        out = np.zeros((rows, self.max_state_dim), dtype=np.float32)
        col = 0
        for g in plan.state:
            y = _normalize(raw[g.key], g)
            if self.clip_outliers and g.method == "minmax":
                y = _clip_unit(y)
            out[:, col : col + g.out_dim] = y
            col += g.out_dim
        return out

    def _encode_action(
        self, plan: _Plan, actions: Mapping[str, Any], raw_state: dict[str, np.ndarray]
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
            y = _normalize(a, g)
            if self.clip_outliers:
                y = _clip_unit(y)
            action[:steps, col : col + g.dim] = y
            col += g.dim
        mask[:steps, :col] = 1.0
        return action, mask

    def _text(self, plan: _Plan, language: Any) -> str:
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

    def _images(self, plan: _Plan, video: Any, rng: np.random.Generator) -> np.ndarray:
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
        arr = _as_numpy(action, "action")
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
            x = _unnormalize(y, g)
            if g.relative:
                if state is None or g.reference_key not in state:
                    raise ProcessorError(
                        f"embodiment {plan.tag!r}: action {g.key!r} is RELATIVE; decode_action needs "
                        f"state[{g.reference_key!r}] (raw units, last row used as reference)"
                    )
                ref = _as_numpy(state[g.reference_key], f"state.{g.reference_key}")
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
            PROCESSOR_CONFIG_NAME: {"processor_class": PROCESSOR_CLASS, "processor_kwargs": self.processor_kwargs()},
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
        config = _read_json(directory / PROCESSOR_CONFIG_NAME)
        if not isinstance(config, Mapping) or not isinstance(config.get("processor_kwargs"), Mapping):
            raise ProcessorError(f"{directory / PROCESSOR_CONFIG_NAME}: expected {{processor_class, processor_kwargs}}")
        if config.get("processor_class") not in (None, PROCESSOR_CLASS):
            warnings.warn(
                f"{directory / PROCESSOR_CONFIG_NAME}: processor_class {config.get('processor_class')!r} "
                f"is not {PROCESSOR_CLASS!r}; reading it anyway",
                stacklevel=2,
            )
        kwargs = dict(config["processor_kwargs"])
        raw_cfgs = kwargs.pop("modality_configs", None) or {}
        modality_configs: dict[str, Any] = {}
        for tag, cfg in raw_cfgs.items():
            try:
                modality_configs[normalize_tag(tag)] = parse_embodiment_config(
                    cfg, source=f"{directory / PROCESSOR_CONFIG_NAME}[{tag}]"
                )
            except ModalityConfigError as exc:
                raise ProcessorError(str(exc)) from exc
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ProcessorError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ProcessorError(f"{path}: not valid JSON: {exc}") from exc


