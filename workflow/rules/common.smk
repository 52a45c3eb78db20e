# Config resolution and input functions shared by every rule; no rules here.
from pathlib import Path

from groot_ft.modality import load_modality_config

OUT = config["output_dir"].rstrip("/")
IS_DEMO = config["dataset"] == "demo"
# The demo dataset is generated beside the run directory so that several demo runs can share it.
DATASET = str(Path(OUT).parent / "demo_dataset") if IS_DEMO else config["dataset"]
MODALITY = load_modality_config(config["modality_config_path"])
HAS_RELATIVE = bool(MODALITY.relative_action_keys())
HAS_EVAL = config["eval_episodes"] not in (0, [])
# the hold-out as the CLI takes it: a count, or a comma list ("5," for a single index)
EVAL_EPISODES_ARG = (
    ",".join(map(str, config["eval_episodes"])) + ","
    if isinstance(config["eval_episodes"], list)
    else str(config["eval_episodes"])
)


def dataset_files():
    """Every file of the dataset the pipeline reads, so an edited episode makes Snakemake rerun what depends on it."""
    if IS_DEMO:
        return DATASET
    root = Path(DATASET)
    if not (root / "meta" / "info.json").is_file():
        raise ValueError(f"dataset={DATASET}: no meta/info.json there; point `dataset` at a LeRobot dataset root")
    files = [p for pattern in ("meta/*", "data/**/*.parquet", "videos/**/*.mp4") for p in root.glob(pattern)]
    return sorted(str(p) for p in files if p.is_file())


def stats_outputs():
    outputs = {"stats": f"{OUT}/stats/stats.json"}
    if HAS_RELATIVE:
        outputs["relative_stats"] = f"{OUT}/stats/relative_stats.json"
    return outputs


def shard_manifests():
    manifests = {"manifest": f"{OUT}/shards/train/manifest.json"}
    if HAS_EVAL:
        manifests["eval_manifest"] = f"{OUT}/shards/eval/manifest.json"
    return manifests


def all_targets():
    targets = [f"{OUT}/manifest.json"]
    if config["open_loop_eval_episodes"] > 0:
        targets.append(f"{OUT}/eval/open_loop/metrics.json")
    return targets
