"""The trainer: ``setup`` builds the run, ``train_step`` is one optimizer step, ``train`` is the recipe.

    trainer = Trainer(cfg, sources)
    trainer.train()            # setup, then steps with logging, held-out eval, checkpoints, and the final export

``scripts/gpu_check.py`` drives ``setup`` and ``train_step`` directly to time the real step.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from groot_ft.config import ConfigError, DatasetSpec, FinetuneConfig
from groot_ft.io import atomic_write_text
from groot_ft.train.checkpoints import (
    complete_checkpoints,
    drop_stale_checkpoints,
    export_model,
    inputs_fingerprint,
    save_best,
    save_checkpoint,
    set_rng_state,
)
from groot_ft.train.metrics import MetricsSinks, print0, start_profiler
from groot_ft.train.optim import build_optimizer, resolve_deepspeed_config
from groot_ft.train.run_files import write_run_files


@dataclass(frozen=True)
class SourceDirs:
    """Where one dataset of the run lives and where its pipeline outputs are."""

    spec: DatasetSpec
    dataset: Path
    stats_dir: Path
    shards_dir: Path
    eval_shards_dir: Path | None = None
    modality_json: Path | None = None  # the dataset's modality mapping kept outside it (modality_json_path)


@dataclass(frozen=True)
class StepStats:
    """What one optimizer step took: summed micro-batch losses, and seconds waiting for data out of the total."""

    loss_sum: float
    micro_batches: int
    data_wait: float
    seconds: float


def _process_as(processor, tag: str):
    """The loader's per-sample call for one embodiment (a closure per dataset, not over a loop variable)."""
    return lambda step, rng: processor(step, tag, rng=rng)


