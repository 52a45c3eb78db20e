"""finetune: the training entry point that ``accelerate launch`` starts on every process.

    accelerate launch --use_deepspeed --deepspeed_config_file config/deepspeed/zero2.json --num_processes 2 \
        -m groot_ft.train --config results/demo/experiment_cfg/config.yaml \
        --dataset DATASET --stats results/demo/stats --shards results/demo/shards

One process per GPU (on a machine without CUDA: CPU processes on gloo, which runs the same DeepSpeed code).
Re-running the same command resumes from the newest complete ``checkpoint-N``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from groot_ft.config import ConfigError, DatasetSpec, FinetuneConfig
from groot_ft.io import atomic_write_json, atomic_write_text, share_like_umask

WANDB_PROJECT = "finetune-gr00t-n1d6"


def print0(*args: Any, **kwargs: Any) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(*args, **kwargs, flush=True)


# --- checkpoints ----------------------------------------------------------------------------------------------------
def complete_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """checkpoint-N directories that finished saving (trainer_state.json is written last), oldest first."""
    found = []
    for p in output_dir.glob("checkpoint-*"):
        suffix = p.name[len("checkpoint-") :]
        if suffix.isdigit() and (p / "trainer_state.json").is_file():
            found.append((int(suffix), p))
    return sorted(found)


# Config keys that cannot change the weights a run produces: a checkpoint saved under other values still resumes.
RESUME_NEUTRAL_KEYS = frozenset({
    "output_dir", "experiment_name", "logging_steps", "save_steps", "save_total_limit", "eval_steps",
    "eval_batch_size", "open_loop_eval_episodes", "main_process_port", "use_wandb", "enable_profiling",
    # scheduling only: a job resubmitted with a longer runtime, or on more nodes with the same num_gpus, resumes
    "finetune_resources", "num_machines",
})


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


def resolve_deepspeed_config(path: str | Path, cfg: FinetuneConfig, per_device: int, use_bf16: bool) -> dict:
    """Fill upstream-style "auto" values from the run config so DeepSpeed and our loop agree."""
    ds = json.loads(Path(path).read_text())
    fills = {
        "train_micro_batch_size_per_gpu": per_device,
        "train_batch_size": cfg.global_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in fills.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key, enabled in (("bf16", use_bf16), ("fp16", False)):
        block = ds.setdefault(key, {})
        if block.get("enabled", "auto") == "auto":
            block["enabled"] = enabled
    if not use_bf16:
        ds.pop("communication_data_type", None)  # bf16 communication needs bf16 weights
    offload = ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none") == "cpu"
    if offload and not torch.cuda.is_available():
        # Without CUDA the parameters already live on the CPU, so DeepSpeed's CPU Adam buys nothing; and its
        # constructor probes the CPU through py-cpuinfo, whose busy-wait never returns in some VMs. Let ZeRO-Offload
        # step torch's AdamW instead (same update rule).
        ds["zero_force_ds_cpu_optimizer"] = False
    return ds


def _process_as(processor, tag: str):
    """The loader's per-sample call for one embodiment (a closure per dataset, not over a loop variable)."""
    return lambda step, rng: processor(step, tag, rng=rng)


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])


