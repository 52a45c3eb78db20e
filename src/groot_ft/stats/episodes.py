"""One episode's inputs to the statistics, decoded from parquet or read from the incremental cache.

* :class:`EpisodeData`: the episode's float32 feature matrices and native-dtype RELATIVE action/state slices (checked
  finite and of the planned widths) plus, once computed, its float64 partial :class:`~groot_ft.stats.moments.Moments`
  per key; :meth:`EpisodeData.save`/:meth:`EpisodeData.load` are the cache entry format (``CACHE_FORMAT``: a sequence
  of ``.npy`` records, unchanged from the single-module version).
* :class:`EpisodeSource`: per-episode data of one dataset: the cache entry keyed by ``sha256(format, plan, episode
  content)`` where there is one, else decoded (and saved); without a cache, an unlinked spill file spares later
  passes the parquet decoding. Unused entries are pruned after a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from groot_ft.data.lerobot import DatasetError, LeRobotDataset, column_matrix
from groot_ft.stats.common import CACHE_FORMAT, StatsError
from groot_ft.stats.moments import Moments
from groot_ft.stats.plan import StatsPlan, relative_chunks

_CACHE_NAME = re.compile(r"^[0-9a-f]{64}\.npys$")


def column_array(table: pa.Table, column: str, path: Path, dtype: Any = np.float32) -> np.ndarray:
    """A numeric (fixed-size) list or scalar column as an ``(rows, dim)`` array (``dtype=None``: parquet dtype);
    unreadable columns raise :class:`~groot_ft.stats.common.StatsError`."""
    try:
        return column_matrix(table, column, path, dtype=dtype)
    except DatasetError as exc:
        raise StatsError(str(exc)) from None


def _native_matrix(table: pa.Table, column: str, path: Path) -> np.ndarray:
    """A numeric column as an ``(rows, dim)`` array in its parquet dtype (no float32 cast)."""
    return column_array(table, column, path, dtype=None)


def _check_finite(x: np.ndarray, where: str, row_offset: int = 0) -> None:
    """Raise a StatsError naming ``where`` (with ``{row}``), the row and dimension of the first non-finite value."""
    if np.isfinite(x).all():
        return
    row, dim = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
    raise StatsError(
        f"{where.replace('{row}', str(row_offset + row))}, dimension {dim} is {float(x[row, dim])}; statistics of "
        "non-finite data are meaningless; fix or drop the episode (dataset validation reports this too)"
    )


class EpisodeData:
    """One episode's inputs to the statistics (float32 feature matrices, native RELATIVE slices) and, once
    computed, its float64 partial moments per accumulator key; what an incremental cache entry holds."""

    def __init__(self, index: int, arrays: dict[str, np.ndarray], moments: dict[str, Moments] | None = None):
        self.index = index
        self.arrays = arrays  # "x{j}": feature j float32 (n, dim); "a{j}" / "s{j}": RELATIVE group j action / state
        self.moments = moments

    def matrices(self, plan: StatsPlan, keys: set[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """``(key, float32 (n, dim))`` chunks in row order: the features, then the relative windows in blocks."""
        for j, (f, _) in enumerate(plan.features):
            key = f"feature:{f}"
            if keys is None or key in keys:
                yield key, self.arrays[f"x{j}"]
        for j, s in enumerate(plan.specs):
            key = f"relative:{s.key}"
            if keys is None or key in keys:
                for block in relative_chunks(self.arrays[f"a{j}"], self.arrays[f"s{j}"], plan.deltas, plan.ref_index):
                    yield key, block.reshape(len(block), -1)

    @classmethod
    def decode(cls, ds: LeRobotDataset, plan: StatsPlan, episode_index: int, *, moments: bool = True) -> EpisodeData:
        """Read, check (finite, widths) and, with ``moments``, summarise one episode from its parquet data."""
        path = ds.data_path(episode_index)
        try:
            table = ds.read_episode_table(episode_index, plan.columns)
        except DatasetError as exc:
            raise StatsError(str(exc)) from None
        arrays: dict[str, np.ndarray] = {}
        for j, (f, _) in enumerate(plan.features):
            try:
                matrix = np.ascontiguousarray(column_array(table, f, path))
            except StatsError:
                raise
            except (ValueError, pa.ArrowException) as exc:
                raise StatsError(f"{path}: cannot read column {f} as floats: {exc}") from None
            _check_finite(matrix, f"{path}: column {f}: episode {episode_index}, row {{row}}")
            arrays[f"x{j}"] = matrix
        native: dict[str, np.ndarray] = {}
        for j, s in enumerate(plan.specs):
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
            arrays[f"a{j}"] = np.ascontiguousarray(action)
            arrays[f"s{j}"] = np.ascontiguousarray(state)
        data = cls(episode_index, arrays)
        if moments:
            data.moments = data._compute_moments(plan, path)
        return data

    def with_moments(self, ds: LeRobotDataset, plan: StatsPlan) -> EpisodeData:
        """Compute (and check) the partial moments if they are missing; returns self."""
        if self.moments is None:
            self.moments = self._compute_moments(plan, ds.data_path(self.index))
        return self

    def _compute_moments(self, plan: StatsPlan, path: Path) -> dict[str, Moments]:
        out: dict[str, Moments] = {}
        for j, (f, _) in enumerate(plan.features):
            out[f"feature:{f}"] = Moments.of(self.arrays[f"x{j}"])
        for j, s in enumerate(plan.specs):
            acc = Moments.empty(s.dim * plan.horizon)
            first = 0
            for block in relative_chunks(self.arrays[f"a{j}"], self.arrays[f"s{j}"], plan.deltas, plan.ref_index):
                flat = block.reshape(len(block), -1)
                _check_finite(
                    flat,
                    f"{path}: relative action {s.key} ({s.action_column} minus {s.state_column}): episode "
                    f"{self.index}, window {{row}} (dimension index = step * {s.dim} + joint)",
                    first,
                )
                acc.merge(Moments.of(flat))
                first += len(block)
            out[f"relative:{s.key}"] = acc
        return out

    # --- cache entries ---------------------------------------------------------------------------------------
    def save(self, path: Path, plan: StatsPlan) -> None:
        """Write the entry atomically (temp file + rename): a sequence of ``.npy`` records (format tag, JSON list
        of record names, then the arrays), read back with ``np.load(allow_pickle=False)``; no zip, no CRC."""
        assert self.moments is not None
        payload: dict[str, np.ndarray] = {"episode": np.array(self.index, dtype=np.int64)}
        payload.update(self.arrays)
        for i, key in enumerate(plan.keys()):
            m = self.moments[key]
            payload[f"count{i}"] = np.array(m.count, dtype=np.int64)
            payload[f"moments{i}"] = m.to_array()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.save(fh, np.array(CACHE_FORMAT))
                np.save(fh, np.array(json.dumps(list(payload))))
                for array in payload.values():
                    np.save(fh, array)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path, plan: StatsPlan, *, moments: bool = True) -> EpisodeData:
        """Read an entry written by :meth:`save` (raises ValueError/OSError on a foreign or damaged file)."""
        with open(path, "rb") as fh:
            try:
                if str(np.load(fh, allow_pickle=False)) != CACHE_FORMAT:
                    raise ValueError(f"{path}: not a {CACHE_FORMAT} entry")
                names = json.loads(str(np.load(fh, allow_pickle=False)))
                data = {name: np.load(fh, allow_pickle=False) for name in names}
            except EOFError:
                raise ValueError(f"{path}: truncated cache entry") from None
            if fh.read(1):
                raise ValueError(f"{path}: trailing data after the cache entry")
        arrays = {f"x{j}": data[f"x{j}"] for j in range(len(plan.features))}
        arrays.update({f"{p}{j}": data[f"{p}{j}"] for j in range(len(plan.specs)) for p in ("a", "s")})
        mom = None
        if moments:
            mom = {
                key: Moments.from_array(int(data[f"count{i}"]), data[f"moments{i}"])
                for i, key in enumerate(plan.keys())
            }
        return cls(int(data["episode"]), arrays, mom)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class EpisodeSource:
    """Per-episode :class:`EpisodeData` of one dataset, from an incremental cache where possible.

    :meth:`first` (the first pass) hashes the episode's data, loads the cache entry of that content or decodes and
    validates the parquet rows and writes the entry, and counts ``recomputed`` (decoded) and ``cached`` episodes.
    :meth:`again` (later passes) reads the entry, or decodes once more when there is no cache.
    """

    def __init__(self, ds: LeRobotDataset, plan: StatsPlan, cache_dir: str | Path | None = None):
        self.ds = ds
        self.plan = plan
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.entries: dict[int, Path] = {}
        self.recomputed = 0
        self.cached = 0
        self._plan_fp = plan.fingerprint()
        self._digests: dict[Path, str] = {}
        self._spill: Any = None  # without a cache: an anonymous temp file of decoded arrays, in episode order
        self._spill_names = [f"x{j}" for j in range(len(plan.features))]
        self._spill_names += [f"{p}{j}" for j in range(len(plan.specs)) for p in ("a", "s")]

    def open_spill(self) -> None:
        """Without a cache, keep the first pass's decoded arrays in an unlinked temp file (page cache / disk, not
        process memory) so that later passes read them back instead of decoding parquet again. Passes must then
        visit the episodes in the same order; :meth:`close_spill` ends it."""
        if self.cache_dir is None and self._spill is None:
            import tempfile

            self._spill = tempfile.TemporaryFile(prefix="groot_ft_stats_")
            self._spill_done = False

    def rewind_spill(self) -> None:
        if self._spill is not None:
            self._spill_done = True
            self._spill.seek(0)

    def close_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def entry_key(self, episode_index: int) -> str:
        """sha256 of (cache format, stats plan, the episode's data bytes)."""
        path = self.ds.data_path(episode_index)
        if path not in self._digests:
            try:
                self._digests = {path: _file_sha256(path)}  # shared v3 files are hashed once, in order
            except FileNotFoundError:
                raise StatsError(f"{path}: parquet file of episode {episode_index} is missing") from None
        rows = self.ds.episode_rows(episode_index)
        content = f"{self._digests[path]}:{episode_index if rows is not None else ''}:{rows or ''}"
        return hashlib.sha256(f"{self._plan_fp}\n{content}".encode()).hexdigest()

    def first(self, episode_index: int) -> EpisodeData:
        """The episode with its moments; without a cache, the caller computes them (:meth:`EpisodeData.with_moments`,
        on its own thread, which balances the work of the reading and the feeding thread)."""
        if self.cache_dir is None:
            self.recomputed += 1
            data = EpisodeData.decode(self.ds, self.plan, episode_index, moments=False)
            if self._spill is not None:
                np.save(self._spill, np.int64(episode_index))
                for name in self._spill_names:
                    np.save(self._spill, data.arrays[name])
            return data
        key = self.entry_key(episode_index)
        path = self.cache_dir / key[:2] / f"{key}.npys"
        self.entries[episode_index] = path
        if path.is_file():
            try:
                data = EpisodeData.load(path, self.plan)
                self.cached += 1
                return data
            except (OSError, ValueError, KeyError, json.JSONDecodeError):  # damaged or foreign: recompute it
                pass
        data = EpisodeData.decode(self.ds, self.plan, episode_index)
        data.save(path, self.plan)
        self.recomputed += 1
        return data

    def again(self, episode_index: int) -> EpisodeData:
        path = self.entries.get(episode_index)
        if path is not None:
            return EpisodeData.load(path, self.plan, moments=False)
        if self._spill is not None and self._spill_done:
            if int(np.load(self._spill)) != episode_index:
                raise RuntimeError("statistics passes visited the episodes in different orders")
            return EpisodeData(episode_index, {name: np.load(self._spill) for name in self._spill_names})
        return EpisodeData.decode(self.ds, self.plan, episode_index, moments=False)

    def prune(self) -> int:
        """Delete cache entries that this source's episodes no longer use; return how many."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return 0
        keep = set(self.entries.values())
        removed = 0
        for sub in self.cache_dir.iterdir():
            if not (sub.is_dir() and len(sub.name) == 2):
                continue
            for entry in sub.iterdir():
                if _CACHE_NAME.match(entry.name) and entry not in keep:
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed
