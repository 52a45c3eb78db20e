"""Propose a GR00T ``meta/modality.json`` and a modality config for a dataset that has neither.

Everything is derived from ``meta/info.json`` (feature names, dtypes and shapes); the proposal is a starting point
for a human to review, so every guess it makes is listed in :attr:`ModalityProposal.notes`.

Rules (see ``docs/validation.md``, "No modality.json yet?"):

* **state groups** come from the per-element names of ``observation.state``, in any form LeRobot writers store them
  (flat or nested list, ``{"motors": [...]}``, ``{"name": index}``; :func:`groot_ft.data.layout.feature_names`).
  Joint names are read for side and body part (left/right arm, hand, gripper, leg, waist, torso, head, neck, in the
  common naming schemes: Unitree's ``kLeftShoulderPitch``, ``left_shoulder_pitch_joint``, ``l_arm_...``,
  ``LeftHand...``); without body-part words, an indexed prefix (``joint_0 .. joint_5``) names the group and plain
  names (``x, y, z``) are ``arm``. Consecutive elements of one group form one contiguous slice
  (:mod:`groot_ft.data.modality_groups` has the rules). When that finds a single group of indexed or plain names
  (``motor_0 .. motor_43``), or names are missing or unusable, one group ``state`` covers the whole vector.
* **action groups** mirror the state groups (same names, same slices) when ``action`` has exactly the state's names;
  otherwise one group ``action`` covers the whole vector. A whole-vector ``action`` group mirroring a whole-vector
  ``state`` group refers to it through ``state_key`` when made RELATIVE.
* other float, 1-D features named ``observation.*`` (not images) become extra state groups (``original_key``).
* **video**: every ``dtype: video`` feature, ``observation.images.front`` -> ``front``, except cameras whose first
  episode has no video file (declared but never recorded, like gr1.PickNPlace's ``egoview``).
* **annotation**: every integer ``annotation.*`` column; without any, ``human.task_description`` reads
  ``task_index``. The language key is ``annotation.<the one naming a task>``.
* **modality config**: video/state ``delta_indices [0]``, action ``range(action_horizon)``; action groups
  NON_EEF/DEFAULT, RELATIVE for the mirrored groups of arm joints (as upstream's gr1 config has its arms) and ABSOLUTE
  for the rest, unless ``relative`` says otherwise (group names, ``"all-mirrored"``: every mirrored group except
  grippers, ``"none"``: all ABSOLUTE).
* :attr:`ModalityProposal.table` lists every group with its slice, width, joints, why it was proposed and its rep;
  the CLI prints it (:meth:`ModalityProposal.table_text`) and the config's comment header repeats it.

Nothing here writes into a dataset: :func:`write_proposal` writes only to the paths it is given, refuses to overwrite
unless ``force=True``, and replaces files atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from groot_ft.data.layout import FeatureNames, feature_names
from groot_ft.data.modality_groups import (
    ElementGroup,
    feature_dim,
    group_table,
    is_float_feature,
    is_int_feature,
    joints_summary,
    render_table,
    sanitize,
    split_groups,
    unique_name,
)
from groot_ft.errors import OutputExistsError, UserError, exits_on_user_error
from groot_ft.io import atomic_write_text

__all__ = [
    "ALL_MIRRORED",
    "NO_RELATIVE",
    "ModalityInitError",
    "ModalityProposal",
    "add_modality_parser",
    "main_modality_init",
    "propose_modality",
    "run_modality_init",
    "write_proposal",
]

ALL_MIRRORED = "all-mirrored"
#: ``--relative none``: every action group ABSOLUTE, overriding the proposed arm groups
NO_RELATIVE = "none"
STATE_COLUMN = "observation.state"
ACTION_COLUMN = "action"
DEFAULT_LANGUAGE_ANNOTATION = "human.task_description"



class ModalityInitError(UserError, ValueError):
    """The dataset's metadata cannot yield a usable proposal; the message says what is missing."""


