"""The command line of ``accelerate launch ... -m groot_ft.train``: arguments, config, and clean errors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groot_ft.config import ConfigError, FinetuneConfig, RunDescription
from groot_ft.train import __doc__ as USAGE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="groot_ft.train", description=USAGE, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="run config YAML (validated against the workflow schema)")
    p.add_argument("--run", help="the run description (experiment_cfg/run.json, written by the workflow's run_config): "
                   "every dataset with its stats and shard directories; replaces the per-dataset flags below")
    # Without --run: one group of the four per dataset, in the order of the config's `datasets` (or once for `dataset`).
    p.add_argument("--dataset", action="append", help="dataset root (metadata; samples come from --shards)")
    p.add_argument("--stats", action="append", help="directory with the embodiment's stats.json (+ relative_stats.json)")
    p.add_argument("--shards", action="append", help="shard directory written by `groot-ft shards`")
    p.add_argument("--eval-shards", action="append",
                   help="shards of the held-out episodes (eval loss every eval_steps); `-` for none")
    args = p.parse_args(argv)
    if args.run:
        if args.dataset or args.stats or args.shards or args.eval_shards:
            p.error("--run names every dataset and directory: give it without --dataset/--stats/--shards/--eval-shards")
        return args
    if not args.dataset or not args.stats or not args.shards:
        p.error("give --run, or --dataset, --stats and --shards once per dataset")
    n = len(args.dataset)
    args.eval_shards = args.eval_shards or ["-"] * n
    if not len(args.stats) == len(args.shards) == len(args.eval_shards) == n:
        p.error(f"give --dataset, --stats, --shards and --eval-shards once per dataset ({n} --dataset given)")
    return args


def main(argv: list[str] | None = None) -> int:
    from groot_ft.hub import BaseModelError
    from groot_ft.modality import ModalityConfigError
    from groot_ft.model import TokenizerNotFoundError
    from groot_ft.model.lora import LoraConfigError
    from groot_ft.processor import ProcessorError
    from groot_ft.train.trainer import SourceDirs, Trainer

    args = parse_args(argv)
    try:
        cfg = FinetuneConfig.from_yaml(args.config)
        if args.run:
            run = RunDescription.load(args.run)
            dirs = [(d.path, d.stats_dir, d.shards_dir, d.eval_shards_dir or "-") for d in run.datasets]
        else:
            dirs = list(zip(args.dataset, args.stats, args.shards, args.eval_shards))
        specs = cfg.dataset_specs(dirs[0][0] if not cfg.datasets and dirs else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.run and [s.name for s in specs] != [d.name for d in run.datasets]:
        print(f"error: {args.run} describes datasets {[d.name for d in run.datasets]} but the config names "
              f"{[s.name for s in specs]}", file=sys.stderr)
        return 2
    if len(specs) != len(dirs):
        print(f"error: the config names {len(specs)} dataset(s) but {len(dirs)} --dataset were given",
              file=sys.stderr)
        return 2
    sources = [
        SourceDirs(spec, Path(dataset), Path(stats), Path(shards), None if ev == "-" else Path(ev))
        for spec, (dataset, stats, shards, ev) in zip(specs, dirs)
    ]
    try:
        return Trainer(cfg, sources, config_path=Path(args.config)).train()
    except (BaseModelError, TokenizerNotFoundError, ProcessorError, ModalityConfigError, LoraConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # a problem with the run's inputs, not a crash: no traceback
        return 2
