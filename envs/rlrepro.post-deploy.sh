#!/usr/bin/env bash
# Run by Snakemake inside the new conda env (a copy of this file under .snakemake/conda/): the lock's pins from PyPI,
# then the checkout's engine, editable. The Snakefile exports RLREPRO_CHECKOUT (the checkout Snakemake runs from).
set -euo pipefail
checkout="${RLREPRO_CHECKOUT:?RLREPRO_CHECKOUT is unset: create this env through the Snakefile (snakemake --sdm conda)}"
python -m pip install --no-cache-dir -c "$checkout/requirements.lock" -e "$checkout"
