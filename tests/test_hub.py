"""The base model from a preset, a local directory or the Hugging Face hub, and offline compute nodes.

No test touches the network: the hub cache is a directory in tmp_path laid out the way huggingface_hub lays it out
(``models--ORG--NAME/{blobs,refs/main,snapshots/<commit>/}``), read by huggingface_hub's real ``snapshot_download``.
Only downloading is replaced (``huggingface_hub.snapshot_download`` for ``fetch``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest

from groot_ft.cli import image_edge_for, main
from groot_ft.hub import (
    TOKENIZER_FILES,
    BaseModelError,
    fetch,
    hub_cache_dir,
    resolve_base_model,
    resolve_tokenizer_dir,
)
from tests.conftest import DEMO_MODALITY, PROJECT_ROOT

REPO = "nvidia/GR00T-N1.6-3B"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
UPSTREAM = (PROJECT_ROOT / ".." / "shared" / "reference" / "upstream-checkpoints").resolve()
EDGE = 40  # the fake checkpoint's processor image size (its config.json says otherwise, to see which one is read)


def cache_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes], ref: str | None = "main") -> Path:
    """Write ``files`` into ``cache`` as huggingface_hub stores a download: content-addressed blobs, a snapshot
    directory of relative symlinks to them, and ``refs/<ref>`` holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def checkpoint_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "Gr00tN1d6", "image_size": 999, "max_state_dim": 128,
                                   "max_action_dim": 128, "action_horizon": 50}).encode(),
        "processor_config.json": json.dumps({"processor_kwargs": {"shortest_image_edge": EDGE}}).encode(),
        "embodiment_id.json": b'{"new_embodiment": 10}',
    }


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache named by HF_HUB_CACHE, offline as on a compute node."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def cached_model(hub_cache) -> Path:
    return cache_snapshot(hub_cache, REPO, COMMIT, checkpoint_files())


def test_a_hub_id_resolves_offline_to_its_cached_snapshot(cached_model):
    assert resolve_base_model(REPO) == Path(os.path.realpath(cached_model))
    assert resolve_base_model(REPO, revision=COMMIT) == Path(os.path.realpath(cached_model))
    assert (resolve_base_model(REPO) / "config.json").is_file()


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "shared_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_cache_dir() == tmp_path / "shared_hf" / "hub"
    snapshot = cache_snapshot(tmp_path / "shared_hf" / "hub", REPO, COMMIT, checkpoint_files())
    assert resolve_base_model(REPO) == Path(os.path.realpath(snapshot))


def test_a_revision_that_is_not_cached_names_the_fetch_command(cached_model, hub_cache):
    with pytest.raises(BaseModelError) as exc:
        resolve_base_model(REPO, revision="v2")
    msg = str(exc.value)
    assert f"groot-ft fetch-base-model {REPO} --revision v2" in msg and str(hub_cache) in msg


def test_a_missing_model_is_a_clear_error_with_the_fetch_hint(hub_cache):
    with pytest.raises(BaseModelError) as exc:
        resolve_base_model(REPO)
    msg = str(exc.value)
    assert "not in the local hub cache" in msg
    assert f"run `groot-ft fetch-base-model {REPO}`" in msg and "point base_model_path at a local copy" in msg
    assert f"cache: {hub_cache}" in msg
    # even when asked to download: HF_HUB_OFFLINE=1 forbids the network, so nothing is attempted
    with pytest.raises(BaseModelError, match="HF_HUB_OFFLINE is set"):
        fetch(REPO)


