"""What the statistics of a dataset cover (:class:`StatsPlan`), and the RELATIVE action chunks behind them.

The plan lists every ``info.json`` feature whose dtype contains "float" (with its width) and, given a modality
config, every RELATIVE action group with the state group it is taken relative to, plus the action delta indices and
the reference state index. Its :meth:`StatsPlan.fingerprint` is part of every incremental-cache key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.modality import ActionType, EmbodimentModalityConfig
from groot_ft.stats.common import CACHE_FORMAT, StatsError

_WINDOW_BLOCK_VALUES = 2**22  # relative-chunk values materialised at once


@dataclass(frozen=True)
class _RelativeSpec:
    key: str
    action_column: str
    action_start: int
    action_end: int
    state_column: str
    state_start: int
    state_end: int

    @property
    def dim(self) -> int:
        return self.action_end - self.action_start


@dataclass(frozen=True)
class StatsPlan:
    """The accumulators of one dataset: float features, RELATIVE groups, and the window geometry."""

    features: tuple[tuple[str, int], ...]  # (column, dims per info.json)
    specs: tuple[_RelativeSpec, ...]
    deltas: tuple[int, ...] = (0,)
    ref_index: int = 0

    @property
    def horizon(self) -> int:
        return len(self.deltas)

    def keys(self) -> list[str]:
        return [f"feature:{f}" for f, _ in self.features] + [f"relative:{s.key}" for s in self.specs]

    def declared_dims(self) -> dict[str, int]:
        dims = {f"feature:{f}": d for f, d in self.features}
        dims.update({f"relative:{s.key}": s.dim * self.horizon for s in self.specs})
        return dims

    @property
    def columns(self) -> list[str]:
        cols = {f for f, _ in self.features}
        for s in self.specs:
            cols.update((s.action_column, s.state_column))
        return sorted(cols)

    def fingerprint(self) -> str:
        doc = {
            "format": CACHE_FORMAT,
            "features": [list(f) for f in self.features],
            "relative": [
                [s.key, s.action_column, s.action_start, s.action_end, s.state_column, s.state_start, s.state_end]
                for s in self.specs
            ],
            "deltas": list(self.deltas),
            "ref_index": self.ref_index,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def relative_chunks(
    action: np.ndarray,
    state: np.ndarray,
    action_delta_indices: Sequence[int],
    state_reference_index: int,
    *,
    block_values: int = _WINDOW_BLOCK_VALUES,
) -> Iterator[np.ndarray]:
    """Yield blocks ``(windows, T, D)`` float32 of ``action[deltas + i] - state[state_reference_index + i]``.

    Windows ``i in range(L - max(deltas))``; the difference is taken in the arrays' own dtype and then cast to
    float32, as upstream does. Memory is bounded by ``block_values`` elements per block.
    """
    deltas = np.asarray(action_delta_indices, dtype=np.int64)
    length = min(len(action), len(state))
    windows = length - int(deltas.max())
    if windows <= 0:
        return
    per_block = max(1, block_values // max(1, deltas.size * action.shape[1]))
    for start in range(0, windows, per_block):
        starts = np.arange(start, min(windows, start + per_block), dtype=np.int64)
        chunk = action[starts[:, None] + deltas[None, :]]  # (w, T, D)
        reference = state[starts + state_reference_index]  # (w, D)
        yield (chunk - reference[:, None, :]).astype(np.float32)


def _float_features(dataset: LeRobotDataset) -> list[str]:
    return [name for name, feat in dataset.features.items() if "float" in str(feat.get("dtype", ""))]


def _feature_dim(dataset: LeRobotDataset, name: str) -> int:
    shape = dataset.features.get(name, {}).get("shape") or [1]
    try:
        return max(1, int(np.prod([int(s) for s in shape])))
    except (TypeError, ValueError):
        return 1


def _relative_specs(dataset: LeRobotDataset, cfg: EmbodimentModalityConfig) -> list[_RelativeSpec]:
    keys = sorted(cfg.relative_action_keys())  # upstream writes them in sorted order
    if not keys:
        return []
    where = f"modality config {cfg.source}"
    if cfg.state.delta_indices[-1] != cfg.action.delta_indices[0]:
        raise StatsError(
            f"{where}: RELATIVE actions need state.delta_indices[-1] == action.delta_indices[0] "
            f"({cfg.state.delta_indices[-1]} != {cfg.action.delta_indices[0]}); the reference state must be the "
            "first action step"
        )
    if min(cfg.action.delta_indices) < 0:
        raise StatsError(
            f"{where}: RELATIVE actions need non-negative action.delta_indices, got {list(cfg.action.delta_indices)}"
        )
    if cfg.action.delta_indices[-1] != max(cfg.action.delta_indices):
        raise StatsError(
            f"{where}: action.delta_indices must end with their largest offset, got {list(cfg.action.delta_indices)}"
        )
    eef = [k for k in keys if cfg.action_config_for(k).type is ActionType.EEF]
    if eef:
        raise StatsError(
            f"{where}: RELATIVE EEF actions ({', '.join(eef)}) need pose composition, which is not supported "
            "(upstream raises NotImplementedError too); use NON_EEF or an ABSOLUTE representation"
        )
    specs = []
    for key in keys:
        a = dataset.group_slice("action", key)
        s = dataset.group_slice("state", cfg.reference_state_key(key))
        if a.dim != s.dim:
            raise StatsError(
                f"{dataset.modality_json}: RELATIVE action.{key} has {a.dim} dims but its reference "
                f"state.{cfg.reference_state_key(key)} has {s.dim}; they must match to subtract"
            )
        specs.append(_RelativeSpec(key, a.column, a.start, a.end, s.column, s.start, s.end))
    return specs


def make_plan(dataset: LeRobotDataset, modality_config: EmbodimentModalityConfig | None = None) -> StatsPlan:
    """The statistics a dataset gets: every float feature, plus the RELATIVE groups of ``modality_config``."""
    features = tuple((f, _feature_dim(dataset, f)) for f in _float_features(dataset))
    specs = tuple(_relative_specs(dataset, modality_config)) if modality_config is not None else ()
    if not features and not specs:
        raise StatsError(f"{dataset.root / 'meta/info.json'}: no float features to compute statistics for")
    if specs:
        assert modality_config is not None
        return StatsPlan(
            features,
            specs,
            tuple(int(d) for d in modality_config.action.delta_indices),
            int(modality_config.state.delta_indices[-1]),
        )
    return StatsPlan(features, specs)