@dataclass
class ModalityProposal:
    """A proposed ``meta/modality.json`` (``modality_json``), modality config (``modality_config``, the YAML
    structure of :mod:`groot_ft.modality`) and the guesses a human should review (``notes``)."""

    modality_json: dict[str, Any]
    modality_config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    dataset: str = ""
    #: one row per proposed state/action group: group, slice, width, joints, why, relative (see :meth:`table_text`)
    table: list[dict[str, str]] = field(default_factory=list)

    def table_text(self) -> str:
        """The proposed groups as a plain-text table: what each group is, where, and why it was proposed."""
        return render_table(self.table)

    def modality_json_text(self) -> str:
        return json.dumps(self.modality_json, indent=4) + "\n"

    def config_yaml(self) -> str:
        header = [
            f"# Modality config proposed by `groot-ft modality init` for {self.dataset or 'a dataset'}.",
            "# Review it: group names, which cameras/state groups to use, RELATIVE vs ABSOLUTE actions.",
        ]
        header += [f"# {line}".rstrip() for line in self.table_text().splitlines()]
        header += [f"# note: {n}" for n in self.notes]
        return "\n".join(header) + "\n" + _dump_yaml(self.modality_config)

    def to_yaml(self) -> str:
        """The whole proposal as one YAML document (what the CLI prints when given no output paths)."""
        doc = {
            "modality_json": _flow(self.modality_json),
            "modality_config": _flow(self.modality_config),
            "notes": list(self.notes),  # block style: one note per line
        }
        return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=200)


class _FlowList(list):
    """A list of scalars that YAML should write inline: ``[0, 1, 2]``."""


