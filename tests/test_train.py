"""Distributed fine-tuning with 2 DeepSpeed processes on CPU: exact resume after SIGKILL, ZeRO-2/3 and CPU offload."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groot_ft.config import FinetuneConfig
from groot_ft.modality import load_modality_config
from groot_ft.shards import build_shards
from groot_ft.stats import compute_stats, write_stats
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

MAX_STEPS = 12
SAVE_STEPS = 4


@pytest.fixture(scope="module")
def prepared(demo_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    cfg = load_modality_config(PROJECT_ROOT / "config" / "modality" / "demo.yaml")
    stats, relative = compute_stats(demo_dataset, cfg)
    write_stats(root / "stats", stats, relative)
    build_shards(demo_dataset, cfg, root / "shards", image_edge=48, shard_size=256, progress=False)
    return demo_dataset, root


def _launch(dataset: Path, root: Path, out: Path, port: int, deepspeed: str = "zero2", **overrides) -> subprocess.Popen:
    settings = {"output_dir": str(out), "max_steps": MAX_STEPS, "save_steps": SAVE_STEPS, "logging_steps": 2,
                "save_total_limit": 3, "main_process_port": port, "deepspeed_config": f"config/deepspeed/{deepspeed}.json"}
    cfg = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml", PROJECT_ROOT / "config" / "demo.yaml").replace(**{**settings, **overrides})
    cfg.save_yaml(out / "experiment_cfg" / "config.yaml")
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "accelerate"), "launch", "--use_deepspeed", "--deepspeed_config_file",
           str(PROJECT_ROOT / "config" / "deepspeed" / f"{deepspeed}.json"), "--num_processes", "2", "--num_machines", "1",
           "--machine_rank", "0", "--main_process_port", str(port), "-m", "groot_ft.train",
           "--config", str(out / "experiment_cfg" / "config.yaml"), "--dataset", str(dataset),
           "--stats", str(root / "stats"), "--shards", str(root / "shards")]
    log = open(out / "train.log", "a")  # noqa: SIM115 - closed with the process
    # offline: no network here, and wandb must still write its run files
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _run(dataset, root, out, port, deepspeed: str = "zero2", **overrides) -> None:
    (out / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    proc = _launch(dataset, root, out, port, deepspeed, **overrides)
    assert proc.wait(timeout=600) == 0, (out / "train.log").read_text()[-3000:]


def _kill_when(dataset, root, out, port, condition, **overrides) -> None:
    """Start training and SIGKILL the launcher and every worker as soon as `condition()` holds, as a crash would.

    torch's elastic agent starts each worker in a session of its own, so killing the launcher's process group leaves
    the workers running to the end: they are found as the launcher's descendants and killed with it."""
    import psutil

    proc = _launch(dataset, root, out, port, **overrides)
    deadline = time.monotonic() + 600
    while not condition():
        assert proc.poll() is None, "training finished before the kill point:\n" + (out / "train.log").read_text()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers outlived the kill: {alive}"


