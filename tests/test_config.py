import pytest
import yaml

from groot_ft.config import ConfigError, FinetuneConfig, schema_defaults
from tests.conftest import PROJECT_ROOT


def test_shipped_config_is_upstreams_defaults_valid_and_documented():
    cfg = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml")
    # a run on a user's dataset gets exactly the schema's (upstream's) defaults, nothing of the demo
    assert cfg == FinetuneConfig.from_dict({})
    assert cfg.base_model_path == "nvidia/GR00T-N1.6-3B" and cfg.max_steps == 10000 and cfg.save_steps == 1000
    assert not cfg.tune_visual and not cfg.tune_llm and cfg.dataloader_num_workers == 2 and cfg.num_gpus == 1
    readme = (PROJECT_ROOT / "config" / "README.md").read_text()
    for key in schema_defaults():
        assert f"`{key}`" in readme, f"config/README.md does not document {key}"


def test_demo_settings_apply_to_the_demo_only():
    demo = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml", PROJECT_ROOT / "config" / "demo.yaml")
    assert demo.base_model_path == "tiny" and demo.max_steps == 300 and demo.output_dir == "results/demo"
    assert demo.finetune_resources == {"cpus_per_gpu": 1, "mem_mb": 8000, "runtime": 60}
    mine = FinetuneConfig.from_dict({"dataset": "/data/my robot/", "modality_config_path": "m.yaml"})
    assert mine.output_dir == "results/my robot" and mine.base_model_path == "nvidia/GR00T-N1.6-3B"
    with pytest.raises(ConfigError, match=r"modality_config_path: not set for dataset /data/x.*modality init"):
        FinetuneConfig.from_dict({"dataset": "/data/x"}).dataset_specs()


def test_config_files_merge_like_snakemake(tmp_path):
    (tmp_path / "a.yaml").write_text("max_steps: 5\nfinetune_resources: {cpus_per_gpu: 2, mem_mb: 100, runtime: 9}\n")
    (tmp_path / "b.yaml").write_text("finetune_resources: {mem_mb: 200}\n")
    cfg = FinetuneConfig.from_yaml(tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert cfg.max_steps == 5 and cfg.finetune_resources == {"cpus_per_gpu": 2, "mem_mb": 200, "runtime": 9}


def test_defaults_follow_upstream_finetune_config():
    d = schema_defaults()
    assert d["learning_rate"] == 1e-4 and d["weight_decay"] == 1e-5 and d["warmup_ratio"] == 0.05
    assert d["global_batch_size"] == 64 and d["save_total_limit"] == 5 and d["tune_projector"] is True
    assert d["tune_llm"] is False and d["shard_size"] == 1024 and d["episode_sampling_rate"] == 0.1


def test_every_error_is_listed_with_its_key():
    with pytest.raises(ConfigError) as exc:
        FinetuneConfig.from_dict({"max_steps": 0, "learning_rate": "fast", "bogus": 1})
    msg = str(exc.value)
    assert "max_steps" in msg and "learning_rate" in msg and "bogus" in msg


def test_global_batch_is_the_true_effective_batch():
    cfg = FinetuneConfig.from_dict({"global_batch_size": 64, "gradient_accumulation_steps": 2})
    assert cfg.per_device_batch_size(4) == 8
    with pytest.raises(ConfigError, match="not divisible"):
        cfg.per_device_batch_size(3)


def test_saved_config_is_plain_yaml_and_round_trips(tmp_path):
    cfg = FinetuneConfig.from_dict({"color_jitter_params": {"brightness": 0.3, "hue": 0.08}})
    path = tmp_path / "config.yaml"
    cfg.save_yaml(path)
    assert "!!python" not in path.read_text()
    assert FinetuneConfig.from_dict(yaml.safe_load(path.read_text())) == cfg
    mtime = path.stat().st_mtime_ns
    cfg.save_yaml(path)  # identical content is not rewritten (Snakemake would see a changed input)
    assert path.stat().st_mtime_ns == mtime


def test_run_description_splits_once_and_round_trips(tmp_path):
    from groot_ft.config import RunDescription, split_episodes

    cfg = FinetuneConfig.from_dict({"datasets": [{"path": str(tmp_path / "a"), "eval_episodes": 2},
                                                 {"path": str(tmp_path / "b"), "eval_episodes": 0}], "seed": 3,
                                   "modality_config_path": "config/modality/demo.yaml"})
    specs = cfg.dataset_specs()
    dirs = {s.name: {"stats_dir": f"stats/{s.name}", "shards_dir": f"shards/{s.name}/train",
                     "eval_shards_dir": None} for s in specs}
    run = RunDescription.resolve(cfg, specs, {"a": list(range(6)), "b": [0, 1]}, dirs, str(tmp_path))
    assert (run.datasets[0].train_episodes, run.datasets[0].held_out_episodes) == split_episodes(list(range(6)), 2, 3)
    assert run.datasets[1].held_out_episodes == [] and run.datasets[1].train_episodes == [0, 1]
    run.save(tmp_path / "run.json")
    loaded = RunDescription.load(tmp_path / "run.json")
    assert loaded == run
    assert loaded.dataset(tmp_path / "b" / ".." / "b").name == "b"
    with pytest.raises(ConfigError):
        loaded.dataset(tmp_path / "c")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError):
        RunDescription.load(tmp_path / "bad.json")


def test_command_line_strings_are_read_as_their_keys_types():
    from groot_ft.config import retype_command_line

    # what Snakemake's --config leaves: only True/False and numbers become values
    given = {"tune_visual": "true", "modality_json_path": "null", "eval_episodes": ["3", "7"], "lora_targets": ["llm"],
             "experiment_name": "null", "dataset": "/data/1.5", "max_steps": "many"}
    got = retype_command_line(given)
    assert got["tune_visual"] is True and got["modality_json_path"] is None and got["eval_episodes"] == [3, 7]
    # strings stay strings where a string is allowed; what still does not fit is the schema's to report
    assert got["lora_targets"] == ["llm"] and got["experiment_name"] is None and got["dataset"] == "/data/1.5"
    with pytest.raises(ConfigError, match="max_steps: 'many' is not of type 'integer'"):
        FinetuneConfig.from_dict(got)
