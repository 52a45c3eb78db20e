# final_model: place the processor files beside the final weights, so the root loads as one model directory
# (Gr00tPolicy / AutoModel.from_pretrained); open-loop evaluation reads it from there.
PROCESSOR_FILES = ("processor_config.json", "statistics.json", "embodiment_id.json")


rule final_model:
    input:
        model=f"{OUT}/model.safetensors",
        model_config=f"{OUT}/config.json",
    output:
        **{name.split(".")[0]: f"{OUT}/{name}" for name in PROCESSOR_FILES},
    log:
        f"{OUT}/logs/final_model.log",
    params:
        out=OUT,
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft package {params.out} --processor-files-only > {log} 2>&1"


def open_loop_metrics():
    """Every eval_open_loop result the run asks for: package waits for them so the card and manifest include them."""
    return [t for t in all_targets() if "/eval/" in t and t.endswith("/metrics.json")]


# package: plots, the model card (README.md), the release copy without optimizer states, and manifest.json with
# the sha256 of every artifact plus dataset fingerprint, config hash, commit and versions (`groot-ft verify` checks).
rule package:
    input:
        model=f"{OUT}/model.safetensors",
        processor=f"{OUT}/processor_config.json",
        # with a `datasets` mixture, the card and plots describe the first dataset
        validation=f"{OUT}/validation{SPECS[0].subdir}/report.json",
        open_loop=open_loop_metrics(),
        **stats_outputs(SPECS[0].subdir),
    output:
        manifest=f"{OUT}/manifest.json",
        card=f"{OUT}/README.md",
        release=directory(f"{OUT}/release"),
        loss_plot=report(f"{OUT}/plots/loss.png", category="3. Training", labels={"figure": "loss"}),
        stats_plot=report(f"{OUT}/plots/dataset_stats.png", category="2. Statistics", labels={"figure": "ranges"}),
    log:
        f"{OUT}/logs/package.log",
    params:
        out=OUT,
        stats=f"{OUT}/stats{SPECS[0].subdir}",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft package {params.out} --stats {params.stats} --validation {input.validation} > {log} 2>&1"
