# stats: normalisation statistics in upstream's stats.json / relative_stats.json schema (never written into the dataset).
rule stats:
    input:
        dataset=dataset_files(),
        modality=config["modality_config_path"],
        validation=f"{OUT}/validation/report.json",
    output:
        **stats_outputs(),
    log:
        f"{OUT}/logs/stats.log",
    params:
        dataset=DATASET,
        out=f"{OUT}/stats",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft stats {params.dataset} --modality-config {input.modality} --out {params.out} > {log} 2>&1"
