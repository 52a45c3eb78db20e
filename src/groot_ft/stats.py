"""Normalisation statistics (``stats.json`` and ``relative_stats.json``) with upstream GR00T N1.6's numbers.

Upstream (``gr00t/data/stats.py``) loads every frame into memory and calls numpy. We stream episodes instead, in
episode-index order, and keep only O(dims) moments plus per-dimension histograms:

* count / mean / M2 in float64, per chunk by two passes, merged with Chan et al.'s parallel formula; min/max;
* q01 / q99 *exactly* with a multi-pass radix select over float32 bit patterns (:mod:`groot_ft.quantiles`), so each
  statistic is computed over all frames exactly as ``np.quantile`` (linear method) would.

``stats.json``: every ``info.json`` feature whose dtype contains "float", cast to float32 (as upstream), per
dimension ``mean, std (population), min, max, q01, q99``.
``relative_stats.json``: for every RELATIVE action key, over every episode and window start
``i in range(L - action.delta_indices[-1])``, the chunk ``action[delta_indices + i, group] -
state[state.delta_indices[-1] + i, reference group]`` (subtracted in the parquet dtype, then cast to float32, as
upstream does), stats per (horizon step, dimension) as ``(T, D)`` nested lists ``max, min, q01, q99, mean, std``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from groot_ft.data.lerobot import DatasetError, LeRobotDataset, column_matrix
from groot_ft.modality import ActionType, EmbodimentModalityConfig, load_modality_config
from groot_ft.quantiles import DEFAULT_BUDGET_BYTES, RadixSelect, float32_keys

STATS_FILENAME = "stats.json"
RELATIVE_STATS_FILENAME = "relative_stats.json"
STAT_KEYS = ("mean", "std", "min", "max", "q01", "q99")  # upstream's order in stats.json
RELATIVE_STAT_KEYS = ("max", "min", "q01", "q99", "mean", "std")  # upstream's order in relative_stats.json
DEFAULT_PROBS = (0.01, 0.99)
DEFAULT_HIST_BUDGET_BYTES = 256 * 2**20  # all histograms of one compute_stats call together
_WINDOW_BLOCK_VALUES = 2**22  # relative-chunk values materialised at once


class StatsError(ValueError):
    """Statistics cannot be computed; the message names the column/group, episode and what to do."""


class NonFiniteError(StatsError):
    """A chunk given to an accumulator holds NaN or infinity."""

    def __init__(self, message: str, row: int, dim: int, value: float):
        super().__init__(message)
        self.row, self.dim, self.value = row, dim, value


def _prob_key(p: float) -> str:
    pct = p * 100
    return f"q{round(pct):02d}" if math.isclose(pct, round(pct)) else f"q{pct:g}"


class FeatureAccumulator:
    """Streaming, mergeable, exact per-dimension statistics of float32 samples ``(n, dim)``.

    Protocol: ``update`` every chunk of the data (or ``merge`` partial states made with :meth:`spawn`, e.g. one per
    episode or worker), then ``end_pass()``; while it returns True, stream the same data again (only the quantile
    histograms are refined in later passes). :meth:`result` gives ``mean, std, min, max`` and one ``qNN`` per
    probability. Partial states serialise with :meth:`state_dict` / :meth:`save` (npz) for incremental caching.

    Moments are float64 (chunk mean and M2 by two passes, Chan merge); min/max/quantiles are exact and independent
    of chunking and merge order, mean/std agree to float64 rounding.
    """

    def __init__(
        self,
        dim: int | None = None,
        *,
        name: str = "",
        probs: Sequence[float] = DEFAULT_PROBS,
        hist_budget_bytes: int = DEFAULT_BUDGET_BYTES,
        raw_limit: int | None = None,
    ):
        self.name = name
        self.raw_limit = raw_limit
        self.probs = tuple(float(p) for p in probs)
        self.hist_budget_bytes = int(hist_budget_bytes)
        self.dim: int | None = None
        self.count = 0
        self.mean = self.m2 = self.min = self.max = np.zeros(0)
        self.select: RadixSelect | None = None
        if dim is not None:
            self._init_dim(dim)

    def _init_dim(self, dim: int) -> None:
        if dim < 1:
            raise StatsError(f"{self.name or 'feature'}: needs at least one dimension, got {dim}")
        self.dim = int(dim)
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)
        self.min = np.full(dim, np.inf, dtype=np.float32)
        self.max = np.full(dim, -np.inf, dtype=np.float32)
        self.select = RadixSelect(dim, self.probs, self.hist_budget_bytes, self.raw_limit)

    @property
    def pass_index(self) -> int:
        return 0 if self.select is None else self.select.pass_index

    @property
    def done(self) -> bool:
        return self.select is not None and self.select.done

    # --- streaming ------------------------------------------------------------------------------------------
    def update(self, x: np.ndarray) -> None:
        """Add a chunk of samples: float32 ``(n, dim)`` (a 1-D array is one dimension). Rejects NaN/inf."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise StatsError(f"{self.name or 'feature'}: expected an (n, dim) array, got shape {x.shape}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        if x.shape[0] == 0:
            return
        if self.dim is None:
            self._init_dim(x.shape[1])
        if x.shape[1] != self.dim:
            raise StatsError(f"{self.name or 'feature'}: expected {self.dim} dimensions, got {x.shape[1]}")
        assert self.select is not None
        if self.select.pass_index == 0:
            finite = np.isfinite(x)
            if not finite.all():
                row, dim = (int(i) for i in np.argwhere(~finite)[0])
                value = float(x[row, dim])
                raise NonFiniteError(
                    f"{self.name or 'feature'}: row {row} dimension {dim} is {value}; statistics of non-finite "
                    "data are meaningless",
                    row,
                    dim,
                    value,
                )
            n = x.shape[0]
            x64 = x.astype(np.float64)
            mean_b = x64.mean(axis=0)
            m2_b = np.square(x64 - mean_b).sum(axis=0)
            self._merge_moments(n, mean_b, m2_b, x.min(axis=0), x.max(axis=0))
        self.select.update_keys(float32_keys(x))

    def _merge_moments(
        self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray, min_b: np.ndarray, max_b: np.ndarray
    ) -> None:
        n_a = self.count
        if n_b == 0:
            return
        if n_a == 0:
            self.mean, self.m2 = mean_b.astype(np.float64).copy(), m2_b.astype(np.float64).copy()
        else:
            n = n_a + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + np.square(delta) * (n_a * n_b / n)
        self.count = n_a + n_b
        self.min = np.minimum(self.min, min_b)
        self.max = np.maximum(self.max, max_b)

    def spawn(self) -> FeatureAccumulator:
        """An empty partial state for the current pass (e.g. one episode), to be :meth:`merge`-d back."""
        other = FeatureAccumulator(
            name=self.name, probs=self.probs, hist_budget_bytes=self.hist_budget_bytes, raw_limit=self.raw_limit
        )
        if self.dim is not None:
            other._init_dim(self.dim)
            assert self.select is not None
            other.select = self.select.spawn()
        return other

    def merge(self, other: FeatureAccumulator) -> None:
        """Fold in a partial state of the same pass (exact histograms; Chan merge of moments in pass 0)."""
        if other.dim is None or (other.count == 0 and other.pass_index == 0):
            return
        if self.dim is None:
            self._init_dim(other.dim)
        if other.dim != self.dim or other.probs != self.probs:
            raise StatsError(f"{self.name or 'feature'}: cannot merge states of different dims or probabilities")
        assert self.select is not None and other.select is not None
        if other.pass_index != self.pass_index:
            raise StatsError(f"{self.name or 'feature'}: cannot merge states of different passes")
        if self.pass_index == 0:
            self._merge_moments(other.count, other.mean, other.m2, other.min, other.max)
        self.select.merge(other.select)

    def end_pass(self) -> bool:
        """Close the current pass over the data; True when the same data must be streamed once more."""
        if self.select is None or (self.pass_index == 0 and self.count == 0):
            raise StatsError(f"{self.name or 'feature'}: no samples, statistics are undefined")
        return self.select.end_pass()

    # --- results --------------------------------------------------------------------------------------------
    def result(self) -> dict[str, np.ndarray]:
        """``{"mean", "std", "min", "max", "q01", "q99", ...}`` as float64 arrays of shape ``(dim,)``."""
        if not self.done:
            raise StatsError(f"{self.name or 'feature'}: statistics need more passes over the data")
        assert self.select is not None
        quantiles = self.select.quantiles()
        out = {
            "mean": self.mean.copy(),
            "std": np.sqrt(np.maximum(self.m2, 0.0) / self.count),
            "min": self.min.astype(np.float64),
            "max": self.max.astype(np.float64),
        }
        for p, q in zip(self.probs, quantiles):
            out[_prob_key(p)] = q
        return out

    # --- serialisation (for incremental caching of per-episode partial states) -------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": "groot_ft.FeatureAccumulator/1",
            "name": self.name,
            "probs": np.asarray(self.probs, dtype=np.float64),
            "hist_budget_bytes": self.hist_budget_bytes,
            "raw_limit": -1 if self.raw_limit is None else self.raw_limit,
            "dim": -1 if self.dim is None else self.dim,
            "count": self.count,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
        }
        if self.select is not None:
            state.update({f"select.{k}": v for k, v in self.select.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureAccumulator:
        fmt = str(np.asarray(state.get("format", "")))
        if fmt != "groot_ft.FeatureAccumulator/1":
            raise StatsError(f"unknown accumulator state format {fmt!r}")
        acc = cls(
            name=str(np.asarray(state["name"])),
            probs=[float(p) for p in np.asarray(state["probs"]).ravel()],
            hist_budget_bytes=int(np.asarray(state["hist_budget_bytes"])),
            raw_limit=None if int(np.asarray(state["raw_limit"])) < 0 else int(np.asarray(state["raw_limit"])),
        )
        dim = int(np.asarray(state["dim"]))
        if dim < 0:
            return acc
        acc._init_dim(dim)
        acc.count = int(np.asarray(state["count"]))
        acc.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        acc.m2 = np.asarray(state["m2"], dtype=np.float64).copy()
        acc.min = np.asarray(state["min"], dtype=np.float32).copy()
        acc.max = np.asarray(state["max"], dtype=np.float32).copy()
        acc.select = RadixSelect.from_state_dict({k[7:]: v for k, v in state.items() if k.startswith("select.")})
        return acc

    def save(self, path: str | Path) -> None:
        """Write the state as an ``.npz`` file."""
        np.savez_compressed(Path(path), **{k: np.asarray(v) for k, v in self.state_dict().items()})

    @classmethod
    def load(cls, path: str | Path) -> FeatureAccumulator:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls.from_state_dict({k: data[k] for k in data.files})


# ---------------------------------------------------------------------------------------------------------------
# dataset statistics


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


def _native_matrix(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """A numeric column as an ``(rows, dim)`` array in its parquet dtype (no float32 cast)."""
    try:
        return column_matrix(table, column, path, dtype=None)
    except DatasetError as exc:
        raise StatsError(str(exc)) from None


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
                f"{dataset.root / 'meta/modality.json'}: RELATIVE action.{key} has {a.dim} dims but its reference "
                f"state.{cfg.reference_state_key(key)} has {s.dim}; they must match to subtract"
            )
        specs.append(_RelativeSpec(key, a.column, a.start, a.end, s.column, s.start, s.end))
    return specs


def _feature_dim(dataset: LeRobotDataset, name: str) -> int:
    shape = dataset.features.get(name, {}).get("shape") or [1]
    try:
        return max(1, int(np.prod([int(s) for s in shape])))
    except (TypeError, ValueError):
        return 1


def compute_stats(
    dataset: LeRobotDataset | str | Path,
    modality_config: EmbodimentModalityConfig | None = None,
    *,
    progress: bool = False,
    probs: Sequence[float] = DEFAULT_PROBS,
    hist_budget_bytes: int = DEFAULT_HIST_BUDGET_BYTES,
    raw_limit: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Compute ``(stats_json, relative_stats_json)``; the latter is None without a config or RELATIVE keys.

    Streams the episodes of ``meta/episodes.jsonl`` in episode-index order, reading only the needed parquet columns
    (never video). Small datasets take one pass; larger ones two (more only under a tight ``hist_budget_bytes``,
    the bound on all quantile histograms together). ``raw_limit`` is a tuning/testing knob of
    :class:`~groot_ft.quantiles.RadixSelect` (0 = histograms only). Nothing is written.
    """
    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(dataset)
    features = _float_features(ds)
    specs = _relative_specs(ds, modality_config) if modality_config is not None else []
    if not features and not specs:
        raise StatsError(f"{ds.root / 'meta/info.json'}: no float features to compute statistics for")
    episodes = sorted(ds.episodes, key=lambda e: e.index)
    if not episodes:
        raise StatsError(f"{ds.root / 'meta/episodes.jsonl'}: no episodes")
    deltas = modality_config.action.delta_indices if specs else (0,)
    horizon = len(deltas)
    ref_index = modality_config.state.delta_indices[-1] if specs else 0

    # split the histogram budget over all accumulators in proportion to their dimensions
    dims = {f"feature:{f}": _feature_dim(ds, f) for f in features}
    dims.update({f"relative:{s.key}": s.dim * horizon for s in specs})
    per_dim = hist_budget_bytes / max(1, sum(dims.values()))
    accs = {
        k: FeatureAccumulator(
            name=k.split(":", 1)[1], probs=probs, hist_budget_bytes=int(per_dim * d), raw_limit=raw_limit
        )
        for k, d in dims.items()
    }
    columns = sorted(set(features) | {s.action_column for s in specs} | {s.state_column for s in specs})

    active = set(accs)
    pass_no = 0
    while active:
        pass_no += 1
        iterator: Any = episodes
        if progress:
            from tqdm import tqdm

            iterator = tqdm(episodes, desc=f"stats pass {pass_no}", unit="episode")
        for ep in iterator:
            path = ds.data_path(ep.index)
            table = ds.read_episode_table(ep.index, columns)
            for f in features:
                key = f"feature:{f}"
                if key not in active:
                    continue
                try:
                    matrix = column_matrix(table, f, path)
                except (ValueError, pa.ArrowException) as exc:
                    raise StatsError(f"{path}: cannot read column {f} as floats: {exc}") from None
                _feed(accs[key], matrix, f"{path}: column {f}: episode {ep.index}, row {{row}}")
            native: dict[str, np.ndarray] = {}
            for s in specs:
                key = f"relative:{s.key}"
                if key not in active:
                    continue
                for col in (s.action_column, s.state_column):
                    if col not in native:
                        native[col] = _native_matrix(table, col, path)
                action = native[s.action_column][:, s.action_start : s.action_end]
                state = native[s.state_column][:, s.state_start : s.state_end]
                if action.shape[1] != s.dim or state.shape[1] != s.dim:
                    raise StatsError(
                        f"{path}: group {s.key} slices [{s.action_start}:{s.action_end}] of {s.action_column} and "
                        f"[{s.state_start}:{s.state_end}] of {s.state_column} exceed the columns' widths "
                        f"({native[s.action_column].shape[1]}, {native[s.state_column].shape[1]})"
                    )
                first = 0
                for block in relative_chunks(action, state, deltas, ref_index):
                    where = (
                        f"{path}: relative action {s.key} ({s.action_column} minus {s.state_column}): episode "
                        f"{ep.index}, window {{row}} (dimension index = step * {s.dim} + joint)"
                    )
                    _feed(accs[key], block.reshape(len(block), -1), where, first)
                    first += len(block)
        for key in sorted(active):
            acc = accs[key]
            if acc.pass_index == 0 and acc.count == 0:
                what = (
                    f"relative action {acc.name}: no episode is longer than the action horizon "
                    f"(max delta index {max(deltas)})"
                    if key.startswith("relative:")
                    else f"feature {acc.name}: no frames"
                )
                raise StatsError(f"{ds.root}: {what}; statistics are undefined")
            if not acc.end_pass():
                active.discard(key)

    stats = {}
    for f in features:
        res = accs[f"feature:{f}"].result()
        stats[f] = {k: res[k].tolist() for k in STAT_KEYS}
    if not specs:
        return stats, None
    relative = {}
    for s in specs:
        res = accs[f"relative:{s.key}"].result()
        relative[s.key] = {k: res[k].reshape(horizon, s.dim).tolist() for k in RELATIVE_STAT_KEYS}
    return stats, relative


def _feed(acc: FeatureAccumulator, x: np.ndarray, where: str, row_offset: int = 0) -> None:
    """``acc.update(x)``, turning a non-finite value into an error that names column, episode, row and dim."""
    try:
        acc.update(x)
    except NonFiniteError as exc:
        raise StatsError(
            f"{where.replace('{row}', str(row_offset + exc.row))}, dimension {exc.dim} is {exc.value}; statistics of "
            "non-finite data are meaningless; fix or drop the episode (dataset validation reports this too)"
        ) from None


# ---------------------------------------------------------------------------------------------------------------
# output


def _atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to a sibling temp file (normal umask permissions), fsync it, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x") as fh:
            json.dump(data, fh, indent=4, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_stats(out_dir: str | Path, stats: dict[str, Any], relative_stats: dict[str, Any] | None) -> list[Path]:
    """Write ``out_dir/stats.json`` and (unless None) ``out_dir/relative_stats.json`` atomically; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / STATS_FILENAME]
    _atomic_write_json(written[0], stats)
    if relative_stats is not None:
        written.append(out / RELATIVE_STATS_FILENAME)
        _atomic_write_json(written[1], relative_stats)
    return written


def summary_flags(
    stats: dict[str, Any],
    *,
    const_tol: float = 1e-6,
    outlier_factor: float = 10.0,
) -> list[dict[str, Any]]:
    """Dimensions worth a look before training, from a stats.json- or relative_stats.json-shaped dict.

    Flags (one dict each, with ``feature``, ``index`` (dimension, or ``[step, dim]`` for relative stats), ``flag``,
    ``message`` and the relevant values):

    * ``constant``: ``max == min`` (min/max normalisation maps the dimension to 0);
    * ``near_constant``: ``std <= const_tol`` or ``np.isclose(max, min)`` (GR00T's min/max normalisation outputs 0
      for such dimensions, exactly as for constant ones);
    * ``q01_eq_q99``: the 1st and 99th percentiles coincide although the dimension varies (percentile
      normalisation would divide by zero / saturate);
    * ``outlier_max`` / ``outlier_min``: ``max > q99 + outlier_factor * (q99 - q01)`` (or the mirror for min) —
      min/max normalisation would squeeze the bulk of the data into a small part of [-1, 1].
    """
    flags: list[dict[str, Any]] = []
    for feature, entry in stats.items():
        if not isinstance(entry, dict) or not {"min", "max", "std"} <= set(entry):
            continue
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in entry.items() if k in STAT_KEYS}
        shape = arrays["max"].shape
        for index in np.ndindex(*shape):
            v = {k: float(a[index]) for k, a in arrays.items() if a.shape == shape}
            idx: int | list[int] = int(index[0]) if len(index) == 1 else [int(i) for i in index]
            lo, hi, std = v["min"], v["max"], v["std"]
            span = hi - lo
            base = {"feature": feature, "index": idx}
            if span == 0:
                flags.append({**base, "flag": "constant", "value": lo,
                              "message": f"constant at {lo:g}; min/max normalisation maps it to 0"})
                continue
            if std <= const_tol or np.isclose(hi, lo):
                flags.append({**base, "flag": "near_constant", "std": std, "min": lo, "max": hi,
                              "message": f"near-constant (std {std:.3g}, range {span:.3g})"})
                continue
            if "q01" not in v or "q99" not in v:
                continue
            q01, q99 = v["q01"], v["q99"]
            iqr = q99 - q01
            if iqr == 0:
                flags.append({**base, "flag": "q01_eq_q99", "q01": q01, "q99": q99, "min": lo, "max": hi,
                              "message": f"q01 == q99 == {q01:g} although the range is [{lo:g}, {hi:g}]"})
                continue
            if hi > q99 + outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_max", "max": hi, "q01": q01, "q99": q99,
                              "message": f"max {hi:g} is {(hi - q99) / iqr:.1f} x (q99 - q01) above q99 {q99:g}"})
            if lo < q01 - outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_min", "min": lo, "q01": q01, "q99": q99,
                              "message": f"min {lo:g} is {(q01 - lo) / iqr:.1f} x (q99 - q01) below q01 {q01:g}"})
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compute GR00T stats.json / relative_stats.json of a dataset.")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--modality-config", type=Path, help="YAML/JSON modality config (for relative_stats.json)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (never the dataset itself)")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    if args.out.resolve().is_relative_to(args.dataset.resolve()):
        parser.error(f"--out {args.out} is inside the dataset {args.dataset}; statistics are never written into it")
    cfg = load_modality_config(args.modality_config) if args.modality_config else None
    try:
        stats, relative = compute_stats(args.dataset, cfg, progress=args.progress)
    except (StatsError, DatasetError) as exc:
        parser.exit(1, f"error: {exc}\n")
    for path in write_stats(args.out, stats, relative):
        print(path)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for flag in summary_flags(stats) + summary_flags(relative or {}):
        grouped.setdefault((flag["feature"], flag["flag"]), []).append(flag)
    for (feature, kind), flags in grouped.items():
        where = ", ".join(json.dumps(f["index"]) for f in flags[:8]) + (", ..." if len(flags) > 8 else "")
        print(f"note: {feature}: {len(flags)} x {kind} at {where}; e.g. {flags[0]['message']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
