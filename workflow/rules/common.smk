# Config validation, the resolved grid, and the params slices every rule passes to the engine CLI.
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from rlrepro.config import Resolved, check_keys, load_schema  # noqa: E402
from rlrepro.errors import ConfigError  # noqa: E402

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    check_keys(config, load_schema(SCHEMA))
    validate(config, str(SCHEMA))
    RESOLVED = Resolved(config)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

RUN_DIR = "results/runs/{scenario}/{method}/seed{seed}"
CKPT_DIR = "results/_ckpt/{scenario}/{method}/seed{seed}"


wildcard_constraints:
    scenario=r"[a-z0-9_]+/[a-z0-9_]+",
    method=r"[a-z0-9_]+",
    seed=r"\d+",


def run_paths(template):
    return [template.format(method=r.method, scenario=r.scenario, seed=r.seed) for r in RESOLVED.runs]


def train_spec(wildcards):
    return json.dumps(RESOLVED.train_spec(wildcards.method, wildcards.scenario, int(wildcards.seed)), sort_keys=True)


def eval_spec(wildcards):
    return json.dumps(RESOLVED.eval_spec(wildcards.scenario, int(wildcards.seed)), sort_keys=True)


def aggregate_spec(wildcards):
    return json.dumps({**RESOLVED.aggregate_spec(), "expected_seeds": len(RESOLVED.seeds)}, sort_keys=True)


def scenario_results(wildcards):
    return [
        f"{RUN_DIR}/results.parquet".format(method=r.method, scenario=r.scenario, seed=r.seed)
        for r in RESOLVED.runs
        if r.scenario == wildcards.scenario
    ]


def parent_dir(wildcards, output):
    return str(Path(output[0]).parent)


def output_stem(wildcards, output):
    return str(Path(output[0]).with_suffix(""))


def input_run_dir(wildcards, input):
    return str(Path(input.meta).parent)
