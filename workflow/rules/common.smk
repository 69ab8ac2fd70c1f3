# Config validation, the resolved grid, and the params slices every rule passes to the engine CLI.
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from rlrepro.config import RANDOM_REFERENCE, Resolved, check_keys, load_schema  # noqa: E402
from rlrepro.config import RUN_DIR as RUN_TEMPLATE, SPARSE_DIR as SPARSE_TEMPLATE  # noqa: E402
from rlrepro.errors import ConfigError  # noqa: E402

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    check_keys(config, load_schema(SCHEMA))
    validate(config, str(SCHEMA))
    RESOLVED = Resolved(config)
except ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# --use-singularity: every job runs in the `container:` image, with the image's python.
IN_CONTAINER = any(m.name == "APPTAINER" for m in workflow.deployment_settings.deployment_method)

# config.yaml's default `container:` names where the project's image would be published; no registry serves it yet.
# Under --use-singularity, say so before any pull fails with a registry error, and say how to build and set one.
UNPUBLISHED_IMAGE = "docker://rlrepro/rlrepro:"
if config["container"].startswith(UNPUBLISHED_IMAGE) and IN_CONTAINER:
    raise WorkflowError(
        f"container {config['container']!r} is not published on any registry: build the image from docker/Dockerfile "
        "(docker/README.md: podman/docker build, then push it to your registry or `apptainer build rlrepro.sif "
        "docker-daemon://...`) and point `container:` at it in config.yaml or with --config "
        "container=docker://<registry>/rlrepro:<tag> (a digest or a .sif path are better)."
    )


# Every rule runs `python -m rlrepro ...`; outside a container that is the first `python` on PATH, which is not the
# environment's when Snakemake is called by path (`.venv/bin/snakemake` without the venv's bin on PATH): each job would
# then fail with an import error in its own log. Say it once, before the first job starts (onstart: not in a dry run).
JOB_MODULES = ("rlrepro", "pandas", "pyarrow", "torch")


def check_job_python():
    if IN_CONTAINER:
        return  # the image's python runs the jobs
    probe = "import importlib.util as u; print(' '.join(m for m in %r if u.find_spec(m) is None))" % (JOB_MODULES,)
    python = shutil.which("python")  # the jobs' shells inherit this environment
    if python is None:
        problem = "there is no `python` on PATH"
    else:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True).stdout.split()
        problem = out and f"the jobs' `python` ({python}) cannot import {', '.join(out)}"
    if problem:
        raise WorkflowError(
            f"{problem}: every rule runs `python -m rlrepro` from PATH. Activate the project's environment first "
            "(`source .venv/bin/activate`, or `export PATH=$PWD/.venv/bin:$PATH`; `make` targets do this) or run with "
            "--use-singularity."
        )

onstart:
    check_job_python()


# Where the preset's runs, tables and figures go (`results_dir` of the preset; "results" unless it says otherwise), so
# that a study (e.g. `validate`) and the demo never overwrite each other's runs.
RESULTS = RESOLVED.results_dir


def res(path):
    """A path under the preset's results directory (wildcards kept)."""
    return f"{RESULTS}/{path}"


# Every job compares its engine with this checkout's before work (rlrepro.identity: a stale image fails loudly),
# checkpoints at config's interval and checks its compiled update if asked. Environment, not params: none of these
# changes what a job computes, so none reruns.
from rlrepro.identity import checkout_environment  # noqa: E402

CHECKOUT = checkout_environment(Path(workflow.basedir) / "src")
os.environ.update(CHECKOUT)
# Where envs/*.post-deploy.sh find the lock and the engine (Snakemake runs them from copies under .snakemake/conda/).
os.environ.setdefault("RLREPRO_CHECKOUT", str(Path(workflow.basedir).resolve()))
os.environ.setdefault("RLREPRO_CHECKPOINT_INTERVAL_S", str(config["checkpoint_interval_s"]))
os.environ.setdefault("RLREPRO_COMPILED_CHECK_EVERY", str(config["compiled_check_every"]))
os.environ.setdefault("RLREPRO_COMPILED_CHECK_TOLERANCE", str(config["compiled_check_tolerance"]))
if config.get("tensorboard"):
    os.environ.setdefault("RLREPRO_TENSORBOARD_DIR", res("tensorboard"))
