"""The files a run writes before its first step: upstream's ``experiment_cfg/`` tree, the processor and the W&B id.

``experiment_cfg/config.yaml`` is the run config the workflow's ``run_config`` step wrote (the trainer's input); it is
written here only when the trainer was started on a config stored elsewhere, so the trainer never rewrites its own
Snakemake input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from groot_ft.io import atomic_write_json, atomic_write_text
from groot_ft.train.metrics import WANDB_PROJECT


def write_run_files(cfg, config_path: Path | None, sources, output_dir: Path, model, processor, statistics: dict,
                    ds_config: dict, provenance: list[str]) -> None:
    """Rank 0 only."""
    import yaml

    exp = output_dir / "experiment_cfg"
    exp.mkdir(parents=True, exist_ok=True)
    target = exp / "config.yaml"
    if config_path is None or not target.exists() or target.resolve() != Path(config_path).resolve():
        cfg.save_yaml(target)
    conf: dict[str, Any] = {
        "model": {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")},
        "data": {
            "datasets": [
                {
                    "path": str(s.dataset),
                    # the mapping package fingerprints with the dataset; None: the dataset's own meta/modality.json
                    "modality_json_path": None if s.modality_json is None else str(s.modality_json),
                    "embodiment_tag": s.spec.embodiment_tag,
                    "mix_ratio": s.spec.mix_ratio,
                    "modality_config": processor.modality_configs[s.spec.embodiment_tag].to_dict(),
                }
                for s in sources
            ],
            "shard_size": cfg.shard_size,
            "episode_sampling_rate": cfg.episode_sampling_rate,
            "seed": cfg.seed,
        },
        "training": cfg.to_dict(),
        "max_steps": cfg.max_steps,
        "save_steps": cfg.save_steps,
    }
    atomic_write_text(exp / "conf.yaml", yaml.safe_dump(conf, sort_keys=False))
    atomic_write_json(exp / "final_model_config.json", model.config.to_dict())
    atomic_write_json(exp / "dataset_statistics.json", statistics)
    atomic_write_json(exp / "deepspeed_config.json", ds_config)
    atomic_write_text(exp / "processor_provenance.txt", "".join(f"{line}\n" for line in provenance))
    processor.save_pretrained(output_dir / "processor")
    atomic_write_json(output_dir / "wandb_config.json", {"project": WANDB_PROJECT, "run_id": cfg.run_name})
