"""State-vector grouping for :mod:`groot_ft.data.modality_init`: the per-element names of ``observation.state``
split into contiguous named groups (left/right arm, hand, gripper, leg, waist, torso, head, neck), plus the small
feature-shape/dtype helpers the proposal uses.

Each name is cut into lower-case words at separators, camelCase and digits, so the common robot naming schemes read
alike: Unitree's ``kLeftShoulderPitch`` / ``kLeftHandThumb0`` (the enum's leading ``k`` is dropped),
``left_shoulder_pitch_joint``, ``l_arm_shoulder_pitch``, ``LeftHandIndex``, NAO's ``LShoulderPitch``, LeRobot's
``shoulder_pan.pos``. A side is ``left``/``right`` anywhere, or ``l``/``r`` as the first word. A body part is the
first of these that a word names (the order settles names like ``left_hand_gripper``):

* gripper: a word starting with ``grip``, or ``claw``;
* hand: ``hand``, ``finger``, ``thumb``, ``pinky``, ``palm``;
* arm: ``arm``, ``shoulder``, ``elbow``, ``wrist``, ``forearm``; and ``waist`` *with* a side word, which is the
  base joint of an arm such as ALOHA's ViperX (``left_waist``) -- a humanoid has one waist, not two;
* leg: ``leg``, ``hip``, ``knee``, ``ankle``, ``foot``, ``thigh``, ``toe``;
* waist (no side), torso (``torso``, ``trunk``, ``chest``, ``spine``, ``pelvis``), head, neck.

The group is ``<side>_<part>`` (or ``<part>`` without a side). Names without a body-part word keep the older rules:
an indexed prefix (``joint_0 .. joint_5`` -> ``joint``), a side word with other words (-> ``<side>_arm``, a guess),
or a plain name (``x``, ``y``, ``z``; consecutive plain names are ``arm``). Consecutive elements of one group form one
group, because a GR00T group is a contiguous ``[start, end)`` slice of the column; a group name that comes back after
another group gets a suffix (``left_arm_2``). Groups of recognised arm joints are the candidates for RELATIVE
actions (upstream's gr1 config makes its arms RELATIVE).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from groot_ft.data.layout import DEFAULT_ACTION_COLUMN, DEFAULT_STATE_COLUMN

TABLE_COLUMNS = ("group", "slice", "width", "joints", "why", "relative?")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
# camelCase and digit boundaries: "kLeftHandThumb0" -> k, Left, Hand, Thumb, 0; "LShoulderPitch" -> L, Shoulder, ...
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_INDEXED = re.compile(r"^(?P<prefix>.*?[A-Za-z])[\s_.\-]*(?P<index>\d+)$")
_TOKENS = re.compile(r"[^A-Za-z0-9]+")

_SIDE_WORDS = {"left": "left", "right": "right"}
_SIDE_FIRST_WORDS = {"l": "left", "r": "right", "lft": "left", "rgt": "right"}
#: body part -> the words that name it, in the order parts are tried
_PART_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("hand", frozenset({"hand", "hands", "finger", "fingers", "thumb", "pinky", "palm"})),
    ("arm", frozenset({"arm", "arms", "shoulder", "elbow", "wrist", "forearm", "upperarm"})),
    ("leg", frozenset({"leg", "legs", "hip", "knee", "ankle", "foot", "feet", "thigh", "toe"})),
    ("waist", frozenset({"waist"})),
    ("torso", frozenset({"torso", "trunk", "chest", "spine", "pelvis"})),
    ("head", frozenset({"head"})),
    ("neck", frozenset({"neck"})),
)


@dataclass(frozen=True)
class ElementGroup:
    """``[start, end)`` of a vector, named; ``arm`` marks recognised arm joints (RELATIVE candidates), ``why`` says
    which words decided the group."""

    name: str
    start: int
    end: int
    gripper: bool = False
    arm: bool = False
    why: str = ""
    body_part: str | None = None

    @property
    def dim(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class NameClass:
    """What one element's name says: its group key (None: a plain name), the body part it names, and why."""

    key: str | None
    part: str | None
    side: str | None
    words: tuple[str, ...] = field(default=())
    rule: str = ""


def sanitize(text: str) -> str:
    out = "_".join(t for t in _TOKENS.split(text) if t)
    return out or "group"


def words(name: str) -> list[str]:
    """Lower-case words of a joint name (separators, camelCase and digits split it; Unitree's ``k`` is dropped)."""
    out = [w for piece in _SPLIT.split(name) for w in _WORDS.findall(piece)]
    if len(out) > 1 and out[0] == "k" and out[1][:1].isupper():
        out = out[1:]
    return [w.lower() for w in out]


def classify(name: str) -> NameClass:
    """The group one element's name belongs to (see the module docstring for the rules)."""
    ws = words(name)
    side = next((_SIDE_WORDS[w] for w in ws if w in _SIDE_WORDS), None)
    if side is None and ws and ws[0] in _SIDE_FIRST_WORDS and len(ws) > 1:
        side = _SIDE_FIRST_WORDS[ws[0]]
    prefix = f"{side}_" if side else ""
    grip = tuple(w for w in ws if w.startswith("grip") or w == "claw")
    if grip:
        return NameClass(f"{prefix}gripper", "gripper", side, grip[:1], "gripper")
    for part, vocabulary in _PART_WORDS:
        hits = tuple(w for w in ws if w in vocabulary)
        if not hits:
            continue
        if part == "waist" and side is not None:
            return NameClass(f"{side}_arm", "arm", side, hits, "side + waist")
        return NameClass(f"{prefix}{part}", part, side, hits, part)
    m = _INDEXED.match(name.strip())
    if m:
        return NameClass(sanitize(m.group("prefix")), None, side, (), "indexed prefix")
    if side is not None and len(ws) > 1:
        return NameClass(f"{side}_arm", None, side, (), "side word but no body-part word (guessed arm)")
    return NameClass(None, None, side, (), "plain name")


