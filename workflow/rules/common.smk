# Config resolution and input functions shared by every rule; no rules here.
#
# A run trains on one `dataset` or on a `datasets` mixture. Every per-dataset rule (validate, stats, shards,
# eval_open_loop) has a `{sub}` wildcard: empty for the single dataset (outputs directly in validation/, stats/, ...)
# and a slash plus the member's name for each mixture member (validation/<name>/, stats/<name>/, ...).
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from groot_ft.config import ConfigError, FinetuneConfig, retype_command_line
from groot_ft.hub import needs_n17_backbone, preset_names
from groot_ft.manifest import dataset_files as fingerprinted_files
from groot_ft.modality import load_modality_config

# The one validation of the config in this process: against the schema, every problem listed with its key. The
# resolved values (schema defaults filled in, output_dir: null made results/<dataset name>) replace `config`, so
# every rule and the run config see the same ones.
try:
    CFG = FinetuneConfig.from_dict(retype_command_line(config))
except ConfigError as exc:
    raise WorkflowError(str(exc))
config.update(CFG.to_dict())
OUT = CFG.output_dir.rstrip("/")
IS_DEMO = CFG.dataset == "demo" and not CFG.datasets
# The demo dataset is generated beside the run directory so that several demo runs can share it.
DEMO_DATASET = str(Path(OUT).parent / "demo_dataset")
try:
    SPECS = CFG.dataset_specs(DEMO_DATASET if IS_DEMO else None)
except ConfigError as exc:
    raise WorkflowError(str(exc))
SPEC = {spec.subdir: spec for spec in SPECS}
MODALITY = {sub: load_modality_config(spec.modality_config_path) for sub, spec in SPEC.items()}
TAGS = sorted({spec.embodiment_tag for spec in SPECS})


# A base model that is not a preset (a local directory or a hub repo id such as nvidia/GR00T-N1.6-3B) is resolved,
# and downloaded into the Hugging Face cache, by the local rule fetch_base_model before any job reads it; the jobs
# then read it with HF_HUB_OFFLINE=1 (rules/fetch.smk). A preset is built fresh and needs nothing, except n1.7-3b,
# whose tokenizer comes from the gated nvidia/Cosmos-Reason2-2B repo (fetched by the same rule).
BASE_MODEL_JSON = (None if config["base_model_path"] in preset_names()
                   and not needs_n17_backbone(config["base_model_path"], None) else f"{OUT}/base_model.json")


def base_model_input():
    return [BASE_MODEL_JSON] if BASE_MODEL_JSON else []


def fetch_arguments():
    """`groot-ft fetch-base-model`'s arguments: the base model, its revision and the tokenizer key (a list, so that
    `{params.args:q}` quotes each one: a local path may hold spaces)."""
    args = [config["base_model_path"]]
    if config["tokenizer_path"]:
        args += ["--tokenizer", config["tokenizer_path"]]
    if config["base_model_revision"]:
        args += ["--revision", config["base_model_revision"]]
    return args


def choice_pattern(values):
    """A wildcard regex matching exactly these strings (the empty string included); one that matches none if empty."""
    return "(?:" + "|".join(re.escape(v) for v in values) + ")" if values else "(?!)"


wildcard_constraints:
    sub=choice_pattern(SPEC),


def has_relative(sub):
    return bool(MODALITY[sub].relative_action_keys())


def has_eval(sub):
    return SPEC[sub].eval_episodes not in (0, [])


# The resolved run description (datasets, hold-out episodes, paths), written once by rule run_config beside the
# config; shards, finetune and eval_open_loop read their datasets and splits from it (`--run`).
RUN_JSON = f"{OUT}/experiment_cfg/run.json"


def run_dirs():
    """Each dataset's stats, train-shard and eval-shard directories, keyed by name, for the run description."""
    return {
        spec.name: {
            "stats_dir": embodiment_stats_dir(spec.embodiment_tag),
            "shards_dir": f"{OUT}/shards{sub}/train",
            "eval_shards_dir": f"{OUT}/shards{sub}/eval" if has_eval(sub) else None,
        }
        for sub, spec in SPEC.items()
    }


def modality_json(wildcards):
    """The dataset's modality mapping kept outside it (modality_json_path) as an input of every rule that reads the
    dataset, so editing it reruns them; [] when the dataset's own meta/modality.json is read (in the listing)."""
    spec = SPEC[wildcards.sub]
    if spec.modality_json_path is None:
        return []
    if not Path(spec.modality_json_path).is_file():
        raise WorkflowError(
            f"modality_json_path {spec.modality_json_path!r} (dataset {spec.path}) is not a file; point it at the "
            f"dataset's GR00T modality mapping (`groot-ft modality init DATASET --out-modality-json FILE` proposes one)"
        )
    return [spec.modality_json_path]


def modality_json_flag(wildcards):
    """`--modality-json FILE` for a dataset whose mapping lives outside it, else nothing (a list for `:q`)."""
    return ["--modality-json", *modality_json(wildcards)] if SPEC[wildcards.sub].modality_json_path else []


def mixture_modality_json_flag(tag):
    """`groot-ft stats --modality-json` for the datasets of one embodiment merged by stats_mixture (`-`: the dataset's
    own meta/modality.json); nothing when every dataset of the embodiment has its own."""
    members = [spec for spec in SPECS if spec.embodiment_tag == tag]
    if not any(spec.modality_json_path for spec in members):
        return []
    return ["--modality-json", *[spec.modality_json_path or "-" for spec in members]]


