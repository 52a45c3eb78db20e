"""The state one validation run shares between checks (:class:`Ctx`) and the JSON/JSONL readers that report."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from groot_ft.data.layout import info_value
from groot_ft.modality import EmbodimentModalityConfig

from groot_ft.data.validate.codes import CODES
from groot_ft.data.validate.report import Finding


class Aggregate:
    """A dataset-wide warning that many episodes may trigger: reported once, with a count and the first episode."""

    def __init__(self, code: str, field: str | None, message: str):
        self.code, self.field, self.message = code, field, message
        self.count = 0
        self.first_episode: int | None = None
        self.first_file: str | None = None
        self.first_detail = ""

    def hit(self, episode: int | None, file: str | None = None, detail: str = "") -> None:
        self.count += 1
        if self.count == 1:
            self.first_episode, self.first_file, self.first_detail = episode, file, detail


class Ctx:
    def __init__(self, root: Path, cfg: EmbodimentModalityConfig | None, deep: bool, tol: float,
                 modality_json: Path | None = None):
        self.root = root
        self.root_resolved = root.resolve()
        self.cfg = cfg
        # the modality mapping kept outside the dataset (modality_json_path), or None for meta/modality.json; findings
        # about it name it as given (``modality_file``), since it is not relative to the root
        self.modality_json = modality_json
        self.modality_file = str(modality_json) if modality_json is not None else "meta/modality.json"
        self.deep = deep
        self.tol = float(tol)
        self.findings: list[Finding] = []
        self.aggregates: dict[tuple[str, str | None, str], Aggregate] = {}
        self.version: str | None = None
        self.info: dict[str, Any] = {}
        self.fps: float | None = None
        self.features: dict[str, dict[str, Any]] = {}  # only well-formed features
        # info.json's features as written (None when unusable): names that exist but failed their own checks must
        # not be reported again as "unknown" by the modality/stats cross-checks
        self.declared: dict[str, Any] | None = None
        self.total_episodes_listed: int | None = None
        self.frames_seen = 0

    def add(
        self,
        code: str,
        message: str,
        *,
        file: str | None = None,
        episode: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        severity, default_hint = CODES[code]
        hint = default_hint if hint is None else hint
        self.findings.append(Finding(code, severity, message, file, episode, field, hint))

    def aggregate(self, code: str, field: str | None, message: str) -> Aggregate:
        key = (code, field, message)
        if key not in self.aggregates:
            self.aggregates[key] = Aggregate(code, field, message)
        return self.aggregates[key]

    def flush_aggregates(self, total_episodes: int) -> None:
        for agg in self.aggregates.values():
            if not agg.count:
                continue
            if agg.first_episode is None:
                scope = ""
            elif agg.count == 1:
                scope = f" (episode {agg.first_episode}"
            else:
                scope = f" ({agg.count} of {total_episodes} episodes, first: episode {agg.first_episode}"
            if scope:
                scope += f": {agg.first_detail})" if agg.first_detail else ")"
            self.add(agg.code, agg.message + scope, file=agg.first_file, episode=agg.first_episode, field=agg.field)
        self.aggregates.clear()

    def setting(self, key: str) -> Any:
        """info.json's value for ``key``, or the format's default when absent (data.layout.info_defaults)."""
        return info_value(self.info, key, self.version)

    def rel(self, path: Path | str) -> str:
        path = Path(path)
        for base in (self.root_resolved, self.root):
            with contextlib.suppress(ValueError):
                return path.relative_to(base).as_posix()
        return str(path)

    @contextlib.contextmanager
    def guard(self, file: str | None, episode: int | None = None) -> Iterator[None]:
        """Turn an unexpected exception inside one check into an INTERNAL finding and carry on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the validator must never raise on bad input
            self.add(
                "INTERNAL",
                f"unexpected {type(exc).__name__} while checking {file or 'the dataset'}: {exc}",
                file=file,
                episode=episode,
            )


MISSING = object()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_json(ctx: Ctx, rel: str, *, required: bool, path: Path | None = None, hint: str | None = None) -> Any:
    """Parsed JSON of ``root/rel`` (or of ``path``, a file outside the dataset reported as ``rel``); ``MISSING``
    (after reporting, with ``hint`` if given) when absent or malformed."""
    path = ctx.root / rel if path is None else path
    if not path.is_file():
        if required:
            what = "is missing" if not path.exists() else "is not a regular file"
            ctx.add("META_MISSING", f"{rel} {what}", file=rel, hint=hint)
        return MISSING
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.add("JSON_INVALID", f"cannot read {rel}: {exc}", file=rel)
        return MISSING
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.add(
            "JSON_INVALID",
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            file=rel,
            field=f"line {exc.lineno}",
        )
        return MISSING


class Jsonl:
    """Iterate (line number, object) over the well-formed lines of a JSONL file; malformed lines are reported.

    ``bad`` counts the lines that could not be used, so callers can tell when the file's content is incomplete.
    """

    def __init__(self, ctx: Ctx, rel: str):
        self.ctx, self.rel = ctx, rel
        self.bad = 0
        self.lines = 0

    def report(self, code: str, lineno: int, message: str) -> None:
        self.bad += 1
        self.ctx.add(code, message, file=self.rel, field=f"line {lineno}")

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        ctx, rel = self.ctx, self.rel
        try:
            fh = (ctx.root / rel).open("r", encoding="utf-8")
        except OSError as exc:
            self.bad += 1
            ctx.add("JSONL_INVALID", f"cannot read {rel}: {exc}", file=rel)
            return
        with fh:
            lineno = 0
            try:
                for lineno, line in enumerate(fh, start=1):  # noqa: B007 - lineno used after a decode error
                    self.lines = lineno
                    if not line.strip():
                        self.report("JSONL_INVALID", lineno, f"line {lineno} is blank; JSONL needs one object per line")
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        self.report(
                            "JSONL_INVALID", lineno, f"invalid JSON ({exc.msg} at column {exc.colno})"
                        )
                        continue
                    if not isinstance(obj, dict):
                        self.report(
                            "JSONL_INVALID", lineno, f"expected a JSON object, got {type(obj).__name__}"
                        )
                        continue
                    yield lineno, obj
            except UnicodeDecodeError as exc:
                self.report("JSONL_INVALID", lineno + 1, f"not UTF-8 text ({exc.reason})")


def iter_jsonl(ctx: Ctx, rel: str, *, required: bool) -> Jsonl | None:
    """A :class:`Jsonl` over ``root/rel``, or None (reported as META_MISSING when required) if there is no file."""
    if not (ctx.root / rel).is_file():
        if required:
            ctx.add("META_MISSING", f"{rel} is missing", file=rel)
        return None
    return Jsonl(ctx, rel)
