"""The command line of ``accelerate launch ... -m groot_ft.train``: arguments, config, and clean errors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groot_ft.config import ConfigError, FinetuneConfig
from groot_ft.train import __doc__ as USAGE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="groot_ft.train", description=USAGE, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="run config YAML (validated against the workflow schema)")
    # One group of the four per dataset, in the order of the config's `datasets` (or once for `dataset`).
    p.add_argument("--dataset", required=True, action="append", help="dataset root (metadata; samples come from --shards)")
    p.add_argument("--stats", required=True, action="append",
                   help="directory with the embodiment's stats.json (+ relative_stats.json)")
    p.add_argument("--shards", required=True, action="append", help="shard directory written by `groot-ft shards`")
    p.add_argument("--eval-shards", action="append",
                   help="shards of the held-out episodes (eval loss every eval_steps); `-` for none")
    args = p.parse_args(argv)
    n = len(args.dataset)
    args.eval_shards = args.eval_shards or ["-"] * n
    if not len(args.stats) == len(args.shards) == len(args.eval_shards) == n:
        p.error(f"give --dataset, --stats, --shards and --eval-shards once per dataset ({n} --dataset given)")
    return args


def main(argv: list[str] | None = None) -> int:
    from groot_ft.hub import BaseModelError
    from groot_ft.modality import ModalityConfigError
    from groot_ft.model import TokenizerNotFoundError
    from groot_ft.processor import ProcessorError
    from groot_ft.train.trainer import SourceDirs, Trainer

    args = parse_args(argv)
    try:
        cfg = FinetuneConfig.from_yaml(args.config)
        specs = cfg.dataset_specs(args.dataset[0] if not cfg.datasets else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(specs) != len(args.dataset):
        print(f"error: the config names {len(specs)} dataset(s) but {len(args.dataset)} --dataset were given",
              file=sys.stderr)
        return 2
    sources = [
        SourceDirs(spec, Path(dataset), Path(stats), Path(shards), None if ev == "-" else Path(ev))
        for spec, dataset, stats, shards, ev in zip(specs, args.dataset, args.stats, args.shards, args.eval_shards)
    ]
    try:
        return Trainer(cfg, sources, config_path=Path(args.config)).train()
    except (BaseModelError, TokenizerNotFoundError, ProcessorError, ModalityConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # a problem with the run's inputs, not a crash: no traceback
        return 2
