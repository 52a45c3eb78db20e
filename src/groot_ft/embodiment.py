"""Embodiment tags and the category ids that index the action head's per-embodiment weights."""

from __future__ import annotations

from groot_ft.errors import UserKeyError

# Upstream's EMBODIMENT_TAG_TO_PROJECTOR_INDEX. A checkpoint's embodiment_id.json wins over this table;
# tags it lacks are filled from here.
EMBODIMENT_TAG_TO_ID: dict[str, int] = {
    "oxe_google": 0,
    "oxe_widowx": 1,
    "libero_panda": 2,
    "new_embodiment": 10,
    "robocasa_panda_omron": 13,
    "oxe_droid": 16,
    "gr1": 20,
    "behavior_r1_pro": 24,
}

MAX_NUM_EMBODIMENTS = 32


def normalize_tag(tag: str) -> str:
    """Accept upstream's enum spelling (``NEW_EMBODIMENT``) as well as the value (``new_embodiment``)."""
    return tag.strip().lower()


def embodiment_id(tag: str, mapping: dict[str, int] | None = None) -> int:
    tag = normalize_tag(tag)
    table = {**EMBODIMENT_TAG_TO_ID, **(mapping or {})}
    if tag not in table:
        known = ", ".join(sorted(table))
        raise UserKeyError(f"unknown embodiment_tag {tag!r}; known tags: {known} (use new_embodiment for a new robot)")
    value = table[tag]
    if not 0 <= value < MAX_NUM_EMBODIMENTS:
        raise ValueError(f"embodiment id {value} for {tag!r} must be in [0, {MAX_NUM_EMBODIMENTS})")
    return value
