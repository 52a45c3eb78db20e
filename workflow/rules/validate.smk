# dataset_listing: the size and mtime of every dataset file in one small file. It is the only job whose inputs are
# the dataset's files (3,000 for 1,000 episodes); validate, stats and shards take the listing instead, so a no-op
# run checks each file once instead of once per rule. The listing changes whenever a file is edited, added or
# removed, which reruns those rules.
rule dataset_listing:
    input:
        dataset=dataset_files,
    output:
        listing=DATASET_LISTING,
    log:
        f"{OUT}/logs/dataset_listing{{sub}}.log",
    localrule: True
    conda:
        "../../envs/groot-ft.yaml"
    script:
        "../scripts/dataset_listing.py"


# validate: check every dataset invariant before anything else runs; errors stop the workflow.
rule validate:
    input:
        dataset=DATASET_LISTING,
        modality=lambda wildcards: SPEC[wildcards.sub].modality_config_path,
        mapping=modality_json,
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
        mapping=modality_json_flag,
        # an undeclared copy: Snakemake deletes a failed job's outputs, but users need the report most then
        kept_report=lambda wildcards: f"{OUT}/logs/validation_report{'_'.join(wildcards.sub.split('/'))}.json",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        # tee shows the summary on the terminal and keeps it in the log even when validation fails
        "groot-ft validate {params.dataset:q} --modality-config {input.modality:q} {params.mapping:q} "
        "--report {params.kept_report:q} 2>&1 | tee {log:q}; cp {params.kept_report:q} {output.report:q}; "
        "cp {log:q} {output.summary:q}"
