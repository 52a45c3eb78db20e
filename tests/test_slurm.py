"""profiles/slurm against a real single-node SLURM cluster started here (scripts/slurm_local_cluster.sh).

The demo workflow runs end to end through `snakemake --profile profiles/slurm` plus a second, user-style profile with
what is specific to this cluster, exactly as README "Running on SLURM" tells users to. The cluster needs root: it is
installed with apt-get when missing, and these tests skip only when that is impossible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "slurm_local_cluster.sh"
BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(BIN)) or "snakemake"
# the demo at its smallest: the point is the scheduling, not the model
RUN_CONFIG = ["demo_episodes=12", "max_steps=20", "save_steps=10", "eval_steps=10", "logging_steps=5",
              "main_process_port=29611"]
SLURM_RULES = {"validate", "stats", "shards", "finetune", "eval_open_loop"}
LOCAL_RULES = {"all", "run_config", "package", "final_model", "demo_data"}


def snakemake_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(extra or {})}


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running cluster with 2 fake GPUs; yields the environment that points SLURM commands at it."""
    state = tmp_path_factory.mktemp("slurm_cluster")
    env = snakemake_env({
        "GROOT_SLURM_DIR": str(state), "GROOT_SLURM_GPUS": "2",
        # not the script's default ports, so a cluster a developer started by hand is left alone
        "GROOT_SLURM_CTLD_PORT": "16827", "GROOT_SLURM_SLURMD_PORT": "16828",
        "SLURM_CONF": str(state / "slurm.conf"),
    })
    started = time.monotonic()
    install = subprocess.run([str(SCRIPT), "install"], env=env, capture_output=True, text=True, timeout=1200)
    if install.returncode == 3:
        pytest.skip(f"SLURM packages are not installed and cannot be installed here: {install.stderr.strip()}")
    assert install.returncode == 0, install.stderr
    start = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert start.returncode == 0, f"local SLURM cluster did not start:\n{start.stderr}"
        print(f"\nslurm cluster: install + start {time.monotonic() - started:.1f} s")
        yield env
    finally:
        stop = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stderr


def user_profile(directory: Path, logdir: Path) -> Path:
    """What a user adds for their own cluster (README "Running on SLURM"), here for the local one."""
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "slurm-logdir": str(logdir),
        "slurm-keep-successful-logs": True,
        # no slurmdbd here: no accounts to guess, and squeue (not sacct) reports job states
        "slurm-no-account": True,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "latency-wait": 5,
        # a job asking for more cores than the node has would stay pending for ever
        "max-threads": os.cpu_count(),
        "default-resources": {"slurm_partition": "debug", "mem_mb": 2000, "runtime": 30},
    }))
    return directory


def profile_command(root: Path, *extra: str) -> list[str]:
    cfg = root / "finetune_resources.yaml"
    cfg.write_text(yaml.safe_dump({"finetune_resources": {"cpus_per_gpu": 1, "mem_mb": 3000, "runtime": 30}}))
    return [
        SNAKEMAKE, "--profile", "profiles/slurm", "--profile", str(user_profile(root / "profile", root / "slurm_logs")),
        "--snakefile", "workflow/Snakefile", "--configfile", str(cfg),
        "--config", f"output_dir={root / 'run'}", *RUN_CONFIG, *extra,
    ]


def scontrol_job(env: dict[str, str], job_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True,
                          check=True).stdout
    return dict(token.split("=", 1) for token in text.split() if "=" in token)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_run")
    started = time.monotonic()
    proc = subprocess.run(profile_command(root), cwd=PROJECT_ROOT, env=slurm_cluster, capture_output=True,
                          text=True, timeout=1800)
    elapsed = time.monotonic() - started
    out = root / "run"
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((out / "logs").glob("*.log")))
        slurm = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((root / "slurm_logs").rglob("*.log")))
        pytest.fail(f"snakemake through profiles/slurm failed ({proc.returncode}):\n{proc.stderr[-5000:]}\n{logs}\n{slurm}")
    print(f"\nslurm demo workflow: {elapsed:.1f} s")
    # SLURM job ids from the executor's per-rule logs: <logdir>/rule_<name>/[<wildcards>/]<jobid>.log
    jobs = {}
    for log in (root / "slurm_logs").rglob("*.log"):
        rule = next(part[len("rule_"):] for part in log.relative_to(root / "slurm_logs").parts if part.startswith("rule_"))
        jobs.setdefault(rule, []).append(log.stem)
    # read now: slurmctld forgets finished jobs after MinJobAge (300 s)
    finetune_jobs = [scontrol_job(slurm_cluster, job_id) for job_id in jobs.get("finetune", [])]
    return root, proc, jobs, finetune_jobs


