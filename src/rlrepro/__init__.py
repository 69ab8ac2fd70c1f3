"""rlrepro: one engine and one Snakemake pipeline for structure-adaptive deep RL (Rewire, DAPD).

Importing the package is cheap on purpose (no torch, no jax): the Snakefile imports the config and registry
modules while it parses the workflow.
"""

# Bump deliberately when an engine change must rerun existing results: it is part of every job's params.
ENGINE_VERSION = "0.3.0"
__version__ = ENGINE_VERSION
