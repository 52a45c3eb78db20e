"""What an on-disk layout provides to the shared checks (:class:`Layout`) and the episode/task index checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from groot_ft.data.layout import DatasetError, resolve_inside

from groot_ft.data.validate.context import MISSING, Ctx, is_int
from groot_ft.data.validate.report import ranges
from groot_ft.data.validate.videos import check_episode_videos

if TYPE_CHECKING:  # annotations only: the runtime imports form no cycle
    from groot_ft.data.validate.episodes import EpisodePlan


@dataclass(frozen=True)
class EpisodeMeta:
    index: int
    length: int
    tasks: tuple[str, ...]
    line: int  # line (v2) or row (v3) of the episode's metadata entry
    file: str = "meta/episodes.jsonl"  # the metadata file listing the episode
    where: str = ""  # "line N" / "row N": the field used when a finding is about the metadata entry


@dataclass
class EpisodeSource:
    """Where one episode's rows and frames live (the layout decides; the checks do not care)."""

    meta: EpisodeMeta
    data_file: Path | None  # None when the path cannot be formed (already reported)
    videos: dict[str, Path | None]  # original video key -> file
    # v3: the global [dataset_from_index, dataset_to_index) range and per camera (from_ts, to_ts) in its file
    rows: tuple[int, int] | None = None
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)


