"""A general streaming accumulator (float64 moments + exact radix-select quantiles), used only by the tests.

It exercises :mod:`groot_ft.quantiles` through the protocol a sharded/parallel caller would use (update chunks,
spawn/merge partial states, save/load them, as many passes as the select asks for); the statistics stage itself
(:func:`groot_ft.stats.run_stats`) drives the same selects directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.quantiles import DEFAULT_BUDGET_BYTES, RadixSelect, float32_keys
from groot_ft.stats import DEFAULT_PROBS, StatsError, prob_key


class NonFiniteError(StatsError):
    """A chunk given to an accumulator holds NaN or infinity."""

    def __init__(self, message: str, row: int, dim: int, value: float):
        super().__init__(message)
        self.row, self.dim, self.value = row, dim, value


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
            out[prob_key(p)] = q
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