def _why(members: list[NameClass], names: list[str]) -> str:
    """One line on why these consecutive elements form a group (the words that decided it)."""
    first = members[0]
    if first.part is not None:
        seen: list[str] = []
        for m in members:
            seen += [w for w in m.words if w not in seen]
        side = f"{first.side} side, " if first.side else ""
        why = f"{side}{first.part} words: {'/'.join(seen)}"
        if any(m.rule.startswith("side + waist") for m in members):
            why += " (a waist with a side is an arm's base joint, as on ALOHA's ViperX)"
        return why
    if first.rule == "indexed prefix":
        return f"indexed names share the prefix {first.key!r}"
    if first.rule.startswith("side word"):
        return f"{first.side} {first.rule}"
    return "plain names without a body-part word" if len(names) > 1 else "a plain name without a body-part word"


def split_groups(names: list[str]) -> list[ElementGroup]:
    """Runs of consecutive elements with the same group key, named (see the module docstring)."""
    classes = [classify(n) for n in names]
    runs: list[tuple[int, int]] = []
    for i, cls in enumerate(classes):
        if runs and (classes[runs[-1][0]].key, classes[runs[-1][0]].part) == (cls.key, cls.part):
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    groups: list[ElementGroup] = []
    used: dict[str, int] = {}
    for start, end in runs:
        first = classes[start]
        base = first.key or "arm"
        used[base] = used.get(base, 0) + 1
        name = base if used[base] == 1 else f"{base}_{used[base]}"
        groups.append(
            ElementGroup(
                name,
                start,
                end,
                gripper=first.part == "gripper",
                arm=first.part == "arm",
                why=_why(classes[start:end], names[start:end]),
                body_part=first.part,
            )
        )
    return groups


def joints_summary(names: list[str] | tuple[str, ...], limit: int = 3) -> str:
    """A short list of a group's joint names for the proposal's table: all of them, or the first and last."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{names[0]} .. {names[-1]}"


def group_table(
    state_groups: list[ElementGroup],
    state_names: list[str] | None,
    action_groups: list[tuple[str, int, int, str | None, bool]],
    action_names: list[str] | None,
    reps: dict[str, str],
) -> list[dict[str, str]]:
    """Rows of ``modality init``'s table: the state groups (with the rep of the action group that mirrors
    each), then any action group that mirrors none."""
    rows: list[dict[str, str]] = []
    arm_groups = {g.name for g in state_groups if g.arm}
    mirrored = {mirror: name for name, _s, _e, mirror, _g in action_groups if mirror is not None}
    for g in state_groups:
        action = mirrored.get(g.name)
        if action is None:
            rel = "- (state only)"
        else:
            rel = reps[action] + (" (arm joints)" if g.name in arm_groups and reps[action] == "RELATIVE" else "")
        rows.append(
            {
                "group": g.name if action in (None, g.name) else f"{g.name} / {action}",
                "slice": f"{DEFAULT_STATE_COLUMN}[{g.start}:{g.end}]" + (" + action" if action is not None else ""),
                "width": str(g.dim),
                "joints": joints_summary(state_names[g.start : g.end]) if state_names else "(no names)",
                "why": g.why,
                "relative?": rel,
            }
        )
    for name, start, end, mirror, _grip in action_groups:
        if mirror is not None:
            continue
        rows.append(
            {
                "group": name,
                "slice": f"{DEFAULT_ACTION_COLUMN}[{start}:{end}]",
                "width": str(end - start),
                "joints": joints_summary(action_names[start:end]) if action_names else "(no names)",
                "why": "action's names are not observation.state's, so it stays whole",
                "relative?": reps[name],
            }
        )
    return rows


def render_table(rows: list[dict[str, str]]) -> str:
    """``rows`` (from :func:`group_table`) as aligned plain text with a header line."""
    header = {k: k for k in TABLE_COLUMNS}
    every = [header, *rows]
    widths = {k: max(len(str(r.get(k, ""))) for r in every) for k in TABLE_COLUMNS}
    lines = []
    for i, row in enumerate(every):
        lines.append("  ".join(str(row.get(k, "")).ljust(widths[k]) for k in TABLE_COLUMNS).rstrip())
        if i == 0:
            lines.append("  ".join("-" * widths[k] for k in TABLE_COLUMNS))
    return "\n".join(lines) + "\n"


def unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"


def feature_dim(feature: dict[str, Any]) -> int | None:
    shape = feature.get("shape")
    if isinstance(shape, (list, tuple)) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] > 0:
        return int(shape[0])
    return None


def is_float_feature(feature: dict[str, Any]) -> bool:
    dtype = feature.get("dtype")
    return isinstance(dtype, str) and dtype.startswith("float")


def is_int_feature(feature: dict[str, Any]) -> bool:
    dtype = feature.get("dtype")
    return isinstance(dtype, str) and (dtype.startswith("int") or dtype.startswith("uint"))
