# stats: normalisation statistics in upstream's stats.json / relative_stats.json schema (never written into the dataset).
#
# Incremental: the rule reruns whenever a dataset file changes (its inputs), but the command keeps a per-episode
# cache keyed by each episode's content hash under STATS_CACHE, so a rerun decodes only the changed or added
# episodes and re-streams the others from the cache; the log's "stats: N episodes, K recomputed, M from cache" line
# says how many. The cache is deliberately not an output: Snakemake removes a job's outputs before running it.
STATS_CACHE = f"{OUT}/.cache/stats"


rule stats:
    input:
        dataset=dataset_files(),
        modality=config["modality_config_path"],
        validation=f"{OUT}/validation/report.json",
    output:
        **stats_outputs(),
        report=f"{OUT}/stats/stats_report.json",
        ranges=report(
            f"{OUT}/stats/plots/state_action_ranges.png",
            category="2. Statistics",
            labels={"figure": "per-dimension ranges (stats stage)"},
        ),
        histograms=report(
            f"{OUT}/stats/plots/histograms.png",
            category="2. Statistics",
            labels={"figure": "per-dimension histograms"},
        ),
    log:
        f"{OUT}/logs/stats.log",
    params:
        dataset=DATASET,
        out=f"{OUT}/stats",
        cache=STATS_CACHE,
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "python -m groot_ft.stats {params.dataset} --modality-config {input.modality} --out {params.out} "
        "--cache {params.cache} > {log} 2>&1"
