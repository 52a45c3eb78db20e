"""An episode's state/action groups as numpy arrays: :class:`EpisodeArrays` and :func:`column_matrix`, which reads a
parquet list column as a ``(rows, dim)`` matrix straight from its Arrow buffers where it can.

Split out of :mod:`groot_ft.data.lerobot` (the reader, which re-exports these names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from groot_ft.data.layout import DatasetError


@dataclass
class EpisodeArrays:
    episode_index: int
    length: int
    state: dict[str, np.ndarray]
    action: dict[str, np.ndarray]
    language: list[str]


_NUMPY_TYPES = {
    pa.float16(): np.float16, pa.float32(): np.float32, pa.float64(): np.float64,
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
}  # fmt: skip


def _primitive(arr: pa.Array) -> np.ndarray | None:
    """A null-free numeric arrow array's values, zero-copy (read-only), or None for other arrays."""
    dtype = _NUMPY_TYPES.get(arr.type)
    if dtype is None or arr.null_count:
        return None
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)]


def _buffer_matrix(col: pa.ChunkedArray) -> np.ndarray | None:
    """The common layout (one chunk, no nulls, numeric values, equal row widths) read straight from the arrow
    buffers, or None for anything else."""
    if col.num_chunks != 1 or col.null_count:
        return None
    arr = col.chunk(0)
    kind = arr.type
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
        values = _primitive(arr.values.slice(arr.offset * width, len(arr) * width))
        return None if values is None else values.reshape(len(arr), width)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_list(kind) else np.int32)
        offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
        widths = np.diff(offsets)
        if not len(arr) or (widths != widths[0]).any():
            return None
        values = _primitive(arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
        return None if values is None else values.reshape(len(arr), int(widths[0]))
    values = _primitive(arr)
    return None if values is None else values.reshape(-1, 1)


def _arrow_matrix(col: pa.ChunkedArray, column: str, path: Path | str) -> np.ndarray:
    """Any layout through Arrow's own conversions, with an error naming what is wrong."""
    col = col.combine_chunks()
    if col.null_count:
        raise DatasetError(f"{path}: column {column} has {col.null_count} null rows")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = col.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != lengths[0]).any():
            raise DatasetError(f"{path}: column {column} has rows of different lengths {sorted(set(lengths.tolist()))}")
        dim = int(lengths[0]) if len(lengths) else 0
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), dim)
    return col.to_numpy(zero_copy_only=False).reshape(-1, 1)


def column_matrix(
    table: pa.Table, column: str, path: Path | str = "<table>", dtype: np.dtype | type | None = np.float32
) -> np.ndarray:
    """A list/fixed-size-list (or scalar) numeric column as a (rows, dim) matrix.

    ``dtype`` defaults to float32, as upstream casts state and action; ``None`` keeps the parquet dtype (statistics
    of differences are taken in the stored precision before any cast). Parquet columns as LeRobot writes them are
    read straight from the arrow buffers: Arrow's ``flatten``/``to_numpy`` cost more than the rest of reading a
    short episode and load compute kernels and pandas (some 50 MiB of resident memory) for nothing.
    """
    col = table.column(column)
    out = _buffer_matrix(col)
    if out is None:
        out = _arrow_matrix(col, column, path)
    if out.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: column {column} has dtype {out.dtype}; expected numbers")
    return out if dtype is None else out.astype(dtype, copy=False)
