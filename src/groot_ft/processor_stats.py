"""Processor statistics in ``statistics.json`` structure: building them from a dataset's ``meta/`` files and turning
them into plain JSON types.

Split out of :mod:`groot_ft.processor` (which re-exports every name here) so the statistics job stands apart from
the per-sample processor; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.errors import UserError, read_json_file
from groot_ft.modality import EmbodimentModalityConfig, parse_embodiment_config

STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")
DEFAULT_STATE_COLUMN = "observation.state"
DEFAULT_ACTION_COLUMN = "action"


class ProcessorError(UserError, ValueError):
    """A processor input, config or statistics problem; the message names the tag, modality and key."""


def to_jsonable(value: Any) -> Any:
    """Deep-copy statistics into plain JSON types (numpy arrays/scalars -> lists/floats)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
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


def statistics_from_stats_dir(
    stats_dir: Path, modality_json: Mapping[str, Any], modality_config: EmbodimentModalityConfig
) -> tuple[dict[str, Any], list[Path]]:
    """:func:`statistics_from_dataset_stats` of the ``stats.json`` (+ ``relative_stats.json`` when present) in
    ``stats_dir``: a ``groot-ft stats`` output or a dataset's ``meta/``. Also returns the files it read."""
    stats_path, rel_path = Path(stats_dir) / "stats.json", Path(stats_dir) / "relative_stats.json"
    relative = read_json_file(rel_path, "the relative-action statistics") if rel_path.is_file() else None
    stats = statistics_from_dataset_stats(read_json_file(stats_path, "the statistics (stats.json)"), relative,
                                          modality_json, modality_config)
    return stats, [stats_path] + ([rel_path] if relative is not None else [])
