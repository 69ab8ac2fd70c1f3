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


# Short table and figure jobs run where Snakemake runs (on a cluster: the submit host), never as scheduler jobs: on
# the paper grid about 1,650 sub-minute jobs would otherwise each become an sbatch job at training resources.
localrules:
    all,
    train,
    tables,
    figures,
    sparse,
    continual_tables,
    sparse_tables,
    provenance,
    transfer_matrix,
    stage_performance,
    task_performance,
    continual_curves,
    tradeoff,
    aggregate_figure,
    sparse_curves,
    sparse_layer_density,


rule all:
    default_target: True
    input:
        rules.tables.input,
        rules.figures.input,