class _FlowDict(dict):
    """A small mapping that YAML should write inline: ``{rep: ABSOLUTE, type: NON_EEF, format: DEFAULT}``."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(
    _FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True)
)


def _flow(obj: Any) -> Any:
    """Copy ``obj`` marking scalar lists and action-config entries for inline YAML."""
    if isinstance(obj, dict):
        if obj and all(not isinstance(v, (dict, list)) for v in obj.values()) and "rep" in obj:
            return _FlowDict(obj)
        return {k: _flow(v) for k, v in obj.items()}
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return _FlowList(obj)
        return [_flow(v) for v in obj]
    return obj


def _dump_yaml(obj: Any) -> str:
    return yaml.dump(_flow(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=200)


# ================================================================================================= proposal


def _read_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not root.is_dir():
        raise ModalityInitError(f"{root}: dataset directory does not exist")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModalityInitError(f"{path}: file is missing; pass the dataset root (the folder holding meta/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModalityInitError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModalityInitError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise ModalityInitError(f"{path}: needs a \"features\" object (LeRobot info.json)")
    return info


def _camera_files_present(root: Path, cameras: Iterable[str]) -> dict[str, bool | None]:
    """Whether the first episode has a video file per camera (any LeRobot version); None when that cannot be told."""
    from groot_ft.data.lerobot import DatasetError, LeRobotDataset

    try:
        ds = LeRobotDataset(root)
        first = ds.episodes[0].index if ds.episodes else None
    except (DatasetError, OSError, ValueError, KeyError):
        return {name: None for name in cameras}
    present: dict[str, bool | None] = {}
    for name in cameras:
        try:
            present[name] = None if first is None else ds.episode_video_file(first, name).is_file()
        except (DatasetError, OSError, ValueError, KeyError):
            present[name] = None  # no template / no v3 columns for this camera: let the validator speak
    return present


def _video_key(original: str) -> str:
    prefix = "observation.images."
    rest = original[len(prefix) :] if original.startswith(prefix) else original.rsplit(".", 1)[-1]
    return sanitize(rest)


def _parse_relative(relative: str | Iterable[str] | None) -> list[str] | None:
    """The --relative words, or None (nothing asked: the proposal's arm groups are RELATIVE)."""
    if relative is None:
        return None
    if isinstance(relative, str):
        relative = [relative]
    out: list[str] = []
    for item in relative:
        for part in str(item).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def _names_note(column: str, read: FeatureNames) -> str | None:
    """A note on a column whose names cannot be used (the validator reports the same as a warning)."""
    if read.problem is None:
        return None
    return f"{column}: its {read.problem}, so they cannot name groups"


def _vector_names(root: Path, column: str, feat: dict[str, Any], notes: list[str]) -> tuple[int, list[str] | None]:
    """Width and per-element names (None if unusable, with a note) of a 1-D feature such as observation.state."""
    dim = feature_dim(feat)
    if dim is None:
        raise ModalityInitError(f"{root / 'meta/info.json'}: {column} needs a 1-D shape [N], got {feat.get('shape')!r}")
    read = feature_names(feat)
    note = _names_note(column, read)
    if note:
        notes.append(note)
    return dim, (list(read.names) if read.names is not None else None)


def propose_modality(
    dataset_root: str | os.PathLike[str],
    *,
    action_horizon: int = 16,
    relative: str | Iterable[str] | None = None,
) -> ModalityProposal:
    """Propose ``meta/modality.json`` and a modality config from ``dataset_root/meta/info.json``.

    ``relative`` names action groups to make RELATIVE (each must mirror a state group of the same width), or is
    ``"all-mirrored"`` (every mirrored group except grippers) or ``"none"``; None (the default) makes RELATIVE the
    mirrored groups whose joint names say they are arm joints, as upstream's gr1 config does for its arms. Reads only
    ``meta/info.json`` (and, to see whether cameras have files, the first episode's metadata); never writes anything.
    """
    if isinstance(action_horizon, bool) or not isinstance(action_horizon, int) or action_horizon < 1:
        raise ModalityInitError(f"action_horizon must be a positive integer, got {action_horizon!r}")
    root = Path(dataset_root)
    info = _read_info(root)
    features: dict[str, Any] = {k: v for k, v in info["features"].items() if isinstance(v, dict)}
    notes: list[str] = []
    if (root / "meta" / "modality.json").exists():
        notes.append("the dataset already has meta/modality.json; this proposal ignores it")

    # --- state ----------------------------------------------------------------------------------------------
    state_groups: list[ElementGroup] = []
    state_entries: dict[str, dict[str, Any]] = {}
    state_feat = features.get(STATE_COLUMN)
    state_names: list[str] | None = None
    if state_feat is not None:
        dim, state_names = _vector_names(root, STATE_COLUMN, state_feat, notes)
        groups = split_groups(state_names) if state_names else []
        # one group named by body-part words (a bare arm) keeps its name; one run of indexed or plain names says
        # nothing about the robot, so it stays the neutral "state"
        if len(groups) == 0 or (len(groups) == 1 and groups[0].body_part is None):
            why = (
                "its names share one prefix / form one group"
                if state_names
                else "it has no usable per-element names"
            )
            notes.append(f"state: one group 'state' covers {STATE_COLUMN} [0:{dim}) because {why}; split it by hand")
            groups = [ElementGroup("state", 0, dim, why=f"whole vector: {why}")]
        else:
            notes.append(
                "state groups from observation.state names: "
                + ", ".join(f"{g.name} [{g.start}:{g.end})" for g in groups)
            )
        state_groups = groups
        for g in groups:
            state_entries[g.name] = {"start": g.start, "end": g.end}

    # extra state features (other float observation.* columns)
    extras: list[str] = []
    for name, feat in features.items():
        if name == STATE_COLUMN or not name.startswith("observation.") or name.startswith("observation.images."):
            continue
        if feat.get("dtype") in ("video", "image") or not is_float_feature(feat):
            continue
        dim = feature_dim(feat)
        if dim is None:
            notes.append(f"skipped {name!r}: not a 1-D float feature (shape {feat.get('shape')!r})")
            continue
        prefix = "observation.state." if name.startswith("observation.state.") else "observation."
        rest = name[len(prefix) :]
        key = unique_name(sanitize(rest), set(state_entries))
        state_entries[key] = {"start": 0, "end": dim, "original_key": name}
        extras.append(key)
    if extras:
        notes.append(
            "extra state groups from other observation.* columns: "
            + ", ".join(f"{k} <- {state_entries[k]['original_key']}" for k in extras)
            + "; drop them from state.modality_keys if the robot cannot observe them when deployed"
        )
    if not state_entries:
        raise ModalityInitError(
            f"{root / 'meta/info.json'}: no {STATE_COLUMN} and no other float observation.* feature; "
            "GR00T needs at least one state group"
        )

    # --- action ---------------------------------------------------------------------------------------------
    action_feat = features.get(ACTION_COLUMN)
    if action_feat is None:
        raise ModalityInitError(f"{root / 'meta/info.json'}: no {ACTION_COLUMN!r} feature; GR00T trains on actions")
    action_dim, action_names = _vector_names(root, ACTION_COLUMN, action_feat, notes)
    # action group name -> (start, end, mirrored state group or None, is gripper)
    action_groups: list[tuple[str, int, int, str | None, bool]] = []
    if state_names is not None and action_names == state_names:
        for g in state_groups:
            name = "action" if g.name == "state" else g.name
            action_groups.append((name, g.start, g.end, g.name, g.gripper))
        notes.append("action groups mirror the state groups (action has the same names as observation.state)")
    else:
        if action_names is None:
            why = "it has no per-element names, so nothing shows it corresponds to observation.state"
        else:
            why = "its names differ from observation.state's"
        notes.append(f"action: one group 'action' covers {ACTION_COLUMN} [0:{action_dim}) because {why}")
        action_groups.append(("action", 0, action_dim, None, False))
    action_entries = {name: {"start": s, "end": e} for name, s, e, _m, _g in action_groups}

    # --- video ----------------------------------------------------------------------------------------------
    video_entries: dict[str, dict[str, Any]] = {}
    video_used: list[str] = []
    missing_files: list[str] = []
    cameras = [name for name, feat in features.items() if feat.get("dtype") == "video"]
    present = _camera_files_present(root, cameras)
    if cameras and all(v is False for v in present.values()):
        notes.append("no camera has a video file for the first episode; check video_path and the videos/ folder")
        present = dict.fromkeys(cameras, None)
    for name in cameras:
        if present[name] is False:
            # a declared camera without files (gr1.PickNPlace's "egoview"): mapping it would make every consumer
            # that trusts modality.json look for files that are not there
            missing_files.append(name)
            continue
        key = unique_name(_video_key(name), set(video_entries))
        video_entries[key] = {"original_key": name}
        video_used.append(key)
    if missing_files:
        notes.append(f"left out cameras without a video file for the first episode: {', '.join(missing_files)}")
    if not video_entries:
        raise ModalityInitError(
            f"{root / 'meta/info.json'}: no feature with dtype \"video\"; GR00T needs at least one camera"
        )
    notes.append("cameras: " + ", ".join(f"{k} <- {v['original_key']}" for k, v in video_entries.items()))

    # --- annotation / language ------------------------------------------------------------------------------
    annotation_entries: dict[str, dict[str, Any]] = {}
    for name, feat in features.items():
        if name.startswith("annotation.") and is_int_feature(feat) and len(name) > len("annotation."):
            annotation_entries[name[len("annotation.") :]] = {}
    if annotation_entries:
        candidates = list(annotation_entries)
        language = next((a for a in candidates if "task" in a.lower()), candidates[0])
        others = [a for a in candidates if a != language]
        notes.append(
            f"language: annotation.{language}" + (f" (other annotation columns: {', '.join(others)})" if others else "")
        )
    else:
        language = DEFAULT_LANGUAGE_ANNOTATION
        annotation_entries[language] = {"original_key": "task_index"}
        if "task_index" in features:
            notes.append("language: no annotation.* column, so annotation.human.task_description reads task_index")
        else:
            notes.append(
                "language: no annotation.* column and no task_index feature in meta/info.json; "
                "annotation.human.task_description reads task_index anyway, declare it or fix the mapping"
            )

    # --- action configs ---------------------------------------------------------------------------------------
    asked = _parse_relative(relative)
    wanted = asked if asked is not None else []
    all_mirrored = ALL_MIRRORED in wanted
    if NO_RELATIVE in wanted and len(wanted) > 1:
        raise ModalityInitError(f"--relative {NO_RELATIVE} cannot be combined with other groups: {', '.join(wanted)}")
    explicit = [w for w in wanted if w not in (ALL_MIRRORED, NO_RELATIVE)]
    names = [g[0] for g in action_groups]
    arm_groups = {g.name for g in state_groups if g.arm}
    # the proposal's own choice: mirrored arm-joint groups RELATIVE, as upstream's gr1 config has its arms
    suggested = [n for n, _s, _e, mirror, _g in action_groups if mirror in arm_groups]
    unknown = [w for w in explicit if w not in names]
    if unknown:
        raise ModalityInitError(
            f"--relative {', '.join(unknown)}: not a proposed action group (groups: {', '.join(names)}; "
            f"or {ALL_MIRRORED})"
        )
    action_configs: list[dict[str, Any]] = []
    made_relative: list[str] = []
    for name, start, end, mirror, grip in action_groups:
        rel = (
            name in explicit
            or (all_mirrored and mirror is not None and not grip)
            or (asked is None and name in suggested)
        )
        if name in explicit:
            if mirror is None:
                raise ModalityInitError(
                    f"--relative {name}: action group {name!r} does not mirror a state group (RELATIVE actions are "
                    "action minus the matching state); only mirrored groups can be RELATIVE"
                )
            if state_entries[mirror]["end"] - state_entries[mirror]["start"] != end - start:
                raise ModalityInitError(f"--relative {name}: the state group {mirror!r} has a different width")
        entry: dict[str, Any] = {"rep": "RELATIVE" if rel else "ABSOLUTE", "type": "NON_EEF", "format": "DEFAULT"}
        if rel and mirror != name:
            entry["state_key"] = mirror
        if rel:
            made_relative.append(name)
        action_configs.append(entry)
    if made_relative:
        notes.append(f"RELATIVE (action minus current state): {', '.join(made_relative)}; the rest ABSOLUTE")
        if asked is None:
            notes.append(
                "arm-joint groups are RELATIVE by default, as upstream's gr1 config has its arms; "
                f"--relative {NO_RELATIVE} makes every group ABSOLUTE, --relative GROUP ... chooses"
            )
    else:
        notes.append("all action groups ABSOLUTE (use --relative GROUP or --relative all-mirrored for arm joints)")
    if all_mirrored:
        skipped = [g[0] for g in action_groups if g[3] is not None and g[4]]
        if skipped:
            notes.append(f"{ALL_MIRRORED} leaves gripper groups ABSOLUTE: {', '.join(skipped)} (name one to override)")

    modality_json = {
        "state": state_entries,
        "action": action_entries,
        "video": video_entries,
        "annotation": annotation_entries,
    }
    modality_config = {
        "video": {"delta_indices": [0], "modality_keys": video_used},
        "state": {"delta_indices": [0], "modality_keys": list(state_entries)},
        "action": {
            "delta_indices": list(range(action_horizon)),
            "modality_keys": names,
            "action_configs": action_configs,
        },
        "language": {"delta_indices": [0], "modality_keys": [f"annotation.{language}"]},
    }
    reps = {name: cfg["rep"] for name, cfg in zip(names, action_configs, strict=True)}
    table = group_table(state_groups, state_names, action_groups, action_names, reps)
    for key in extras:
        entry = state_entries[key]
        extra_names = feature_names(features[entry["original_key"]]).names
        table.append(
            {
                "group": key,
                "slice": f"{entry['original_key']}[0:{entry['end']}]",
                "width": str(entry["end"]),
                "joints": joints_summary(list(extra_names)) if extra_names else "(no names)",
                "why": "another float observation.* column",
                "relative?": "- (state only)",
            }
        )
    return ModalityProposal(modality_json, modality_config, notes, dataset=str(root), table=table)


# ================================================================================================= writing


def write_proposal(
    proposal: ModalityProposal,
    *,
    modality_json_out: str | os.PathLike[str] | None,
    config_out: str | os.PathLike[str] | None,
    force: bool = False,
) -> list[Path]:
    """Write the proposed modality.json and/or config YAML to exactly the given paths (None = skip that file).

    Refuses (``FileExistsError``, before writing anything) to replace an existing file unless ``force``; never
    replaces a directory. Each file is written to a temporary sibling and moved into place with :func:`os.replace`.
    Returns the paths written.
    """
    targets: list[tuple[Path, str]] = []
    if modality_json_out is not None:
        targets.append((Path(modality_json_out), proposal.modality_json_text()))
    if config_out is not None:
        targets.append((Path(config_out), proposal.config_yaml()))
    if len({p.resolve() for p, _ in targets}) != len(targets):
        raise ModalityInitError("--out-modality-json and --out-config name the same file; give two different files")
    for path, _ in targets:
        if path.is_dir():
            raise OutputExistsError(f"{path}: is a directory; give a file path")
        if (path.exists() or path.is_symlink()) and not force:
            raise OutputExistsError(f"{path}: already exists; refusing to overwrite it (use --force / force=True)")
    written = []
    for path, text in targets:
        atomic_write_text(path, text)
        written.append(path)
    return written


# ================================================================================================= CLI


def _configure_init_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset root (the folder that holds meta/info.json)")
    p.add_argument("--out-config", metavar="F", help="write the proposed modality config (YAML) here")
    p.add_argument(
        "--out-modality-json",
        metavar="F",
        help="write the proposed modality.json here; keep it outside the dataset, where the run's config points at it",
    )
    p.add_argument("--action-horizon", type=int, default=16, metavar="N", help="action delta_indices = 0..N-1 (16)")
    p.add_argument(
        "--relative",
        nargs="+",
        default=None,
        metavar="G",
        help=f"action groups to make RELATIVE ({ALL_MIRRORED}: every mirrored non-gripper group; {NO_RELATIVE}: "
        "every group ABSOLUTE); default: the groups whose joint names say they are arm joints",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run_modality_init)


def add_modality_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``modality`` (with subcommand ``init``) on a ``parser.add_subparsers()`` object."""
    p = subparsers.add_parser("modality", help="modality.json / modality config helpers")
    sub = p.add_subparsers(dest="modality_command", required=True, metavar="{init}")
    init = sub.add_parser(
        "init",
        help="propose meta/modality.json and a modality config from meta/info.json",
        description="Propose meta/modality.json and a modality config from meta/info.json. Prints the proposal "
        "(YAML) unless output paths are given; never writes into the dataset unless told to.",
    )
    _configure_init_parser(init)
    return p


def run_modality_init(args: argparse.Namespace) -> int:
    """Run ``modality init`` from parsed arguments; 0 on success. A ModalityInitError or a refused output path
    propagates to the entry point, which prints it and exits 2 (``groot_ft.errors``)."""
    proposal = propose_modality(args.dataset, action_horizon=args.action_horizon, relative=args.relative)
    if args.out_config is None and args.out_modality_json is None:
        sys.stdout.write(proposal.to_yaml())
        sys.stderr.write(proposal.table_text())
        return 0
    written = write_proposal(
        proposal,
        modality_json_out=args.out_modality_json,
        config_out=args.out_config,
        force=args.force,
    )
    # the table and notes go to stderr, so that the YAML on stdout stays machine-readable
    sys.stderr.write(proposal.table_text())
    for path in written:
        print(f"wrote {path}")
    if args.out_modality_json is None:
        print("# proposed meta/modality.json (not written; use --out-modality-json):")
        sys.stdout.write(proposal.modality_json_text())
    if args.out_config is None:
        print("# proposed modality config (not written; use --out-config):")
        sys.stdout.write(_dump_yaml(proposal.modality_config))
    for note in proposal.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.out_config is not None and args.out_modality_json is not None:
        q = shlex.quote
        print(f"next, after reviewing both files: snakemake --cores all --config dataset={q(args.dataset)} "
              f"modality_config_path={q(str(args.out_config))} modality_json_path={q(str(args.out_modality_json))}",
              file=sys.stderr)
    return 0


@exits_on_user_error
def main_modality_init(argv: Sequence[str] | None = None) -> int:
    """``groot-ft modality init`` as a standalone entry point."""
    parser = argparse.ArgumentParser(
        prog="groot-ft modality init",
        description="Propose meta/modality.json and a modality config from meta/info.json.",
    )
    _configure_init_parser(parser)
    args = parser.parse_args(None if argv is None else list(argv))
    return run_modality_init(args)


if __name__ == "__main__":
    sys.exit(main_modality_init())
