"""The validator's results: :class:`Finding` and :class:`ValidationReport`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from groot_ft.io import atomic_write_json

from groot_ft.data.validate.codes import ERROR, GROUP_AFTER, WARNING


@dataclass(frozen=True)
class Finding:
    """One problem found in a dataset."""

    code: str
    severity: str  # "error" | "warning"
    message: str
    file: str | None = None  # relative to the dataset root
    episode: int | None = None
    field: str | None = None  # column, JSON field or "line N"
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "episode": self.episode,
            "field": self.field,
            "hint": self.hint,
        }

    def line(self) -> str:
        parts = [self.severity.upper(), self.code]
        if self.file:
            parts.append(self.file)
        if self.episode is not None:
            parts.append(f"[episode {self.episode}]")
        head = " ".join(parts)
        where = f" {self.field}" if self.field else ""
        hint = f" -> {self.hint}" if self.hint else ""
        return f"{head}{where}: {self.message}{hint}"


@dataclass
class ValidationReport:
    """Everything :func:`validate_dataset` found. ``ok`` means no errors (warnings allowed)."""

    dataset: str
    codebase_version: str | None = None
    findings: list[Finding] = field(default_factory=list)
    episodes: int | None = None
    frames: int | None = None
    deep: bool = False
    # the modality mapping that was checked, and whether it lives outside the dataset (modality_json_path)
    modality_json: str | None = None
    modality_json_external: bool = False

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def codes(self, severity: str | None = None) -> set[str]:
        return {f.code for f in self.findings if severity is None or f.severity == severity}

    def by_code(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.code] = counts.get(f.code, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        errors, warnings = self.errors, self.warnings
        return {
            "dataset": self.dataset,
            "codebase_version": self.codebase_version,
            "modality_json": self.modality_json,
            "modality_json_external": self.modality_json_external,
            "ok": self.ok,
            "errors": [f.to_dict() for f in errors],
            "warnings": [f.to_dict() for f in warnings],
            "summary": {
                "errors": len(errors),
                "warnings": len(warnings),
                "episodes": self.episodes,
                "frames": self.frames,
                "deep": self.deep,
                "by_code": self.by_code(),
            },
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON atomically (temporary sibling file, then :func:`os.replace`)."""
        path = Path(path)
        atomic_write_json(path, self.to_dict())
        return path

    def summary_text(self) -> str:
        """Readable multi-line summary: counts, then every finding (long runs of one code are summarised)."""
        errors, warnings = self.errors, self.warnings
        status = "OK" if self.ok else "FAILED"
        size = []
        if self.episodes is not None:
            size.append(f"{self.episodes} episodes")
        if self.frames is not None:
            size.append(f"{self.frames} frames")
        lines = [
            f"{status}: {self.dataset} (codebase_version {self.codebase_version or 'unknown'}"
            + (", deep video check" if self.deep else "")
            + ")",
            f"  {len(errors)} error(s), {len(warnings)} warning(s)" + (f"; {', '.join(size)}" if size else ""),
        ]
        if self.modality_json_external:
            lines.insert(1, f"  modality mapping: {self.modality_json} (modality_json_path; the dataset's "
                            f"meta/modality.json is not read)")
        for findings in (errors, warnings):
            groups: dict[str, list[Finding]] = {}
            for f in findings:
                groups.setdefault(f.code, []).append(f)
            for code, items in groups.items():
                shown = items if len(items) <= GROUP_AFTER + 1 else items[:GROUP_AFTER]
                lines.extend(f.line() for f in shown)
                rest = items[len(shown) :]
                if rest:
                    eps = sorted({f.episode for f in rest if f.episode is not None})
                    where = f" (episodes {ranges(eps)})" if eps else ""
                    lines.append(f"... and {len(rest)} more {items[0].severity.upper()} {code}{where}")
        return "\n".join(lines)


def ranges(values: list[int], limit: int = 12) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (at most ``limit`` ranges)."""
    out: list[str] = []
    start = prev = None
    for v in values:
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = prev = v
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else f"{start}")
    if len(out) > limit:
        out = out[:limit] + [f"... ({len(out) - limit} more ranges)"]
    return ", ".join(out)
