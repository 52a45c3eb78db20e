"""E. ``meta/modality.json`` and the user's modality config."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from groot_ft.data.layout import DEFAULT_ACTION_COLUMN, DEFAULT_STATE_COLUMN

from groot_ft.data.validate.codes import MODALITY_SECTIONS, ROTATION_TYPES, modality_missing_hint
from groot_ft.data.validate.context import MISSING, Ctx, is_int, is_number, load_json
from groot_ft.data.validate.info import numpy_dtype


def check_modality(ctx: Ctx) -> dict[str, Any] | None:
    """The mapping in force: the external one (``ctx.modality_json``) when given, else the dataset's own."""
    rel = ctx.modality_file
    if ctx.modality_json is not None:
        hint = ("The modality mapping named by modality_json_path / --modality-json is not there; fix the path, or "
                "propose one with `groot-ft modality init DATASET --out-modality-json FILE`.")
    else:
        hint = modality_missing_hint(ctx.root)
    modality = load_json(ctx, rel, required=True, path=ctx.modality_json, hint=hint)
    if modality is MISSING:
        return None
    if not isinstance(modality, dict):
        ctx.add("MODALITY_INVALID", f"modality.json must hold an object, got {type(modality).__name__}", file=rel)
        return None
    for key in modality:
        if key not in MODALITY_SECTIONS:
            ctx.add(
                "MODALITY_UNKNOWN_KEY",
                f"unknown top-level key {key!r} (GR00T reads {', '.join(MODALITY_SECTIONS)})",
                file=rel,
                field=key,
            )
    clean: dict[str, Any] = {}
    for section in MODALITY_SECTIONS:
        value = modality.get(section, {})
        if not isinstance(value, dict):
            ctx.add(
                "MODALITY_INVALID",
                f"{section} must be an object mapping keys to entries, got {type(value).__name__}",
                file=rel,
                field=section,
            )
            value = {}
        entries = {}
        for key, entry in value.items():
            if not isinstance(entry, dict):
                ctx.add(
                    "MODALITY_INVALID",
                    f"{section}.{key} must be an object, got {entry!r}",
                    file=rel,
                    field=f"{section}.{key}",
                )
                continue
            entries[key] = entry
        clean[section] = entries
    for section, default in (("state", DEFAULT_STATE_COLUMN), ("action", DEFAULT_ACTION_COLUMN)):
        check_slices(ctx, section, default, clean[section])
    for key, entry in clean["video"].items():
        original = entry.get("original_key", f"observation.images.{key}")
        if ctx.declared is None:
            break  # features unusable (reported): nothing to cross-check against
        feat = ctx.declared.get(original) if isinstance(original, str) else None
        if not isinstance(feat, dict) or feat.get("dtype") != "video":
            what = "is not a feature of meta/info.json" if feat is None else f"has dtype {feat.get('dtype')!r}"
            ctx.add(
                "MODALITY_VIDEO_NOT_A_FEATURE",
                f'video.{key} maps to original_key {original!r}, which {what} (needs a dtype "video" feature)',
                file=rel,
                field=f"video.{key}.original_key",
            )
    for key, entry in clean["annotation"].items():
        column = entry.get("original_key", f"annotation.{key}")
        if ctx.declared is None or (isinstance(column, str) and column in ctx.declared and column not in ctx.features):
            continue  # features unusable, or this one is malformed (both reported already)
        feat = ctx.features.get(column) if isinstance(column, str) else None
        if feat is None:
            ctx.add(
                "MODALITY_ANNOTATION_COLUMN_MISSING",
                f"annotation.{key} maps to column {column!r}, which is not a feature of meta/info.json",
                file=rel,
                field=f"annotation.{key}",
            )
        elif not (numpy_dtype(feat["dtype"]) is not None and numpy_dtype(feat["dtype"]).kind in "iu"):
            ctx.add(
                "MODALITY_ANNOTATION_NOT_INT",
                f"annotation.{key} maps to column {column!r} of dtype "
                f"{feat['dtype']!r}; annotations are integer task indices",
                file=rel,
                field=f"annotation.{key}",
            )
    return clean


