"""State-vector grouping for :mod:`groot_ft.data.modality_init`: per-element names of a ``meta/info.json`` feature
split into named groups (indexed prefixes, side words, grippers), plus the small feature-shape/dtype helpers the
proposal uses. The rules are in :mod:`groot_ft.data.modality_init`'s docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_SIDES = ("left", "right")
_GRIPPER = re.compile(r"grip", re.IGNORECASE)
_INDEXED = re.compile(r"^(?P<prefix>.*?[A-Za-z])[\s_.\-]*(?P<index>\d+)$")
_TOKENS = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class ElementGroup:
    name: str
    start: int
    end: int
    gripper: bool = False

    @property
    def dim(self) -> int:
        return self.end - self.start


def sanitize(text: str) -> str:
    out = "_".join(t for t in _TOKENS.split(text) if t)
    return out or "group"


def _tokens(name: str) -> list[str]:
    return [t.lower() for t in _TOKENS.split(name) if t]


def _group_key(name: str) -> tuple[str | None, bool]:
    """(group key, is gripper) of one vector element's name; key None = a plain name without a shared prefix."""
    tokens = _tokens(name)
    side = next((t for t in tokens if t in _SIDES), None)
    if _GRIPPER.search(name):
        return (f"{side}_gripper" if side else "gripper"), True
    m = _INDEXED.match(name.strip())
    if m:
        return sanitize(m.group("prefix")), False
    if side is not None and len(tokens) > 1:
        return f"{side}_arm", False
    return None, False


def element_names(feature: dict[str, Any]) -> list[str] | None:
    """Per-element names of a 1-D feature, or None when absent or not one name per element."""
    names = feature.get("names")
    dim = feature_dim(feature)
    if isinstance(names, dict) and len(names) == 1:  # older LeRobot: {"motors": [...]}
        names = next(iter(names.values()))
    if not isinstance(names, list) or dim is None or len(names) != dim:
        return None
    if not all(isinstance(n, str) and n.strip() for n in names):
        return None
    return [str(n) for n in names]


def feature_dim(feature: dict[str, Any]) -> int | None:
    shape = feature.get("shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] > 0:
        return int(shape[0])
    return None


def split_groups(names: list[str]) -> list[ElementGroup]:
    """Runs of consecutive elements with the same group key, named (see the module docstring)."""
    runs: list[tuple[str | None, bool, int, int]] = []
    for i, name in enumerate(names):
        key, grip = _group_key(name)
        if runs and runs[-1][0] == key and runs[-1][1] == grip:
            k, g, s, _ = runs[-1]
            runs[-1] = (k, g, s, i + 1)
        else:
            runs.append((key, grip, i, i + 1))
    groups: list[ElementGroup] = []
    used: dict[str, int] = {}
    for key, grip, start, end in runs:
        base = key or "arm"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        groups.append(ElementGroup(name, start, end, grip))
    return groups


def unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


def is_float_feature(feature: dict[str, Any]) -> bool:
    dtype = feature.get("dtype")
    return isinstance(dtype, str) and dtype.startswith("float")


def is_int_feature(feature: dict[str, Any]) -> bool:
    dtype = feature.get("dtype")
    return isinstance(dtype, str) and (dtype.startswith("int") or dtype.startswith("uint"))