def test_the_cli_reports_a_missing_model_without_a_traceback(hub_cache, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HOME", None)
    for argv in (["fetch-base-model", REPO, "--out", str(tmp_path / "base_model.json")],
                 ["shards", str(tmp_path), "--modality-config", str(DEMO_MODALITY), "--out", str(tmp_path / "s"),
                  "--base-model-path", REPO]):
        proc = subprocess.run([sys.executable, "-m", "groot_ft.cli", *argv], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: base_model_path")
        assert f"groot-ft fetch-base-model {REPO}" in proc.stderr and str(hub_cache) in proc.stderr
    assert not (tmp_path / "base_model.json").exists()


def test_a_local_directory_is_used_in_place_as_its_realpath(tmp_path, hub_cache, monkeypatch):
    model = tmp_path / "models" / "gr00t"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(model)
    assert resolve_base_model(str(model)) == model.resolve()
    assert resolve_base_model(str(link)) == model.resolve()  # the realpath, never the link
    monkeypatch.chdir(tmp_path)
    assert resolve_base_model("models/gr00t") == model.resolve()  # relative, even though it looks like org/name


@pytest.mark.parametrize(("value", "match"), [
    ("./no/such/dir", "no such directory"),
    ("/no/such/dir", "no such directory"),
    ("~/no_such_groot_ft_model", "no such directory"),
    ("nvidia/GR00T/extra", "not a preset .* hub repo id of the form org/name"),
    ("tinyy", "not a preset"),
    ("", "empty"),
])
def test_bad_values_are_clear_errors(value, match, hub_cache):
    with pytest.raises(BaseModelError, match=match):
        resolve_base_model(value)


def test_a_directory_without_config_json_is_refused(tmp_path, hub_cache):
    with pytest.raises(BaseModelError, match="has no config.json"):
        resolve_base_model(str(tmp_path))


def test_a_preset_needs_nothing_and_does_not_import_torch():
    code = ("import sys; from groot_ft.hub import resolve_base_model; "
            "assert [resolve_base_model(p) for p in ('tiny', 'mid', 'n1.6-3b', 'n1.7-tiny', 'n1.7-3b')] == [None] * 5; "
            "assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from groot_ft.hub import preset_names
    from groot_ft.model import PRESETS
    from groot_ft.model.n17 import N17_PRESETS

    assert set(preset_names()) == set(PRESETS) | set(N17_PRESETS)


def test_the_tokenizer_key_takes_a_directory_or_a_cached_hub_repo(tmp_path, hub_cache):
    assert resolve_tokenizer_dir(None) is None
    local = tmp_path / "eagle"
    local.mkdir()
    (local / "tokenizer_config.json").write_text("{}")
    assert resolve_tokenizer_dir(str(local)) == local.resolve()
    with pytest.raises(BaseModelError, match="has no tokenizer_config.json or tokenizer.json"):
        resolve_tokenizer_dir(str(tmp_path))
    with pytest.raises(BaseModelError, match="fetch-base-model BASE_MODEL --tokenizer org/tok"):
        resolve_tokenizer_dir("org/tok")
    snapshot = cache_snapshot(hub_cache, "org/tok", "f" * 40, {"tokenizer_config.json": b"{}", "vocab.json": b"{}"})
    assert resolve_tokenizer_dir("org/tok") == Path(os.path.realpath(snapshot))


def test_fetch_downloads_through_snapshot_download_and_writes_the_json(hub_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []
    tok_commit = "a" * 40
    real_snapshot_download = huggingface_hub.snapshot_download

    def fake_snapshot_download(repo_id, **kwargs):  # the hub: what a download leaves in the cache
        calls.append((repo_id, kwargs))
        assert kwargs["cache_dir"] == str(hub_cache)
        if repo_id == REPO:
            return str(cache_snapshot(Path(kwargs["cache_dir"]), repo_id, COMMIT, checkpoint_files()))
        files = {name: b"{}" for name in ("tokenizer_config.json", "vocab.json", "merges.txt")}
        return str(cache_snapshot(Path(kwargs["cache_dir"]), repo_id, tok_commit, files))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    out = tmp_path / "run" / "base_model.json"
    assert main(["fetch-base-model", REPO, "--tokenizer", "org/eagle-tokenizer", "--revision", COMMIT,
                 "--out", str(out)]) == 0
    (model_call, tok_call) = calls
    assert model_call[0] == REPO and model_call[1]["revision"] == COMMIT
    assert model_call[1]["local_files_only"] is False and model_call[1]["allow_patterns"] is None
    assert tok_call[0] == "org/eagle-tokenizer" and tok_call[1]["local_files_only"] is False
    assert set(tok_call[1]["allow_patterns"]) == set(TOKENIZER_FILES)
    assert {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "added_tokens.json", "chat_template.json"} <= set(tok_call[1]["allow_patterns"])
    assert not any(p.endswith(".safetensors") for p in tok_call[1]["allow_patterns"])

    info = json.loads(out.read_text())
    snapshot = hub_cache / "models--nvidia--GR00T-N1.6-3B" / "snapshots" / COMMIT
    assert info["kind"] == "hub" and info["base_model_dir"] == os.path.realpath(snapshot)
    assert info["commit"] == COMMIT and info["revision"] == COMMIT
    assert info["tokenizer_dir"].endswith(f"models--org--eagle-tokenizer/snapshots/{tok_commit}")
    assert info["tokenizer_commit"] == tok_commit and info["tokenizer_source"] == "tokenizer_path"
    printed = capsys.readouterr().out
    assert f"commit {COMMIT}" in printed and str(out) in printed
    assert not list(out.parent.glob(".*tmp*"))  # atomic write: no temporary file left

    # afterwards, offline (a compute node), the same ids resolve from the cache with no download
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", real_snapshot_download)
    assert str(resolve_base_model(REPO, revision=COMMIT)) == info["base_model_dir"]
    assert str(resolve_tokenizer_dir("org/eagle-tokenizer")) == info["tokenizer_dir"]


def _forbidden(*args, **kwargs):
    raise AssertionError("no download expected")


def test_fetch_of_a_preset_or_a_local_directory_downloads_nothing(tmp_path, hub_cache, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _forbidden)
    info = fetch("tiny")
    assert (info["kind"], info["base_model_dir"], info["commit"], info["tokenizer_source"]) == ("preset", None, None,
                                                                                               "preset")
    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "base_model.json"
    assert main(["fetch-base-model", str(model), "--out", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["kind"] == "local" and info["base_model_dir"] == str(model.resolve()) and info["commit"] is None
    assert info["tokenizer_source"] is None
    assert "no tokenizer files" in capsys.readouterr().err  # an upstream checkpoint ships none: say so


def test_the_image_edge_of_a_hub_id_comes_from_the_cached_processor_config(cached_model):
    assert image_edge_for(REPO) == EDGE
    assert image_edge_for(REPO, COMMIT) == EDGE
    assert image_edge_for("tiny") == 48
    from groot_ft.model import PRESETS, preset
    from groot_ft.model.n17 import N17_PRESETS, n17_preset
    from groot_ft.preset_facts import PRESET_FACTS, PresetFacts

    assert set(PRESET_FACTS) == set(PRESETS) | set(N17_PRESETS)
    for name, facts in PRESET_FACTS.items():
        config = n17_preset(name) if name in N17_PRESETS else preset(name)
        edge = config.shortest_image_edge if name in N17_PRESETS else (config.image_size or config.shortest_image_edge)
        assert facts == PresetFacts(edge, config.max_state_dim, config.max_action_dim, config.action_horizon), name


def test_shards_for_a_hub_id_use_the_cached_processor_image_size(cached_model, demo_dataset, tmp_path):
    out = tmp_path / "shards"
    assert main(["shards", str(demo_dataset), "--modality-config", str(DEMO_MODALITY), "--out", str(out),
                 "--base-model-path", REPO, "--episode-sampling-rate", "1.0"]) == 0
    assert json.loads((out / "manifest.json").read_text())["image_edge"] == EDGE


def test_the_published_checkpoint_files_resolve_from_the_cache(hub_cache):
    """With upstream's own config.json / processor_config.json (read in place from ../shared/reference)."""
    source = UPSTREAM / "gr00t-n1.6-3b"
    if not (source / "processor_config.json").is_file():
        pytest.skip(f"upstream checkpoint files not found at {source}; skipping")
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    snapshot = cache_snapshot(hub_cache, REPO, COMMIT, files)
    assert resolve_base_model(REPO) == Path(os.path.realpath(snapshot))
    assert image_edge_for(REPO) == 256  # processor_kwargs.shortest_image_edge of the N1.6 release
    from groot_ft.fit import ModelLimits

    limits = ModelLimits.of(str(resolve_base_model(REPO)))
    assert limits.embodiment_ids["gr1"] == 20
    tokenizer = UPSTREAM / "eagle-block2a-2b-v2"
    if (tokenizer / "tokenizer_config.json").is_file():
        assert resolve_tokenizer_dir(str(tokenizer)) == tokenizer.resolve()


def test_workflow_dry_run_fetches_on_the_submit_node_and_runs_jobs_offline(cached_model, hub_cache, tmp_path):
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [snakemake, "--cores", "1", "--snakefile", "workflow/Snakefile", "--dry-run", "--printshellcmds",
         "--config", f"output_dir={tmp_path / 'run'}", f"base_model_path={REPO}", f"base_model_revision={COMMIT}",
         "tokenizer_path=org/eagle-tokenizer"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "rule fetch_base_model:" in out
    assert (f"groot-ft fetch-base-model {REPO} --tokenizer org/eagle-tokenizer --revision {COMMIT} "
            f"--out {tmp_path / 'run' / 'base_model.json'}") in out
    for rule in ("shards", "finetune", "eval_open_loop"):
        block = out.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
        assert "export HF_HUB_OFFLINE=1;" in block, rule
        if rule != "eval_open_loop":
            assert "base_model.json" in block.split("output:", 1)[0], rule  # an input: fetched first
    assert f"--base-model-revision {COMMIT}" in out.split("rule shards:", 1)[1]
    # a preset (the demo) has no fetch step
    demo = subprocess.run([snakemake, "--cores", "1", "--snakefile", "workflow/Snakefile", "--dry-run",
                           "--config", f"output_dir={tmp_path / 'demo'}"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr
    assert "fetch_base_model" not in demo.stdout


@pytest.mark.slow
def test_workflow_reads_a_cached_hub_model_offline_up_to_the_shards(tmp_path):
    """fetch_base_model (here finding the snapshot already cached), run_config's fit check and the shards' image
    size all read the hub cache named by HF_HOME, with HF_HUB_OFFLINE=1 throughout."""
    cache_snapshot(tmp_path / "hf" / "hub", REPO, COMMIT, checkpoint_files())
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "run"
    proc = subprocess.run(
        [snakemake, "--cores", "2", "--snakefile", "workflow/Snakefile", "--until", "shards",
         "--config", f"output_dir={out}", f"base_model_path={REPO}", "demo_episodes=4", "eval_episodes=1"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads((out / "base_model.json").read_text())
    assert info["kind"] == "hub" and info["commit"] == COMMIT
    assert info["base_model_dir"] == os.path.realpath(tmp_path / "hf" / "hub" / "models--nvidia--GR00T-N1.6-3B"
                                                      / "snapshots" / COMMIT)
    assert "1 dataset(s) fit " + info["base_model_dir"] in (out / "logs" / "run_config.log").read_text()
    for split in ("train", "eval"):
        assert json.loads((out / "shards" / split / "manifest.json").read_text())["image_edge"] == EDGE


# ---------------------------------------------------------------- GR00T N1.7: the gated Cosmos-Reason2-2B backbone

N17_REPO = "nvidia/GR00T-N1.7-3B"
COSMOS = "nvidia/Cosmos-Reason2-2B"
COSMOS_COMMIT = "b" * 40


def n17_checkpoint_files() -> dict[str, bytes]:
    # a released config.json names its backbone by model_name and carries no vlm_config
    return {"config.json": json.dumps({"model_type": "Gr00tN1d7", "model_name": COSMOS}).encode(),
            "processor_config.json": json.dumps({"processor_kwargs": {"shortest_image_edge": 256}}).encode()}


def n17_snapshot(cache: Path) -> Path:
    """The N1.7 checkpoint in ``cache`` (written once: a second download finds it there)."""
    snapshot = cache / "models--nvidia--GR00T-N1.7-3B" / "snapshots" / COMMIT
    return snapshot if snapshot.is_dir() else cache_snapshot(cache, N17_REPO, COMMIT, n17_checkpoint_files())


def _gated(repo_id: str):
    import httpx  # huggingface_hub's own HTTP client: its errors carry the response

    request = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}/revision/main")
    response = httpx.Response(403, request=request, headers={"X-Error-Code": "GatedRepo"})
    return huggingface_hub.errors.GatedRepoError(f"403 Client Error: access to {repo_id} is restricted",
                                                 response=response)


def test_a_gated_n17_backbone_is_a_clear_error_naming_its_page(hub_cache, monkeypatch, tmp_path, capsys):
    """The N1.7 checkpoint downloads; its backbone repo answers as the hub does without an accepted licence."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(repo_id)
        if repo_id == N17_REPO:
            return str(n17_snapshot(Path(kwargs["cache_dir"])))
        raise _gated(repo_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(BaseModelError) as err:
        fetch(N17_REPO)
    message = str(err.value)
    assert "https://huggingface.co/nvidia/Cosmos-Reason2-2B" in message and "accept its licence" in message
    assert "hf auth login" in message and "HF_TOKEN" in message
    assert calls == [N17_REPO, COSMOS]
    # the command line says the same, with no traceback, and writes no base_model.json
    out = tmp_path / "base_model.json"
    assert main(["fetch-base-model", N17_REPO, "--out", str(out)]) != 0
    stderr = capsys.readouterr().err
    assert "https://huggingface.co/nvidia/Cosmos-Reason2-2B" in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_a_401_from_the_hub_names_the_gated_page_too(hub_cache, monkeypatch):
    import httpx

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def fake_snapshot_download(repo_id, **kwargs):
        if repo_id == N17_REPO:
            return str(n17_snapshot(Path(kwargs["cache_dir"])))
        response = httpx.Response(401, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))
        raise huggingface_hub.errors.HfHubHTTPError("401 Client Error: Unauthorized", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(BaseModelError, match=r"https://huggingface.co/nvidia/Cosmos-Reason2-2B.*HTTP 401"):
        fetch(N17_REPO)


def test_an_n17_base_fetches_its_backbone_files_and_resolves_offline(hub_cache, monkeypatch, capsys):
    """fetch downloads the checkpoint and the backbone's tokenizer/config files only (no weights); offline, the
    N1.7 loader then finds the tokenizer in the cache laid out as huggingface_hub lays it out."""
    from tests.model.test_n17_inputs import EAGLE, qwen3vl_tokenizer_dir

    if not EAGLE.is_dir():
        pytest.skip("upstream's vendored Qwen3 tokenizer files are not in ../shared")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    real_snapshot_download = huggingface_hub.snapshot_download
    tokenizer_files = qwen3vl_tokenizer_dir(hub_cache.parent)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id == N17_REPO:
            return str(n17_snapshot(Path(kwargs["cache_dir"])))
        files = {p.name: p.read_bytes() for p in tokenizer_files.iterdir()}
        files["config.json"] = json.dumps({"model_type": "qwen3_vl"}).encode()
        return str(cache_snapshot(Path(kwargs["cache_dir"]), repo_id, COSMOS_COMMIT, files))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    info = fetch(N17_REPO)
    (_, model_call), (backbone_repo, backbone_call) = calls
    assert backbone_repo == COSMOS and backbone_call["local_files_only"] is False
    assert {"config.json", "tokenizer_config.json", "preprocessor_config.json"} <= set(backbone_call["allow_patterns"])
    assert not any(p.endswith((".safetensors", ".bin")) for p in backbone_call["allow_patterns"])
    assert info["n17_backbone"] == COSMOS and info["n17_backbone_commit"] == COSMOS_COMMIT
    assert info["tokenizer_source"] == "n17_backbone"
    assert info["n17_backbone_dir"].endswith(f"models--nvidia--Cosmos-Reason2-2B/snapshots/{COSMOS_COMMIT}")

    # a compute node: offline, no download allowed; the N1.7 loader's tokenizer comes from the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", real_snapshot_download)  # reads the cache only
    from groot_ft.model.n17.factory import load_n17_config, n17_tokenizer

    base = resolve_base_model(N17_REPO)
    tokenizer = n17_tokenizer(load_n17_config(base), base)
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert "nvidia/Cosmos-Reason2-2B from the hub cache" in tokenizer.source and COSMOS_COMMIT in tokenizer.source


def test_without_the_backbone_in_the_cache_the_n17_loader_names_the_fetch_command(hub_cache):
    from groot_ft.model.n17.factory import load_n17_config, n17_tokenizer
    from groot_ft.model.n17.tokenizer import N17TokenizerError

    cache_snapshot(hub_cache, N17_REPO, COMMIT, n17_checkpoint_files())
    base = resolve_base_model(N17_REPO)
    with pytest.raises(N17TokenizerError, match=r"Cosmos-Reason2-2B.*not in the local hub cache.*groot-ft "
                                                r"fetch-base-model BASE_MODEL"):
        n17_tokenizer(load_n17_config(base), base)


def test_which_bases_need_the_n17_backbone(tmp_path):
    from groot_ft.hub import needs_n17_backbone

    assert needs_n17_backbone("n1.7-3b", None) and not needs_n17_backbone("n1.7-tiny", None)
    assert not needs_n17_backbone("tiny", None)
    released = cache_snapshot(tmp_path, N17_REPO, COMMIT, n17_checkpoint_files())
    assert needs_n17_backbone(N17_REPO, released)
    tiny = tmp_path / "tiny17"
    tiny.mkdir()
    (tiny / "config.json").write_text(json.dumps({"model_type": "Gr00tN1d7",
                                                  "vlm_config": {"text_config": {"vocab_size": 264}}}))
    assert not needs_n17_backbone(str(tiny), tiny)
    n16 = tmp_path / "n16"
    n16.mkdir()
    (n16 / "config.json").write_bytes(checkpoint_files()["config.json"])
    assert not needs_n17_backbone(str(n16), n16)


def test_workflow_fetches_the_backbone_for_the_n17_3b_preset(hub_cache, tmp_path):
    """n1.7-3b is a preset (built fresh) whose tokenizer comes from the gated backbone repo: the fetch step runs."""
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([snakemake, "--cores", "1", "--snakefile", "workflow/Snakefile", "--dry-run",
                           "--printshellcmds", "--config", f"output_dir={tmp_path / 'run'}", "base_model_path=n1.7-3b"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"groot-ft fetch-base-model n1.7-3b --out {tmp_path / 'run' / 'base_model.json'}" in proc.stdout
    finetune = proc.stdout.split("rule finetune:", 1)[1].split("\nrule ", 1)[0]
    assert "base_model.json" in finetune.split("output:", 1)[0] and "export HF_HUB_OFFLINE=1;" in finetune
