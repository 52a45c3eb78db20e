"""The metadata files of a LeRobot dataset: JSON/JSONL readers that raise :class:`DatasetError` naming the file and
line, info.json path-template filling, ``codebase_version`` detection and the v3 ``meta/tasks.parquet`` reader.

Split out of :mod:`groot_ft.data.lerobot` (the reader, which re-exports these names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.layout import SUPPORTED_VERSIONS, V3_EPISODES_DIR, V3_VERSIONS, DatasetError, v3_task_column


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); restore the file") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); restore the file") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetError(f"{path}:{lineno}: blank line; JSONL needs one JSON object per line")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def format_template(root: Path, template: str, what: str, **fields: Any) -> str:
    """Fill an info.json path template, turning a bad placeholder into a DatasetError that names it."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise DatasetError(
            f"{root / 'meta/info.json'}: {what} {template!r} cannot be filled ({exc!r}); allowed placeholders: "
            f"{', '.join('{' + f + '}' for f in fields)}"
        ) from None


def detect_version(root: Path, info: dict[str, Any]) -> str:
    """``codebase_version`` of info.json, cross-checked against the files on disk (§1.5); raises on a mismatch."""
    version = info.get("codebase_version")
    where = root / "meta/info.json"
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{where}: codebase_version {version!r} is not supported; supported: {', '.join(SUPPORTED_VERSIONS)}"
        )
    has_v3_meta = (root / V3_EPISODES_DIR).is_dir()
    has_v2_meta = (root / "meta/episodes.jsonl").is_file()
    data_path = info.get("data_path")
    if version in V3_VERSIONS:
        if not has_v3_meta and has_v2_meta:
            raise DatasetError(
                f"{where}: codebase_version is {version} but the dataset has meta/episodes.jsonl and no "
                f"{V3_EPISODES_DIR}/ (a v2 layout); fix codebase_version"
            )
        if isinstance(data_path, str) and "{file_index" not in data_path:
            raise DatasetError(
                f"{where}: codebase_version is {version} but data_path {data_path!r} has no {{file_index}} "
                "placeholder (a v2 template); fix codebase_version or data_path"
            )
    else:
        if not has_v2_meta and has_v3_meta:
            raise DatasetError(
                f"{where}: codebase_version is {version} but the dataset has {V3_EPISODES_DIR}/ and no "
                "meta/episodes.jsonl (a v3.0 layout); fix codebase_version"
            )
        if isinstance(data_path, str) and "{file_index" in data_path:
            raise DatasetError(
                f"{where}: codebase_version is {version} but data_path {data_path!r} is a v3.0 template "
                "({file_index}); fix codebase_version or data_path"
            )
    return version


def read_v3_tasks(path: Path) -> dict[int, str]:
    """``task_index -> task`` from a v3 ``meta/tasks.parquet`` (task string as a column or as the pandas index)."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: cannot read tasks: {exc}") from None
    column = v3_task_column(table.schema)
    if column is None or "task_index" not in table.column_names:
        raise DatasetError(
            f"{path}: needs a task_index column and the task strings as a 'task' column or pandas index "
            f"(columns: {', '.join(table.column_names)})"
        )
    indices = table.column("task_index").to_pylist()
    texts = table.column(column).to_pylist()
    out: dict[int, str] = {}
    for row, (idx, text) in enumerate(zip(indices, texts, strict=True)):
        if not isinstance(idx, int) or isinstance(idx, bool) or not isinstance(text, str):
            raise DatasetError(f"{path}: row {row}: needs integer task_index and string task, got {idx!r}, {text!r}")
        if idx in out:
            raise DatasetError(f"{path}: row {row}: task_index {idx} appears twice")
        out[idx] = text
    return out