class Layout:
    """One on-disk layout family: :class:`V2Layout` (v2.0/v2.1) or :class:`V3Layout` (v3.0)."""

    episodes_file = "meta/episodes.jsonl"
    tasks_file = "meta/tasks.jsonl"
    legacy_totals = True  # total_videos / total_chunks are v2 keys
    length_mismatch_code = "EPISODE_LENGTH_MISMATCH"
    placeholders = ""  # what a path template may use, for PATH_TEMPLATE_INVALID messages
    template_hint: str | None = None  # PATH_TEMPLATE_INVALID hint; None: the code's default
    episodes_complete = False
    tasks_complete = False
    task_lines = 0

    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    def check_layout(self) -> bool | None:
        """Check version vs files and the path templates; False stops validation (another version's layout)."""
        raise NotImplementedError

    def _check_template(self, key: str, needed: tuple[str, ...]) -> bool:
        """Check a path template once (placeholders, formatting, root escape); True if paths can be formed."""
        ctx = self.ctx
        template = ctx.setting(key)
        if template is None:
            return False  # INFO_KEY_MISSING already reported for data_path; no video_path: videos are skipped
        if not isinstance(template, str) or not template:
            ctx.add(
                "INFO_INVALID_VALUE",
                f"{key} must be a path template string, got {template!r}",
                file="meta/info.json",
                field=key,
            )
            return False
        for name in needed:
            if "{" + name not in template:
                ctx.add(
                    "PATH_TEMPLATE_INVALID",
                    f"{key} {template!r} lacks the {{{name}}} placeholder",
                    file="meta/info.json",
                    field=key,
                    hint=self.template_hint,
                )
                return False
        try:
            rel = self._format_sample(template)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            ctx.add(
                "PATH_TEMPLATE_INVALID",
                f"{key} {template!r} cannot be formatted ({type(exc).__name__}: {exc}); {self.placeholders}",
                file="meta/info.json",
                field=key,
                hint=self.template_hint,
            )
            return False
        try:
            resolve_inside(ctx.root, rel, key)
        except DatasetError:
            ctx.add(
                "PATH_ESCAPES_ROOT",
                f"{key} {template!r} resolves to {rel!r}, outside the dataset root",
                file="meta/info.json",
                field=key,
            )
            return False
        return True

    def _format_sample(self, template: str) -> str:
        """A template formatted with sample values (episode/file 0), to check it once."""
        raise NotImplementedError

    def settle_episodes(
        self, rel: str, episodes: list[EpisodeMeta], indices: list[int], complete: bool, order_ok: bool, label: str
    ) -> list[EpisodeMeta]:
        """The episodes read from ``rel`` (``label`` in messages), sorted, once their indices are checked."""
        self.episodes_complete = complete
        if not episodes:
            self.ctx.add("EMPTY_DATASET", f"{label} lists no (usable) episodes", file=rel)
            return []
        check_episode_indices(self.ctx, rel, sorted(indices), complete, order_ok)
        episodes.sort(key=lambda e: e.index)
        return episodes

    def take_tasks(
        self, rows: Iterator[tuple[str, int, dict[str, Any]]], unit: str, counted: Callable[[], tuple[int, bool]]
    ) -> dict[int, str]:
        """Collect and check the task rows of ``tasks_file``; ``counted()`` gives (rows read, rows lost) after."""
        tasks, dropped = collect_tasks(self.ctx, self.tasks_file, rows, unit)
        self.task_lines, lost = counted()
        self.tasks_complete = not dropped and not lost
        check_task_indices(self.ctx, self.tasks_file, tasks, self.tasks_complete)
        return tasks

    def check_episode_videos(self, source: EpisodeSource, plan: EpisodePlan, rows: int | None) -> None:
        check_episode_videos(self.ctx, source, plan, rows)

    def finish(self, plan: EpisodePlan, episodes: list[EpisodeMeta]) -> None:
        """Checks that need every episode seen (v3: whole video files, unreferenced files)."""

    def load_episodes(self) -> list[EpisodeMeta]:
        raise NotImplementedError

    def load_tasks(self) -> dict[int, str] | None:
        raise NotImplementedError

    def episode_sources(self, episodes: list[EpisodeMeta]) -> Iterator[EpisodeSource]:
        raise NotImplementedError

    def open_table(self, source: EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        raise NotImplementedError

    def check_stats(self, episodes: list[EpisodeMeta], rows: dict[int, int]) -> None:
        """Check the stats files; ``rows`` maps episodes whose parquet row count differs from their length."""
        raise NotImplementedError


def collect_tasks(
    ctx: Ctx, rel: str, rows: Iterator[tuple[str, int, dict[str, Any]]], unit: str
) -> tuple[dict[int, str], int]:
    """task_index -> task from ``(where, number, {"task_index", "task"})`` rows; returns the tasks and rows dropped."""
    tasks: dict[int, str] = {}
    by_text: dict[str, tuple[int, int]] = {}
    lines: dict[int, int] = {}
    dropped = 0
    for where, lineno, row in rows:
        idx, text = row.get("task_index", MISSING), row.get("task", MISSING)
        if not is_int(idx) or idx < 0 or not isinstance(text, str):
            ctx.add(
                "TASK_ENTRY_INVALID",
                f"{where}: needs integer task_index >= 0 and string task, got "
                f"task_index={'missing' if idx is MISSING else repr(idx)}, "
                f"task={'missing' if text is MISSING else repr(text)}",
                file=rel,
                field=where,
            )
            dropped += 1
            continue
        if idx in tasks:
            ctx.add(
                "TASK_INDICES_INVALID",
                f"{where}: task_index {idx} duplicates {unit} {lines[idx]}",
                file=rel,
                field=where,
            )
            dropped += 1
            continue
        if text in by_text:
            other_idx, other_line = by_text[text]
            ctx.add(
                "DUPLICATE_TASK",
                f"{where}: task {text!r} (task_index {idx}) duplicates task_index {other_idx} on {unit} {other_line}",
                file=rel,
                field=where,
            )
        else:
            by_text[text] = (idx, lineno)
        tasks[idx] = text
        lines[idx] = lineno
    return tasks, dropped


def check_task_indices(ctx: Ctx, rel: str, tasks: dict[int, str], complete: bool) -> None:
    if complete and tasks and sorted(tasks) != list(range(len(tasks))):
        missing = sorted(set(range(len(tasks))) - set(tasks))
        extra = sorted(i for i in tasks if i >= len(tasks))
        ctx.add(
            "TASK_INDICES_INVALID",
            f"task indices are not 0..{len(tasks) - 1}: missing {ranges(missing)}; unexpected {ranges(extra)}",
            file=rel,
            field="task_index",
        )


def check_episode_indices(ctx: Ctx, rel: str, indices: list[int], complete: bool, order_ok: bool) -> None:
    """Episode indices must be exactly 0..N-1 (``indices`` sorted, unique) and listed in order."""
    n = len(indices)
    if indices != list(range(n)):
        missing = sorted(set(range(n)) - set(indices))
        extra = [i for i in indices if i >= n]
        note = "" if complete else " (some entries could not be read; fix those first)"
        ctx.add(
            "EPISODE_INDICES_INVALID",
            f"episode indices are not 0..{n - 1}: missing {ranges(missing)}; unexpected {ranges(extra)}{note}",
            file=rel,
            field="episode_index",
        )
    elif not order_ok:
        ctx.add(
            "EPISODE_INDICES_INVALID", "episodes are not listed in episode_index order", file=rel, field="episode_index"
        )