# Apptainer/Singularity inject APPTAINERENV_X / SINGULARITYENV_X as X even with --cleanenv (sites that set it).
_EXPORTED = ["RLREPRO_CHECKPOINT_INTERVAL_S", "RLREPRO_COMPILED_CHECK_EVERY", "RLREPRO_COMPILED_CHECK_TOLERANCE"]
for _name in [*CHECKOUT, *_EXPORTED, "RLREPRO_TENSORBOARD_DIR"]:
    for _prefix in ("APPTAINERENV_", "SINGULARITYENV_"):
        if _name in os.environ:
            os.environ.setdefault(_prefix + _name, os.environ[_name])

# Env of every shell rule under --sdm conda (absolute: rule paths are relative to their .smk file); None otherwise, so
# that runs without conda never read (or need) the env files.
CONDA_ENV = (
    str(Path(workflow.basedir) / config["conda_env"])
    if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method)
    else None
)

RUN_DIR = res(RUN_TEMPLATE)
CKPT_DIR = res("_ckpt/{scenario}/{method}/seed{seed}")
SPARSE_DIR = res(SPARSE_TEMPLATE)
SPARSE_CKPT_DIR = res("_ckpt/sparse/{env}/{method}/keep{keep}/seed{seed}")


wildcard_constraints:
    scenario=r"[a-z0-9_]+/[a-z0-9_]+",
    method=r"[a-z0-9_]+(-[A-Za-z0-9_.=+-]+)?",
    seed=r"\d+",
    env=r"[a-z0-9_]+",
    keep=r"[0-9.]+",
    domain=r"[a-z0-9_]+",


def run_paths(template):
    return [template.format(method=r.method, scenario=r.scenario, seed=r.seed) for r in RESOLVED.runs]


def train_spec(wildcards):
    return json.dumps(RESOLVED.train_spec(wildcards.method, wildcards.scenario, int(wildcards.seed)), sort_keys=True)


def eval_spec(wildcards):
    return json.dumps(RESOLVED.eval_spec(wildcards.scenario, int(wildcards.seed)), sort_keys=True)


def aggregate_spec(wildcards):
    expected_rows = sorted({(r.scenario, r.method) for r in RESOLVED.runs})
    spec = {**RESOLVED.aggregate_spec(), "expected_seeds": len(RESOLVED.seeds), "expected_rows": expected_rows}
    return json.dumps(spec, sort_keys=True)


def scenario_results(wildcards):
    return present(
        [
            f"{RUN_DIR}/results.parquet".format(method=r.method, scenario=r.scenario, seed=r.seed)
            for r in RESOLVED.runs
            if r.scenario == wildcards.scenario
        ]
    )


def parent_dir(wildcards, output):
    return str(Path(output[0]).parent)


def output_stem(wildcards, output):
    return str(Path(output[0]).with_suffix(""))


def input_run_dir(wildcards, input):
    return str(Path(input.meta).parent)


def sparse_run_paths(template):
    return [template.format(method=r.method, env=r.env, keep=r.keep, seed=r.seed) for r in RESOLVED.sparse.runs]


def sparse_spec(wildcards):
    spec = RESOLVED.sparse.spec(wildcards.method, wildcards.env, float(wildcards.keep), int(wildcards.seed))
    return json.dumps(spec, sort_keys=True)


def sparse_dense_reference(wildcards):
    """A dapd job under the budget's ips_threshold_from_dense reads the same env and seed's dense results."""
    ref = RESOLVED.sparse.dense_reference(wildcards.method, wildcards.env, int(wildcards.seed))
    if ref is None:
        return {}
    return {"dense": f"{SPARSE_DIR}/results.parquet".format(method=ref.method, env=ref.env, keep=ref.keep, seed=ref.seed)}


def sparse_dense_flag(wildcards, input):
    return f"--dense-results {input.dense}" if "dense" in input.keys() else ""


def sparse_aggregate_spec(wildcards):
    return json.dumps(RESOLVED.sparse.aggregate_spec(), sort_keys=True)


