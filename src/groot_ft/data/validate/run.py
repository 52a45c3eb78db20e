"""The entry point: :func:`validate_dataset` runs the checks in order over the dataset's layout."""

from __future__ import annotations

import os
from pathlib import Path

from groot_ft.data.layout import SUPPORTED_VERSIONS
from groot_ft.modality import EmbodimentModalityConfig

from groot_ft.data.validate.codes import CODES, ERROR
from groot_ft.data.validate.context import MISSING, Ctx, iter_jsonl, load_json
from groot_ft.data.validate.episodes import EpisodePlan, check_episode
from groot_ft.data.validate.info import check_info, check_totals
from groot_ft.data.validate.layouts import EpisodeMeta, Layout
from groot_ft.data.validate.modality import check_config, check_modality
from groot_ft.data.validate.report import Finding, ValidationReport
from groot_ft.data.validate.stats_files import check_relative_stats
from groot_ft.data.validate.v2 import V2Layout
from groot_ft.data.validate.v3 import V3Layout


def validate_dataset(
    root: str | os.PathLike[str],
    modality_config: EmbodimentModalityConfig | None = None,
    *,
    deep: bool = False,
    timestamp_tolerance_s: float = 1e-4,
    modality_json: str | os.PathLike[str] | None = None,
) -> ValidationReport:
    """Check a LeRobot v2.0/v2.1/v3.0 dataset (GR00T flavour) and return every problem found.

    ``modality_config`` (the embodiment's config) adds checks that every key it uses exists in ``modality.json`` and
    decides which cameras are "used". ``deep=True`` decodes every video frame instead of trusting container metadata.
    ``timestamp_tolerance_s`` bounds ``|diff(timestamp) - 1/fps|`` (LeRobot's ``tolerance_s``).
    ``modality_json``: the modality mapping kept outside the dataset (``modality_json_path``); it is checked instead
    of ``meta/modality.json``, whose absence is then no finding.
    Never modifies the dataset and never raises on bad input.
    """
    root_path = Path(root)
    external = Path(modality_json) if modality_json is not None else None
    report = ValidationReport(dataset=str(root_path), deep=deep,
                              modality_json=str(external if external is not None else root_path / "meta/modality.json"),
                              modality_json_external=external is not None)
    try:
        ctx = Ctx(root_path, modality_config, deep, timestamp_tolerance_s, external)
    except Exception as exc:  # noqa: BLE001 - e.g. an unresolvable path
        report.findings.append(
            Finding("INTERNAL", ERROR, f"cannot open {root_path}: {exc}", None, None, None, CODES["INTERNAL"][1])
        )
        return report
    try:
        validate_into(ctx, report)
    except Exception as exc:  # noqa: BLE001 - last resort; individual checks are guarded already
        ctx.add("INTERNAL", f"unexpected {type(exc).__name__}: {exc}")
    report.codebase_version = ctx.version
    report.findings = ctx.findings
    return report


def validate_into(ctx: Ctx, report: ValidationReport) -> None:
    if not ctx.root.is_dir():
        what = "does not exist" if not ctx.root.exists() else "is not a directory"
        ctx.add("DATASET_NOT_FOUND", f"dataset root {ctx.root} {what}")
        return
    info = load_json(ctx, "meta/info.json", required=True)
    if info is not MISSING and not isinstance(info, dict):
        ctx.add(
            "JSON_INVALID", f"meta/info.json must hold a JSON object, got {type(info).__name__}", file="meta/info.json"
        )
        info = MISSING
    if info is MISSING:
        syntax_only(ctx)  # still report what else is broken
        return
    ctx.info = info
    version = info.get("codebase_version")
    ctx.version = version if isinstance(version, str) else None
    layout_cls = LAYOUTS.get(version) if isinstance(version, str) else None
    if layout_cls is None:
        shown = "missing" if version is None else repr(version)
        ctx.add(
            "UNSUPPORTED_VERSION",
            f"codebase_version is {shown}; supported: {', '.join(SUPPORTED_VERSIONS)}",
            file="meta/info.json",
            field="codebase_version",
        )
        return
    layout = layout_cls(ctx)
    run_checks(ctx, layout, report)


def syntax_only(ctx: Ctx) -> None:
    for rel in ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"):
        rows = iter_jsonl(ctx, rel, required=False)
        if rows is not None:
            for _ in rows:
                pass
    for rel in ("meta/stats.json", "meta/relative_stats.json"):
        load_json(ctx, rel, required=False)
    load_json(ctx, ctx.modality_file, required=False, path=ctx.modality_json)


def run_checks(ctx: Ctx, layout: Layout, report: ValidationReport) -> None:
    with ctx.guard("meta/info.json"):
        check_info(ctx, layout)
    proceed = True
    with ctx.guard("meta/info.json"):
        proceed = layout.check_layout() is not False
    if not proceed:  # the files are another version's layout: everything else would only repeat that
        ctx.flush_aggregates(0)
        return
    episodes: list[EpisodeMeta] = []
    tasks: dict[int, str] | None = None
    with ctx.guard(layout.episodes_file):
        episodes = layout.load_episodes()
    with ctx.guard(layout.tasks_file):
        tasks = layout.load_tasks()
    with ctx.guard("meta/info.json"):
        check_totals(ctx, layout, episodes, tasks)
    modality = None
    with ctx.guard(ctx.modality_file):
        modality = check_modality(ctx)
    with ctx.guard(ctx.modality_file):
        check_config(ctx, modality)
    plan = EpisodePlan.build(ctx, layout, modality, tasks)
    report.episodes = len(episodes)
    with ctx.guard(None):
        for source in layout.episode_sources(episodes):
            rows = check_episode(ctx, layout, source, plan)
            ctx.frames_seen += rows if rows is not None else source.meta.length
            layout.check_episode_videos(source, plan, rows)
    with ctx.guard(None):
        layout.finish(plan, episodes)
    plan.finish(ctx, len(episodes))
    report.frames = ctx.frames_seen if episodes else 0
    with ctx.guard("meta"):
        layout.check_stats(episodes, plan.rows_override)
    with ctx.guard("meta/relative_stats.json"):
        check_relative_stats(ctx, modality)
    ctx.flush_aggregates(len(episodes))


LAYOUTS: dict[str, type[Layout]] = {"v2.0": V2Layout, "v2.1": V2Layout, "v3.0": V3Layout}