# The rules that read a dataset depend on this listing of its files (rule dataset_listing), not on the files.
DATASET_LISTING = f"{OUT}/.cache/dataset{{sub}}.json"


def dataset_files(wildcards):
    """Every file of the dataset the pipeline reads: the inputs of dataset_listing, so an edited episode reruns it."""
    if IS_DEMO:
        return DEMO_DATASET
    spec = SPEC[wildcards.sub]
    root = Path(spec.path)
    if not (root / "meta" / "info.json").is_file():
        raise WorkflowError(
            f"dataset {spec.path}: no meta/info.json there; point `dataset` (or datasets[].path) at a LeRobot dataset root"
        )
    # the files package fingerprints, meta/ included recursively (LeRobot v3 keeps episode tables there)
    return [str(p) for p in fingerprinted_files(root)]


def stats_outputs(sub):
    outputs = {"stats": f"{OUT}/stats{sub}/stats.json"}
    if has_relative(sub):
        outputs["relative_stats"] = f"{OUT}/stats{sub}/relative_stats.json"
    return outputs


def embodiment_stats_dir(tag):
    """Training statistics of one embodiment: its dataset's own stats, or the weighted merge of several datasets'."""
    members = [spec for spec in SPECS if spec.embodiment_tag == tag]
    return f"{OUT}/stats{members[0].subdir}" if len(members) == 1 else f"{OUT}/stats_mixture/{tag}"


def training_stats():
    """stats.json (+ relative_stats.json) of every embodiment the finetune rule trains."""
    files = []
    for tag in TAGS:
        sub = next(spec.subdir for spec in SPECS if spec.embodiment_tag == tag)
        directory = embodiment_stats_dir(tag)
        files.append(f"{directory}/stats.json")
        if has_relative(sub):
            files.append(f"{directory}/relative_stats.json")
    return files


def shard_manifests():
    manifests = [f"{OUT}/shards{sub}/train/manifest.json" for sub in SPEC]
    manifests += [f"{OUT}/shards{sub}/eval/manifest.json" for sub in SPEC if has_eval(sub)]
    return manifests


def all_targets():
    targets = [f"{OUT}/manifest.json"]
    if config["open_loop_eval_episodes"] > 0:
        targets += [f"{OUT}/eval/open_loop{sub}/metrics.json" for sub in SPEC]
    return targets


# The stats rule's per-episode cache (not an output: Snakemake removes a job's outputs before running it).
def stats_cache(sub):
    return f"{OUT}/.cache/stats{sub}"


def tag_has_relative(tag):
    return has_relative(next(spec.subdir for spec in SPECS if spec.embodiment_tag == tag))


# Where the processes run. num_gpus counts training processes in total (the trainer checks WORLD_SIZE against it),
# so each of num_machines nodes runs num_gpus / num_machines of them.
NUM_MACHINES = config["num_machines"]
if config["num_gpus"] % NUM_MACHINES:
    raise WorkflowError(
        f"num_gpus={config['num_gpus']} is not a multiple of num_machines={NUM_MACHINES}: num_gpus counts training "
        f"processes over all machines and every machine runs the same number; change num_gpus or num_machines"
    )
GPUS_PER_NODE = config["num_gpus"] // NUM_MACHINES
CPUS_PER_GPU = config["finetune_resources"]["cpus_per_gpu"]


def finetune_resources():
    """sbatch resources for the SLURM executor (ignored locally, apart from gpu)."""
    res = {"mem_mb": config["finetune_resources"]["mem_mb"], "runtime": config["finetune_resources"]["runtime"]}
    if NUM_MACHINES == 1:
        # --gpus=N --cpus-per-gpu=C; the job step runs the shell command (one launcher) once
        return {**res, "gpu": GPUS_PER_NODE, "cpus_per_gpu": CPUS_PER_GPU}
    # The `mpi` resource makes the job step run the shell command itself instead of inside `srun -n1`, so our
    # own srun can start one launcher per node. gres is per node (--gpus would be a job total, maybe spread
    # unevenly); tasks_per_gpu=0 keeps the plugin from turning `tasks` into --ntasks-per-gpu.
    return {
        **res, "nodes": NUM_MACHINES, "tasks": NUM_MACHINES, "mpi": "srun", "tasks_per_gpu": 0,
        "gres": f"gpu:{GPUS_PER_NODE}", "cpus_per_task": GPUS_PER_NODE * CPUS_PER_GPU,
    }


def finetune_launcher():
    """`accelerate launch` with its machine flags; on several nodes, one launcher per node through srun."""
    if NUM_MACHINES == 1:
        return "accelerate launch --num_machines 1 --machine_rank 0"
    # Single quotes: $SLURM_NODEID and the node list are read on each node. Node 0 of the step hosts rank 0.
    # DeepSpeed's default multi-node launcher is pdsh; "standard" makes accelerate run torch's launcher per node.
    return (
        f"srun --nodes={NUM_MACHINES} --ntasks={NUM_MACHINES} --ntasks-per-node=1 "
        f"--cpus-per-task={GPUS_PER_NODE * CPUS_PER_GPU} --gres=gpu:{GPUS_PER_NODE} bash -c "
        f"'exec accelerate launch --num_machines {NUM_MACHINES} --machine_rank \"$SLURM_NODEID\" "
        f"--main_process_ip \"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\" "
        f"--deepspeed_multinode_launcher standard --same_network \"$@\"' accelerate-on-node"
    )