def sparse_env_results(wildcards):
    return present(
        [
            f"{SPARSE_DIR}/results.parquet".format(method=r.method, env=r.env, keep=r.keep, seed=r.seed)
            for r in RESOLVED.sparse.runs
            if r.env == wildcards.env
        ]
    )


def continual_table_targets():
    """The continual tables when the preset has a continual grid (a sparse-only preset has none) and, with
    aggregate.allow_missing_runs, some run of it is finished."""
    runs = present(run_paths(f"{RUN_DIR}/results.parquet")) if RESOLVED.runs else []
    return [res("tables/continual_tables.md"), res("tables/continual_aggregate.md")] if runs else []


def sparse_table_targets():
    runs = present(sparse_run_paths(f"{SPARSE_DIR}/results.parquet")) if RESOLVED.sparse.runs else []
    return [res("tables/sparse_tables.md")] if runs else []


def present(paths):
    """With aggregate.allow_missing_runs, only the run outputs that exist (tables then list the missing runs);
    otherwise every path, so tables wait for the whole grid."""
    if config["aggregate"].get("allow_missing_runs"):
        return [p for p in paths if Path(p).exists()]
    return paths


def reference_csv(name):
    """The user's reference values for a table family, if supplied (none are shipped)."""
    path = Path(config["aggregate"]["reference_dir"]) / f"{name}.csv"
    return [str(path)] if path.exists() else []


def reference_option(wildcards, input):
    return f"--reference {input.reference[0]}" if input.reference else ""


def random_reference_pairs():
    """The (scenario, seed) pairs of the grid whose random-policy reference the tables read."""
    pairs = sorted({(r.scenario, r.seed) for r in RESOLVED.runs})
    if config["aggregate"].get("allow_missing_runs"):  # only the (scenario, seed) pairs some finished run has
        pairs = [(s, seed) for s, seed in pairs if present(
            [f"{RUN_DIR}/results.parquet".format(method=m, scenario=s, seed=seed) for m in RESOLVED.methods])]
    return pairs


def random_reference_results(wildcards):
    """A uniform-random policy on every task of each (scenario, seed) of the grid: the tables' learning reference."""
    return [res(RANDOM_REFERENCE.format(scenario=s, seed=seed)) for s, seed in random_reference_pairs()]


def scenario_random_results(wildcards):
    """The random-policy references of one scenario (its seeds in the grid): the task-performance figure's floor."""
    return [res(RANDOM_REFERENCE.format(scenario=s, seed=seed)) for s, seed in random_reference_pairs()
            if s == wildcards.scenario]  # fmt: skip


def continual_run_results(wildcards):
    return present(run_paths(f"{RUN_DIR}/results.parquet"))


def sparse_run_results(wildcards):
    return present(sparse_run_paths(f"{SPARSE_DIR}/results.parquet"))


def all_meta(wildcards):
    return present(run_paths(f"{RUN_DIR}/meta.json") + sparse_run_paths(f"{SPARSE_DIR}/meta.json"))


def bootstrap_spec(wildcards):
    return json.dumps(config["aggregate"]["bootstrap"], sort_keys=True)


def figure_targets():
    """Every figure of the preset's grid (continual and sparse)."""
    finished = present(run_paths(f"{RUN_DIR}/results.parquet"))  # every run, unless missing runs are allowed
    targets = [p.replace(f"{RESULTS}/runs/", f"{RESULTS}/figures/transfer_matrix/").replace("/results.parquet", ".png")
               for p in finished]  # fmt: skip
    # a scenario's or env's figures once it has a finished run (with allow_missing_runs, some may have none yet)
    scenarios = [s for s in RESOLVED.scenarios if scenario_results(SimpleNamespace(scenario=s))]
    for kind in ("stage_performance", "task_performance", "continual_curves"):
        targets += [res(f"figures/{kind}/{s}.png") for s in scenarios]
    if scenarios:
        targets += [res(f"figures/tradeoff/{d}.png") for d in dict.fromkeys(s.split("/")[0] for s in scenarios)]
        targets.append(res("figures/aggregate/normalised_performance.png"))
    for env in RESOLVED.sparse.envs:
        if sparse_env_results(SimpleNamespace(env=env)):
            targets += [res(f"figures/sparse_curves/{env}.png"), res(f"figures/sparse_layer_density/{env}.png")]
    return targets