@pytest.mark.slow
def test_demo_workflow_completes_through_the_profile(slurm_run):
    from groot_ft.package import check_tree

    root, proc, _, _ = slurm_run
    out = root / "run"
    assert check_tree(out) == []
    for rel in ("manifest.json", "model.safetensors", "eval/open_loop/metrics.json", "stats/stats.json"):
        assert (out / rel).is_file(), rel


@pytest.mark.slow
def test_finetune_is_one_gpu_job_running_the_requested_processes(slurm_run):
    root, proc, jobs, finetune_jobs = slurm_run
    assert len(finetune_jobs) == 1
    job = finetune_jobs[0]
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
    # num_gpus GPUs, cpus_per_gpu CPUs each, and mem_mb from the run config's finetune_resources
    assert job["TresPerJob"] == "gres:gpu:2" and job["CpusPerTres"] == "gres:gpu:1", job
    tres = dict(item.split("=") for item in job["TRES"].split(","))
    assert tres["cpu"] == "2" and tres["mem"] == "3000M" and tres["node"] == "1", job["TRES"]
    assert job["TimeLimit"] == "00:30:00"
    # one launcher, started once inside the job, started the 2 training processes the config asks for
    assert (proc.stdout + proc.stderr).count("accelerate launch --num_machines 1 --machine_rank 0") == 1
    assert "2 process(es)" in (root / "run" / "logs" / "finetune.log").read_text()


@pytest.mark.slow
def test_data_rules_are_jobs_and_bookkeeping_runs_locally(slurm_run):
    _, _, jobs, _ = slurm_run
    assert SLURM_RULES <= set(jobs), jobs
    assert len(jobs["shards"]) == 2  # train and eval splits
    assert not set(jobs) & LOCAL_RULES


def pending_job(env: dict[str, str], comment: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(["squeue", "-h", "-o", "%i %T %k"], env=env, capture_output=True, text=True).stdout
        for job_id, state, job_comment in (line.split(maxsplit=2) for line in listing.splitlines()):
            if job_comment.strip() == comment and state == "PENDING":
                return job_id
        time.sleep(1)
    return None


@pytest.mark.slow
def test_multi_node_job_asks_for_one_launcher_per_node(slurm_run, slurm_cluster, tmp_path):
    """num_machines=2 on this one-node cluster: SLURM accepts the job but can never start it, and its request shows
    what a real two-node cluster would be asked for."""
    root, _, _, _ = slurm_run
    copy = tmp_path / "copy"
    shutil.copytree(root / "run", copy / "run", symlinks=True)
    shutil.copytree(root / "demo_dataset", copy / "demo_dataset", symlinks=True)
    cmd = profile_command(copy, "num_machines=2", "--forcerun", "finetune", "--until", "finetune")
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=slurm_cluster, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    job_id = None
    try:
        job_id = pending_job(slurm_cluster, "rule_finetune", timeout=300)
        job = scontrol_job(slurm_cluster, job_id) if job_id else {}
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], env=slurm_cluster, check=False)
        try:
            output = proc.communicate(timeout=300)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
    assert job_id, f"no pending finetune job appeared:\n{output[-4000:]}"
    assert proc.returncode != 0  # the cancelled job fails the run
    assert job["JobState"] == "PENDING", job  # two nodes asked for, one exists
    # one task per node with all of that node's GPUs and cores: srun then starts one launcher on each
    assert job["NumNodes"] == "2-2" and job["NumTasks"] == "2" and job["CPUs/Task"] == "1", job
    assert job["TresPerNode"] == "gres:gpu:1" and job["MinMemoryNode"] == "3000M", job
    # --gpus is a job total SLURM may spread unevenly, --ntasks-per-gpu would multiply the launchers
    assert "TresPerJob" not in job and job.get("NtasksPerTRES", "0") == "0", job
    assert job["TimeLimit"] == "00:30:00"


