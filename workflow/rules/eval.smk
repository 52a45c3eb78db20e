# eval_open_loop: replay held-out episodes through the final policy; MSE/MAE in physical units and plots per action dim.
rule eval_open_loop:
    input:
        # the final model directory (weights + processor files); package runs after this, so the card has the metrics
        model=f"{OUT}/model.safetensors",
        processor=f"{OUT}/processor_config.json",
        run=RUN_JSON,
        # read through run.json (`--run` names it), an input so that editing it reruns the evaluation
        mapping=modality_json,
    output:
        metrics=f"{OUT}/eval/open_loop{{sub}}/metrics.json",
        plots=report(
            directory(f"{OUT}/eval/open_loop{{sub}}/plots"),
            patterns=["traj_{episode}.png"],
            category="4. Open-loop evaluation",
            labels={"dataset": "{sub}", "episode": "{episode}"},
        ),
    log:
        f"{OUT}/logs/eval_open_loop{{sub}}.log",
    params:
        out_dir=lambda wildcards, input: str(Path(input.model).parent),
        dataset=lambda wildcards: SPEC[wildcards.sub].path,
        tag=lambda wildcards: SPEC[wildcards.sub].embodiment_tag,
        num=config["open_loop_eval_episodes"],
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "export HF_HUB_OFFLINE=1; "
        "groot-ft eval-open-loop {params.out_dir:q} --dataset {params.dataset:q} --embodiment-tag {params.tag:q} "
        "--out {output.plots:q} --run {input.run:q} "
        "--num-episodes {params.num} > {log:q} 2>&1 && mv {output.plots:q}/metrics.json {output.metrics:q}"