def _logged_steps(out: Path) -> list[int]:
    path = out / "training_log.jsonl"
    return [json.loads(x)["step"] for x in path.read_text().splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def reference_run(prepared, tmp_path_factory) -> Path:
    """An uninterrupted ZeRO-2 run: the weights every other variant is compared with."""
    dataset, root = prepared
    reference = tmp_path_factory.mktemp("reference")
    _run(dataset, root, reference, 29541)
    return reference


def test_killed_runs_resume_to_identical_weights(prepared, reference_run, tmp_path):
    dataset, root = prepared
    reference = reference_run
    expected = (reference / "model.safetensors").read_bytes()

    out = tmp_path / "killed"
    (out / "experiment_cfg").mkdir(parents=True)
    kill_points = [
        # 1. mid-training, between two checkpoints
        lambda: 6 in _logged_steps(out),
        # 2. during a save: the temporary checkpoint directory exists but has not been renamed yet
        lambda: (out / f".checkpoint-{2 * SAVE_STEPS}.partial" / "training_state").is_dir(),
        # 3. right after a checkpoint became complete
        lambda: (out / f"checkpoint-{3 * SAVE_STEPS}" / "trainer_state.json").is_file(),
    ]
    for i, point in enumerate(kill_points):
        _kill_when(dataset, root, out, 29542 + i, point)
        for ckpt in out.glob("checkpoint-*"):  # whatever survived a kill is complete
            assert (ckpt / "trainer_state.json").is_file() and (ckpt / "model.safetensors").is_file()
    _run(dataset, root, out, 29546)
    assert "resuming from" in (out / "train.log").read_text()
    assert (out / "model.safetensors").read_bytes() == expected, "resumed run differs from the uninterrupted run"
    mode = 0o666 & ~_current_umask()  # weights are as readable as any other output (safetensors writes 0600)
    for weights in [out / "model.safetensors", *out.glob("checkpoint-*/**/*.safetensors")]:
        assert weights.stat().st_mode & 0o777 == mode, weights
    assert not list(out.glob(".checkpoint-*"))
    assert _logged_steps(out) == _logged_steps(reference) == list(range(2, MAX_STEPS + 1, 2))


@pytest.mark.parametrize("deepspeed", ["zero3", "zero2_offload"])
def test_other_deepspeed_configs_train_the_same_model(prepared, reference_run, tmp_path, deepspeed):
    import torch
    from safetensors.torch import load_file

    import groot_ft  # noqa: F401
    from transformers import AutoModel

    dataset, root = prepared
    out = tmp_path / deepspeed
    _run(dataset, root, out, 29547 if deepspeed == "zero3" else 29548, deepspeed)
    ours, ref = load_file(str(out / "model.safetensors")), load_file(str(reference_run / "model.safetensors"))
    assert ours.keys() == ref.keys()
    for name, tensor in ref.items():
        assert ours[name].shape == tensor.shape, f"{name}: partitioned weights were saved"
        # ZeRO-3 is the same AdamW on partitioned parameters; without CUDA, CPU offload steps torch's AdamW on the
        # CPU master copy (DeepSpeed's CPU Adam kernel is used on GPU machines)
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-4)
    resolved = json.loads((out / "experiment_cfg" / "deepspeed_config.json").read_text())
    assert resolved["zero_optimization"]["stage"] == (3 if deepspeed == "zero3" else 2)
    if deepspeed == "zero2_offload":
        assert resolved["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert resolved["zero_force_ds_cpu_optimizer"] is False
    assert type(AutoModel.from_pretrained(out)).__name__ == "Gr00tN1d6"


def test_logging_wandb_offline_tensorboard_and_profiling(prepared, tmp_path):
    dataset, root = prepared
    out = tmp_path / "logged"
    _run(dataset, root, out, 29549, use_wandb=True, enable_profiling=True, max_steps=16, save_steps=16)
    records = [json.loads(x) for x in (out / "training_log.jsonl").read_text().splitlines()]
    assert set(records[0]) >= {"loss", "grad_norm", "learning_rate", "samples_per_second", "data_wait_fraction"}
    assert 0 <= records[-1]["data_wait_fraction"] <= 1 and records[-1]["samples_per_second"] > 0
    assert list((out / "runs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "wandb offline run files missing"
    assert json.loads((out / "wandb_config.json").read_text())["project"] == "finetune-gr00t-n1d6"
    traces = sorted(p.name for p in (out / "profiling").glob("trace_rank_*_iter_*.json"))
    assert {t.split("_")[2] for t in traces} == {"0", "1"}, traces  # one trace per rank


def test_process_count_must_match_num_gpus(prepared, tmp_path):
    dataset, root = prepared
    out = tmp_path / "mismatch"
    (out / "experiment_cfg").mkdir(parents=True)
    proc = _launch(dataset, root, out, 29550, num_gpus=4, global_batch_size=16)  # 2 processes are launched
    assert proc.wait(timeout=300) != 0
    log = (out / "train.log").read_text()
    assert "num_gpus=4 but 2 training processes were launched" in log
    assert not (out / "model.safetensors").exists()


def _current_umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# LoRA on every part with dropout, and activation checkpointing: the run the LoRA tests below compare against.
LORA = {"lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.1, "lora_targets": ["llm", "visual", "dit"],
        "activation_checkpointing": True}


@pytest.fixture(scope="module")
def lora_reference(prepared, tmp_path_factory) -> Path:
    dataset, root = prepared
    out = tmp_path_factory.mktemp("lora_reference")
    _run(dataset, root, out, 29551, **LORA)
    return out


def test_lora_run_trains_adapters_and_exports_merged_weights(lora_reference):
    import torch
    from safetensors.torch import load_file

    import groot_ft.model as gm
    from groot_ft.model.lora import LoraSettings, add_lora

    out = lora_reference
    log = (out / "train.log").read_text()
    # the trainable count the trainer logs is the configured adapters' plus the projectors' (tiny, demo flags)
    cfg = FinetuneConfig.from_yaml(out / "experiment_cfg" / "config.yaml")
    model, _ = gm.create_model("tiny", tune_llm=cfg.tune_llm, tune_visual=cfg.tune_visual,
                               tune_projector=cfg.tune_projector, tune_diffusion_model=cfg.tune_diffusion_model)
    plain_keys = set(model.state_dict())
    counts = add_lora(model, LoraSettings(4, 8, 0.1, ("llm", "visual", "dit")))
    assert f"({counts['trainable']:,} trainable, of which {counts['adapters']:,} in LoRA adapters)" in log
    assert "activation checkpointing:" in log
    # (12 steps are too few for the loss to fall clearly: tests/test_workflow_lora.py and the mid test below check it)

    for directory in [out, *(p for p in out.glob("checkpoint-*") if p.is_dir())]:
        weights = load_file(str(directory / "model.safetensors"))
        assert set(weights) == plain_keys, directory  # merged: upstream's names, no base_layer / lora_ tensors
        adapter = directory / "adapter"
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["r"] == 4 and config["lora_alpha"] == 8 and config["peft_type"] == "LORA"
        assert len(config["target_modules"]) == counts["adapted_modules"]
        # LoRA weights plus the projectors as peft's modules_to_save: everything that trained
        assert "action_head.action_encoder" in config["modules_to_save"]
        tensors = load_file(str(adapter / "adapter_model.safetensors"))
        assert sum(t.numel() for t in tensors.values()) == counts["trainable"]
    # the adapters trained: the merged LLM weights moved away from the frozen base weights the run started from
    base = dict(gm.create_model("tiny")[0].named_parameters())
    key = "backbone.model.language_model.model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(load_file(str(out / "model.safetensors"))[key], base[key].detach())


def test_lora_run_resumes_to_identical_weights(prepared, lora_reference, tmp_path):
    dataset, root = prepared
    out = tmp_path / "lora_killed"
    (out / "experiment_cfg").mkdir(parents=True)
    # killed while saving checkpoint-8 (the kill points of the run without LoRA cover the rest): resumes from
    # checkpoint-4 with the adapters, their optimizer states and the dropout RNG
    _kill_when(dataset, root, out, 29552, lambda: (out / f".checkpoint-{2 * SAVE_STEPS}.partial").is_dir(), **LORA)
    assert not (out / "model.safetensors").exists()
    assert (out / f"checkpoint-{SAVE_STEPS}" / "adapter" / "adapter_model.safetensors").is_file()
    # activation checkpointing does not change a gradient bit, so it may be switched off (or on) to resume
    _run(dataset, root, out, 29554, **{**LORA, "activation_checkpointing": False})
    assert "resuming from" in (out / "train.log").read_text()
    assert (out / "model.safetensors").read_bytes() == (lora_reference / "model.safetensors").read_bytes()
    assert ((out / "adapter" / "adapter_model.safetensors").read_bytes()
            == (lora_reference / "adapter" / "adapter_model.safetensors").read_bytes())


def test_lora_under_zero3_trains_the_same_model(prepared, lora_reference, tmp_path):
    import torch
    from safetensors.torch import load_file

    dataset, root = prepared
    out = tmp_path / "lora_zero3"
    _run(dataset, root, out, 29555, "zero3", **LORA)
    # counted before ZeRO-3 partitions the parameters (afterwards every rank holds numel 0)
    announced = [next(line for line in (d / "train.log").read_text().splitlines() if line.startswith("training "))
                 for d in (out, lora_reference)]
    assert announced[0] == announced[1] and " 0 parameters" not in announced[0]
    for rel in ("model.safetensors", "adapter/adapter_model.safetensors"):
        ours, ref = load_file(str(out / rel)), load_file(str(lora_reference / rel))
        assert ours.keys() == ref.keys()
        for name, tensor in ref.items():
            assert ours[name].shape == tensor.shape, f"{rel} {name}: partitioned weights were saved"
            torch.testing.assert_close(ours[name], tensor, rtol=0, atol=1e-4)


def test_lora_trains_a_mid_sized_model(prepared, tmp_path):
    """The mid preset's widths with fewer layers (tests/model/test_model_lora.py: MID_FEW_LAYERS), 112 px images
    instead of 224 (a quarter of the vision tokens) and fewer embodiment slots, as a base model directory; LoRA on
    every part through the trainer: the loss falls, the adapters moved the merged weights, and the export has
    upstream's names."""
    import torch
    from safetensors.torch import load_file

    import groot_ft.model as gm
    from tests.model.test_model_lora import MID_FEW_LAYERS

    dataset, root = prepared
    base = tmp_path / "mid_base"
    # 11 embodiment slots instead of 32 (new_embodiment is id 10): the per-embodiment projectors shrink from 80 M to
    # 28 M parameters, which DeepSpeed on CPU otherwise spends most of each step on; the widths stay mid's
    model, tokenizer = gm.create_model("mid", **MID_FEW_LAYERS, image_size=112, max_num_embodiments=11)
    gm.save_model(model, tokenizer, base)
    base_weights = {k: v.clone() for k, v in model.state_dict().items()}
    del model
    out = tmp_path / "lora_mid"
    # the projectors train too (tune_projector), as in a real run; most of the early loss drop is theirs, the
    # adapters' part is checked on the weights below
    _run(dataset, root, out, 29556, base_model_path=str(base), max_steps=12, save_steps=12, logging_steps=4,
         global_batch_size=4, learning_rate=1e-3, **LORA)
    losses = [json.loads(x)["loss"] for x in (out / "training_log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.85 * losses[0], losses
    merged = load_file(str(out / "model.safetensors"))
    assert merged.keys() == base_weights.keys()
    for part in ("language_model.model.layers.0.self_attn.q_proj",
                 "vision_model.vision_model.encoder.layers.0.mlp.fc1"):
        key = f"backbone.model.{part}.weight"
        assert not torch.equal(merged[key], base_weights[key]), key  # trained through its adapter
    key = "backbone.model.language_model.model.layers.0.input_layernorm.weight"
    assert torch.equal(merged[key], base_weights[key])  # a targeted part's own weights stay frozen
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_optimizer_is_fused_adamw_without_decay_on_biases_and_norms():
    import torch

    from groot_ft.train.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    model[2].weight.requires_grad_(False)
    cfg = FinetuneConfig.from_dict({"weight_decay": 0.05, "max_steps": 10})
    optimizer, _ = build_optimizer(model, cfg, {})
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert all(group["fused"] for group in optimizer.param_groups)
    assert [p.shape for p in decay["params"]] == [(8, 4)] and decay["weight_decay"] == 0.05
    assert [p.shape for p in no_decay["params"]] == [(8,), (8,), (8,), (2,)] and no_decay["weight_decay"] == 0.0


def test_torch_without_cpu_fused_adamw_gets_the_multi_tensor_one_and_says_so(monkeypatch, capsys):
    import torch

    from groot_ft.train.optim import build_optimizer

    monkeypatch.setattr(torch, "__version__", "2.3.1+cu121")  # common GPU images predate torch 2.4's CPU kernel
    optimizer, _ = build_optimizer(torch.nn.Linear(4, 2), FinetuneConfig.from_dict({}), {})
    assert not any(group["fused"] for group in optimizer.param_groups)
    assert "has no fused AdamW for parameters on the CPU" in capsys.readouterr().out