@pytest.mark.slow
def test_multi_node_launchers_train_the_same_weights_as_one_node(slurm_run, slurm_cluster, tmp_path):
    """The per-node launcher the rule generates for num_machines=2, started for node 0 and node 1 the way srun starts
    it (SLURM_NODEID, SLURM_JOB_NODELIST) but both on this host, trains the single-node job's weights bit for bit."""
    root = slurm_run[0]
    copy = tmp_path / "copy"
    shutil.copytree(root / "run", copy / "run", symlinks=True,
                    ignore=shutil.ignore_patterns("checkpoint-*", "model.safetensors", "training_log.jsonl", "runs"))
    shutil.copytree(root / "demo_dataset", copy / "demo_dataset", symlinks=True)
    run_cfg = copy / "run" / "experiment_cfg" / "config.yaml"
    cfg = yaml.safe_load(run_cfg.read_text())
    run_cfg.write_text(yaml.safe_dump({**cfg, "output_dir": str(copy / "run"), "num_machines": 2}, sort_keys=False))
    dry = subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--snakefile", "workflow/Snakefile", "--dry-run", "--printshellcmds",
         "--forcerun", "finetune", "--until", "finetune", "--config", f"output_dir={copy / 'run'}",
         *[c for c in RUN_CONFIG if not c.startswith("main_process_port")], "main_process_port=29614",
         "num_machines=2", "num_gpus=2"],
        cwd=PROJECT_ROOT, env=snakemake_env(), capture_output=True, text=True, timeout=600,
    )
    assert dry.returncode == 0, dry.stderr
    srun_line = next(line for line in dry.stdout.splitlines() if "srun --nodes=2 " in line)
    per_node = srun_line[srun_line.index("bash -c "):].rsplit(" > ", 1)[0]  # what srun runs on every node
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    launchers = [
        subprocess.Popen(["bash", "-c", per_node], cwd=PROJECT_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                         env={**slurm_cluster, "SLURM_NODEID": str(rank), "SLURM_JOB_NODELIST": host})
        for rank, log in enumerate(logs)
    ]
    try:
        codes = [launcher.wait(timeout=900) for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    assert "2 process(es)" in logs[0].read_text()
    assert (copy / "run" / "model.safetensors").read_bytes() == (root / "run" / "model.safetensors").read_bytes()


def dry_run(tmp_path: Path, *config: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--cores", "2", "--snakefile", "workflow/Snakefile", "--dry-run", "--printshellcmds",
         "--config", f"output_dir={tmp_path / 'run'}", "main_process_port=29612", *config],
        cwd=PROJECT_ROOT, env=snakemake_env(), capture_output=True, text=True, timeout=600,
    )


def test_multi_node_command_starts_one_launcher_per_node(tmp_path):
    proc = dry_run(tmp_path, "num_machines=2", "num_gpus=4")
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("rule finetune:", 1)[1].split("\nrule ", 1)[0]
    resources = block.split("resources:", 1)[1].split("\n", 1)[0]
    for item in ("nodes=2", "tasks=2", "mpi=srun", "gres=gpu:2", "cpus_per_task=2"):
        assert item in resources, (item, resources)
    command = block[block.index("srun "):]
    assert command.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=2 --gres=gpu:2 bash -c")
    # every node's launcher: its own rank from SLURM, rank 0's host from the job's node list, 4 processes in total
    for part in ('--num_machines 2 --machine_rank "$SLURM_NODEID"',
                 '--main_process_ip "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
                 "--deepspeed_multinode_launcher standard", "--num_processes 4", "-m groot_ft.train"):
        assert part in command, (part, command)


def test_num_gpus_must_split_evenly_over_machines(tmp_path):
    proc = dry_run(tmp_path, "num_machines=2", "num_gpus=3")
    assert proc.returncode != 0
    assert "num_gpus=3 is not a multiple of num_machines=2" in proc.stdout + proc.stderr
