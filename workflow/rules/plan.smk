# memory_plan: `groot-ft plan` on the run config before the finetune job is submitted. It writes the per-GPU memory
# plan (experiment_cfg/memory_plan.json, and the readable table in logs/memory_plan.log). With
# finetune_resources.gpu_memory_gb set, a run that cannot fit that card stops here (exit 1) and the log lists the
# cheapest changes that would make it fit; without it nothing is checked, so a CPU-only run (the demo) never blocks.
# It reads only the base model's config.json (from the hub cache after fetch_base_model), so it runs in seconds on
# the submit node.


rule memory_plan:
    input:
        config=f"{OUT}/experiment_cfg/config.yaml",
        deepspeed=config["deepspeed_config"],
        modality=sorted({spec.modality_config_path for spec in SPECS}),
        base_model=base_model_input(),
    output:
        plan=f"{OUT}/experiment_cfg/memory_plan.json",
    log:
        f"{OUT}/logs/memory_plan.log",
    localrule: True
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "export HF_HUB_OFFLINE=1; groot-ft plan {input.config:q} --json {output.plan:q} > {log:q} 2>&1 "
        "|| {{ cat {log:q} >&2; exit 1; }}"