def _parameter_counts(model) -> dict[str, int]:
    """total, trainable, and (with LoRA) adapter parameters of the model as built."""
    from groot_ft.model.lora import lora_parts_of, parameter_counts

    if lora_parts_of(model):

        return parameter_counts(model)
    return {"total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    def __init__(self, cfg: FinetuneConfig, sources: list[SourceDirs], config_path: Path | None = None):
        self.cfg = cfg
        self.sources = sources
        self.config_path = config_path  # the YAML the run was started with (never rewritten)
        self.output_dir = Path(cfg.output_dir)

    # --- setup --------------------------------------------------------------------------------------------------------
    def setup(self) -> int:
        """Everything before the first step: processes, model, data stream, optimizer, resume. Returns 0, or the exit
        code of a config that cannot run (the error already printed). Sets the attributes ``train_step`` uses."""
        cfg = self.cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world != cfg.num_gpus:
            print(f"error: num_gpus={cfg.num_gpus} but {self.world} training processes were launched; launch with "
                  f"--num_processes {cfg.num_gpus} (and --num_machines) or change num_gpus", file=sys.stderr)
            return 2
        try:
            self.per_device = cfg.per_device_batch_size(self.world)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        self.ds_config = resolve_deepspeed_config(cfg.deepspeed_config, cfg, self.per_device,
                                                  use_bf16=torch.cuda.is_available())
        self.acc = self._accelerator()
        # model init below reseeds itself; this seeds flow-matching noise and dropout, different on every rank
        torch.manual_seed(cfg.seed + self.rank)
        np.random.seed(cfg.seed + self.rank)

        self._build_model_and_processor()
        self._eval_setup()
        if self.acc.is_main_process:
            write_run_files(cfg, self.config_path, self.sources, self.output_dir, self.model, self.processor,
                            self.statistics, self.ds_config, self.processor_provenance)
        self.acc.wait_for_everyone()
        self.start_step = self._resume_point()
        # counted before DeepSpeed sees the model: ZeRO-3 partitions leave every rank's parameters with numel 0
        self.param_counts = _parameter_counts(self.model)
        optimizer, self.scheduler = build_optimizer(self.model, cfg, self.ds_config)
        # The scheduler stays out of acc.prepare: accelerate would step it once per process per step.
        self.engine, self.optimizer = self.acc.prepare(self.model, optimizer)
        # The iterator draws its workers' base seed from the global RNG, so it is made before the RNG state is
        # restored: a resumed run then continues the uninterrupted run's random stream exactly.
        self.batches = self._training_batches()
        self.history: list[dict[str, Any]] = self._resume() if self.start_step else []
        if not self.start_step and self.acc.is_main_process:
            (self.output_dir / "training_log.jsonl").unlink(missing_ok=True)
        return 0

    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

        cuda = torch.cuda.is_available()
        handlers = [] if cuda else [InitProcessGroupKwargs(backend="gloo")]  # accelerate's no-GPU DeepSpeed bug
        acc = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=self.ds_config),
                          mixed_precision="bf16" if cuda else "no", kwargs_handlers=handlers)
        if acc.num_processes != self.world or acc.process_index != self.rank:
            raise RuntimeError(
                f"accelerate sees {acc.num_processes} processes (index {acc.process_index}) but WORLD_SIZE="
                f"{self.world}, RANK={self.rank}: refusing to train every rank on all data"
            )
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return acc

    def _build_model_and_processor(self) -> None:
        """The base model and its tokenizer, the statistics, and the processor (the base checkpoint's settings where
        it has processor files), each source reported on rank 0."""
        from groot_ft.data.lerobot import LeRobotDataset
        from groot_ft.hub import resolve_base_model, resolve_tokenizer_dir
        from groot_ft.modality import load_modality_config
        from groot_ft.model import create_model, finetune_state_dropout, make_collator
        from groot_ft.processor_stats import statistics_from_stats_dir
        from groot_ft.run_processor import build_run_processor, resolve_modality_configs
        from groot_ft.shards import ShardSet

        cfg = self.cfg
        # Offline by design: the workflow's fetch step put hub snapshots into the cache before any compute job.
        base_dir = resolve_base_model(cfg.base_model_path, revision=cfg.base_model_revision)
        tokenizer_dir = resolve_tokenizer_dir(cfg.tokenizer_path)
        print0(f"base model: {base_dir or f'preset {cfg.base_model_path!r} (fresh weights)'}")
        # whose processor files (embodiment configs, image and normalisation settings) apply: upstream's semantics
        processor_base = base_dir if base_dir is not None and (base_dir / "processor_config.json").is_file() else None
        requested = {s.spec.embodiment_tag: load_modality_config(s.spec.modality_config_path)
                     if s.spec.modality_config_path else None for s in self.sources}
        self.modality_cfgs = resolve_modality_configs(processor_base, requested)  # None: the checkpoint's entry
        base = cfg.base_model_path if base_dir is None else base_dir
        state_dropout, state_dropout_source = finetune_state_dropout(cfg.state_dropout_prob, base)
        print0(f"state_dropout_prob: {state_dropout} ({state_dropout_source})")
        self.model, self.tokenizer = create_model(
            base,
            tokenizer=tokenizer_dir,
            tune_llm=cfg.tune_llm,
            tune_visual=cfg.tune_visual,
            tune_projector=cfg.tune_projector,
            tune_diffusion_model=cfg.tune_diffusion_model,
            state_dropout_prob=state_dropout,
        )
        print0(f"tokenizer: {self.tokenizer.source}")
        self._adapt_model()
        self.shards = [ShardSet.open(s.shards_dir) for s in self.sources]
        edges = {sh.manifest["image_edge"] for sh in self.shards}
        if len(edges) != 1:
            raise RuntimeError(f"the shard sets were built at different image sizes {sorted(edges)}; rebuild them "
                               f"with one base_model_path")
        self.statistics: dict[str, Any] = {}
        for s in self.sources:  # datasets of one embodiment share one (merged) statistics directory
            tag = s.spec.embodiment_tag
            if tag not in self.statistics:
                view = LeRobotDataset(s.dataset, s.modality_json)
                print0(f"{s.dataset}: {view.modality_source}")
                self.statistics[tag], _ = statistics_from_stats_dir(s.stats_dir, view.modality, self.modality_cfgs[tag])
        self.processor, self.processor_provenance = build_run_processor(
            processor_base,
            requested,
            self.statistics,
            color_jitter_params=cfg.color_jitter_params,
            random_rotation_angle=cfg.random_rotation_angle,
            override_pretraining_statistics=cfg.override_pretraining_statistics,
            model_config=self.model.config,
            shortest_image_edge=edges.pop(),
        )
        # N1.7's letterbox pads the stored frames to a square: they must have been stored by their longer side
        letter_box = bool(getattr(self.processor, "letter_box_transform", False))
        unmatched = [str(s.shards_dir) for s, sh in zip(self.sources, self.shards)
                     if bool(sh.manifest.get("letter_box", False)) != letter_box]
        if unmatched:
            raise RuntimeError(f"{', '.join(unmatched)}: shards built {'without' if letter_box else 'with'} "
                               f"letter_box, but the processor's letter_box_transform is {letter_box}; rebuild them "
                               "with this run's base_model_path")
        for line in self.processor_provenance:
            print0(f"processor: {line}")
        self.processor.train()
        self.collator = make_collator(self.tokenizer, self.model.config)  # N1.6's or N1.7's, by model_type

    def _adapt_model(self) -> None:
        """LoRA adapters and activation checkpointing, as the run config asks."""
        from groot_ft.model.lora import LoraSettings, add_lora

        cfg = self.cfg
        lora = LoraSettings.from_run_config(cfg)
        if lora is not None:
            # the run seed on every rank: identical adapters everywhere, without relying on DeepSpeed to broadcast them
            counts = add_lora(self.model, lora, seed=cfg.seed, base_model=cfg.base_model_path)
            print0(f"LoRA rank {lora.rank} (alpha {lora.alpha:g}, dropout {lora.dropout:g}) on "
                   f"{', '.join(lora.targets)}: {counts['adapted_modules']} Linear layers, {counts['adapters']:,} "
                   f"adapter parameters; the final model and checkpoints are saved merged, the adapter in adapter/")
        if cfg.activation_checkpointing:
            # non-reentrant (transformers' default; the model refuses reentrant): dropout RNG is replayed, and layers
            # whose input needs no gradient still get parameter gradients
            self.model.activation_checkpointing_enable()
            print0("activation checkpointing: the trained LLM / vision layers and the trained DiT blocks recompute "
                   "their activations in the backward pass")

    def _resume_point(self) -> int:
        """The step of the newest checkpoint trained on these exact inputs (stale ones are removed), or 0."""
        shard_dirs = [d for s in self.sources for d in (s.shards_dir, s.eval_shards_dir) if d is not None]
        self.inputs_fingerprint = inputs_fingerprint(self.cfg, self.ds_config, self.statistics, shard_dirs)
        if self.acc.is_main_process:
            for partial in self.output_dir.glob(".checkpoint-*.partial"):
                shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while saving
            drop_stale_checkpoints(self.output_dir, self.inputs_fingerprint)
        self.acc.wait_for_everyone()
        checkpoints = complete_checkpoints(self.output_dir)
        start = checkpoints[-1][0] if checkpoints else 0
        if start >= self.cfg.max_steps:
            print0(f"checkpoint-{start} already reaches max_steps={self.cfg.max_steps}; writing the final model only")
        return start

    def _training_batches(self):
        from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset

        cfg = self.cfg
        stream = ShardedMixtureDataset(
            [
                MixtureSource(sh, self.modality_cfgs[s.spec.embodiment_tag],
                              _process_as(self.processor, s.spec.embodiment_tag), s.spec.mix_ratio)
                for s, sh in zip(self.sources, self.shards)
            ],
            self.collator,
            self.per_device,
            rank=self.rank,
            world_size=self.world,
            seed=cfg.seed,
            start_batch=self.start_step * cfg.gradient_accumulation_steps,
        )
        loader = torch.utils.data.DataLoader(
            stream,
            batch_size=None,
            num_workers=cfg.dataloader_num_workers,
            persistent_workers=cfg.dataloader_num_workers > 0,
            prefetch_factor=4 if cfg.dataloader_num_workers > 0 else None,
        )
        return iter(loader)

    def _resume(self) -> list[dict[str, Any]]:
        """Load the newest checkpoint's states; returns its log history (the interrupted run's later lines go)."""
        ckpt = complete_checkpoints(self.output_dir)[-1][1]
        print0(f"resuming from {ckpt}")
        self.engine.load_checkpoint(str(ckpt / "training_state"), tag="state", load_lr_scheduler_states=False)
        with warnings.catch_warnings():
            # fast-forwarding the schedule, a pure function of the step: no optimizer step belongs to these calls
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            for _ in range(self.start_step):
                self.scheduler.step()
        set_rng_state(load_file(str(ckpt / "training_state" / f"rng_state_{self.rank}.safetensors")))
        trainer_state = json.loads((ckpt / "trainer_state.json").read_text())
        history = trainer_state["log_history"]
        self.best = trainer_state.get("best_metric")
        if self.acc.is_main_process:
            keep = self.best["checkpoint"] if self.best else None  # a later best belongs to the lost timeline
            for stale in self.output_dir.glob("checkpoint-*-best-*"):
                if stale.name != keep:
                    shutil.rmtree(stale, ignore_errors=True)
            atomic_write_text(self.output_dir / "training_log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        return history

    # --- one step -----------------------------------------------------------------------------------------------------
    def train_step(self) -> StepStats:
        """One optimizer step: ``gradient_accumulation_steps`` micro-batches forward and backward, then the update."""
        t0 = time.perf_counter()
        wait, loss_sum = 0.0, 0.0
        for _ in range(self.cfg.gradient_accumulation_steps):
            tw = time.perf_counter()
            batch = next(self.batches)
            wait += time.perf_counter() - tw
            loss = self.engine(**_to_device(batch, self.acc.device)).loss
            self.acc.backward(loss)
            loss_sum += loss.detach().float().item()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return StepStats(loss_sum=loss_sum, micro_batches=self.cfg.gradient_accumulation_steps, data_wait=wait,
                         seconds=time.perf_counter() - t0)

    # --- the recipe ---------------------------------------------------------------------------------------------------
    def train(self) -> int:
        code = self.setup()
        if code:
            return code
        cfg, acc = self.cfg, self.acc
        self._announce()
        sinks = MetricsSinks(self.output_dir, main_process=acc.is_main_process, run_name=cfg.run_name,
                             config=cfg.to_dict(), use_wandb=cfg.use_wandb)
        profiler = start_profiler(self.output_dir, acc.process_index) if cfg.enable_profiling else None
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=self.start_step, desc="finetune", unit="step",
                   disable=not acc.is_main_process or not sys.stderr.isatty())
        window = Window()
        self.engine.train()
        for step in range(self.start_step + 1, cfg.max_steps + 1):
            window.add(self.train_step(), cfg.global_batch_size)
            if profiler is not None:
                profiler.step()
            bar.update(1)
            last = step == cfg.max_steps
            if step % cfg.logging_steps == 0 or last:
                record = self._train_record(step, window)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                self._log(sinks, record, "train")
                window = Window()
            if self.eval_stream is not None and (step % cfg.eval_steps == 0 or last):
                eval_loss = self._evaluate()
                self._log(sinks, {"step": step, "eval_loss": eval_loss}, "eval")
                if self.best is None or eval_loss < self.best["value"]:
                    self._save_best(step, eval_loss)
            if step % cfg.save_steps == 0 or last:
                trainer_state = {"global_step": step, "log_history": self.history, "best_metric": self.best,
                                 "inputs_fingerprint": self.inputs_fingerprint}
                save_checkpoint(acc, self.engine, self.model, self.tokenizer, self.output_dir, step, trainer_state,
                                keep=cfg.save_total_limit)
        bar.close()
        if profiler is not None:
            profiler.stop()
        sinks.close()
        export_model(acc, self.engine, self.model, self.tokenizer, self.output_dir)
        print0(f"final model written to {self.output_dir}")
        acc.wait_for_everyone()
        acc.end_training()
        return 0

    # --- helpers ------------------------------------------------------------------------------------------------------
    def _announce(self) -> None:
        cfg, model, shards, counts = self.cfg, self.model, self.shards, self.param_counts
        adapters = f", of which {counts['adapters']:,} in LoRA adapters" if "adapters" in counts else ""
        print0(
            f"training {type(model).__name__}: {counts['total']:,} parameters ({counts['trainable']:,} trainable"
            f"{adapters}); {self.world} "
            f"process(es) x batch {self.per_device} x accumulation {cfg.gradient_accumulation_steps} = global batch "
            f"{cfg.global_batch_size}; {sum(sh.manifest['samples'] for sh in shards)} samples in "
            f"{sum(len(sh.shard_paths) for sh in shards)} shard(s) of {len(shards)} dataset(s); "
            f"steps {self.start_step} -> {cfg.max_steps}"
        )

    def _train_record(self, step: int, window: Window) -> dict[str, Any]:
        """The logging window's numbers, the loss averaged over all ranks."""
        device = self.acc.device
        loss = self.acc.reduce(torch.tensor(window.loss / window.micro_batches, device=device), "mean").item()
        grad_norm = self.engine.get_global_grad_norm()
        record = {
            "step": step,
            "loss": loss,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "learning_rate": self.scheduler.get_last_lr()[0],
            "samples_per_second": window.samples / max(window.seconds, 1e-9),
            "data_wait_fraction": window.wait / max(window.seconds, 1e-9),
        }
        if device.type == "cuda":  # this process's high-water mark since the run started
            record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        return record

    def _log(self, sinks: MetricsSinks, record: dict[str, Any], section: str) -> None:
        self.history.append(record)  # every rank keeps the history: it goes into each checkpoint's trainer_state
        sinks.log(record, section)

    def _eval_setup(self) -> None:
        """Held-out episodes: a fixed pass over their shards, with fixed noise, so eval losses are comparable.

        With several datasets the held-out samples are mixed with the training mix ratios."""
        from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset
        from groot_ft.shards import ShardSet

        self.best: dict[str, Any] | None = None
        self.eval_stream = None
        held = [(s, ShardSet.open(s.eval_shards_dir)) for s in self.sources if s.eval_shards_dir is not None]
        if not held:
            return
        eval_processor = copy.copy(self.processor).eval()  # centre crop, no jitter; shares the statistics
        samples = sum(sh.manifest["samples"] for _, sh in held)
        batch = min(self.cfg.eval_batch_size, max(1, samples // self.world))
        self.eval_stream = ShardedMixtureDataset(
            [
                MixtureSource(sh, self.modality_cfgs[s.spec.embodiment_tag],
                              _process_as(eval_processor, s.spec.embodiment_tag), s.spec.mix_ratio)
                for s, sh in held
            ],
            self.collator, batch, rank=self.rank, world_size=self.world, seed=self.cfg.seed,
        )
        self.eval_batches = max(1, samples // (batch * self.world))

    @torch.no_grad()
    def _evaluate(self) -> float:
        """Mean flow-matching loss over one pass of the held-out samples, without touching the training RNG."""
        acc, engine = self.acc, self.engine
        total = torch.zeros((), device=acc.device)
        with torch.random.fork_rng(devices=[acc.device] if acc.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.seed + 7919 * (acc.process_index + 1))
            engine.eval()
            it = iter(self.eval_stream)
            for _ in range(self.eval_batches):
                total += engine(**_to_device(next(it), acc.device)).loss.detach().float()
            engine.train()
        return acc.reduce(total / self.eval_batches, "mean").item()

    def _save_best(self, step: int, value: float) -> None:
        name = f"checkpoint-{step}-best-eval_loss_{value:.4f}"
        previous = self.best["checkpoint"] if self.best is not None else None
        save_best(self.acc, self.engine, self.model, self.tokenizer, self.output_dir, name, previous)
        print0(f"new best eval_loss {value:.4f}: saved {self.output_dir / name}")
        self.best = {"metric": "eval_loss", "value": value, "step": step, "checkpoint": name}


class Window:
    """Sums over the steps since the last log line."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.micro_batches = 0
        self.wait = 0.0
        self.seconds = 0.0
        self.samples = 0

    def add(self, stats: StepStats, samples: int) -> None:
        self.loss += stats.loss_sum
        self.micro_batches += stats.micro_batches
        self.wait += stats.data_wait
        self.seconds += stats.seconds
        self.samples += samples
