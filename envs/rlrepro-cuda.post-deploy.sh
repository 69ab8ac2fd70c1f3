#!/usr/bin/env bash
# As rlrepro.post-deploy.sh, with the CUDA builds: PyPI's torch 2.13.0 (CUDA 13) and jax's CUDA 13 plugin.
set -euo pipefail
checkout="${RLREPRO_CHECKOUT:?RLREPRO_CHECKOUT is unset: create this env through the Snakefile (snakemake --sdm conda)}"
python -m pip install --no-cache-dir -c "$checkout/requirements.lock" "torch==2.13.0" "jax[cuda13]==0.10.2" -e "$checkout"