# --- the run --------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="groot_ft.train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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
    args = parse_args(argv)
    try:
        cfg = FinetuneConfig.from_yaml(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
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
    from groot_ft.hub import BaseModelError
    from groot_ft.modality import ModalityConfigError
    from groot_ft.model import TokenizerNotFoundError
    from groot_ft.processor import ProcessorError

    try:
        return Trainer(cfg, sources).train()
    except (BaseModelError, TokenizerNotFoundError, ProcessorError, ModalityConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # a problem with the run's inputs, not a crash: no traceback
        return 2


@dataclass(frozen=True)
class SourceDirs:
    """Where one dataset of the run lives and where its pipeline outputs are."""

    spec: DatasetSpec
    dataset: Path
    stats_dir: Path
    shards_dir: Path
    eval_shards_dir: Path | None = None


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step took: summed micro-batch losses, and seconds waiting for data out of the total."""

    loss_sum: float
    micro_batches: int
    data_wait: float
    seconds: float


class Trainer:
    def __init__(self, cfg: FinetuneConfig, sources: list[SourceDirs]):
        self.cfg = cfg
        self.sources = sources
        self.output_dir = Path(cfg.output_dir)

    def setup(self) -> int:
        """Everything before the first step: processes, model, data stream, optimizer, resume. Returns 0, or the exit
        code of a config that cannot run (the error already printed). Sets the attributes ``train_step`` uses."""
        from accelerate import Accelerator
        from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

        cfg = self.cfg
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        if world != cfg.num_gpus:
            print(
                f"error: num_gpus={cfg.num_gpus} but {world} training processes were launched; launch with "
                f"--num_processes {cfg.num_gpus} (and --num_machines) or change num_gpus",
                file=sys.stderr,
            )
            return 2
        try:
            per_device = cfg.per_device_batch_size(world)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        cuda = torch.cuda.is_available()
        ds_config = resolve_deepspeed_config(cfg.deepspeed_config, cfg, per_device, use_bf16=cuda)
        handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]  # accelerate's no-GPU DeepSpeed bug
        acc = Accelerator(
            deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=ds_config),
            mixed_precision="bf16" if cuda else "no",
            kwargs_handlers=handlers,
        )
        if acc.num_processes != world or acc.process_index != rank:
            raise RuntimeError(
                f"accelerate sees {acc.num_processes} processes (index {acc.process_index}) but WORLD_SIZE={world}, "
                f"RANK={rank}: refusing to train every rank on all data"
            )
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # model init below reseeds itself; this seeds flow-matching noise and dropout, different on every rank
        torch.manual_seed(cfg.seed + rank)
        np.random.seed(cfg.seed + rank)

        from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset
        from groot_ft.model import Gr00tCollator, create_model
        from groot_ft.modality import load_modality_config
        from groot_ft.processor import statistics_from_dataset_stats
        from groot_ft.run_processor import build_run_processor, resolve_modality_configs
        from groot_ft.shards import ShardSet
        from groot_ft.data.lerobot import LeRobotDataset

        from groot_ft.hub import resolve_base_model, resolve_tokenizer_dir

        # Offline by design: the workflow's fetch step put hub snapshots into the cache before any compute job.
        base_dir = resolve_base_model(cfg.base_model_path, revision=cfg.base_model_revision)
        tokenizer_dir = resolve_tokenizer_dir(cfg.tokenizer_path)
        print0(f"base model: {base_dir or f'preset {cfg.base_model_path!r} (fresh weights)'}")
        # whose processor files (embodiment configs, image and normalisation settings) apply: upstream's semantics
        processor_base = base_dir if base_dir is not None and (base_dir / "processor_config.json").is_file() else None
        requested = {s.spec.embodiment_tag: load_modality_config(s.spec.modality_config_path)
                     if s.spec.modality_config_path else None for s in self.sources}
        modality_cfgs = resolve_modality_configs(processor_base, requested)  # None: the base checkpoint's entry
        model, tokenizer = create_model(
            cfg.base_model_path if base_dir is None else base_dir,
            tokenizer=tokenizer_dir,
            tune_llm=cfg.tune_llm,
            tune_visual=cfg.tune_visual,
            tune_projector=cfg.tune_projector,
            tune_diffusion_model=cfg.tune_diffusion_model,
            state_dropout_prob=cfg.state_dropout_prob,
        )
        mcfg = model.config
        shards = [ShardSet.open(s.shards_dir) for s in self.sources]
        edges = {sh.manifest["image_edge"] for sh in shards}
        if len(edges) != 1:
            raise RuntimeError(f"the shard sets were built at different image sizes {sorted(edges)}; rebuild them "
                               f"with one base_model_path")
        statistics = {}
        for s in self.sources:  # datasets of one embodiment share one (merged) statistics directory
            tag = s.spec.embodiment_tag
            if tag not in statistics:
                stats = json.loads((s.stats_dir / "stats.json").read_text())
                rel_path = s.stats_dir / "relative_stats.json"
                relative = json.loads(rel_path.read_text()) if rel_path.is_file() else None
                modality_json = LeRobotDataset(s.dataset).modality
                statistics[tag] = statistics_from_dataset_stats(stats, relative, modality_json, modality_cfgs[tag])
        print0(f"tokenizer: {tokenizer.source}")
        processor, self.processor_provenance = build_run_processor(
            processor_base,
            requested,
            statistics,
            color_jitter_params=cfg.color_jitter_params,
            random_rotation_angle=cfg.random_rotation_angle,
            override_pretraining_statistics=cfg.override_pretraining_statistics,
            model_config=mcfg,
            shortest_image_edge=edges.pop(),
        )
        for line in self.processor_provenance:
            print0(f"processor: {line}")
        processor.train()
        collator = Gr00tCollator(tokenizer, mcfg)
        self._eval_setup(modality_cfgs=modality_cfgs, processor=processor, collator=collator, rank=rank, world=world)

        self._write_run_files(acc, model, processor, statistics, ds_config)

        # --- resume point ------------------------------------------------------------------------------------------
        shard_dirs = [d for s in self.sources for d in (s.shards_dir, s.eval_shards_dir) if d is not None]
        self.inputs_fingerprint = inputs_fingerprint(cfg, ds_config, statistics, shard_dirs)
        if acc.is_main_process:
            for partial in self.output_dir.glob(".checkpoint-*.partial"):
                shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while saving
            drop_stale_checkpoints(self.output_dir, self.inputs_fingerprint)
        acc.wait_for_everyone()
        checkpoints = complete_checkpoints(self.output_dir)
        start_step = checkpoints[-1][0] if checkpoints else 0
        if start_step >= cfg.max_steps:
            print0(f"checkpoint-{start_step} already reaches max_steps={cfg.max_steps}; writing the final model only")

        stream = ShardedMixtureDataset(
            [
                MixtureSource(sh, modality_cfgs[s.spec.embodiment_tag], _process_as(processor, s.spec.embodiment_tag),
                              s.spec.mix_ratio)
                for s, sh in zip(self.sources, shards)
            ],
            collator,
            per_device,
            rank=rank,
            world_size=world,
            seed=cfg.seed,
            start_batch=start_step * cfg.gradient_accumulation_steps,
        )
        loader = torch.utils.data.DataLoader(
            stream,
            batch_size=None,
            num_workers=cfg.dataloader_num_workers,
            persistent_workers=cfg.dataloader_num_workers > 0,
            prefetch_factor=4 if cfg.dataloader_num_workers > 0 else None,
        )

        from transformers import get_cosine_schedule_with_warmup

        decay, no_decay = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        offload = ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device", "none") == "cpu"
        if offload and cuda:
            # ZeRO-Offload steps the optimizer on the CPU; DeepSpeed's vectorised CPU Adam (JIT-built once) does it
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            optimizer = DeepSpeedCPUAdam(groups, lr=cfg.learning_rate, adamw_mode=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        scheduler = get_cosine_schedule_with_warmup(
            optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps
        )
        # The scheduler stays out of acc.prepare: accelerate would step it once per process per step.
        engine, optimizer = acc.prepare(model, optimizer)

        # The iterator draws its workers' base seed from the global RNG, so create it before restoring RNG state:
        # a resumed run then continues the uninterrupted run's random stream exactly.
        it = iter(loader)
        history: list[dict[str, Any]] = []
        if checkpoints:
            ckpt = checkpoints[-1][1]
            print0(f"resuming from {ckpt}")
            engine.load_checkpoint(str(ckpt / "training_state"), tag="state", load_lr_scheduler_states=False)
            for _ in range(start_step):
                scheduler.step()  # the schedule is a pure function of the step
            set_rng_state(load_file(str(ckpt / "training_state" / f"rng_state_{rank}.safetensors")))
            trainer_state = json.loads((ckpt / "trainer_state.json").read_text())
            history = trainer_state["log_history"]
            self.best = trainer_state.get("best_metric")
            if acc.is_main_process:  # a best checkpoint saved after the resumed one belongs to the lost timeline
                keep = self.best["checkpoint"] if self.best else None
                for stale in self.output_dir.glob("checkpoint-*-best-*"):
                    if stale.name != keep:
                        shutil.rmtree(stale, ignore_errors=True)
            if acc.is_main_process:  # drop lines logged after the checkpoint by the interrupted run
                atomic_write_text(self.output_dir / "training_log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        elif acc.is_main_process:
            (self.output_dir / "training_log.jsonl").unlink(missing_ok=True)

        self.acc, self.engine, self.model, self.tokenizer = acc, engine, model, tokenizer
        self.optimizer, self.scheduler, self.batches = optimizer, scheduler, it
        self.start_step, self.history, self.shards = start_step, history, shards
        self.per_device, self.world, self.processor = per_device, world, processor
        return 0

    def train_step(self) -> StepStats:
        """One optimizer step: ``gradient_accumulation_steps`` micro-batches forward and backward, then the update."""
        t0 = time.perf_counter()
        wait, loss_sum = 0.0, 0.0
        for _ in range(self.cfg.gradient_accumulation_steps):
            tw = time.perf_counter()
            batch = next(self.batches)
            wait += time.perf_counter() - tw
            batch = {k: v.to(self.acc.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss = self.engine(**batch).loss
            self.acc.backward(loss)
            loss_sum += loss.detach().float().item()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return StepStats(loss_sum=loss_sum, micro_batches=self.cfg.gradient_accumulation_steps, data_wait=wait,
                         seconds=time.perf_counter() - t0)

    def train(self) -> int:
        code = self.setup()
        if code:
            return code
        cfg, acc, engine, model, tokenizer = self.cfg, self.acc, self.engine, self.model, self.tokenizer
        scheduler, shards, history = self.scheduler, self.shards, self.history
        start_step, world, per_device = self.start_step, self.world, self.per_device

        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print0(
            f"training {type(model).__name__}: {n_params:,} parameters ({n_train:,} trainable); {world} process(es) "
            f"x batch {per_device} x accumulation {cfg.gradient_accumulation_steps} = global batch "
            f"{cfg.global_batch_size}; {sum(sh.manifest['samples'] for sh in shards)} samples in {sum(len(sh.shard_paths) for sh in shards)} "
            f"shard(s) of {len(shards)} dataset(s); "
            f"steps {start_step} -> {cfg.max_steps}"
        )

        writer = self._tensorboard(acc)
        profiler = self._profiler(acc) if cfg.enable_profiling else None
        wandb_run = self._wandb(acc) if cfg.use_wandb else None
        device = acc.device
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start_step, desc="finetune", unit="step",
                   disable=not acc.is_main_process or not sys.stderr.isatty())
        window = {"loss": 0.0, "n": 0, "wait": 0.0, "time": 0.0, "samples": 0}
        engine.train()
        for step in range(start_step + 1, cfg.max_steps + 1):
            stats = self.train_step()
            if profiler is not None:
                profiler.step()
            window["loss"] += stats.loss_sum
            window["n"] += stats.micro_batches
            window["wait"] += stats.data_wait
            window["time"] += stats.seconds
            window["samples"] += cfg.global_batch_size
            bar.update(1)

            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                loss_mean = acc.reduce(torch.tensor(window["loss"] / window["n"], device=device), "mean").item()
                grad_norm = engine.get_global_grad_norm()
                record = {
                    "step": step,
                    "loss": loss_mean,
                    "grad_norm": float(grad_norm) if grad_norm is not None else None,
                    "learning_rate": scheduler.get_last_lr()[0],
                    "samples_per_second": window["samples"] / max(window["time"], 1e-9),
                    "data_wait_fraction": window["wait"] / max(window["time"], 1e-9),
                }
                if device.type == "cuda":  # this process's high-water mark since the run started
                    record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                history.append(record)
                if acc.is_main_process:
                    bar.set_postfix(loss=f"{loss_mean:.4f}")
                    print0(json.dumps(record))
                    with open(self.output_dir / "training_log.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    for k, v in record.items():
                        if k != "step" and v is not None:
                            writer.add_scalar(f"train/{k}", v, step)
                    if wandb_run is not None:
                        wandb_run.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
                window = {"loss": 0.0, "n": 0, "wait": 0.0, "time": 0.0, "samples": 0}

            if self.eval_stream is not None and (step % cfg.eval_steps == 0 or step == cfg.max_steps):
                eval_loss = self._evaluate(acc, engine)
                record = {"step": step, "eval_loss": eval_loss}
                history.append(record)
                if acc.is_main_process:
                    print0(json.dumps(record))
                    with open(self.output_dir / "training_log.jsonl", "a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    writer.add_scalar("eval/loss", eval_loss, step)
                    if wandb_run is not None:
                        wandb_run.log({"eval/loss": eval_loss}, step=step)
                if self.best is None or eval_loss < self.best["value"]:
                    self._save_best(acc, engine, model, tokenizer, step, eval_loss)

            if step % cfg.save_steps == 0 or step == cfg.max_steps:
                self._save_checkpoint(acc, engine, model, tokenizer, step, history)
        bar.close()
        if profiler is not None:
            profiler.stop()
        if acc.is_main_process:
            writer.close()
        self._export_model(acc, engine, model, tokenizer, self.output_dir)
        print0(f"final model written to {self.output_dir}")
        if wandb_run is not None:
            wandb_run.finish()
        acc.wait_for_everyone()
        acc.end_training()
        return 0

    # --- helpers ----------------------------------------------------------------------------------------------------
    def _write_run_files(self, acc, model, processor, statistics, ds_config) -> None:
        if acc.is_main_process:
            exp = self.output_dir / "experiment_cfg"
            exp.mkdir(parents=True, exist_ok=True)
            self.cfg.save_yaml(exp / "config.yaml")
            import yaml

            conf = {
                "model": {k: v for k, v in model.config.to_dict().items() if not k.startswith("_")},
                "data": {
                    "datasets": [
                        {
                            "path": str(s.dataset),
                            "embodiment_tag": s.spec.embodiment_tag,
                            "mix_ratio": s.spec.mix_ratio,
                            "modality_config": processor.modality_configs[s.spec.embodiment_tag].to_dict(),
                        }
                        for s in self.sources
                    ],
                    "shard_size": self.cfg.shard_size,
                    "episode_sampling_rate": self.cfg.episode_sampling_rate,
                    "seed": self.cfg.seed,
                },
                "training": self.cfg.to_dict(),
                "max_steps": self.cfg.max_steps,
                "save_steps": self.cfg.save_steps,
            }
            atomic_write_text(exp / "conf.yaml", yaml.safe_dump(conf, sort_keys=False))
            atomic_write_json(exp / "final_model_config.json", model.config.to_dict())
            atomic_write_json(exp / "dataset_statistics.json", statistics)
            atomic_write_json(exp / "deepspeed_config.json", ds_config)
            atomic_write_text(exp / "processor_provenance.txt", "".join(f"{line}\n" for line in self.processor_provenance))
            processor.save_pretrained(self.output_dir / "processor")
            atomic_write_json(self.output_dir / "wandb_config.json", {"project": WANDB_PROJECT, "run_id": self.cfg.run_name})
        acc.wait_for_everyone()

    def _export_model(self, acc, engine, model, tokenizer, directory: Path) -> None:
        """Call on ALL ranks: under ZeRO-3 the full weights must be gathered collectively before rank 0 writes."""
        state_dict = acc.get_state_dict(engine)
        if acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(directory, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(directory)
            share_like_umask(*Path(directory).glob("*.safetensors"))

    def _save_checkpoint(self, acc, engine, model, tokenizer, step: int, history) -> None:
        """All ranks write DeepSpeed states into a temp dir; rank 0 completes it and renames it into place."""
        final = self.output_dir / f"checkpoint-{step}"
        tmp = self.output_dir / f".checkpoint-{step}.partial"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "training_state").mkdir(parents=True)
        acc.wait_for_everyone()
        engine.save_checkpoint(str(tmp / "training_state"), tag="state")
        rng_file = tmp / "training_state" / f"rng_state_{acc.process_index}.safetensors"
        save_file(rng_state(), str(rng_file))
        share_like_umask(rng_file)
        self._export_model(acc, engine, model, tokenizer, tmp)
        acc.wait_for_everyone()
        if acc.is_main_process:
            for name in ("processor_config.json", "statistics.json", "embodiment_id.json"):
                shutil.copy2(self.output_dir / "processor" / name, tmp / name)
            shutil.copytree(self.output_dir / "experiment_cfg", tmp / "experiment_cfg")
            shutil.copy2(self.output_dir / "wandb_config.json", tmp / "wandb_config.json")
            # written last: its presence marks the checkpoint complete
            atomic_write_json(tmp / "trainer_state.json",
                              {"global_step": step, "log_history": history, "best_metric": self.best,
                               "inputs_fingerprint": self.inputs_fingerprint})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            kept = complete_checkpoints(self.output_dir)
            for _, old in kept[: max(0, len(kept) - self.cfg.save_total_limit)]:
                shutil.rmtree(old)
            print0(f"saved {final}")
        acc.wait_for_everyone()

    def _eval_setup(self, *, modality_cfgs, processor, collator, rank, world) -> None:
        """Held-out episodes: a fixed pass over their shards, with fixed noise, so eval losses are comparable.

        With several datasets the held-out samples are mixed with the training mix ratios."""
        import copy

        from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset
        from groot_ft.shards import ShardSet

        self.best: dict[str, Any] | None = None
        self.eval_stream = None
        held = [(s, ShardSet.open(s.eval_shards_dir)) for s in self.sources if s.eval_shards_dir is not None]
        if not held:
            return
        eval_processor = copy.copy(processor).eval()  # centre crop, no jitter; shares the statistics
        samples = sum(sh.manifest["samples"] for _, sh in held)
        batch = min(self.cfg.eval_batch_size, max(1, samples // world))
        self.eval_stream = ShardedMixtureDataset(
            [
                MixtureSource(sh, modality_cfgs[s.spec.embodiment_tag], _process_as(eval_processor, s.spec.embodiment_tag),
                              s.spec.mix_ratio)
                for s, sh in held
            ],
            collator, batch, rank=rank, world_size=world, seed=self.cfg.seed,
        )
        self.eval_batches = max(1, samples // (batch * world))

    @torch.no_grad()
    def _evaluate(self, acc, engine) -> float:
        """Mean flow-matching loss over one pass of the held-out samples, without touching the training RNG."""
        total = torch.zeros((), device=acc.device)
        with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed + 7919 * (acc.process_index + 1))
            engine.eval()
            it = iter(self.eval_stream)
            for _ in range(self.eval_batches):
                batch = {k: v.to(acc.device) if torch.is_tensor(v) else v for k, v in next(it).items()}
                total += engine(**batch).loss.detach().float()
            engine.train()
        return acc.reduce(total / self.eval_batches, "mean").item()

    def _save_best(self, acc, engine, model, tokenizer, step: int, value: float) -> None:
        """upstream's checkpoint-{step}-best-{metric}_{value}/: weights + processor + configs, no optimizer state."""
        name = f"checkpoint-{step}-best-eval_loss_{value:.4f}"
        tmp = self.output_dir / f".{name}.partial"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        self._export_model(acc, engine, model, tokenizer, tmp)
        if acc.is_main_process:
            for f in ("processor_config.json", "statistics.json", "embodiment_id.json"):
                shutil.copy2(self.output_dir / "processor" / f, tmp / f)
            shutil.copytree(self.output_dir / "experiment_cfg", tmp / "experiment_cfg")
            shutil.copy2(self.output_dir / "wandb_config.json", tmp / "wandb_config.json")
            os.replace(tmp, self.output_dir / name)
            if self.best is not None and self.best["checkpoint"] != name:
                shutil.rmtree(self.output_dir / self.best["checkpoint"], ignore_errors=True)
            print0(f"new best eval_loss {value:.4f}: saved {self.output_dir / name}")
        self.best = {"metric": "eval_loss", "value": value, "step": step, "checkpoint": name}
        acc.wait_for_everyone()

    def _tensorboard(self, acc):
        if not acc.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.output_dir / "runs"))

    def _profiler(self, acc):
        from torch.profiler import ProfilerActivity, profile, schedule

        out = self.output_dir / "profiling"
        out.mkdir(parents=True, exist_ok=True)
        rank = acc.process_index

        def on_ready(prof):
            prof.export_chrome_trace(str(out / f"trace_rank_{rank}_iter_{prof.step_num}.json"))

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        prof = profile(activities=activities, schedule=schedule(skip_first=10, wait=1, warmup=1, active=3, repeat=1),
                       on_trace_ready=on_ready, with_stack=True)
        prof.start()
        return prof

    def _wandb(self, acc):
        if not acc.is_main_process:
            return None
        import wandb  # optional dependency

        return wandb.init(project=WANDB_PROJECT, name=self.cfg.run_name, id=self.cfg.run_name, resume="allow",
                          dir=str(self.output_dir), config=self.cfg.to_dict())


if __name__ == "__main__":
    sys.exit(main())
