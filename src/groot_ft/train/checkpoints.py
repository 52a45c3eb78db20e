"""Checkpoints of a run: which exist, whether they may be resumed, and writing them atomically.

Layout (upstream's): ``checkpoint-N/`` holds the exported weights, the processor files, ``experiment_cfg/`` and
``training_state/`` (DeepSpeed's model/optimizer states plus one ``rng_state_<rank>.safetensors`` per process);
``trainer_state.json`` is written last, so its presence marks a complete checkpoint. ``checkpoint-N-best-eval_loss_X/``
holds the best weights without training state.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from groot_ft.config import FinetuneConfig
from groot_ft.io import atomic_write_json, share_like_umask
from groot_ft.train.metrics import print0

# Config keys that cannot change the weights a run produces: a checkpoint saved under other values still resumes.
RESUME_NEUTRAL_KEYS = frozenset({
    "output_dir", "experiment_name", "logging_steps", "save_steps", "save_total_limit", "eval_steps",
    "eval_batch_size", "open_loop_eval_episodes", "main_process_port", "use_wandb", "enable_profiling",
    # scheduling only: a job resubmitted with a longer runtime, or on more nodes with the same num_gpus, resumes
    "finetune_resources", "num_machines",
    # recomputing activations gives bitwise the same gradients (tests/model/test_model_lora.py, tests/test_train.py):
    # a run that ran out of memory may resume with it
    "activation_checkpointing",
})
# What a checkpoint directory carries besides the weights, so it loads and serves on its own.
PROCESSOR_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")


def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """checkpoint-N directories that finished saving (trainer_state.json is written last), oldest first."""
    found = []
    for p in output_dir.glob("checkpoint-*"):
        suffix = p.name[len("checkpoint-") :]
        if suffix.isdigit() and (p / "trainer_state.json").is_file():
            found.append((int(suffix), p))
    return sorted(found)


def inputs_fingerprint(cfg: FinetuneConfig, ds_config: dict, statistics: dict, shard_dirs: list[Path]) -> str:
    """sha256 of everything the weights depend on: the training config, the resolved DeepSpeed config, the
    normalisation statistics and the content of every shard. Checkpoints record it; one saved under another
    fingerprint (an episode changed, statistics or hyperparameters changed) must not be resumed."""
    h = hashlib.sha256()
    kept = {k: v for k, v in cfg.to_dict().items() if k not in RESUME_NEUTRAL_KEYS}
    h.update(json.dumps([kept, ds_config, statistics], sort_keys=True, default=str).encode())
    for directory in shard_dirs:
        # each shard's key digests its content (its episodes' cache digests and steps), so no shard is re-read
        for entry in json.loads((directory / "manifest.json").read_text())["shards"]:
            h.update(f"{entry['file']}:{entry['key']}".encode())
    return h.hexdigest()


def drop_stale_checkpoints(output_dir: Path, fingerprint: str) -> None:
    """Remove checkpoints trained on other inputs: resuming one would keep stale weights (at max_steps it would
    even skip training), so the run starts over. Best-eval checkpoints of that run go with them."""
    stale = []
    for _, path in complete_checkpoints(output_dir):
        if json.loads((path / "trainer_state.json").read_text()).get("inputs_fingerprint") != fingerprint:
            stale.append(path)
    if stale:
        print0(f"{', '.join(p.name for p in stale)}: trained on other data or config; removed, training starts over")
        for path in stale:
            shutil.rmtree(path)
        if not complete_checkpoints(output_dir):
            for best in output_dir.glob("checkpoint-*-best-*"):
                shutil.rmtree(best)


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])


def export_model(acc, engine, model, tokenizer, directory: Path) -> None:
    """Call on ALL ranks: under ZeRO-3 the full weights must be gathered collectively before rank 0 writes.

    A model with LoRA adapters is written merged, under upstream's tensor names (loading it needs no peft), and its
    adapter alone goes to ``adapter/`` in peft's format."""
    state_dict = acc.get_state_dict(engine)
    if acc.is_main_process:
        from groot_ft.model.lora import ADAPTER_DIR, lora_parts_of, merged_state_dict, save_adapter

        unwrapped = acc.unwrap_model(model)
        if lora_parts_of(unwrapped):
            save_adapter(unwrapped, state_dict, Path(directory) / ADAPTER_DIR)
            state_dict = merged_state_dict(unwrapped, state_dict)
        unwrapped.save_pretrained(directory, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        share_like_umask(*Path(directory).glob("*.safetensors"))


def _add_run_files(output_dir: Path, directory: Path) -> None:
    """Rank 0: the processor files, experiment_cfg/ and wandb_config.json beside exported weights."""
    for name in PROCESSOR_FILES:
        shutil.copy2(output_dir / "processor" / name, directory / name)
    shutil.copytree(output_dir / "experiment_cfg", directory / "experiment_cfg")
    shutil.copy2(output_dir / "wandb_config.json", directory / "wandb_config.json")


def save_checkpoint(acc, engine, model, tokenizer, output_dir: Path, step: int, trainer_state: dict[str, Any],
                    keep: int) -> None:
    """All ranks write DeepSpeed states into a temp dir; rank 0 completes it, renames it into place and keeps the
    newest ``keep`` checkpoints."""
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".checkpoint-{step}.partial"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "training_state").mkdir(parents=True)
    acc.wait_for_everyone()
    engine.save_checkpoint(str(tmp / "training_state"), tag="state")
    rng_file = tmp / "training_state" / f"rng_state_{acc.process_index}.safetensors"
    save_file(rng_state(), str(rng_file))
    share_like_umask(rng_file)
    export_model(acc, engine, model, tokenizer, tmp)
    acc.wait_for_everyone()
    if acc.is_main_process:
        _add_run_files(output_dir, tmp)
        atomic_write_json(tmp / "trainer_state.json", trainer_state)  # written last: marks the checkpoint complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        kept = complete_checkpoints(output_dir)
        for _, old in kept[: max(0, len(kept) - keep)]:
            shutil.rmtree(old)
        print0(f"saved {final}")
    acc.wait_for_everyone()


def save_best(acc, engine, model, tokenizer, output_dir: Path, name: str, previous: str | None) -> None:
    """upstream's checkpoint-{step}-best-{metric}_{value}/: weights + processor + configs, no optimizer state; the
    previous best directory goes."""
    tmp = output_dir / f".{name}.partial"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    export_model(acc, engine, model, tokenizer, tmp)
    if acc.is_main_process:
        _add_run_files(output_dir, tmp)
        os.replace(tmp, output_dir / name)
        if previous is not None and previous != name:
            shutil.rmtree(output_dir / previous, ignore_errors=True)
    acc.wait_for_everyone()
