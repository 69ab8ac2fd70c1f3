# rlrepro: train -> evaluate -> aggregate -> figures for every (method, scenario, seed) of the chosen preset.
# Run `snakemake --cores all` (preset from config.yaml), or `snakemake -n --config preset=paper` for the paper grid.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# The image every job runs in with --use-singularity (docker/Dockerfile); ignored without it.
container: config["container"]


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/sparse.smk"


rule all:
    default_target: True
    input:
        rules.tables.input,
        rules.figures.input,
