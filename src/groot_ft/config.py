"""The run config: one frozen object, validated against the workflow's JSON schema, saved as the run's truth."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from groot_ft.errors import UserError, describe_yaml_error, read_json_file
from groot_ft.io import atomic_write_text


class ConfigError(UserError, ValueError):
    """An invalid run config; the message lists every problem with its key."""


def load_schema() -> dict[str, Any]:
    text = resources.files("groot_ft").joinpath("resources/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def schema_defaults() -> dict[str, Any]:
    return {k: v.get("default") for k, v in load_schema()["properties"].items()}


def read_config_files(*paths: str | Path) -> dict[str, Any]:
    """The config keys of YAML files merged in order (:func:`merge_config`), not yet validated."""
    data: dict[str, Any] = {}
    for path in map(Path, paths):
        try:
            layer = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a config: not UTF-8 text (byte {exc.start})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({describe_yaml_error(exc)})") from exc
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        data = merge_config(data, layer)
    return data


def merge_config(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base``, recursing into mappings present in both (Snakemake's rule for config files)."""
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged


def retype_command_line(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the strings Snakemake's ``--config key=value`` leaves behind read as YAML where the key's schema
    type is not a string: Snakemake turns only ``True``/``False`` and numbers into values, so ``tune_visual=true``,
    ``modality_json_path=null`` and ``eval_episodes=[3,7]`` would otherwise reach the schema as the strings "true",
    "null" and ["3", "7"] (``null`` and ``~`` are read as null for every key that may be null). A value that still does not parse, or parses to the wrong type, is left for the schema to
    report with its key."""
    properties = load_schema()["properties"]
    out = dict(config)
    for key, value in config.items():
        spec = properties.get(key, {})
        types = spec.get("type", [])
        types = [types] if isinstance(types, str) else types
        if isinstance(value, str) and types and "string" not in types:
            out[key] = _yaml_scalar(value)
        elif isinstance(value, str) and "null" in types and value in ("null", "~"):
            out[key] = None  # key=null on the command line: YAML's null, not a file or name spelt "null"
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            item_type = spec.get("items", {}).get("type")
            if item_type is not None and item_type != "string":
                out[key] = [_yaml_scalar(v) for v in value]
    return out


def _yaml_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def default_output_dir(dataset: str, datasets: list[dict[str, Any]]) -> str:
    """results/<the dataset directory's name>: two datasets trained with default settings never share a run."""
    if datasets:
        return "results/mixture"
    return f"results/{Path(str(dataset).rstrip('/')).name or 'run'}"


def split_episodes(episode_indices: list[int], eval_episodes: int | list[int], seed: int) -> tuple[list[int], list[int]]:
    """Hold out ``eval_episodes`` (a count chosen by a seeded shuffle, or explicit indices) from training."""
    indices = sorted(episode_indices)
    if isinstance(eval_episodes, list):
        unknown = sorted(set(eval_episodes) - set(indices))
        if unknown:
            raise ConfigError(f"eval_episodes: episodes {unknown} are not in the dataset ({len(indices)} episodes)")
        held = set(eval_episodes)
    else:
        if eval_episodes >= len(indices):
            raise ConfigError(f"eval_episodes={eval_episodes} leaves no training episode (the dataset has {len(indices)})")
        import numpy as np

        held = {int(e) for e in np.random.default_rng(seed).permutation(indices)[:eval_episodes]}
    return [e for e in indices if e not in held], sorted(held)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the run, with every per-dataset key resolved.

    ``name`` is the subdirectory of its validation/stats/shards/eval outputs under output_dir: empty for a run on a
    single ``dataset`` (whose outputs sit directly in ``validation/``, ``stats/``, ...).
    """

    name: str
    path: str
    embodiment_tag: str
    mix_ratio: float
    modality_config_path: str
    eval_episodes: int | list[int]
    # GR00T's modality mapping kept outside the dataset (a read-only, shared or DVC-tracked dataset without
    # meta/modality.json); None reads the dataset's own meta/modality.json
    modality_json_path: str | None = None

    @property
    def subdir(self) -> str:
        return f"/{self.name}" if self.name else ""


@dataclass(frozen=True)
class FinetuneConfig:
    dataset: str
    datasets: list[dict[str, Any]]
    base_model_path: str
    base_model_revision: str | None
    tokenizer_path: str | None
    embodiment_tag: str
    modality_config_path: str | None
    modality_json_path: str | None
    output_dir: str
    experiment_name: str | None
    max_steps: int
    save_steps: int
    save_total_limit: int
    logging_steps: int
    global_batch_size: int
    gradient_accumulation_steps: int
    num_gpus: int
    num_machines: int
    finetune_resources: dict[str, int]
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    dataloader_num_workers: int
    color_jitter_params: dict[str, float] | None
    random_rotation_angle: float | None
    override_pretraining_statistics: bool
    tune_llm: bool
    tune_visual: bool
    tune_projector: bool
    tune_diffusion_model: bool
    lora_rank: int
    lora_alpha: float
    lora_dropout: float
    lora_targets: list[str]
    activation_checkpointing: bool
    state_dropout_prob: float | None  # None: the base family's upstream default (model.finetune_state_dropout)
    shard_size: int
    episode_sampling_rate: float
    eval_episodes: int | list[int]
    eval_steps: int
    eval_batch_size: int
    open_loop_eval_episodes: int
    deepspeed_config: str
    main_process_port: int
    use_wandb: bool
    enable_profiling: bool
    demo_episodes: int
    demo_codec: str
    demo_version: str
    seed: int

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> FinetuneConfig:
        """Validate against the schema (reporting every problem), fill defaults, and freeze."""
        schema = load_schema()
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            lines = []
            for err in errors:
                key = ".".join(str(p) for p in err.absolute_path) or "<top level>"
                lines.append(f"{key}: {err.message}")
            raise ConfigError(f"{source}: invalid config:\n  - " + "\n  - ".join(lines))
        merged = {**schema_defaults(), **data}
        if merged["output_dir"] is None:
            merged["output_dir"] = default_output_dir(merged["dataset"], merged["datasets"])
        return cls(**merged)

    @classmethod
    def from_yaml(cls, *paths: str | Path) -> FinetuneConfig:
        """One config file, or several merged in order as Snakemake merges ``--configfile``s (later files win,
        nested mappings merge key by key), e.g. ``config/config.yaml`` then ``config/demo.yaml``."""
        return cls.from_dict(read_config_files(*paths), source=" + ".join(map(str, paths)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        # Plain YAML (no Python tags), unlike upstream's yaml.dump(Config). Rewriting identical content is skipped
        # so that the trainer re-saving the workflow's copy does not make Snakemake think the input changed.
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        path = Path(path)
        if path.is_file() and path.read_text() == text:
            return
        atomic_write_text(path, text)

    def replace(self, **changes: Any) -> FinetuneConfig:
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    @property
    def run_name(self) -> str:
        return self.experiment_name or Path(self.output_dir).name

    def dataset_specs(self, single_dataset_path: str | None = None) -> list[DatasetSpec]:
        """The run's datasets: the ``datasets`` mixture, or ``dataset`` alone (at ``single_dataset_path`` if given,
        e.g. where the workflow generates the demo)."""
        from groot_ft.embodiment import normalize_tag

        if not self.datasets:
            path = single_dataset_path or self.dataset
            if self.modality_config_path is None:
                raise ConfigError(_no_modality_config("modality_config_path", path))
            return [DatasetSpec("", path, normalize_tag(self.embodiment_tag), 1.0, self.modality_config_path,
                                self.eval_episodes, self.modality_json_path)]
        if self.modality_json_path is not None:
            # a mapping describes one dataset's columns, so a mixture names one per entry rather than sharing one
            raise ConfigError(f"modality_json_path: {self.modality_json_path!r} is set at the top level but the run "
                              f"trains on a `datasets` mixture; set modality_json_path on each entry of `datasets` "
                              f"that keeps its mapping outside the dataset")
        specs = []
        for entry in self.datasets:
            path = str(entry["path"])
            specs.append(DatasetSpec(
                name=entry.get("name") or Path(path.rstrip("/")).name,
                path=path,
                embodiment_tag=normalize_tag(entry.get("embodiment_tag", self.embodiment_tag)),
                mix_ratio=float(entry.get("mix_ratio", 1.0)),
                modality_config_path=entry.get("modality_config_path", self.modality_config_path),
                eval_episodes=entry.get("eval_episodes", self.eval_episodes),
                modality_json_path=entry.get("modality_json_path"),
            ))
        problems = [_no_modality_config(f"datasets[{i}].modality_config_path", spec.path)
                    for i, spec in enumerate(specs) if spec.modality_config_path is None]
        names = [s.name for s in specs]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"datasets: name {name!r} is used by more than one entry; give each a unique `name`")
        by_tag: dict[str, set[str]] = {}
        for spec in specs:
            if spec.modality_config_path is not None:
                by_tag.setdefault(spec.embodiment_tag, set()).add(spec.modality_config_path)
        for tag, paths in sorted(by_tag.items()):
            if len(paths) > 1:
                problems.append(f"datasets: embodiment {tag!r} has several modality configs ({', '.join(sorted(paths))}); "
                                f"datasets of one embodiment must share one (they share the per-embodiment weights)")
        if problems:
            raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
        return specs

    def split_episodes(self, episode_indices: list[int]) -> tuple[list[int], list[int]]:
        """(train, eval) episode indices; the eval set is held out from training entirely."""
        return split_episodes(episode_indices, self.eval_episodes, self.seed)

    def per_device_batch_size(self, num_processes: int) -> int:
        """global_batch_size is the true effective batch, so it must split evenly over processes and accumulation."""
        denom = num_processes * self.gradient_accumulation_steps
        if self.global_batch_size % denom:
            raise ConfigError(
                f"global_batch_size={self.global_batch_size} is not divisible by processes ({num_processes}) x "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps}); pick a multiple of {denom}"
            )
        return self.global_batch_size // denom


def _no_modality_config(key: str, dataset: str) -> str:
    import shlex

    return (f"{key}: not set for dataset {dataset}: point it at the dataset's modality config, e.g. one written by "
            f"`groot-ft modality init {shlex.quote(dataset)} --out-config config/modality/my_robot.yaml` or a "
            f"shipped one such as config/modality/gr1.yaml")


RUN_DESCRIPTION_VERSION = 1


@dataclass(frozen=True)
class RunDataset:
    """One dataset of a run as ``run_config`` resolved it: its hold-out split and the directories the steps use."""

    name: str
    path: str
    embodiment_tag: str
    modality_config_path: str
    mix_ratio: float
    train_episodes: list[int]
    held_out_episodes: list[int]
    stats_dir: str
    shards_dir: str
    eval_shards_dir: str | None
    # the dataset's modality mapping when it lives outside the dataset (DatasetSpec.modality_json_path); a default
    # so that run descriptions written before the key existed still load
    modality_json_path: str | None = None

    @property
    def subdir(self) -> str:
        return f"/{self.name}" if self.name else ""


@dataclass(frozen=True)
class RunDescription:
    """experiment_cfg/run.json: the run's datasets, hold-out episodes and paths, written once by ``run_config``
    and read by every later step (shards, training, open-loop evaluation) instead of re-deriving them."""

    output_dir: str
    datasets: list[RunDataset]

    @classmethod
    def resolve(cls, cfg: FinetuneConfig, specs: list[DatasetSpec], episode_indices: dict[str, list[int]],
                dirs: dict[str, dict[str, str | None]], output_dir: str) -> RunDescription:
        """Split each dataset once (``episode_indices`` and ``dirs`` are keyed by dataset name)."""
        datasets = []
        for spec in specs:
            indices = sorted(episode_indices[spec.name])
            held = spec.eval_episodes
            train, evaluation = split_episodes(indices, held, cfg.seed) if held else (indices, [])
            datasets.append(RunDataset(spec.name, spec.path, spec.embodiment_tag, spec.modality_config_path,
                                       spec.mix_ratio, train, evaluation, **dirs[spec.name],
                                       modality_json_path=spec.modality_json_path))
        return cls(output_dir, datasets)

    def to_dict(self) -> dict[str, Any]:
        return {"version": RUN_DESCRIPTION_VERSION, **dataclasses.asdict(self)}

    def save(self, path: str | Path) -> None:
        from groot_ft.io import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunDescription:
        path = Path(path)
        data = read_json_file(path, "the run description")
        if not isinstance(data, dict) or data.get("version") != RUN_DESCRIPTION_VERSION:
            raise ConfigError(f"{path}: not a version {RUN_DESCRIPTION_VERSION} run description "
                              f"(written by the workflow's run_config rule)")
        try:
            return cls(str(data["output_dir"]), [RunDataset(**entry) for entry in data["datasets"]])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: malformed run description ({exc})") from exc

    def dataset(self, path: str | Path) -> RunDataset:
        """The entry for the dataset root at ``path`` (compared after resolving)."""
        wanted = Path(path).resolve()
        found = [d for d in self.datasets if Path(d.path).resolve() == wanted]
        if len(found) != 1:
            known = ", ".join(d.path for d in self.datasets)
            how = "is not among" if not found else "matches several of"
            raise ConfigError(f"dataset {path} {how} the run's datasets ({known})")
        return found[0]
