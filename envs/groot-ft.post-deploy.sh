#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda environment, after creating it from groot-ft.yaml.
# groot-ft is installed editable from this checkout (its dependencies are already pinned in groot-ft.yaml).
set -euo pipefail
pip install --no-deps -e "$(dirname "$0")/.."
