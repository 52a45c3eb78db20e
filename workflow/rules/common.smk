# Config resolution and input functions shared by every rule; no rules here.
from pathlib import Path

from groot_ft.modality import load_modality_config

OUT = config["output_dir"].rstrip("/")
IS_DEMO = config["dataset"] == "demo"
# The demo dataset is generated beside the run directory so that several demo runs can share it.
DATASET = str(Path(OUT).parent / "demo_dataset") if IS_DEMO else config["dataset"]
MODALITY = load_modality_config(config["modality_config_path"])
HAS_RELATIVE = bool(MODALITY.relative_action_keys())


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


def all_targets():
    return [f"{OUT}/manifest.json"]
