"""Declarative modality configs: which keys, time offsets and action representations an embodiment uses.

Upstream GR00T imports a Python file to register these; we read YAML or JSON instead, with exactly the structure of
one embodiment's entry in upstream's ``processor_config.json``::

    video:    {delta_indices: [0], modality_keys: [front, wrist]}
    state:    {delta_indices: [0], modality_keys: [arm, gripper]}
    action:   {delta_indices: [0, 1, ..., 15], modality_keys: [arm, gripper],
               action_configs: [{rep: RELATIVE, type: NON_EEF, format: DEFAULT}, ...]}
    language: {delta_indices: [0], modality_keys: [annotation.human.task_description]}
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from groot_ft.errors import UserError, describe_json_error, describe_yaml_error

MODALITIES = ("video", "state", "action", "language")


class ModalityConfigError(UserError, ValueError):
    """A modality config that cannot be used; the message names the file and field."""


class ActionRepresentation(enum.Enum):
    RELATIVE = "relative"
    DELTA = "delta"
    ABSOLUTE = "absolute"


class ActionType(enum.Enum):
    EEF = "eef"
    NON_EEF = "non_eef"


class ActionFormat(enum.Enum):
    DEFAULT = "default"
    XYZ_ROT6D = "xyz+rot6d"
    XYZ_ROTVEC = "xyz+rotvec"


@dataclass(frozen=True)
class ActionConfig:
    rep: ActionRepresentation
    type: ActionType
    format: ActionFormat
    state_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # upstream writes enum *names* into processor_config.json
        return {"rep": self.rep.name, "type": self.type.name, "format": self.format.name, "state_key": self.state_key}


@dataclass(frozen=True)
class ModalityConfig:
    delta_indices: tuple[int, ...]
    modality_keys: tuple[str, ...]
    sin_cos_embedding_keys: tuple[str, ...] | None = None
    mean_std_embedding_keys: tuple[str, ...] | None = None
    action_configs: tuple[ActionConfig, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "delta_indices": list(self.delta_indices),
            "modality_keys": list(self.modality_keys),
            "sin_cos_embedding_keys": None if self.sin_cos_embedding_keys is None else list(self.sin_cos_embedding_keys),
            "mean_std_embedding_keys": None
            if self.mean_std_embedding_keys is None
            else list(self.mean_std_embedding_keys),
            "action_configs": None if self.action_configs is None else [a.to_dict() for a in self.action_configs],
        }


@dataclass(frozen=True)
class EmbodimentModalityConfig:
    """The four modality configs of one embodiment."""

    video: ModalityConfig
    state: ModalityConfig
    action: ModalityConfig
    language: ModalityConfig
    source: str = field(default="<memory>", compare=False)

    def __getitem__(self, modality: str) -> ModalityConfig:
        if modality not in MODALITIES:
            raise KeyError(modality)
        return getattr(self, modality)

    @property
    def action_horizon(self) -> int:
        """Number of future steps one sample's action chunk spans (upstream: max - min + 1)."""
        d = self.action.delta_indices
        return max(d) - min(d) + 1

    def action_config_for(self, key: str) -> ActionConfig:
        if self.action.action_configs is None:
            return ActionConfig(ActionRepresentation.ABSOLUTE, ActionType.NON_EEF, ActionFormat.DEFAULT)
        return self.action.action_configs[self.action.modality_keys.index(key)]

    def relative_action_keys(self) -> list[str]:
        return [k for k in self.action.modality_keys if self.action_config_for(k).rep is ActionRepresentation.RELATIVE]

    def reference_state_key(self, action_key: str) -> str:
        return self.action_config_for(action_key).state_key or action_key

    def to_dict(self) -> dict[str, Any]:
        return {m: self[m].to_dict() for m in MODALITIES}


def _enum(cls: type[enum.Enum], value: Any, where: str) -> enum.Enum:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value.upper() == member.name or value.lower() == member.value:
                return member
    allowed = ", ".join(m.name for m in cls)
    raise ModalityConfigError(f"{where}: {value!r} is not one of {allowed}")


