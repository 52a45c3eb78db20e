"""``groot-ft``: one command per workflow stage, each usable on its own outside Snakemake.

    groot-ft demo-data OUT [--episodes N] [--codec h264|av1] [--seed S] [--version v2.1|v3.0]
    groot-ft convert-v3 SOURCE OUT
    groot-ft validate DATASET [--modality-config F] [--modality-json F] [--report R.json] [--deep]
    groot-ft stats DATASET [--modality-config F] [--modality-json F] --out DIR
    groot-ft shards DATASET --modality-config F --out DIR [--run RUN.json | --modality-json F] [--base-model-path P] ...
    groot-ft eval-open-loop MODEL --dataset D --embodiment-tag T --out DIR [--run RUN.json | --eval-episodes N] [--num-episodes N]
    groot-ft inspect --base-model B --dataset D --embodiment-tag T [--modality-json F] --out DIR ...
    groot-ft package OUTPUT_DIR [--stats DIR] [--validation R.json] [--run RUN.json | --dataset D [--modality-json F] ...]
                     [--processor-files-only]
    groot-ft verify OUTPUT_DIR
    groot-ft modality init DATASET [--out-config F] [--out-modality-json F] [--action-horizon N] [--relative G ...]
    groot-ft fetch-base-model BASE [--tokenizer T] [--revision R] [--out base_model.json]
    groot-ft plan CONFIG.yaml [...] [--gpu-memory 24GiB] [--json F] [--set key=value]

Training itself is ``accelerate launch ... -m groot_ft.train`` (see the ``groot_ft/train/`` package).

Exit status: 0 success; 1 the command ran and found problems (validate, verify); 2 bad input (a usage error, or a
config, modality config, dataset, video, base model or path that cannot be used): one ``error: ...`` paragraph on
stderr naming the file and key, never a traceback (see ``groot_ft.errors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groot_ft.errors import EXIT_FINDINGS, exits_on_user_error, read_json_file


def _modality(path: str | None):
    from groot_ft.modality import load_modality_config

    return load_modality_config(path) if path else None


def modality_json_for(args: argparse.Namespace, entry=None) -> str | None:
    """The dataset's modality mapping kept outside it: ``--modality-json``, else the run description's entry (the
    workflow's modality_json_path). Both given and different is an error rather than a silent choice."""
    from groot_ft.config import ConfigError

    recorded = entry.modality_json_path if entry is not None else None
    given = getattr(args, "modality_json", None)
    if given and recorded and Path(given).resolve() != Path(recorded).resolve():
        raise ConfigError(f"--modality-json {given} differs from the mapping the run description records for "
                          f"{entry.path} ({recorded}); drop --modality-json or fix modality_json_path")
    return given or recorded


def cmd_demo_data(args: argparse.Namespace) -> int:
    from groot_ft.data.demo import write_demo_dataset

    out = write_demo_dataset(args.out, episodes=args.episodes, codec=args.codec, seed=args.seed, version=args.version)
    print(f"wrote LeRobot {args.version} demo dataset with {args.episodes} episodes to {out}")
    return 0


def cmd_convert_v3(args: argparse.Namespace) -> int:
    from groot_ft.data.convert import write_v3_dataset

    out = write_v3_dataset(args.source, args.out, data_files_size_in_mb=args.data_files_size_in_mb,
                           video_files_size_in_mb=args.video_files_size_in_mb)
    print(f"wrote LeRobot v3.0 dataset to {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from groot_ft.data.validate import validate_dataset

    report = validate_dataset(args.dataset, _modality(args.modality_config), deep=args.deep,
                              modality_json=args.modality_json)
    if args.report:
        report.write_json(args.report)
    print(report.summary_text())
    return 0 if report.ok else EXIT_FINDINGS


def image_edge_for(base_model_path: str, revision: str | None = None) -> int:
    """The processor's working image size: from a model directory's files (a hub repo id is resolved offline to its
    snapshot in the hub cache), else from the named preset."""
    from groot_ft.hub import BaseModelError, resolve_base_model

    resolved = resolve_base_model(base_model_path, revision=revision)
    root = resolved if resolved is not None else Path(base_model_path)
    path = root / "processor_config.json"
    try:
        if path.is_file():
            return int(read_json_file(path, "the processor config")["processor_kwargs"]["shortest_image_edge"])
        # A square image_size (small presets) is the working size; upstream's geometry (image_size null) works at the
        # processor's shortest_image_edge and leaves the rest to the collator's smart_resize.
        path = root / "config.json"
        if path.is_file():
            config = read_json_file(path, "the model config")
            return int(config.get("image_size") or config["shortest_image_edge"])
    except (KeyError, TypeError, ValueError) as exc:  # a model directory written by something else
        raise BaseModelError(f"{path}: no image size (processor_kwargs.shortest_image_edge, or image_size / "
                             f"shortest_image_edge in config.json): {exc!r}; pass --image-edge") from exc
    from groot_ft.preset_facts import PRESET_FACTS

    if base_model_path in PRESET_FACTS:  # without importing the model package (torch): seconds a shard rule
        return PRESET_FACTS[base_model_path].image_edge
    from groot_ft.model import preset

    config = preset(base_model_path)  # an unknown name: the preset lookup's own error
    return int(config.image_size or config.shortest_image_edge)


def letter_box_for(base_model_path: str, revision: str | None = None) -> bool:
    """Whether the base model's processor pads frames to a square first (N1.7's ``letter_box_transform``): its
    ``processor_config.json``, else its ``config.json``, else the preset's (off for every preset)."""
    from groot_ft.hub import resolve_base_model

    resolved = resolve_base_model(base_model_path, revision=revision)
    root = resolved if resolved is not None else Path(base_model_path)
    processor_file, config_file = root / "processor_config.json", root / "config.json"
    if processor_file.is_file():
        kwargs = read_json_file(processor_file, "the processor config").get("processor_kwargs") or {}
        return bool(kwargs.get("letter_box_transform", False))
    if config_file.is_file():
        return bool(read_json_file(config_file, "the model config").get("letter_box_transform", False))
    return False


def parse_eval_episodes(text: str) -> int | list[int]:
    """``3`` is a count; ``3,7`` (or ``5,`` for a single index) lists episode indices. An argparse ``type``, so a bad
    value is a usage error that names the flag."""
    text = text.strip()
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count (3) nor a comma list of episode indices "
                                         f"(3,7 or 5,)") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def cmd_eval_open_loop(args: argparse.Namespace) -> int:
    from groot_ft.config import RunDescription, split_episodes
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.evaluate import evaluate_open_loop

    entry = None
    if args.run:  # the split run_config resolved once
        entry = RunDescription.load(args.run).dataset(args.dataset)
        train, evaluation = entry.train_episodes, entry.held_out_episodes
    else:
        indices = [e.index for e in LeRobotDataset(args.dataset).episodes]
        held = args.eval_episodes
        train, evaluation = split_episodes(indices, held, args.seed) if held else (indices, [])
    episodes = (evaluation or train)[: args.num_episodes]
    metrics = evaluate_open_loop(args.model, args.dataset, args.embodiment_tag, args.out, episodes,
                                 max_steps=args.max_steps, device=args.device,
                                 modality_json=modality_json_for(args, entry))
    source = "held-out" if evaluation else "training (no episodes held out)"
    print(f"open-loop eval on {len(episodes)} {source} episode(s): mean MSE {metrics['mean_mse']:.5g}, "
          f"mean MAE {metrics['mean_mae']:.5g} (physical units); plots in {args.out}")
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    from groot_ft.shards import build_shards

    from groot_ft.config import RunDescription, split_episodes
    from groot_ft.data.lerobot import LeRobotDataset

    edge = args.image_edge or image_edge_for(args.base_model_path, args.base_model_revision)
    episodes = None
    entry = RunDescription.load(args.run).dataset(args.dataset) if args.run else None
    if args.split != "all" and entry is not None:  # the split run_config resolved once
        episodes = entry.train_episodes if args.split == "train" else entry.held_out_episodes
    elif args.split != "all":
        held = args.eval_episodes
        train, evaluation = split_episodes([e.index for e in LeRobotDataset(args.dataset).episodes], held, args.seed)
        episodes = train if args.split == "train" else evaluation
    manifest = build_shards(
        args.dataset,
        _modality(args.modality_config),
        args.out,
        image_edge=edge,
        shard_size=args.shard_size,
        episode_sampling_rate=args.episode_sampling_rate,
        seed=args.seed,
        episodes=episodes,
        threads=args.threads,
        modality_json=modality_json_for(args, entry),
        letter_box=letter_box_for(args.base_model_path, args.base_model_revision),
    )
    print(f"wrote {manifest}")
    return 0


def cmd_fetch_base_model(args: argparse.Namespace) -> int:
    """Download (or find in the hub cache) the base model and tokenizer a run needs, so compute nodes run offline."""
    from groot_ft.hub import fetch
    from groot_ft.io import atomic_write_json

    info = fetch(args.base_model, tokenizer_path=args.tokenizer, revision=args.revision)
    if info["kind"] == "preset":
        more = "" if info.get("n17_backbone_dir") else "; nothing to fetch"
        print(f"base model: preset {args.base_model!r}, built fresh{more}")
    elif info["kind"] == "hub":
        print(f"base model: {args.base_model} at commit {info['commit']}, in the hub cache: {info['base_model_dir']}")
    else:
        print(f"base model: local directory {info['base_model_dir']}")
    if info["tokenizer_dir"]:
        where = f"commit {info['tokenizer_commit']} in the hub cache" if info["tokenizer_kind"] == "hub" else "local"
        print(f"tokenizer: {args.tokenizer} ({where}): {info['tokenizer_dir']}")
    if info.get("n17_backbone_dir"):
        print(f"N1.7 backbone: {info['n17_backbone']} (tokenizer, config, image-processor settings) at commit "
              f"{info['n17_backbone_commit']}, in the hub cache: {info['n17_backbone_dir']}")
    if info["tokenizer_source"] == "n17_backbone":
        print(f"tokenizer: {info['n17_backbone']}'s, from the hub cache")
    elif info["tokenizer_source"] == "base_model":
        print(f"tokenizer: the files beside the checkpoint in {info['base_model_dir']}")
    elif info["tokenizer_source"] is None:
        print(f"warning: {info['base_model_dir']} has no tokenizer files (upstream's checkpoint ships none) and "
              f"tokenizer_path is not set: training would fall back to the byte tokenizer, whose ids do not match "
              f"the pretrained LLM embeddings; set tokenizer_path to the Eagle tokenizer directory", file=sys.stderr)
    if args.out:
        atomic_write_json(args.out, info)
        print(f"wrote {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from groot_ft.inspect_inputs import inspect_sample, write_inspection

    inspection = inspect_sample(args.base_model, args.dataset, args.embodiment_tag, args.episode, args.step,
                                modality_config=args.modality_config, stats_dir=args.stats,
                                tokenizer_path=args.tokenizer, modality_json=args.modality_json)
    out = write_inspection(inspection, args.out)
    batch = inspection.batch
    print("\n".join(inspection.provenance))
    print(f"{batch['input_ids'].shape[1]} tokens, {len(inspection.images)} image(s) "
          f"{' '.join('x'.join(map(str, i.shape[:2])) for _, i in inspection.images)}, state {tuple(batch['state'].shape[1:])}"
          f", embodiment id {int(batch['embodiment_id'][0])}; wrote {out}/inputs.safetensors, prompt.txt, images/")
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from groot_ft.package import package_output, place_processor_files

    if args.processor_files_only:
        lines = place_processor_files(args.output_dir) or [f"{args.output_dir}: processor files already in place"]
    else:
        lines = package_output(args.output_dir, stats_dir=args.stats, validation_report=args.validation,
                               datasets=args.dataset, modality_jsons=args.modality_json, run=args.run)
    for line in lines:
        print(line)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from groot_ft.manifest import verify_output

    result = verify_output(args.output_dir)
    print(result.summary())
    return 0 if result.ok else EXIT_FINDINGS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groot-ft", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write the synthetic demo dataset (LeRobot v2.1, real mp4 video)")
    p.add_argument("out")
    p.add_argument("--episodes", type=positive_int, default=24)
    p.add_argument("--codec", choices=["h264", "av1"], default="h264")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", choices=["v2.1", "v3.0"], default="v2.1", help="LeRobot dataset format to write")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("convert-v3", help="write a LeRobot v3.0 copy of a v2.x dataset (the source is only read)")
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--data-files-size-in-mb", type=positive_float, default=100)
    p.add_argument("--video-files-size-in-mb", type=positive_float, default=200)
    p.set_defaults(func=cmd_convert_v3)

    p = sub.add_parser("validate", help="check a dataset; exit 1 on errors")
    p.add_argument("dataset")
    p.add_argument("--modality-config", help="modality config YAML/JSON the training run will use")
    p.add_argument("--modality-json", metavar="FILE",
                   help="the dataset's GR00T modality mapping kept outside it (modality_json_path), read instead of "
                   "DATASET/meta/modality.json")
    p.add_argument("--report", help="write the JSON report here")
    p.add_argument("--deep", action="store_true", help="decode every video frame (slow)")
    p.set_defaults(func=cmd_validate)

    # listed for --help only: main() hands `groot-ft stats ...` to groot_ft.stats.cli, whose parser owns its flags
    sub.add_parser("stats", help="compute stats.json (+ relative_stats.json) in upstream's schema; see "
                   "`groot-ft stats --help`", add_help=False)

    p = sub.add_parser("shards", help="decode video once and write training-sample shards")
    p.add_argument("dataset")
    p.add_argument("--modality-config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--base-model-path", default="tiny",
                   help="decides the processor's image size: a preset, a directory, or a hub repo id (read offline "
                   "from the hub cache)")
    p.add_argument("--base-model-revision", help="the hub revision of --base-model-path (branch, tag or commit)")
    p.add_argument("--image-edge", type=positive_int, help="override the stored frames' shortest edge")
    p.add_argument("--shard-size", type=positive_int, default=1024)
    p.add_argument("--episode-sampling-rate", type=positive_float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--split", choices=["all", "train", "eval"], default="all",
                   help="which side of the eval hold-out to shard (see --eval-episodes)")
    p.add_argument("--eval-episodes", type=parse_eval_episodes, default="0",
                   help="held-out episodes: a count (seeded choice) or a comma list of indices, e.g. 3,7,")
    p.add_argument("--run", help="the run description (experiment_cfg/run.json): take the split of DATASET from it "
                   "instead of --eval-episodes, and its modality mapping (modality_json_path)")
    p.add_argument("--modality-json", metavar="FILE",
                   help="the dataset's GR00T modality mapping kept outside it (modality_json_path), read instead of "
                   "DATASET/meta/modality.json; default: the one --run records")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="episodes decoded at once (the shards are identical for any value)")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("eval-open-loop", help="replay episodes through a trained policy; MSE/MAE and plots")
    p.add_argument("model", help="output_dir or checkpoint-N directory")
    p.add_argument("--dataset", required=True)
    p.add_argument("--embodiment-tag", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--eval-episodes", type=parse_eval_episodes, default="0",
                   help="the run's hold-out (count or comma list), as in training")
    p.add_argument("--seed", type=int, default=42, help="the run's seed (decides which episodes were held out)")
    p.add_argument("--run", help="the run description (experiment_cfg/run.json): take the held-out episodes of "
                   "--dataset from it instead of --eval-episodes/--seed, and its modality mapping (modality_json_path)")
    p.add_argument("--modality-json", metavar="FILE",
                   help="the dataset's GR00T modality mapping kept outside it (modality_json_path), read instead of "
                   "DATASET/meta/modality.json; default: the one --run records")
    p.add_argument("--num-episodes", type=positive_int, default=2)
    p.add_argument("--max-steps", type=positive_int, help="replay at most this many steps per episode")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval_open_loop)

    from groot_ft.data.modality_init import add_modality_parser

    add_modality_parser(sub)

    p = sub.add_parser("package", help="check a run's output tree; write model card, release/ and manifest.json")
    p.add_argument("output_dir")
    p.add_argument("--stats", help="stats directory, for the statistics plot")
    p.add_argument("--validation", help="validation report JSON, for the manifest")
    roots = p.add_mutually_exclusive_group()
    roots.add_argument("--run", help="the workflow's experiment_cfg/run.json: fingerprint the datasets it lists")
    roots.add_argument("--dataset", action="append",
                       help="dataset root to fingerprint (repeat for a mixture); default: the one(s) in "
                       "experiment_cfg/conf.yaml")
    p.add_argument("--modality-json", action="append", metavar="FILE",
                   help="with --dataset: that dataset's modality mapping kept outside it, one per --dataset in order "
                   "(`-` for none), fingerprinted with it; default: the ones experiment_cfg/conf.yaml records")
    p.add_argument("--processor-files-only", action="store_true",
                   help="only copy processor/* beside the final model (the step before open-loop evaluation)")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser("inspect", help="write exactly what the model sees for one sample (no weights are read)")
    p.add_argument("--base-model", required=True, help="a preset, a local checkpoint directory or a hub repo id")
    p.add_argument("--dataset", required=True)
    p.add_argument("--embodiment-tag", required=True)
    p.add_argument("--modality-config", help="default: the base checkpoint's config for the embodiment tag")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--stats", help="a `groot-ft stats` output directory (default: the dataset's meta/stats.json)")
    p.add_argument("--tokenizer", help="tokenizer directory or hub id, for a checkpoint that ships none")
    p.add_argument("--modality-json", metavar="FILE",
                   help="the dataset's GR00T modality mapping kept outside it (modality_json_path), read instead of "
                   "DATASET/meta/modality.json")
    p.add_argument("--out", required=True, help="directory to write (replaced as a whole)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="recompute every sha256 in manifest.json (and release/); exit 1 on problems")
    p.add_argument("output_dir")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("fetch-base-model",
                       help="download the base model (and tokenizer) into the Hugging Face cache for offline nodes")
    p.add_argument("base_model", help="a hub repo id (nvidia/GR00T-N1.6-3B), a local directory, or a preset")
    p.add_argument("--tokenizer", help="a local directory or hub repo id with the tokenizer files (tokenizer_path)")
    p.add_argument("--revision", help="hub branch, tag or commit of the base model (base_model_revision)")
    p.add_argument("--out", help="write the resolved local paths and the snapshot commit here (JSON)")
    p.set_defaults(func=cmd_fetch_base_model)

    from groot_ft.memplan.cli import add_plan_parser

    add_plan_parser(sub)
    return parser


def command_names(parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Every command line of ``groot-ft``, nested ones spelled out (``modality init``), read from the parser itself
    so that the bad-input test (tests/test_cli_errors.py) notices a new command without a case."""
    names: list[str] = []
    # argparse has no public way to list subparsers; its subparsers action is the one whose `choices` are parsers
    for action in (parser or build_parser())._actions:
        choices = action.choices if isinstance(action.choices, dict) else {}
        for name, sub in choices.items():
            if isinstance(sub, argparse.ArgumentParser):
                nested = command_names(sub)
                names += [f"{name} {n}" for n in nested] if nested else [name]
    return names


@exits_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Run ``groot-ft`` with ``argv``; a user error becomes one ``error:`` message and exit 2 (``groot_ft.errors``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["stats"]:  # its own parser (groot_ft.stats.cli) owns every flag, --help included
        from groot_ft.stats.cli import main as stats_main

        return stats_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
