"""Save the validated workflow config (defaults filled in) as the run's single source of truth."""

import sys

from groot_ft.config import FinetuneConfig

with open(snakemake.log[0], "w") as log:  # noqa: F821 - injected by Snakemake
    sys.stderr = log
    cfg = FinetuneConfig.from_dict(dict(snakemake.params.run_config), source="workflow config")  # noqa: F821
    cfg.save_yaml(snakemake.output.config)  # noqa: F821
    print(f"wrote {snakemake.output.config}", file=log)  # noqa: F821
