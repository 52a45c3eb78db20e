# validate: check every dataset invariant before anything else runs; errors stop the workflow.
rule validate:
    input:
        dataset=dataset_files(),
        modality=config["modality_config_path"],
    output:
        report=f"{OUT}/validation/report.json",
        summary=report(
            f"{OUT}/validation/summary.txt",
            category="1. Dataset",
            labels={"figure": "validation summary"},
        ),
    log:
        f"{OUT}/logs/validate.log",
    params:
        dataset=DATASET,
        # an undeclared copy: Snakemake deletes a failed job's outputs, but users need the report most then
        kept_report=f"{OUT}/logs/validation_report.json",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        # tee shows the summary on the terminal and keeps it in the log even when validation fails
        "groot-ft validate {params.dataset} --modality-config {input.modality} --report {params.kept_report} "
        "2>&1 | tee {log}; cp {params.kept_report} {output.report}; cp {log} {output.summary}"
