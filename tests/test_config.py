import pytest
import yaml

from groot_ft.config import ConfigError, FinetuneConfig, schema_defaults
from tests.conftest import PROJECT_ROOT


def test_shipped_config_is_valid_and_documented():
    cfg = FinetuneConfig.from_yaml(PROJECT_ROOT / "config" / "config.yaml")
    assert cfg.dataset == "demo" and cfg.base_model_path == "tiny"
    readme = (PROJECT_ROOT / "config" / "README.md").read_text()
    for key in schema_defaults():
        assert f"`{key}`" in readme, f"config/README.md does not document {key}"


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
                                                 {"path": str(tmp_path / "b"), "eval_episodes": 0}], "seed": 3})
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
