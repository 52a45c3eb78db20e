"""``groot-ft stats``: the statistics stage's command line (the only parser of its flags).

``groot_ft.cli`` hands ``groot-ft stats ...`` to :func:`main` before parsing, so ``groot-ft stats --help`` shows
these flags; ``python -m groot_ft.stats`` is an alias of the same command.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.errors import exits_on_user_error
from groot_ft.modality import load_modality_config
from groot_ft.stats.common import NUMERICS
from groot_ft.stats.compute import run_stats
from groot_ft.stats.mixture import merge_mixture_stats
from groot_ft.stats.report import summary_flags, write_stats, write_stats_report


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Run `groot-ft stats` with ``argv`` (default: ``sys.argv[1:]``); 0 on success; a user error (modality config,
    dataset, video, statistics) is one ``error:`` message and exit 2 (``groot_ft.errors``)."""
    parser = argparse.ArgumentParser(
        prog="groot-ft stats",
        description="Compute GR00T stats.json / relative_stats.json of a dataset (plus stats_report.json and plots), "
        "or, given several datasets and --mix-ratios, of their weighted mixture (one embodiment).",
    )
    parser.add_argument("dataset", type=Path, nargs="+")
    parser.add_argument("--modality-config", type=Path, help="YAML/JSON modality config (for relative_stats.json)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (never the dataset itself)")
    parser.add_argument("--cache", type=Path, nargs="+",
                        help="incremental per-episode cache directory, one per dataset (default: OUT/cache[/i])")
    parser.add_argument("--mix-ratios", type=float, nargs="+", help="mixture weight of each dataset (default 1 each)")
    parser.add_argument("--modality-json", nargs="+", metavar="FILE",
                        help="the modality mapping of each dataset kept outside it (modality_json_path), one per "
                        "dataset; `-` reads that dataset's own meta/modality.json (the default for all)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every episode and keep no cache")
    parser.add_argument("--numerics", choices=NUMERICS, default="upstream",
                        help="mean/std/quantile arithmetic of the written files (default: upstream's float32)")
    parser.add_argument("--no-report", action="store_true", help="skip stats_report.json and the plots")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    datasets = args.dataset
    for name, given in (("--cache", args.cache), ("--mix-ratios", args.mix_ratios),
                        ("--modality-json", args.modality_json)):
        if given is not None and len(given) != len(datasets):
            parser.error(f"{name} has {len(given)} values for {len(datasets)} dataset(s); give one per dataset")
    if args.no_cache:
        caches: list[Path | None] = [None] * len(datasets)
    elif args.cache:
        caches = list(args.cache)
    else:
        caches = [args.out / "cache"] if len(datasets) == 1 else [args.out / "cache" / str(i) for i in range(len(datasets))]
    for dataset, cache in zip(datasets, caches):
        if args.out.resolve().is_relative_to(dataset.resolve()):
            parser.error(f"--out {args.out} is inside the dataset {dataset}; statistics are never written into it")
        if cache is not None and Path(cache).resolve().is_relative_to(dataset.resolve()):
            parser.error(f"--cache {cache} is inside the dataset {dataset}; nothing is written into it")
    mappings = [None if m == "-" else Path(m) for m in args.modality_json or ["-"] * len(datasets)]
    cfg = load_modality_config(args.modality_config) if args.modality_config else None
    views = [LeRobotDataset(d, m) for d, m in zip(datasets, mappings)]
    for view in views:
        print(f"stats: {view.root}: {view.modality_source}")
    results = [run_stats(v, cfg, numerics=args.numerics, cache_dir=c, progress=args.progress)
               for v, c in zip(views, caches)]
    if len(results) > 1:
        stats, relative = merge_mixture_stats(list(zip(results, args.mix_ratios or [1.0] * len(results))))
        for path in write_stats(args.out, stats, relative):
            print(path)
        for d, r, w in zip(datasets, results, args.mix_ratios or [1.0] * len(results)):
            print(f"stats: {d}: mix ratio {w}, {r.episodes} episodes, {r.recomputed} recomputed, {r.cached} from cache")
        return 0
    result, cache = results[0], caches[0]
    for path in write_stats(args.out, result.stats, result.relative):
        print(path)
    print(
        f"stats: {result.episodes} episodes, {result.recomputed} recomputed, {result.cached} from cache"
        f"{'' if cache is None else f' ({cache})'}; {result.passes} passes; numerics {result.numerics}"
    )
    flags = summary_flags(result.stats) + summary_flags(result.relative or {})
    if not args.no_report:
        for path in write_stats_report(
            args.out, result.stats, result.relative, flags, result.histograms,
            extra={**result.summary(), "modality_json": str(views[0].modality_json),
                   "modality_json_external": views[0].modality_json_external}
        ):
            print(path)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for flag in flags:
        grouped.setdefault((flag["feature"], flag["flag"]), []).append(flag)
    for (feature, kind), items in grouped.items():
        where = ", ".join(json.dumps(f["index"]) for f in items[:8]) + (", ..." if len(items) > 8 else "")
        print(f"note: {feature}: {len(items)} x {kind} at {where}; e.g. {items[0]['message']}")
    return 0
