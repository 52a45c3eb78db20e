"""LeRobot v3.0: many episodes per parquet/mp4 file, located by ``meta/episodes/*.parquet`` rows.

Over 600 lines because it is one class, :class:`V3Layout`: the v3.0 layout's metadata parsing, row ranges,
shared-file video time windows and per-episode stats columns read one set of per-file caches; splitting it would
spread that state across modules."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from groot_ft.data.layout import (
    V3_EPISODES_DIR,
    V3_TASKS_FILE,
    DatasetError,
    V3Location,
    episode_spans,
    range_in,
    read_v3_episodes_file,
    resolve_inside,
    v3_task_column,
)
from groot_ft.data.validate.context import MISSING, Ctx, is_number, load_json
from groot_ft.data.validate.episodes import EpisodePlan
from groot_ft.data.validate.layouts import EpisodeMeta, EpisodeSource, Layout
from groot_ft.data.validate.report import ranges
from groot_ft.data.validate.stats_files import check_stats_object
from groot_ft.data.validate.videos import check_video_file


class V3Layout(Layout):
    """LeRobot v3.0: many episodes per parquet file and per mp4, located by ``meta/episodes/*.parquet`` rows."""

    episodes_file = V3_EPISODES_DIR
    tasks_file = V3_TASKS_FILE
    legacy_totals = False
    length_mismatch_code = "V3_EPISODE_ROWS"
    placeholders = "v3 templates may use {chunk_index}, {file_index} and {video_key}"
    template_hint = "Use LeRobot v3's placeholders ({chunk_index}, {file_index}, {video_key})."

    def __init__(self, ctx: Ctx):
        super().__init__(ctx)
        self.data_template_ok = False
        self.video_template_ok = False
        self.locations: dict[int, V3Location] = {}
        self.meta_files: list[str] = []
        self.absent_video_columns: dict[str, str] = {}  # camera -> first meta file without its columns
        self.broken_video_columns: set[str] = set()  # cameras whose columns are malformed (reported)
        self.file_episodes: dict[Path, list[int]] = {}  # data file -> episodes meta/episodes places there
        self.bad_files: set[Path] = set()  # missing/unreadable data files (reported once)
        self.cache: tuple[Path, pa.Schema, pa.Table, dict[int, Any] | None, np.ndarray | None] | None = None
        # (camera, video file) -> [(episode, from_ts, to_ts, length, meta file)] in episode order
        self.video_entries: dict[tuple[str, Path], list[tuple[int, float, float, int, str]]] = {}

    @property
    def video_keys(self) -> list[str]:
        """Declared (well-formed) video features; known once check_info has run."""
        return [k for k, f in self.ctx.features.items() if f["dtype"] == "video"]

    # --- layout / templates ---------------------------------------------------------------------------------
    def check_layout(self) -> bool:
        ctx, info, f = self.ctx, self.ctx.info, "meta/info.json"
        has_dir = (ctx.root / V3_EPISODES_DIR).is_dir()
        if not has_dir and (ctx.root / "meta" / "episodes.jsonl").is_file():
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {ctx.version} but the dataset has meta/episodes.jsonl and no "
                f"{V3_EPISODES_DIR}/ (a v2 layout)",
                file=f,
                field="codebase_version",
                hint="Set codebase_version to the dataset's real version (v2.0/v2.1), or convert the dataset "
                "(groot_ft.data.convert.write_v3_dataset).",
            )
            return False
        for key in ("data_files_size_in_mb", "video_files_size_in_mb"):
            if key not in info:
                ctx.add("V3_INFO_KEY_MISSING", f"{key} is missing (LeRobot v3 writers record it)", file=f, field=key)
            elif not is_number(info[key]) or not info[key] > 0:
                ctx.add("INFO_INVALID_VALUE", f"{key} must be a positive number, got {info[key]!r}", file=f, field=key)
        template = ctx.setting("data_path")
        if isinstance(template, str) and "{episode_index" in template and "{file_index" not in template:
            ctx.add(
                "VERSION_LAYOUT_MISMATCH",
                f"codebase_version is {ctx.version} but data_path {template!r} is a v2 template (one file per episode)",
                file=f,
                field="data_path",
            )
        else:
            self.data_template_ok = self._check_template("data_path", ("chunk_index", "file_index"))
        if self.video_keys:
            self.video_template_ok = self._check_template("video_path", ("video_key", "chunk_index", "file_index"))
        return True

    def _format_sample(self, template: str) -> str:
        return template.format(chunk_index=0, file_index=0, video_key="observation.images.x")

    def _data_path(self, loc: V3Location) -> Path | None:
        if not self.data_template_ok or loc.data is None:
            return None
        try:
            rel = self.ctx.setting("data_path").format(chunk_index=loc.data[0], file_index=loc.data[1])
            return resolve_inside(self.ctx.root, rel, "data_path")
        except (DatasetError, KeyError, IndexError, ValueError):
            return None

    def _video_path(self, key: str, entry: tuple[int, int, float, float]) -> Path | None:
        try:
            rel = self.ctx.setting("video_path").format(video_key=key, chunk_index=entry[0], file_index=entry[1])
            return resolve_inside(self.ctx.root, rel, "video_path")
        except (DatasetError, KeyError, IndexError, ValueError):
            return None

    # --- metadata -------------------------------------------------------------------------------------------
    def load_episodes(self) -> list[EpisodeMeta]:
        ctx = self.ctx
        base = ctx.root / V3_EPISODES_DIR
        if not base.is_dir():
            ctx.add(
                "META_MISSING",
                f"{V3_EPISODES_DIR}/ is missing (a v3.0 dataset lists its episodes in "
                f"{V3_EPISODES_DIR}/chunk-*/file-*.parquet)",
                file=V3_EPISODES_DIR,
            )
            return []
        files = sorted(p for p in base.rglob("*.parquet") if p.is_file())
        if not files:
            ctx.add("META_MISSING", f"{V3_EPISODES_DIR}/ holds no parquet files", file=V3_EPISODES_DIR)
            return []
        episodes: list[EpisodeMeta] = []
        first_seen: dict[int, str] = {}
        order_ok, prev, complete = True, -1, True
        for path in files:
            rel = ctx.rel(path)
            self.meta_files.append(rel)
            with ctx.guard(rel):
                read = self._read_episodes_file(path, rel)
                if read is None:
                    complete = False
                    continue
                for meta, loc in read:
                    if meta is None:
                        complete = False
                        continue
                    if meta.index in first_seen:
                        ctx.add(
                            "EPISODE_INDICES_INVALID",
                            f"{meta.where}: episode_index {meta.index} duplicates {first_seen[meta.index]}",
                            file=rel,
                            field=meta.where,
                            episode=meta.index,
                        )
                        complete = False
                        continue
                    first_seen[meta.index] = f"{rel} {meta.where}"
                    order_ok = order_ok and meta.index > prev
                    prev = meta.index
                    self.locations[meta.index] = loc
                    episodes.append(meta)
        episodes = self.settle_episodes(
            V3_EPISODES_DIR, episodes, list(first_seen), complete, order_ok, f"{V3_EPISODES_DIR}/"
        )
        self._check_index_chain(episodes)
        return episodes

    def _read_episodes_file(
        self, path: Path, rel: str
    ) -> list[tuple[EpisodeMeta | None, V3Location | None]] | None:
        parsed = read_v3_episodes_file(path, rel, self.video_keys)
        for p in parsed.problems:
            self.ctx.add(p.code, p.message, file=rel, field=p.field, episode=p.episode)
        for key in parsed.absent_videos:
            self.absent_video_columns.setdefault(key, rel)
        self.broken_video_columns.update(parsed.broken_videos)
        if not parsed.usable:
            return None
        return [
            (None, None)
            if r is None
            else (EpisodeMeta(r.index, r.length, r.tasks, r.row, rel, f"row {r.row}"), r.location)
            for r in parsed.rows
        ]

    def _check_index_chain(self, episodes: list[EpisodeMeta]) -> None:
        """dataset_from_index[0] == 0, from[i+1] == to[i], to - from == length (invariant 8)."""
        ctx = self.ctx
        prev: tuple[int, int] | None = None  # (episode, dataset_to_index)
        for i, ep in enumerate(episodes):
            rows = self.locations[ep.index].rows
            if rows is None:
                prev = None
                continue
            lo, hi = rows
            if i == 0 and lo != 0:
                ctx.add(
                    "V3_INDEX_GAP",
                    f"the first episode ({ep.index}) starts at dataset_from_index {lo}, expected 0",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_from_index",
                )
            elif prev is not None and lo != prev[1]:
                kind = "gap" if lo > prev[1] else "overlap"
                ctx.add(
                    "V3_INDEX_GAP",
                    f"episode {ep.index} starts at dataset_from_index {lo} but episode {prev[0]} ends at "
                    f"dataset_to_index {prev[1]} ({kind} of {abs(lo - prev[1])} rows)",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_from_index",
                )
            if hi - lo != ep.length:
                ctx.add(
                    "V3_INDEX_LENGTH_MISMATCH",
                    f"dataset_to_index - dataset_from_index = {hi} - {lo} = {hi - lo} but episode {ep.index} has "
                    f"length {ep.length}",
                    file=ep.file,
                    episode=ep.index,
                    field="dataset_to_index",
                )
            prev = (ep.index, hi)

    def load_tasks(self) -> dict[int, str] | None:
        ctx, rel = self.ctx, self.tasks_file
        path = ctx.root / rel
        if not path.is_file():
            ctx.add("META_MISSING", f"{rel} is missing", file=rel)
            return None
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            ctx.add("PARQUET_UNREADABLE", f"cannot read the tasks: {exc}", file=rel)
            return None
        column = v3_task_column(table.schema)
        if column is None or "task_index" not in table.column_names:
            ctx.add(
                "TASK_ENTRY_INVALID",
                "needs a task_index column and the task strings as a 'task' column or as the pandas index "
                f"(columns: {', '.join(table.column_names)})",
                file=rel,
                field="task_index" if "task_index" not in table.column_names else "task",
            )
            return None
        pairs = zip(table.column("task_index").to_pylist(), table.column(column).to_pylist(), strict=True)
        rows = ((f"row {i}", i, {"task_index": a, "task": b}) for i, (a, b) in enumerate(pairs))
        return self.take_tasks(rows, "row", lambda: (table.num_rows, False))

    # --- data -----------------------------------------------------------------------------------------------
    def episode_sources(self, episodes: list[EpisodeMeta]) -> Iterator[EpisodeSource]:
        paths = {ep.index: self._data_path(self.locations[ep.index]) for ep in episodes}
        for ep in episodes:
            if paths[ep.index] is not None:
                self.file_episodes.setdefault(paths[ep.index], []).append(ep.index)
        for ep in episodes:
            loc = self.locations[ep.index]
            videos: dict[str, Path | None] = {}
            windows: dict[str, tuple[float, float]] = {}
            for key in self.video_keys:
                entry = loc.videos.get(key)
                videos[key] = self._video_path(key, entry) if entry is not None and self.video_template_ok else None
                if entry is not None:
                    windows[key] = (entry[2], entry[3])
            yield EpisodeSource(ep, paths[ep.index], videos, loc.rows, windows)

    def open_table(self, source: EpisodeSource, columns_wanted: list[str]) -> tuple[pa.Schema, pa.Table] | None:
        ctx = self.ctx
        ep = source.meta
        e = ep.index
        path = source.data_file
        assert path is not None
        rel = ctx.rel(path)
        if path in self.bad_files:
            return None  # reported with the first episode that needed it
        if self.cache is None or self.cache[0] != path:
            self.cache = None
            eps = self.file_episodes.get(path, [e])
            if not path.is_file():
                ctx.add(
                    "PARQUET_MISSING",
                    f"data file of episode(s) {ranges(eps)} is missing",
                    file=rel,
                    episode=e,
                )
                self.bad_files.add(path)
                return None
            try:
                with pq.ParquetFile(path) as pf:
                    schema = pf.schema_arrow
                    wanted = dict.fromkeys([*columns_wanted, "episode_index", "index"])
                    wanted = [c for c in wanted if c in schema.names]
                    table = pf.read(columns=wanted, use_threads=False)
            except (pa.ArrowException, OSError, ValueError) as exc:
                ctx.add(
                    "PARQUET_UNREADABLE", f"cannot read the data file of episode(s) {ranges(eps)}: {exc}", file=rel,
                    episode=e,
                )
                self.bad_files.add(path)
                return None
            spans = index = None
            if "episode_index" in table.column_names and pa.types.is_integer(table.schema.field("episode_index").type):
                col = table.column("episode_index")
                if not col.null_count:
                    spans = episode_spans(col.to_numpy())
            if "index" in table.column_names and pa.types.is_integer(table.schema.field("index").type):
                col = table.column("index")
                if not col.null_count:
                    index = col.to_numpy()
            self.cache = (path, schema, table, spans, index)
            self._check_orphans(path, rel, spans)
        _, schema, table, spans, index = self.cache
        if spans is not None:
            span = spans.get(e)
        elif index is not None and source.rows is not None:
            span = range_in(index, *source.rows)
        else:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"the data file has no usable episode_index or index column: cannot tell which rows are episode {e}'s",
                file=rel,
                episode=e,
                field="episode_index",
            )
            return None
        if span is None:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"the data file holds no rows of episode {e}, which {ep.file} {ep.where} places there",
                file=rel,
                episode=e,
                field="episode_index",
            )
            return None
        if isinstance(span, tuple):
            sub = table.slice(span[0], span[1] - span[0])
        else:
            ctx.add(
                "V3_EPISODE_ROWS",
                f"episode {e}'s {len(span)} rows are not contiguous in the data file (sort rows by episode)",
                file=rel,
                episode=e,
                field="episode_index",
            )
            sub = table.take(pa.array(span))
        if source.rows is not None and "index" in sub.column_names and sub.num_rows and index is not None:
            first = int(sub.column("index")[0].as_py())
            if first != source.rows[0]:
                ctx.add(
                    "V3_EPISODE_ROWS",
                    f"episode {e}'s rows start at index {first} but {ep.file} {ep.where} gives dataset_from_index "
                    f"{source.rows[0]}",
                    file=rel,
                    episode=e,
                    field="index",
                )
        return schema, sub.select([c for c in sub.column_names if c in columns_wanted])

    def _check_orphans(self, path: Path, rel: str, spans: dict[int, Any] | None) -> None:
        if spans is None or not self.episodes_complete:
            return
        expected = set(self.file_episodes.get(path, ()))
        for other in sorted(set(spans) - expected)[:10]:
            where = "places in another file" if other in self.locations else "does not list"
            ctx_msg = f"the data file holds rows of episode {other}, which {V3_EPISODES_DIR} {where}"
            self.ctx.add("V3_EPISODE_ROWS", ctx_msg, file=rel, episode=other, field="episode_index")

    # --- video ----------------------------------------------------------------------------------------------
    def check_episode_videos(self, source: EpisodeSource, plan: EpisodePlan, rows: int | None) -> None:
        ctx = self.ctx
        ep = source.meta
        e = ep.index
        loc = self.locations.get(e)
        if loc is None:
            return
        for key in self.video_keys:
            if key in self.absent_video_columns or key in self.broken_video_columns:
                continue  # reported once in finish / when read
            used = key in plan.used_videos
            entry = loc.videos.get(key)
            if entry is None:
                if used:
                    ctx.add(
                        "VIDEO_MISSING",
                        f"episode {e} has no videos/{key}/... entry (no video of camera {key!r})",
                        file=ep.file,
                        episode=e,
                        field=key,
                    )
                else:
                    plan.note_missing_videos(key, [e])
                continue
            path = source.videos.get(key)
            if path is None:
                plan.no_video_path(ctx, key, used)
                continue
            _, _, t0, t1 = entry
            if ctx.fps and ep.length:
                want = ep.length / ctx.fps
                if abs((t1 - t0) - want) > 1.0 / ctx.fps + ctx.tol:
                    ctx.add(
                        "V3_VIDEO_SPAN_MISMATCH",
                        f"camera {key!r}: to_timestamp - from_timestamp = {t1:.6f} - {t0:.6f} = {t1 - t0:.6f} s but "
                        f"{ep.length} frames at {ctx.fps:g} fps last {want:.6f} s",
                        file=ep.file,
                        episode=e,
                        field=f"videos/{key}/to_timestamp",
                    )
            self.video_entries.setdefault((key, path), []).append((e, t0, t1, ep.length, ep.file))

    def finish(self, plan: EpisodePlan, episodes: list[EpisodeMeta]) -> None:
        ctx = self.ctx
        for key, rel in self.absent_video_columns.items():
            if key in plan.used_videos:
                ctx.add(
                    "V3_EPISODES_SCHEMA",
                    f"no videos/{key}/... columns, but camera {key!r} is used (modality.json / the config)",
                    file=rel,
                    field=f"videos/{key}/chunk_index",
                )
            elif episodes:
                plan.video_missing[key] = [len(episodes), episodes[0].index, episodes[-1].index]
        for (key, path), entries in self.video_entries.items():
            rel = ctx.rel(path)
            eps = [x[0] for x in entries]
            with ctx.guard(rel, eps[0]):
                self._check_video(plan, key, path, rel, entries)
        if self.episodes_complete:
            with ctx.guard(None):
                self._check_unreferenced()

    def _check_video(
        self, plan: EpisodePlan, key: str, path: Path, rel: str, entries: list[tuple[int, float, float, int, str]]
    ) -> None:
        ctx = self.ctx
        eps = [x[0] for x in entries]
        if not path.is_file():
            if key in plan.used_videos:
                ctx.add(
                    "VIDEO_MISSING",
                    f"video file of camera {key!r} for episode(s) {ranges(eps)} is missing",
                    file=rel,
                    episode=eps[0],
                    field=key,
                )
            else:
                plan.note_missing_videos(key, eps)
            return
        total = sum(x[3] for x in entries)
        info = check_video_file(
            ctx, rel, path, eps[0], key, total, plan, holds=f"its episode(s) {ranges(eps)} have"
        )
        tol = ctx.tol
        e0, t0, _, _, mfile = entries[0]
        if abs(t0) > tol:
            ctx.add(
                "V3_TIMESTAMP_CHAIN",
                f"camera {key!r}: episode {e0} is the first in {rel} but starts at from_timestamp {t0:.6f} s, "
                "expected 0",
                file=mfile,
                episode=e0,
                field=f"videos/{key}/from_timestamp",
            )
        for (pe, _, p1, _, _), (ce, c0, _, _, cfile) in pairwise(entries):
            if abs(c0 - p1) > tol:
                kind = "gap" if c0 > p1 else "overlap"
                ctx.add(
                    "V3_TIMESTAMP_CHAIN",
                    f"camera {key!r}: episode {ce} starts at from_timestamp {c0:.6f} s in {rel} but episode {pe} "
                    f"ends at to_timestamp {p1:.6f} s ({kind} of {abs(c0 - p1):.6f} s)",
                    file=cfile,
                    episode=ce,
                    field=f"videos/{key}/from_timestamp",
                )
        if info is not None and ctx.fps and info.duration_s:
            le, _, l1, _, lfile = entries[-1]
            if abs(l1 - info.duration_s) > 0.5 / ctx.fps + tol:
                ctx.add(
                    "V3_TIMESTAMP_CHAIN",
                    f"camera {key!r}: the last episode in {rel} ({le}) ends at to_timestamp {l1:.6f} s but the "
                    f"file lasts {info.duration_s:.6f} s",
                    file=lfile,
                    episode=le,
                    field=f"videos/{key}/to_timestamp",
                )

    def _check_unreferenced(self) -> None:
        ctx = self.ctx
        referenced = set(self.file_episodes) | {path for _, path in self.video_entries}
        found: list[Path] = []
        for key, suffix in (("data_path", ".parquet"), ("video_path", ".mp4")):
            template = ctx.setting(key)
            if not isinstance(template, str) or "/" not in template or template.startswith(("/", "{")):
                continue
            top = ctx.root / template.split("/", 1)[0]
            template_ok = self.data_template_ok if key == "data_path" else self.video_template_ok
            if top.is_dir() and template_ok:
                found.extend(p for p in sorted(top.rglob(f"*{suffix}")) if p.is_file() and not p.name.startswith("."))
        extra = [p for p in found if p.resolve() not in referenced]
        for p in extra[:20]:
            ctx.add("V3_FILE_UNREFERENCED", "no episode in meta/episodes points at this file", file=ctx.rel(p))

    # --- stats ----------------------------------------------------------------------------------------------
    def check_stats(self, episodes: list[EpisodeMeta], rows_override: dict[int, int]) -> None:
        ctx = self.ctx
        lengths = {e.index: rows_override.get(e.index, e.length) for e in episodes}
        stats = load_json(ctx, "meta/stats.json", required=False)
        if stats is not MISSING:
            with ctx.guard("meta/stats.json"):
                check_stats_object(ctx, stats, "meta/stats.json", None, sum(lengths.values()), groot=True)
        for rel in self.meta_files:
            with ctx.guard(rel):
                self._check_episode_stats(rel, lengths)

    def _check_episode_stats(self, rel: str, lengths: dict[int, int]) -> None:
        ctx = self.ctx
        path = ctx.root / rel
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError, ValueError):
            return  # reported by load_episodes
        columns = [n for n in names if n.startswith("stats/")]
        if not columns or "episode_index" not in names:
            return
        parsed: dict[str, tuple[str, str]] = {}
        for col in columns:
            feature, _, stat = col[len("stats/") :].rpartition("/")
            if not feature or not stat:
                ctx.add("STATS_INVALID", f"column {col!r} is not stats/<feature>/<stat>", file=rel, field=col)
                continue
            parsed[col] = (feature, stat)
        table = pq.read_table(path, columns=["episode_index", *parsed])
        values = {col: table.column(col).to_pylist() for col in parsed}
        for row, e in enumerate(table.column("episode_index").to_pylist()):
            if e not in lengths:
                continue
            obj: dict[str, dict[str, Any]] = {}
            for col, (feature, stat) in parsed.items():
                if values[col][row] is not None:
                    obj.setdefault(feature, {})[stat] = values[col][row]
            if obj:
                check_stats_object(ctx, obj, rel, e, lengths[e], groot=False, row=row)