def check_slices(ctx: Ctx, section: str, default_column: str, groups: dict[str, dict[str, Any]]) -> None:
    rel = ctx.modality_file
    by_column: dict[str, list[tuple[int, int, str]]] = {}
    for key, entry in groups.items():
        where = f"{section}.{key}"
        start, end = entry.get("start"), entry.get("end")
        column = entry.get("original_key", default_column)
        if not is_int(start) or not is_int(end) or start < 0 or start >= end:
            ctx.add(
                "MODALITY_SLICE_INVALID",
                f"{where}: start={start!r}, end={end!r} (need integers 0 <= start < end)",
                file=rel,
                field=where,
            )
            start = end = None
        feat = ctx.features.get(column) if isinstance(column, str) else None
        if ctx.declared is None or (isinstance(column, str) and column in ctx.declared and feat is None):
            pass  # features unusable, or this one is malformed (both reported already)
        elif feat is None or feat["dtype"] in ("video", "image", "string"):
            what = "not a feature of meta/info.json" if feat is None else f"a {feat['dtype']} feature"
            ctx.add(
                "MODALITY_UNKNOWN_COLUMN",
                f"{where} reads column {column!r}, which is {what}",
                file=rel,
                field=f"{where}.original_key" if "original_key" in entry else where,
            )
        elif start is not None:
            dim = feat["shape"][0]
            if end > dim:
                ctx.add(
                    "MODALITY_SLICE_OUT_OF_BOUNDS",
                    f"{where} = [{start}:{end}) exceeds {column!r} of dimension {dim}",
                    file=rel,
                    field=where,
                )
            by_column.setdefault(column, []).append((start, end, key))
        rot = entry.get("rotation_type")
        if rot is not None and rot not in ROTATION_TYPES:
            ctx.add(
                "MODALITY_ROTATION_TYPE_INVALID",
                f"{where}.rotation_type {rot!r} is not one of {', '.join(sorted(ROTATION_TYPES))}",
                file=rel,
                field=f"{where}.rotation_type",
            )
        rng = entry.get("range")
        if rng is not None and not (
            isinstance(rng, list) and len(rng) == 2 and all(is_number(v) for v in rng) and rng[0] < rng[1]
        ):
            ctx.add(
                "MODALITY_RANGE_INVALID",
                f"{where}.range {rng!r} must be [lo, hi] with lo < hi",
                file=rel,
                field=f"{where}.range",
            )
    for column, spans in by_column.items():
        spans.sort()
        dim = ctx.features[column]["shape"][0]
        covered_to = 0
        gaps = []
        for (s0, e0, k0), (s1, _e1, k1) in pairwise(spans):
            if s1 < e0:
                ctx.add(
                    "MODALITY_SLICE_OVERLAP",
                    f"{section}.{k1} [{s1}:{_e1}) overlaps {section}.{k0} [{s0}:{e0}) in column {column!r}",
                    file=rel,
                    field=f"{section}.{k1}",
                )
        for s, e, _k in spans:
            if s > covered_to:
                gaps.append(f"[{covered_to}:{s})")
            covered_to = max(covered_to, e)
        if covered_to < dim:
            gaps.append(f"[{covered_to}:{dim})")
        if gaps:
            ctx.add(
                "MODALITY_SLICE_GAP",
                f"{section} groups leave {', '.join(gaps)} of {column!r} (dim {dim}) unused",
                file=rel,
                field=section,
            )


def group_dim(modality: dict[str, Any], section: str, key: str) -> int | None:
    entry = modality.get(section, {}).get(key)
    if not entry:
        return None
    s, e = entry.get("start"), entry.get("end")
    return e - s if is_int(s) and is_int(e) and e > s else None


def check_config(ctx: Ctx, modality: dict[str, Any] | None) -> None:
    cfg = ctx.cfg
    if cfg is None or modality is None:
        return
    rel = ctx.modality_file
    src = cfg.source
    for section in ("state", "action", "video"):
        defined = modality.get(section, {})
        for key in cfg[section].modality_keys:
            if key not in defined:
                ctx.add(
                    "CONFIG_KEY_MISSING",
                    f"the modality config ({src}) uses {section} key {key!r}, which "
                    f"modality.json does not define (defined: {', '.join(defined) or 'none'})",
                    file=rel,
                    field=f"{section}.{key}",
                )
    for key in cfg.language.modality_keys:
        annotations = modality.get("annotation", {})
        if key == "task":  # the frame's task_index (checked with the other task columns)
            continue
        if not key.startswith("annotation."):
            ctx.add(
                "CONFIG_KEY_MISSING",
                f"the modality config ({src}) uses language key {key!r}; only "
                "task and annotation.<source>.<type> keys are supported",
                file=rel,
                field=f"language.{key}",
                hint="Use task (the frame's task_index) or an annotation.* key defined in meta/modality.json.",
            )
        elif key[len("annotation.") :] not in annotations:
            ctx.add(
                "CONFIG_KEY_MISSING",
                f"the modality config ({src}) uses language key {key!r}, but "
                f"modality.json defines no annotation {key[len('annotation.') :]!r} (defined: "
                f"{', '.join(annotations) or 'none'})",
                file=rel,
                field=f"language.{key}",
            )
    for key in cfg.relative_action_keys():
        ref = cfg.reference_state_key(key)
        a_dim, s_dim = group_dim(modality, "action", key), group_dim(modality, "state", ref)
        if a_dim is not None and s_dim is not None and a_dim != s_dim:
            ctx.add(
                "CONFIG_RELATIVE_DIM_MISMATCH",
                f"RELATIVE action {key!r} has dimension {a_dim} but its reference state {ref!r} has {s_dim}",
                file=rel,
                field=f"action.{key}",
            )
