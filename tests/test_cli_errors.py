"""Every ``groot-ft`` subcommand and every ``python -m groot_ft...`` entry point, run as a user runs it (a subprocess),
turns bad input into one ``error:`` paragraph that names the offending file or key, and a non-zero exit: never a
traceback. The commands are read from the real parser and the entry points from the source tree, so a new one
without a case here fails ``test_every_command_has_a_bad_input_case``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import groot_ft
from groot_ft.cli import command_names
from groot_ft.errors import EXIT_FINDINGS, EXIT_USER_ERROR, exits_on_user_error
from tests.conftest import DEMO_MODALITY, PROJECT_ROOT

SRC = Path(groot_ft.__file__).resolve().parents[1]
PACKAGE = SRC / "groot_ft"


@dataclass(frozen=True)
class Inputs:
    """Cheap bad inputs, made once: each is broken in one way that a user's file can be."""

    tmp: Path
    demo: Path  # a good dataset (read only)
    missing: Path  # a path that does not exist
    bad_yaml: Path  # a modality config that is not YAML
    corrupt: Path  # a dataset whose first episode's front video is truncated (not a container any more)
    corrupt_video: Path
    bad_info: Path  # a dataset whose meta/info.json is not JSON
    bad_parquet: Path  # a dataset whose first episode's parquet is truncated
    bad_rep_yaml: Path  # a modality config with an unknown action representation
    bad_config: Path  # a run config that is not YAML
    bad_key_config: Path  # a run config with an unknown key and a wrongly typed one
    bad_run: Path  # a run description that is not JSON
    bad_deepspeed_config: Path  # a valid run config whose deepspeed_config file is not JSON
    bad_model: Path  # a model directory whose config.json is not JSON


@dataclass(frozen=True)
class Case:
    argv: list[str]  # after the program (`groot-ft`, `python -m MODULE`)
    names: list[str]  # what the message must name (the file, key or flag)
    code: int = EXIT_USER_ERROR


@pytest.fixture(scope="module")
def inputs(demo_dataset, tmp_path_factory) -> Inputs:
    tmp = tmp_path_factory.mktemp("bad")
    bad_yaml = tmp / "bad modality.yaml"  # a space in the name: the message must still name it whole
    bad_yaml.write_text("video:\n  front: [\n  state:\n")
    corrupt = Path(shutil.copytree(demo_dataset, tmp / "corrupt"))
    corrupt_video = sorted(corrupt.glob("videos/**/episode_000000.mp4"))[0]
    corrupt_video.write_bytes(corrupt_video.read_bytes()[:1500])
    bad_parquet = Path(shutil.copytree(demo_dataset, tmp / "bad_parquet", ignore=shutil.ignore_patterns("*.mp4")))
    parquet = sorted(bad_parquet.glob("data/**/episode_000000.parquet"))[0]
    parquet.write_bytes(parquet.read_bytes()[:300])
    bad_rep_yaml = tmp / "sideways.yaml"
    bad_rep_yaml.write_text(DEMO_MODALITY.read_text().replace("rep: RELATIVE", "rep: SIDEWAYS"))
    assert "SIDEWAYS" in bad_rep_yaml.read_text(), f"{DEMO_MODALITY} has no RELATIVE action to break"
    bad_info = tmp / "bad_info"
    (bad_info / "meta").mkdir(parents=True)
    (bad_info / "meta" / "info.json").write_text('{"codebase_version": "v2.1",\n')
    bad_config = tmp / "config.yaml"
    bad_config.write_text("dataset: x\nlearning_rate: [1e-4\n")
    bad_key_config = tmp / "typo.yaml"
    bad_key_config.write_text(f"dataset: {demo_dataset}\nlearning_rat: 1e-4\nmax_steps: many\n")
    bad_run = tmp / "run.json"
    bad_run.write_text('{"version": 1, "datasets": [\n')
    bad_deepspeed = tmp / "zero2.json"
    bad_deepspeed.write_text('{"zero_optimization": {"stage": 2},\n')
    config = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    config.update(dataset=str(demo_dataset), output_dir=str(tmp / "run"), base_model_path="tiny", num_gpus=1,
                  modality_config_path=str(PROJECT_ROOT / "config" / "modality" / "demo.yaml"),
                  deepspeed_config=str(bad_deepspeed))
    bad_deepspeed_config = tmp / "deepspeed_run.yaml"
    bad_deepspeed_config.write_text(yaml.safe_dump(config))
    bad_model = tmp / "checkpoint-2"
    bad_model.mkdir()
    (bad_model / "config.json").write_text('{"model_type": "Gr00tN1d6",\n')
    return Inputs(tmp, demo_dataset, tmp / "no such dataset", bad_yaml, corrupt, corrupt_video, bad_info, bad_parquet,
                  bad_rep_yaml, bad_config, bad_key_config, bad_run, bad_deepspeed_config, bad_model)