def _str_list(value: Any, where: str, *, allow_none: bool = False) -> tuple[str, ...] | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModalityConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_embodiment_config(data: Any, source: str = "<memory>") -> EmbodimentModalityConfig:
    """Build an :class:`EmbodimentModalityConfig` from plain data, reporting every problem at once."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ModalityConfigError(f"{source}: expected a mapping with keys {', '.join(MODALITIES)}")
    unknown = sorted(set(data) - set(MODALITIES))
    if unknown:
        problems.append(f"{source}: unknown modalities {unknown}; allowed: {', '.join(MODALITIES)}")
    parsed: dict[str, ModalityConfig] = {}
    for name in MODALITIES:
        where = f"{source}: {name}"
        entry = data.get(name)
        if not isinstance(entry, dict):
            problems.append(f"{where}: missing or not a mapping (needs delta_indices and modality_keys)")
            continue
        try:
            deltas = entry.get("delta_indices")
            if not isinstance(deltas, list) or not deltas or not all(isinstance(d, int) for d in deltas):
                raise ModalityConfigError(f"{where}.delta_indices: expected a non-empty list of integers, got {deltas!r}")
            keys = _str_list(entry.get("modality_keys"), f"{where}.modality_keys")
            if not keys:
                raise ModalityConfigError(f"{where}.modality_keys: must name at least one key")
            if len(set(keys)) != len(keys):
                raise ModalityConfigError(f"{where}.modality_keys: duplicate keys in {list(keys)}")
            action_configs = None
            raw_actions = entry.get("action_configs")
            if raw_actions is not None:
                if name != "action":
                    raise ModalityConfigError(f"{where}.action_configs: only the action modality takes action_configs")
                if not isinstance(raw_actions, list) or len(raw_actions) != len(keys):
                    raise ModalityConfigError(
                        f"{where}.action_configs: needs one entry per modality key ({len(keys)}), got {raw_actions!r}"
                    )
                action_configs = tuple(
                    ActionConfig(
                        rep=_enum(ActionRepresentation, a.get("rep"), f"{where}.action_configs[{i}].rep"),
                        type=_enum(ActionType, a.get("type", "NON_EEF"), f"{where}.action_configs[{i}].type"),
                        format=_enum(ActionFormat, a.get("format", "DEFAULT"), f"{where}.action_configs[{i}].format"),
                        state_key=a.get("state_key"),
                    )
                    for i, a in enumerate(raw_actions)
                )
            parsed[name] = ModalityConfig(
                delta_indices=tuple(deltas),
                modality_keys=keys,
                sin_cos_embedding_keys=_str_list(
                    entry.get("sin_cos_embedding_keys"), f"{where}.sin_cos_embedding_keys", allow_none=True
                ),
                mean_std_embedding_keys=_str_list(
                    entry.get("mean_std_embedding_keys"), f"{where}.mean_std_embedding_keys", allow_none=True
                ),
                action_configs=action_configs,
            )
        except ModalityConfigError as exc:
            problems.append(str(exc))
    if "language" in parsed and (
        len(parsed["language"].modality_keys) != 1 or parsed["language"].delta_indices != (0,)
    ):
        problems.append(f"{source}: language: needs exactly one modality key and delta_indices [0] (as upstream)")
    if problems:
        raise ModalityConfigError("invalid modality config:\n  - " + "\n  - ".join(problems))
    cfg = EmbodimentModalityConfig(source=source, **parsed)
    for key in cfg.relative_action_keys():
        ref = cfg.reference_state_key(key)
        if ref not in cfg.state.modality_keys:
            problems.append(
                f"{source}: action key {key!r} is RELATIVE to state key {ref!r}, which state.modality_keys lacks"
            )
    if cfg.relative_action_keys() and cfg.state.delta_indices[-1] != cfg.action.delta_indices[0]:
        problems.append(
            f"{source}: RELATIVE actions need state.delta_indices[-1] == action.delta_indices[0] "
            f"({cfg.state.delta_indices[-1]} != {cfg.action.delta_indices[0]})"
        )
    if problems:
        raise ModalityConfigError("invalid modality config:\n  - " + "\n  - ".join(problems))
    return cfg


def load_modality_config(path: str | Path) -> EmbodimentModalityConfig:
    """Read a modality config from YAML or JSON (safe loaders only; never imports Python)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ModalityConfigError(f"{path}: cannot read modality config ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ModalityConfigError(f"{path}: not a modality config: not UTF-8 text (byte {exc.start})") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ModalityConfigError(f"{path}: not valid JSON ({describe_json_error(exc)})") from exc
    except yaml.YAMLError as exc:
        raise ModalityConfigError(f"{path}: not valid YAML ({describe_yaml_error(exc)})") from exc
    return parse_embodiment_config(data, source=str(path))
