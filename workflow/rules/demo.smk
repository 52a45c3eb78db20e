# The embedded demo dataset (only when dataset=demo): synthetic episodes with real mp4 video.
if IS_DEMO:

    rule demo_data:
        output:
            dataset=directory(DEMO_DATASET),
        log:
            f"{OUT}/logs/demo_data.log",
        params:
            episodes=config["demo_episodes"],
            codec=config["demo_codec"],
            version=config["demo_version"],
            seed=config["seed"],
        conda:
            "../../envs/groot-ft.yaml"
        shell:
            "groot-ft demo-data {output.dataset:q} --episodes {params.episodes} --codec {params.codec} "
            "--seed {params.seed} --version {params.version} > {log:q} 2>&1"
