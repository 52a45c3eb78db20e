"""Save the validated workflow config (defaults filled in) as the run's single source of truth, after checking
that every dataset fits the model (action horizon, state/action dims, embodiment id) before any stage trains, and
the resolved run description (experiment_cfg/run.json: datasets, hold-out episodes, paths) every later step reads."""

import sys

from groot_ft.config import FinetuneConfig, RunDescription
from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.errors import UserError
from groot_ft.fit import ModelLimits, fit_problems
from groot_ft.hub import resolve_base_model
from groot_ft.modality import load_modality_config


def write_run_config(log) -> None:
    cfg = FinetuneConfig.from_dict(dict(snakemake.params.run_config), source="workflow config")  # noqa: F821
    # a hub repo id: its snapshot in the cache, which rule fetch_base_model filled
    base = resolve_base_model(cfg.base_model_path, revision=cfg.base_model_revision)
    limits = ModelLimits.of(cfg.base_model_path if base is None else str(base))
    specs = snakemake.params.specs  # noqa: F821
    problems = []
    for spec in specs:
        # the mapping every stage reads: modality_json_path when the dataset's lives outside it
        view = LeRobotDataset(spec.path, spec.modality_json_path)
        print(f"{spec.path}: {view.modality_source}", file=log)
        problems += fit_problems(spec.path, spec.embodiment_tag, load_modality_config(spec.modality_config_path),
                                 view.modality, limits,
                                 str(view.modality_json) if view.modality_json_external else "meta/modality.json")
    if problems:
        raise UserError("the data does not fit the model:\n  - " + "\n  - ".join(problems))
    # the hold-out split, computed here once: shards (train and eval) and open-loop evaluation read it from run.json
    episodes = {spec.name: [e.index for e in LeRobotDataset(spec.path).episodes] for spec in specs}
    run = RunDescription.resolve(cfg, specs, episodes, snakemake.params.dirs, snakemake.params.output_dir)  # noqa: F821
    cfg.save_yaml(snakemake.output.config)  # noqa: F821
    run.save(snakemake.output.run)  # noqa: F821
    print(f"wrote {snakemake.output.config}; {len(specs)} dataset(s) fit {limits.source}", file=log)  # noqa: F821


with open(snakemake.log[0], "w") as log:  # noqa: F821 - injected by Snakemake
    sys.stderr = log
    try:
        write_run_config(log)
    except UserError as exc:  # the user's inputs, not a bug: the message, no traceback
        print(f"error: {exc}", file=log)
        raise SystemExit(f"run_config: {exc}")