# One case per `groot-ft` command (its name as `command_names()` spells it), with the bad input a user most likely
# gives it. Extra cases for a command go in EXTRA_CASES.
COMMAND_CASES: dict[str, Callable[[Inputs], Case]] = {
    "demo-data": lambda i: Case(["demo-data", str(i.demo)], [str(i.demo), "non-empty"]),
    "convert-v3": lambda i: Case(["convert-v3", str(i.corrupt), str(i.tmp / "v3")], [str(i.corrupt_video)]),
    "validate": lambda i: Case(["validate", str(i.demo), "--modality-config", str(i.bad_yaml)],
                               [str(i.bad_yaml), "not valid YAML", "line 4"]),
    "stats": lambda i: Case(["stats", str(i.demo), "--modality-config", str(i.bad_yaml), "--out", str(i.tmp / "s")],
                            [str(i.bad_yaml), "not valid YAML"]),
    "shards": lambda i: Case(["shards", str(i.corrupt), "--modality-config", str(DEMO_MODALITY), "--out",
                              str(i.tmp / "shards"), "--image-edge", "48"], [str(i.corrupt_video), "cannot open"]),
    "eval-open-loop": lambda i: Case(["eval-open-loop", str(i.tmp / "model"), "--dataset", str(i.demo),
                                      "--embodiment-tag", "new_embodiment", "--out", str(i.tmp / "eval"),
                                      "--run", str(i.bad_run)], [str(i.bad_run), "not valid JSON"]),
    "modality init": lambda i: Case(["modality", "init", str(i.bad_info)],
                                    [str(i.bad_info / "meta" / "info.json"), "invalid JSON"]),
    "package": lambda i: Case(["package", str(i.missing)], [str(i.missing), "output_dir"]),
    "inspect": lambda i: Case(["inspect", "--base-model", "tiny", "--dataset", str(i.missing), "--embodiment-tag",
                               "new_embodiment", "--out", str(i.tmp / "inspect")], [str(i.missing)]),
    # verify's job is to find problems: a missing output_dir is one of its findings (exit 1), listed on stdout
    "verify": lambda i: Case(["verify", str(i.missing)], [str(i.missing), "not a directory"], EXIT_FINDINGS),
    "plan": lambda i: Case(["plan", str(i.bad_config)], [str(i.bad_config), "YAML"]),
    "fetch-base-model": lambda i: Case(["fetch-base-model", str(i.missing)], [str(i.missing), "no such directory"]),
}

EXTRA_CASES: dict[str, Callable[[Inputs], Case]] = {
    "stats, missing dataset": lambda i: Case(["stats", str(i.missing), "--out", str(i.tmp / "s2")],
                                             [str(i.missing), "does not exist"]),
    "stats, truncated parquet": lambda i: Case(["stats", str(i.bad_parquet), "--out", str(i.tmp / "s5")],
                                               [str(i.bad_parquet / "data"), "episode_000000.parquet", "episode 0"]),
    "shards, unknown action representation": lambda i: Case(
        ["shards", str(i.demo), "--modality-config", str(i.bad_rep_yaml), "--out", str(i.tmp / "shards4"),
         "--image-edge", "48"], [str(i.bad_rep_yaml), "action.action_configs[0].rep", "SIDEWAYS"]),
    "validate, missing modality config": lambda i: Case(
        ["validate", str(i.demo), "--modality-config", str(i.missing)], [str(i.missing), "cannot read"]),
    "shards, bad run description": lambda i: Case(
        ["shards", str(i.demo), "--modality-config", str(DEMO_MODALITY), "--out", str(i.tmp / "shards2"),
         "--image-edge", "48", "--split", "train", "--run", str(i.bad_run)], [str(i.bad_run), "not valid JSON"]),
    "shards, bad flag value": lambda i: Case(
        ["shards", str(i.demo), "--modality-config", str(DEMO_MODALITY), "--out", str(i.tmp / "shards3"),
         "--eval-episodes", "three"], ["--eval-episodes", "'three'"]),
    "inspect, malformed model config": lambda i: Case(
        ["inspect", "--base-model", str(i.bad_model), "--dataset", str(i.demo), "--embodiment-tag", "new_embodiment",
         "--modality-config", str(DEMO_MODALITY), "--out", str(i.tmp / "inspect2")],
        [str(i.bad_model / "config.json"), "model config", "not valid JSON"]),
    "eval-open-loop, model not there": lambda i: Case(
        ["eval-open-loop", str(i.missing), "--dataset", str(i.demo), "--embodiment-tag", "new_embodiment",
         "--out", str(i.tmp / "eval2"), "--num-episodes", "1"], [str(i.missing), "neither a preset"]),
}

