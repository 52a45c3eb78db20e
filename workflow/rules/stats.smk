# stats: normalisation statistics in upstream's stats.json / relative_stats.json schema (never written into the dataset).
#
# Incremental: the rule reruns whenever a dataset file changes (through its listing), but the command keeps a
# per-episode cache keyed by each episode's content hash under the stats cache, so a rerun decodes only the changed or
# added episodes and re-streams the others from the cache; the log's "stats: N episodes, K recomputed, M from cache"
# line says how many. The cache is deliberately not an output: Snakemake removes a job's outputs before running it.
# Datasets whose modality config has RELATIVE action keys also get relative_stats.json from the same command.
rule stats:
    wildcard_constraints:
        sub=choice_pattern([sub for sub in SPEC if has_relative(sub)]),
    input:
        dataset=DATASET_LISTING,
        modality=lambda wildcards: SPEC[wildcards.sub].modality_config_path,
        mapping=modality_json,
        validation=f"{OUT}/validation{{sub}}/report.json",
    output:
        stats=f"{OUT}/stats{{sub}}/stats.json",
        relative_stats=f"{OUT}/stats{{sub}}/relative_stats.json",
        report=f"{OUT}/stats{{sub}}/stats_report.json",
        ranges=report(
            f"{OUT}/stats{{sub}}/plots/state_action_ranges.png",
            category="2. Statistics",
            labels={"figure": "per-dimension ranges (stats stage)", "dataset": "{sub}"},
        ),
        histograms=report(
            f"{OUT}/stats{{sub}}/plots/histograms.png",
            category="2. Statistics",
            labels={"figure": "per-dimension histograms", "dataset": "{sub}"},
        ),
    log:
        f"{OUT}/logs/stats{{sub}}.log",
    params:
        dataset=lambda wildcards: SPEC[wildcards.sub].path,
        mapping=modality_json_flag,
        out=f"{OUT}/stats{{sub}}",
        cache=lambda wildcards: stats_cache(wildcards.sub),
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft stats {params.dataset:q} --modality-config {input.modality:q} {params.mapping:q} "
        "--out {params.out:q} --cache {params.cache:q} > {log:q} 2>&1"



use rule stats as stats_absolute_actions with:
    wildcard_constraints:
        sub=choice_pattern([sub for sub in SPEC if not has_relative(sub)]),
    output:
        stats=f"{OUT}/stats{{sub}}/stats.json",
        report=f"{OUT}/stats{{sub}}/stats_report.json",
        ranges=report(
            f"{OUT}/stats{{sub}}/plots/state_action_ranges.png",
            category="2. Statistics",
            labels={"figure": "per-dimension ranges (stats stage)", "dataset": "{sub}"},
        ),
        histograms=report(
            f"{OUT}/stats{{sub}}/plots/histograms.png",
            category="2. Statistics",
            labels={"figure": "per-dimension histograms", "dataset": "{sub}"},
        ),
    log:
        f"{OUT}/logs/stats{{sub}}.log",


# Several datasets of one embodiment: statistics of their weighted mixture (mix_ratio), with exact quantiles.
rule stats_mixture:
    wildcard_constraints:
        tag=choice_pattern([tag for tag in TAGS if tag_has_relative(tag)]),
    input:
        stats=lambda wildcards: [
            f"{OUT}/stats{spec.subdir}/stats.json" for spec in SPECS if spec.embodiment_tag == wildcards.tag
        ],
        modality=lambda wildcards: next(s.modality_config_path for s in SPECS if s.embodiment_tag == wildcards.tag),
        mapping=lambda wildcards: [s.modality_json_path for s in SPECS
                                   if s.embodiment_tag == wildcards.tag and s.modality_json_path],
    output:
        stats=f"{OUT}/stats_mixture/{{tag}}/stats.json",
        relative_stats=f"{OUT}/stats_mixture/{{tag}}/relative_stats.json",
    log:
        f"{OUT}/logs/stats_mixture_{{tag}}.log",
    params:
        # lists: `:q` quotes each element, so paths with spaces survive the shell
        datasets=lambda wildcards: [s.path for s in SPECS if s.embodiment_tag == wildcards.tag],
        ratios=lambda wildcards: [str(s.mix_ratio) for s in SPECS if s.embodiment_tag == wildcards.tag],
        caches=lambda wildcards: [stats_cache(s.subdir) for s in SPECS if s.embodiment_tag == wildcards.tag],
        # one mapping per dataset (`-`: its own meta/modality.json), only when some dataset keeps it outside
        mappings=lambda wildcards: mixture_modality_json_flag(wildcards.tag),
        out=f"{OUT}/stats_mixture/{{tag}}",
    conda:
        "../../envs/groot-ft.yaml"
    shell:
        "groot-ft stats {params.datasets:q} --mix-ratios {params.ratios:q} --cache {params.caches:q} "
        "{params.mappings:q} --modality-config {input.modality:q} --out {params.out:q} --no-report > {log:q} 2>&1"


use rule stats_mixture as stats_mixture_absolute_actions with:
    wildcard_constraints:
        tag=choice_pattern([tag for tag in TAGS if not tag_has_relative(tag)]),
    output:
        stats=f"{OUT}/stats_mixture/{{tag}}/stats.json",
