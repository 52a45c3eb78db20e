# package: make the output tree self-contained and loadable, plot what happened, and checksum every artifact.
rule package:
    input:
        model=f"{OUT}/model.safetensors",
        validation=f"{OUT}/validation/report.json",
        **stats_outputs(),
    output:
        manifest=f"{OUT}/manifest.json",
        loss_plot=report(f"{OUT}/plots/loss.png", category="3. Training", labels={"figure": "loss"}),
        stats_plot=report(f"{OUT}/plots/dataset_stats.png", category="2. Statistics", labels={"figure": "ranges"}),
    log:
        f"{OUT}/logs/package.log",
    params:
        out=OUT,
        stats=f"{OUT}/stats",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft package {params.out} --stats {params.stats} --validation {input.validation} > {log} 2>&1"