# `python -m MODULE` entry points: each with a bad input.
MODULE_CASES: dict[str, Callable[[Inputs], Case]] = {
    "groot_ft.cli": lambda i: Case(["stats", str(i.demo), "--modality-config", str(i.bad_yaml), "--out",
                                    str(i.tmp / "s3")], [str(i.bad_yaml), "not valid YAML"]),
    "groot_ft.stats": lambda i: Case([str(i.demo), "--modality-config", str(i.bad_yaml), "--out", str(i.tmp / "s4")],
                                     [str(i.bad_yaml), "not valid YAML"]),
    "groot_ft.train": lambda i: Case(["--config", str(i.bad_config), "--run", str(i.bad_run)],
                                     [str(i.bad_config), "not valid YAML", "line 3"]),
    "groot_ft.data.modality_init": lambda i: Case([str(i.missing)], [str(i.missing), "does not exist"]),
}

EXTRA_MODULE_CASES: dict[str, tuple[str, Callable[[Inputs], Case]]] = {
    "train, unknown and mistyped keys": ("groot_ft.train", lambda i: Case(
        ["--config", str(i.bad_key_config), "--run", str(i.bad_run)],
        [str(i.bad_key_config), "learning_rat", "max_steps"])),
    "train, malformed DeepSpeed config": ("groot_ft.train", lambda i: Case(
        ["--config", str(i.bad_deepspeed_config), "--dataset", str(i.demo), "--stats", str(i.tmp / "stats"),
         "--shards", str(i.tmp / "shards")], [str(i.tmp / "zero2.json"), "DeepSpeed config", "not valid JSON"])),
    "train, bad run description": ("groot_ft.train", lambda i: Case(
        ["--config", str(PROJECT_ROOT / "config" / "config.yaml"), "--run", str(i.bad_run)],
        [str(i.bad_run), "not valid JSON"])),
}


def entry_point_modules() -> set[str]:
    """Every module a user can run with ``python -m``: packages with a ``__main__.py``, modules with a main guard."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if path.name == "__main__.py":
            found.add(module.removesuffix(".__main__"))
        elif 'if __name__ == "__main__":' in path.read_text():
            found.add(module)
    return found


def run(argv: list[str]) -> subprocess.CompletedProcess:
    # the source tree under test, also for the subprocess (the venv's editable install may point at another checkout)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def assert_one_clear_message(proc: subprocess.CompletedProcess, case: Case) -> None:
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, shown
    assert proc.returncode == case.code, shown
    if case.code == EXIT_USER_ERROR:
        # the message: from "error:" (ours, or argparse's "PROG: error:") to the end; progress bars may come before
        assert "error: " in proc.stderr, shown
        message = proc.stderr[proc.stderr.rindex("error: "):].strip()
        assert message.count("error: ") == 1 and "\n\n" not in message, shown  # one paragraph
    else:
        message = proc.stdout + proc.stderr
    for name in case.names:
        assert name in message, f"the message does not name {name!r}\n{shown}"


def test_every_command_has_a_bad_input_case():
    assert sorted(command_names()) == sorted(COMMAND_CASES), "add a case to COMMAND_CASES for each new command"
    assert entry_point_modules() == set(MODULE_CASES), "add a case to MODULE_CASES for each new entry point"


@pytest.mark.parametrize("command", sorted(COMMAND_CASES) + sorted(EXTRA_CASES))
def test_command_reports_bad_input(command, inputs):
    case = {**COMMAND_CASES, **EXTRA_CASES}[command](inputs)
    assert_one_clear_message(run([sys.executable, "-m", "groot_ft.cli", *case.argv]), case)


@pytest.mark.parametrize("name", sorted(MODULE_CASES) + sorted(EXTRA_MODULE_CASES))
def test_entry_point_reports_bad_input(name, inputs):
    module, make = EXTRA_MODULE_CASES.get(name) or (name, MODULE_CASES[name])
    case = make(inputs)
    assert_one_clear_message(run([sys.executable, "-m", module, *case.argv]), case)


def test_console_script_reports_bad_input(inputs):
    """The installed ``groot-ft`` script (the reported case: a traceback of ModalityConfigError from ``stats``)."""
    script = Path(sys.executable).parent / "groot-ft"
    if not script.is_file():
        pytest.skip(f"no groot-ft script beside {sys.executable}; the project is not installed in this environment")
    case = MODULE_CASES["groot_ft.cli"](inputs)
    assert_one_clear_message(run([str(script), *case.argv]), case)


def test_a_bug_keeps_its_traceback():
    """Only user errors become messages: any other exception is a bug, and its traceback is what a developer needs."""

    @exits_on_user_error
    def command() -> int:
        raise ValueError("a bug, not bad input")

    with pytest.raises(ValueError, match="a bug"):
        command()

    @exits_on_user_error
    def no_path() -> int:  # an OSError that names no path is not the file system refusing the user's input
        raise ConnectionResetError("a socket went away")

    with pytest.raises(ConnectionResetError):
        no_path()
