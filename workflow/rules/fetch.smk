# fetch_base_model: find the base model (and tokenizer) and, for a hub repo id, download it into the Hugging Face
# cache (HF_HOME / HF_HUB_CACHE; HF_TOKEN or `hf auth login` for gated repos). It runs inside Snakemake on the
# submit/login node, which has network, before any job that reads the model; the jobs (shards, finetune,
# eval_open_loop) run with HF_HUB_OFFLINE=1, so SLURM compute nodes need no network, only the shared cache.
# For an N1.7 base it also fetches the gated nvidia/Cosmos-Reason2-2B backbone repo's tokenizer, config and
# image-processor files (hub.resolve_n17_backbone). Not part of the DAG for a preset other than n1.7-3b
# (BASE_MODEL_JSON is None): nothing to fetch.
if BASE_MODEL_JSON:

    rule fetch_base_model:
        output:
            info=BASE_MODEL_JSON,
        log:
            f"{OUT}/logs/fetch_base_model.log",
        params:
            args=fetch_arguments(),
        localrule: True
        conda:
            "../../envs/groot-ft.yaml"
        shell:
            "groot-ft fetch-base-model {params.args:q} --out {output.info:q} > {log:q} 2>&1"
