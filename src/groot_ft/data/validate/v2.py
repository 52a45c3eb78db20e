"""LeRobot v2.0/v2.1: one parquet file and one mp4 per camera per episode, JSONL metadata."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.layout import DatasetError, resolve_inside

from groot_ft.data.validate.context import MISSING, Ctx, is_int, iter_jsonl, load_json
from groot_ft.data.validate.layouts import EpisodeMeta, EpisodeSource, Layout
from groot_ft.data.validate.report import ranges
from groot_ft.data.validate.stats_files import check_stats_object


class V2Layout(Layout):
    """LeRobot v2.0 / v2.1: one parquet file and one mp4 per camera per episode, JSONL metadata."""

    placeholders = "v2 templates may use {episode_chunk}, {episode_index} and {video_key}"

    def __init__(self, ctx: Ctx):
        super().__init__(ctx)
        self.data_template_ok = False
        self.video_template_ok = False
        self.episodes_complete = False  # episodes.jsonl read without dropping a line
        self.tasks_complete = False
        self.task_lines = 0
        cs = ctx.setting("chunks_size")
        # an invalid/missing chunks_size is reported by check_info; keep checking with LeRobot's default
        self.chunks_size = cs if is_int(cs) and cs > 0 else 1000

    # --- layout / templates ---------------------------------------------------------------------------------
    def check_layout(self) -> bool:
        ctx = self.ctx
        version = ctx.version
        if (ctx.root / "meta" / "episodes").is_dir() and not (ctx.root / self.episodes_file).exists():
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {version} but meta/episodes/ holds a v3.0 layout (and there is no "
                f"{self.episodes_file})",
                file="meta/info.json",
                field="codebase_version",
                hint='Set codebase_version to "v3.0" if the dataset was written in the v3.0 layout.',
            )
            return False
        data_template = ctx.setting("data_path")
        if isinstance(data_template, str) and "{file_index" in data_template:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {version} but data_path {data_template!r} is a v3.0 template ({{file_index}})",
                file="meta/info.json",
                field="codebase_version",
            )
        has_ep_stats = (ctx.root / "meta" / "episodes_stats.jsonl").is_file()
        if version == "v2.1" and not has_ep_stats:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                "codebase_version is v2.1 but meta/episodes_stats.jsonl is missing (LeRobot v2.1 loaders need it)",
                file="meta/info.json",
                field="codebase_version",
                hint="Write meta/episodes_stats.jsonl or declare codebase_version v2.0.",
            )
        self.data_template_ok = self._check_template("data_path", ("episode_index",))
        video_features = [k for k, f in ctx.features.items() if f["dtype"] == "video"]
        if video_features:
            self.video_template_ok = self._check_template("video_path", ("episode_index", "video_key"))
        return True

    def _format_sample(self, template: str) -> str:
        return self._format(template, 0, "observation.images.x")

    def _format(self, template: str, episode: int, video_key: str | None = None) -> str:
        chunk = episode // self.chunks_size
        return template.format(episode_chunk=chunk, episode_index=episode, video_key=video_key)

    def _path(self, key: str, episode: int, video_key: str | None = None) -> Path | None:
        try:
            return resolve_inside(self.ctx.root, self._format(self.ctx.setting(key), episode, video_key), key)
        except (DatasetError, KeyError, IndexError, ValueError):
            return None  # the template was reported once in check_layout

    # --- metadata -------------------------------------------------------------------------------------------
    def load_episodes(self) -> list[EpisodeMeta]:
        ctx = self.ctx
        rel = self.episodes_file
        rows = iter_jsonl(ctx, rel, required=True)
        if rows is None:
            return []
        episodes: list[EpisodeMeta] = []
        first_line: dict[int, int] = {}
        order_ok = True
        prev = -1
        dropped = 0
        for lineno, row in rows:
            idx, length, tasks = row.get("episode_index", MISSING), row.get("length", MISSING), row.get("tasks")
            bad = []
            if not is_int(idx) or idx < 0:
                bad.append(f"episode_index {'missing' if idx is MISSING else repr(idx)}")
            if not is_int(length) or length < 0:
                bad.append(f"length {'missing' if length is MISSING else repr(length)}")
            if bad:
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"line {lineno}: {' and '.join(bad)} (need integers >= 0)",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx if is_int(idx) else None,
                )
                dropped += 1
                continue
            if tasks is None:
                ctx.add(
                    "EPISODE_TASKS_MISSING",
                    f'line {lineno}: episode {idx} has no "tasks" list',
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                tasks = []
            elif not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
                ctx.add(
                    "EPISODE_ENTRY_INVALID",
                    f"line {lineno}: tasks must be a list of strings, got {tasks!r}",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                tasks = [t for t in tasks if isinstance(t, str)] if isinstance(tasks, list) else []
            if idx in first_line:
                ctx.add(
                    "EPISODE_INDICES_INVALID",
                    f"line {lineno}: episode_index {idx} duplicates line {first_line[idx]}",
                    file=rel,
                    field=f"line {lineno}",
                    episode=idx,
                )
                dropped += 1
                continue
            first_line[idx] = lineno
            if idx < prev:
                order_ok = False
            prev = idx
            if length == 0:
                ctx.add(
                    "ZERO_LENGTH_EPISODE", f"episode {idx} has length 0", file=rel, field=f"line {lineno}", episode=idx
                )
            episodes.append(EpisodeMeta(idx, length, tuple(tasks), lineno, rel, f"line {lineno}"))
        return self.settle_episodes(rel, episodes, list(first_line), not dropped and not rows.bad, order_ok, rel)

    def load_tasks(self) -> dict[int, str] | None:
        rows = iter_jsonl(self.ctx, self.tasks_file, required=True)
        if rows is None:
            return None
        lines = ((f"line {n}", n, row) for n, row in rows)
        return self.take_tasks(lines, "line", lambda: (rows.lines, bool(rows.bad)))

    # --- data -----------------------------------------------------------------------------------------------
    def episode_sources(self, episodes: list[EpisodeMeta]) -> Iterator[EpisodeSource]:
        video_keys = [k for k, f in self.ctx.features.items() if f["dtype"] == "video"]
        for ep in episodes:
            data_file = self._path("data_path", ep.index) if self.data_template_ok else None
            videos = {
                key: (self._path("video_path", ep.index, key) if self.video_template_ok else None) for key in video_keys
            }
            yield EpisodeSource(ep, data_file, videos)

    def open_table(self, source: EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        ctx = self.ctx
        ep = source.meta.index
        path = source.data_file
        assert path is not None
        rel = ctx.rel(path)
        if not path.is_file():
            ctx.add("PARQUET_MISSING", f"parquet file of episode {ep} is missing", file=rel, episode=ep)
            return None
        try:
            with pq.ParquetFile(path) as pf:
                schema = pf.schema_arrow
                present = [c for c in columns_wanted if c in schema.names]
                table = pf.read(columns=present, use_threads=False)
        except (pa.ArrowException, OSError, ValueError) as exc:
            ctx.add("PARQUET_UNREADABLE", f"cannot read episode {ep}: {exc}", file=rel, episode=ep)
            return None
        return schema, table

    # --- stats ----------------------------------------------------------------------------------------------
    def check_stats(self, episodes: list[EpisodeMeta], rows_override: dict[int, int]) -> None:
        ctx = self.ctx
        lengths = {e.index: rows_override.get(e.index, e.length) for e in episodes}
        total = sum(lengths.values())
        stats = load_json(ctx, "meta/stats.json", required=False)
        if stats is not MISSING:
            with ctx.guard("meta/stats.json"):
                check_stats_object(ctx, stats, "meta/stats.json", None, total, groot=True)
        rel = "meta/episodes_stats.jsonl"
        rows = iter_jsonl(ctx, rel, required=False)
        if rows is None:
            return
        invalid = partial(ctx.add, "STATS_INVALID", file=rel)  # every finding here is a bad line of this file
        seen: set[int] = set()
        unknown: list[int] = []
        for lineno, row in rows:
            idx = row.get("episode_index")
            where = f"line {lineno}"
            if not is_int(idx):
                invalid(f"line {lineno}: needs an integer episode_index", field=where)
                continue
            if idx in seen:
                invalid(f"line {lineno}: episode {idx} appears twice", field=where, episode=idx)
                continue
            seen.add(idx)
            if idx not in lengths:
                unknown.append(idx)
                continue
            with ctx.guard(rel, idx):
                check_stats_object(ctx, row.get("stats"), rel, idx, lengths[idx], groot=False, line=lineno)
        if not self.episodes_complete:
            return  # episodes.jsonl lost lines: cross-references would only repeat that
        if unknown:
            invalid(
                f"stats for episodes {ranges(sorted(unknown))}, which {self.episodes_file} does not list",
                episode=unknown[0] if len(unknown) == 1 else None,
            )
        missing = sorted(set(lengths) - seen)
        if missing:
            invalid(f"no stats for episodes {ranges(missing)}", episode=missing[0] if len(missing) == 1 else None)
