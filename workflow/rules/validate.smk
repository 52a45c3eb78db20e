# validate: check every dataset invariant before anything else runs; errors stop the workflow.
rule validate:
    input:
        dataset=dataset_files,
        modality=lambda wildcards: SPEC[wildcards.sub].modality_config_path,
    output:
        report=f"{OUT}/validation{{sub}}/report.json",
        summary=report(
            f"{OUT}/validation{{sub}}/summary.txt",
            category="1. Dataset",
            labels={"figure": "validation summary", "dataset": "{sub}"},
        ),
    log:
        f"{OUT}/logs/validate{{sub}}.log",
    params:
        dataset=lambda wildcards: SPEC[wildcards.sub].path,
        # an undeclared copy: Snakemake deletes a failed job's outputs, but users need the report most then
        kept_report=lambda wildcards: f"{OUT}/logs/validation_report{'_'.join(wildcards.sub.split('/'))}.json",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        # tee shows the summary on the terminal and keeps it in the log even when validation fails
        "groot-ft validate {params.dataset} --modality-config {input.modality} --report {params.kept_report} "
        "2>&1 | tee {log}; cp {params.kept_report} {output.report}; cp {log} {output.summary}"
