"""The workflow's static health: `snakemake --lint`, the rules' conda environments and their pins."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent
WORKFLOW = PROJECT_ROOT / "workflow"
# Installers that come with the environment's Python rather than from requirements.lock.
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def env_pip_pins(env_file: Path) -> dict[str, str]:
    env = yaml.safe_load(env_file.read_text())
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    pins = {}
    for line in (pip[0] if pip else []):
        assert not line.startswith("-"), (
            f"{env_file.name}: {line!r}: Snakemake copies the file into .snakemake/conda/ before creating the "
            f"environment, so options and relative paths break; pin the packages instead"
        )
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{env_file.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def runtime_closure(root: str) -> set[str]:
    """The installed distributions `root` needs at run time (no extras), found through their metadata."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen - {canonicalize_name(root)}


def rule_conda_envs() -> dict[str, Path]:
    """Every rule's `conda:` environment, resolved like Snakemake does: relative to the file that declares it."""
    envs = {}
    for smk in sorted((WORKFLOW / "rules").glob("*.smk")) + [WORKFLOW / "Snakefile"]:
        rule = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            found = re.match(r"\s*(?:rule|checkpoint) (\w+)", line)
            if found:
                rule = found.group(1)
            elif line.strip() == "conda:" and rule:
                envs[rule] = (smk.parent / lines[i + 1].strip().strip("\"'")).resolve()
    return envs


def test_snakemake_lint_is_clean():
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    proc = subprocess.run([str(BIN / "snakemake"), "--lint", "--snakefile", "workflow/Snakefile"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_names_an_existing_conda_environment():
    rules = set(re.findall(r"^\s*(?:rule|checkpoint) (\w+)",
                           "\n".join(p.read_text() for p in (WORKFLOW / "rules").glob("*.smk")), re.M))
    envs = rule_conda_envs()
    missing = sorted(rules - set(envs) - {"all"})
    assert not missing, f"rules without a conda: environment: {missing}"
    for rule, path in envs.items():
        assert path.is_file(), f"rule {rule}: conda environment {path} does not exist"
        assert path.parent == PROJECT_ROOT / "envs", f"rule {rule}: environments live in envs/, not {path}"


def test_conda_environments_match_the_lock():
    lock = read_pins(PROJECT_ROOT / "requirements.lock")
    constraints = read_pins(PROJECT_ROOT / "constraints.txt")
    assert constraints["torch"] == "2.13.0"
    needed = runtime_closure("groot-ft") - BOOTSTRAP
    env_files = sorted((PROJECT_ROOT / "envs").glob("*.yaml"))
    assert env_files
    for env_file in env_files:
        pins = env_pip_pins(env_file)
        assert pins.get("torch") == constraints["torch"] == "2.13.0", f"{env_file.name}: torch must be 2.13.0"
        wrong = {n: (v, lock.get(n)) for n, v in pins.items() if n != "torch" and lock.get(n) != v}
        assert not wrong, f"{env_file.name}: pins that differ from requirements.lock (env, lock): {wrong}"
        missing = sorted(n for n in needed - set(pins) if n != "torch")
        assert not missing, (
            f"{env_file.name}: groot-ft needs these at run time but the environment does not pin them: "
            + ", ".join(f"{n}=={lock.get(n)}" for n in missing)
        )
        python = [d for d in yaml.safe_load(env_file.read_text())["dependencies"] if isinstance(d, str)]
        assert any(re.fullmatch(r"python=3\.1[1-9]", d) for d in python), f"{env_file.name}: pin python to 3.11+"
