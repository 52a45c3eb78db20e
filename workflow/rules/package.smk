# final_model: place the processor files beside the final weights, so the root loads as one model directory
# (Gr00tPolicy / AutoModel.from_pretrained); open-loop evaluation reads it from there.
rule final_model:
    input:
        model=f"{OUT}/model.safetensors",
        model_config=f"{OUT}/config.json",
    output:
        processor_config=f"{OUT}/processor_config.json",
        statistics=f"{OUT}/statistics.json",
        embodiment_id=f"{OUT}/embodiment_id.json",
    log:
        f"{OUT}/logs/final_model.log",
    params:
        out=lambda wildcards, input: str(Path(input.model).parent),
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft package {params.out:q} --processor-files-only > {log:q} 2>&1"


# package: plots, the model card (README.md), the release copy without optimizer states, and manifest.json with
# the sha256 of every artifact plus dataset fingerprint, config hash, commit and versions (`groot-ft verify` checks).
# It waits for every open-loop evaluation, so the card and the manifest include their results.
rule package:
    input:
        model=f"{OUT}/model.safetensors",
        processor=f"{OUT}/processor_config.json",
        # with a `datasets` mixture, the statistics plot and the validation summary are the first dataset's
        # (the card and the manifest's fingerprints cover every dataset)
        validation=f"{OUT}/validation{SPECS[0].subdir}/report.json",
        open_loop=[t for t in all_targets() if "eval" in Path(t).parts and t.endswith("metrics.json")],
        run=RUN_JSON,
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
        out=lambda wildcards, input: str(Path(input.model).parent),
        stats=lambda wildcards, input: str(Path(input.stats).parent),
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft package {params.out:q} --stats {params.stats:q} --validation {input.validation:q} --run {input.run:q} "
        "> {log:q} 2>&1"
