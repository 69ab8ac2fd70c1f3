"""Real Snakemake runs in a temporary copy of the workflow: the smoke DAG end to end and precise reruns."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from rlrepro import blas
from rlrepro.continual.methods.registry import method_names
from rlrepro.results import RESULT_SCHEMA
from rlrepro.scenarios import scenario_names

ROOT = Path(__file__).resolve().parents[1]
RUNS = [(m, "halfcheetah/forgetting") for m in method_names()]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
    return proc


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE) if m.group(1) != "total"}


def copy_workflow(dest: Path) -> Path:
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    return dest


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """A copy of the workflow with no results (dry runs and checks that stop before any job)."""
    return copy_workflow(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A copy of the workflow after the smoke pipeline ran to the end, once per module for every test that needs it,
    whichever runs first (tests that change its results work on their own copy; config.yaml is restored after a
    change)."""
    dest = copy_workflow(tmp_path_factory.mktemp("smoke"))
    proc = snakemake(dest, "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dest


def test_dry_run_of_the_paper_grid_lists_every_run(workflow_copy):
    proc = snakemake(workflow_copy, "-n", "--quiet", "rules", "--config", "preset=paper")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout + proc.stderr)
    n_runs = len(method_names()) * len(scenario_names()) * 10
    assert counts["train_run"] == n_runs and counts["evaluate_run"] == n_runs and counts["continual_tables"] == 1
    # Sparse suite: 3 sparse methods x 4 envs x 4 keep ratios x 5 seeds, plus dense once per env and seed.
    assert counts["train_sparse"] == 3 * 4 * 4 * 5 + 4 * 5 and counts["sparse_tables"] == 1
    assert counts["sparse_curves"] == 4


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "preset=nope",
            "unknown preset 'nope'; valid presets: demo, demo_methods, demo_sparse, paper, smoke, smoke_scenarios, validate",
        ),
        ("bogus=1", "unknown key(s) ['bogus'] in config"),
    ],
)
def test_bad_config_fails_before_any_job(workflow_copy, override, message):
    proc = snakemake(workflow_copy, "-n", "--config", override)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_use_singularity_with_the_unpublished_default_image_says_how_to_build_one(workflow_copy):
    """config.yaml's default image is on no registry: --use-singularity stops before any job, saying so."""
    proc = snakemake(workflow_copy, "-n", "--use-singularity")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "is not published on any registry: build the image from docker/Dockerfile" in out
    assert "apptainer or singularity command" not in out  # stopped before Snakemake looked for a runtime
    plain = snakemake(workflow_copy, "-n", "--quiet", "rules")  # without containers the default is never used
    assert plain.returncode == 0, plain.stderr


def test_a_python_on_path_without_the_engine_stops_before_any_job(workflow_copy, tmp_path):
    """Rules run `python -m rlrepro` from PATH: Snakemake called by path with another `python` first (here the base
    interpreter with only its standard library) fails once, saying how to fix it, instead of in every job's log."""
    bare = tmp_path / "bin" / "python"
    bare.parent.mkdir()
    bare.write_text(f'#!/bin/sh\nexec {sys._base_executable} -I -S "$@"\n')
    bare.chmod(0o755)
    target = "results/references/halfcheetah/forgetting/seed0/random.parquet"
    env = {**os.environ, "PATH": f"{bare.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", "preset=smoke", "--", target],
                          cwd=workflow_copy, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert f"the jobs' `python` ({bare}) cannot import rlrepro, pandas, pyarrow, torch" in proc.stdout + proc.stderr
    assert not (workflow_copy / target).exists() and not (workflow_copy / "results" / "logs").exists()


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_then_precise_rerun(smoke_run):
    workflow_copy = smoke_run
    res = workflow_copy / "results"
    for method, scenario in RUNS:
        run = res / "runs" / scenario / method / "seed0"
        for name in ("policies.pt", "train.parquet", "meta.json", "config.resolved.yaml", "results.parquet"):
            assert (run / name).is_file(), run / name
        df = pd.read_parquet(run / "results.parquet")
        assert list(df.columns) == list(RESULT_SCHEMA)
        matrix = df[df.metric == "avg_return"]
        assert sorted(zip(matrix.stage, matrix.task, strict=True)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        assert df["git_commit"].nunique() == 1 and df["method"].iloc[0] == method
        for ext in ("png", "pdf"):
            assert (res / "figures/transfer_matrix" / scenario / method / f"seed0.{ext}").stat().st_size > 0
        assert not list(run.glob(".*.tmp")), "temporary files left behind"
    for ext in ("png", "pdf"):
        assert (res / "figures/stage_performance/halfcheetah/forgetting").with_suffix(f".{ext}").stat().st_size > 0
        assert (res / "figures/continual_curves/halfcheetah/forgetting").with_suffix(f".{ext}").stat().st_size > 0
    # Each task after each stage, next to the random policy's level that the tables use.
    panels = pd.read_csv(res / "figures/task_performance/halfcheetah/forgetting.csv")
    assert len(panels) == len(method_names()) * 2 * 2 and panels["random"].notna().all()
    # The per-task table: every method's return right after training each task, next to a random policy's.
    tasks = pd.read_parquet(res / "tables/continual_tasks.parquet")
    assert len(tasks) == 2 * len(method_names()) and tasks["random"].notna().all()
    assert "| 0: hugefoot |" in (res / "tables/continual_tasks.md").read_text()
    summary = pd.read_parquet(res / "tables/continual_summary.parquet")
    assert sorted(summary["method"]) == sorted(method_names())
    assert "| FT-N |" in (res / "tables/continual_summary.md").read_text()
    # The sparse suite ran in the same DAG: every method's curve, densities at the keep ratio, and its table.
    sparse = pd.read_parquet(res / "tables/sparse_runs.parquet").set_index("method")
    assert sorted(sparse.index) == ["dapd", "dense", "rigl", "rlx2"]
    assert (sparse["n_evals"] == 3).all() and sparse["final_return"].notna().all()
    assert sparse.loc["dense", "actor_density"] == 1.0
    for method in ("dapd", "rigl", "rlx2"):
        assert sparse.loc[method, "actor_density"] == pytest.approx(0.05, abs=1e-3)
        assert sparse.loc[method, "train_flops"] < 0.2 * sparse.loc["dense", "train_flops"]
    assert sparse.loc["dapd", "mask_frozen_at"] == 200  # smoke threshold -1e9: frozen at the first evaluation
    assert (res / "figures/sparse_curves/halfcheetah.pdf").stat().st_size > 0
    assert "| RLx2 | 0.05 |" in (res / "tables/sparse_summary.md").read_text()
    # Paper tables (Markdown, LaTeX, HTML) and the figures built from the tables' Parquet.
    for stem in ("continual_tables", "continual_aggregate", "sparse_tables"):
        for ext in ("md", "tex", "html"):
            assert (res / f"tables/{stem}.{ext}").stat().st_size > 0, stem
    assert "| Rewire |" in (res / "tables/continual_tables.md").read_text()
    assert "| RLx2 @ 0.05 |" in (res / "tables/sparse_tables.md").read_text()
    assert "\\begin{tabular}" in (res / "tables/continual_tables.tex").read_text()
    for figure in ("tradeoff/halfcheetah", "aggregate/normalised_performance", "sparse_layer_density/halfcheetah"):
        assert (res / f"figures/{figure}.pdf").stat().st_size > 0, figure
    assert len(list((res / "sparse").glob("*/*/*/seed0/meta.json"))) == 4
    provenance = (res / "tables/provenance.md").read_text().splitlines()
    assert any(re.search(r"\|\s*sparse\s*\|\s*dapd\s*\|", line) for line in provenance)
    # Every run records the CPU it trained on, one torch thread per job, and the provenance table shows the model.
    cpu = json.loads(next((res / "runs").glob("*/*/*/seed0/meta.json")).read_text())["cpu"]
    assert cpu["torch_threads"] == 1 and cpu["cores"] >= 1 and cpu["model"] == blas.cpu_model()
    assert cpu["model"] is None or any(cpu["model"] in line for line in provenance)

    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(workflow_copy, "-n", "--config", "preset=smoke"))

    # Change one hyperparameter of one method: only that method's jobs and what reads them are scheduled.
    config = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    config["methods"]["ft_n"] = {"sac": {"lr_policy": 5.0e-4}}
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workflow_copy, "-n", "--config", "preset=smoke")
    out = proc.stdout + proc.stderr
    assert job_counts(out) == {
        "train_run": 1,
        "evaluate_run": 1,
        "transfer_matrix": 1,
        "stage_performance": 1,
        "task_performance": 1,
        "continual_curves": 1,
        "continual_tables": 1,
        "tradeoff": 1,
        "aggregate_figure": 1,
        "provenance": 1,
        "all": 1,
    }
    scheduled = set(re.findall(r"wildcards: .*method=(\w+)", out))
    assert scheduled == {"ft_n"}

    # The same for the sparse suite: RiGL's topology period reruns RiGL only (not RLx2, which has its own block).
    config["sparse"]["methods"]["rigl"]["zeta"] = 0.3
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workflow_copy, "-n", "sparse", "--config", "preset=smoke")
    out = proc.stdout + proc.stderr
    assert job_counts(out) == {"train_sparse": 1, "sparse_tables": 1, "sparse_curves": 1, "sparse_layer_density": 1,
                               "sparse": 1}  # fmt: skip
    assert set(re.findall(r"wildcards: .*method=(\w+)", out)) == {"rigl"}
    (workflow_copy / "config.yaml").write_text((ROOT / "config.yaml").read_text())  # as the other tests expect it


@pytest.mark.slow
def test_rerun_contract_what_reruns_nothing_and_what_reruns_everything(smoke_run):
    """The README's rerun contract on the finished smoke run: the checkpoint interval and TensorBoard are not job
    parameters (changing them schedules no job), and a new ENGINE_VERSION is one (every job reruns)."""
    config_path, engine = smoke_run / "config.yaml", smoke_run / "src/rlrepro/__init__.py"
    original_config, original_engine = config_path.read_text(), engine.read_text()

    def dry_run(*args: str) -> str:
        proc = snakemake(smoke_run, "-n", *args, "--config", "preset=smoke")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    everything = job_counts(dry_run("--forceall"))
    assert everything["train_run"] == len(RUNS) and everything["train_sparse"] == 4
    try:
        assert "Nothing to be done" in dry_run()
        config = yaml.safe_load(original_config)
        assert (config["checkpoint_interval_s"], config["tensorboard"]) == (300, False)
        config.update(checkpoint_interval_s=5, tensorboard=True)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        assert "Nothing to be done" in dry_run()
        config_path.write_text(original_config)
        assert re.search(r'^ENGINE_VERSION = "[^"]+"$', original_engine, re.MULTILINE)
        engine.write_text(re.sub(r'^ENGINE_VERSION = "[^"]+"$', 'ENGINE_VERSION = "99.0.0"', original_engine,
                                 flags=re.MULTILINE))  # fmt: skip
        out = dry_run()
        assert job_counts(out) == everything
        assert "params" in out.split("Reasons:")[-1].lower()  # scheduled because the jobs' params changed
    finally:
        config_path.write_text(original_config)
        engine.write_text(original_engine)


@pytest.mark.slow
def test_report_lists_every_table_and_figure(smoke_run):
    """`snakemake --report` after the smoke run embeds every table and figure."""
    workflow_copy = smoke_run
    (workflow_copy / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    proc = snakemake(workflow_copy, "--report", "results/report.html", "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (workflow_copy / "results/report.html").read_text()
    names = ["continual_tables.html", "continual_aggregate.html", "sparse_tables.html", "provenance.html"]
    names += [f"{m}/seed0.png" for m, _ in RUNS]
    names += ["forgetting.png", "normalised_performance.png"]
    for name in names:
        assert name in report, name
    for caption in (
        "Performance vs model size",
        "Sparse suite learning curves",
        "Mask density of every layer",
        "Training episode return over the run's env steps",
    ):
        assert caption in report, caption


@pytest.mark.slow
def test_a_fresh_clone_of_finished_runs_retrains_nothing_and_a_changed_spec_reruns_only_its_jobs(smoke_run, tmp_path):
    """A published study as git delivers it (no .snakemake/, file times in checkout order): `rlrepro adopt` checks each
    run against its job spec and marks it up to date; a run whose spec changed is moved aside, never reused."""
    workflow_copy = smoke_run
    clone = tmp_path / "clone"
    clone.mkdir()
    for item in ("Snakefile", "workflow", "src"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy2)(ROOT / item, clone / item)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    (clone / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(workflow_copy / "results", clone / "results", ignore=shutil.ignore_patterns("_ckpt", "report.html"))
    files = sorted(p for p in (clone / "results").rglob("*") if p.is_file())
    for i, path in enumerate(files):  # git writes files in path order: results.parquet before its train.parquet
        os.utime(path, ns=(10**18 + i * 10**9,) * 2)

    def dry_run() -> dict[str, int]:
        proc = snakemake(clone, "-n", "--config", "preset=smoke")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return job_counts(proc.stdout + proc.stderr)

    def adopt() -> str:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        proc = subprocess.run([sys.executable, "-m", "rlrepro", "adopt", "--preset", "smoke"], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        return proc.stdout

    assert dry_run().get("evaluate_run") == len(RUNS)  # the problem: every evaluation looks older than its training
    assert f"{2 * len(RUNS) + 1 + 4} outputs match their job specs, 0 are stale" in adopt()
    counts = dry_run()
    assert not {"train_run", "evaluate_run", "random_reference", "train_sparse"} & set(counts), counts

    # A changed hyperparameter of one method: that run is moved aside (kept) and only it retrains.
    config["methods"]["sac_n"] = {"sac": {"lr_policy": 5.0e-4}}
    (clone / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert "stale: results/runs/halfcheetah/forgetting/sac_n/seed0: trained with spec" in adopt()
    assert len(list((clone / "results/stale").glob("*/runs/halfcheetah/forgetting/sac_n/seed0/policies.pt"))) == 1
    counts = dry_run()
    assert counts["train_run"] == 1 and counts["evaluate_run"] == 1 and "train_sparse" not in counts
    # A changed evaluation budget: every evaluation and the random reference rerun, no training does.
    config["presets"]["smoke"]["budget"]["eval_rollouts"] = 2
    (clone / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert f"{len(RUNS)} are stale" in adopt()  # 8 evaluations (sac_n's went with its run) + the random reference
    counts = dry_run()
    assert (counts["train_run"], counts["evaluate_run"], counts["random_reference"]) == (1, len(RUNS), 1)
    assert "train_sparse" not in counts


@pytest.mark.slow
def test_missing_runs_are_listed_not_averaged_away(smoke_run, tmp_path):
    """With aggregate.allow_missing_runs, tables build from the runs that exist and name the missing ones (on a copy
    of the smoke run: one of its runs is deleted)."""
    workflow_copy = tmp_path / "smoke"
    shutil.copytree(smoke_run, workflow_copy, symlinks=True, ignore=shutil.ignore_patterns("_ckpt", "report.html"))
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["aggregate"]["allow_missing_runs"] = True
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = workflow_copy / "results/runs/halfcheetah/forgetting/ewc/seed0"
    (run / "results.parquet").unlink()
    (run / "meta.json").unlink()
    proc = snakemake(workflow_copy, "tables", "--config", "preset=smoke")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "train_run" not in job_counts(out) and "evaluate_run" not in job_counts(out)
    table = (workflow_copy / "results/tables/continual_tables.md").read_text()
    assert "Missing seeds (failed or absent runs, not averaged in): EWC: 1." in table
    assert "| EWC | n/a | n/a | n/a | n/a | n/a | n/a | 0 |" in table
    # figures of a partial study too (a study still running): no training, and no transfer matrix of the missing run
    dry = snakemake(workflow_copy, "-n", "figures", "--forcerun", "transfer_matrix", "--config", "preset=smoke")
    counts = job_counts(dry.stdout + dry.stderr)
    assert dry.returncode == 0 and "train_run" not in counts and "random_reference" not in counts
    assert counts["transfer_matrix"] == len(RUNS) - 1


def test_a_partial_study_with_no_finished_run_yet_builds_no_table_or_figure(workflow_copy):
    """`make validate-tables` on a study none of whose runs exists yet (or whose only run was moved aside as stale):
    no job with empty inputs, only the provenance page and the aggregate targets."""
    shutil.copytree(ROOT / "config", workflow_copy / "config", dirs_exist_ok=True)
    proc = snakemake(workflow_copy, "-n", "tables", "figures", "--configfile", "config/overlays/partial.yaml",
                     "--config", "preset=validate_ant")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout + proc.stderr) == {"provenance": 1, "tables": 1, "figures": 1}


def test_only_training_and_evaluation_rules_reach_a_cluster_scheduler():
    """Every table and figure rule is a localrule (SLURM's smoke test checks the jobs it received; this checks every
    rule, quickly, so a new figure rule cannot become a scheduler job at training resources unnoticed)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                                config_settings=ConfigSettings(config={"preset": "smoke"}),
                                snakefile=ROOT / "Snakefile", workdir=ROOT)._workflow  # fmt: skip
        remote = sorted(rule.name for rule in workflow.rules if rule.name not in workflow._localrules)
    assert remote == ["evaluate_run", "random_reference", "train_run", "train_sparse"]


def test_config_change_rerun_retrains_from_scratch_and_leaves_other_jobs_untouched(tmp_path):
    """The README's "Reruns after a config change", run for real: a checkpoint the old spec left behind (its job was
    killed) is never resumed by the new spec, and jobs whose params did not change are not touched."""
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    runs = {m: tmp_path / "results/runs/halfcheetah/forgetting" / m / "seed0" for m in ("ft_n", "sac_n")}
    targets = [str((run / "meta.json").relative_to(tmp_path)) for run in runs.values()]
    proc = snakemake(tmp_path, *targets, "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    untouched = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs["sac_n"].iterdir()}
    stale = torch.load(runs["ft_n"] / "policies.pt", weights_only=True)

    # The old spec's ft_n job is killed mid-task (as a wall-time limit would): its checkpoint stays behind.
    os.environ["RLREPRO_FAULT_KILL_AT"] = "epoch@90"
    try:
        proc = snakemake(tmp_path, targets[0], "--forcerun", "train_run", "--config", "preset=smoke")
    finally:
        del os.environ["RLREPRO_FAULT_KILL_AT"]
    assert proc.returncode != 0
    old_ckpt = tmp_path / "results/_ckpt/halfcheetah/forgetting/ft_n/seed0/state.pt"
    assert old_ckpt.exists()

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("methods:\n  ft_n:\n    sac:\n      lr_policy: 1.0e-2\n")
    proc = snakemake(tmp_path, *targets, "--configfile", str(overlay), "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(re.findall(r"wildcards: .*method=(\w+)", proc.stdout + proc.stderr)) == {"ft_n"}
    log = (tmp_path / "results/logs/train/halfcheetah/forgetting/ft_n/seed0.log").read_text()
    assert "ignored and removed: written by another job spec" in log
    meta = json.loads((runs["ft_n"] / "meta.json").read_text())
    assert meta["resumed_from"] is None and not old_ckpt.exists()
    assert yaml.safe_load((runs["ft_n"] / "config.resolved.yaml").read_text())["sac"]["lr_policy"] == 1.0e-2
    fresh = torch.load(runs["ft_n"] / "policies.pt", weights_only=True)
    assert any(not torch.equal(fresh["stages"][-1]["state"][k], v) for k, v in stale["stages"][-1]["state"].items())
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs["sac_n"].iterdir()} == untouched


def test_plain_snakemake_uses_the_local_profile(tmp_path):
    """Snakemake's own discovery finds workflow/profiles/default through the top-level `profiles` link: a user who
    types plain `snakemake` gets `rerun-incomplete` and the rest without remembering flags."""
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    (tmp_path / "profiles").symlink_to((ROOT / "profiles").readlink())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "preset=smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Using workflow specific profile profiles/default" in proc.stdout + proc.stderr
    profile = yaml.safe_load((tmp_path / "profiles/default/config.v8+.yaml").read_text())
    assert profile["rerun-incomplete"] is True and profile["cores"] == "all"


def test_variants_run_side_by_side_and_a_changed_variant_reruns_alone(tmp_path):
    """Two settings of one method as two method names (config `variants`): both run into their own directories with
    their own values, their results carry the variant names, and changing one variant's value reruns only its jobs."""
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    overlay = tmp_path / "variants.yaml"

    def write_overlay(strong: float) -> None:
        overlay.write_text(yaml.safe_dump({
            "variants": {"ewc-weak": {"base": "ewc", "fisher_coeff": 0.5},
                         "ewc-strong": {"base": "ewc", "fisher_coeff": strong}},
            "presets": {"smoke": {"methods": ["ewc-weak", "ewc-strong"], "scenarios": ["halfcheetah/forgetting"]}},
        }))  # fmt: skip

    runs = {v: tmp_path / "results/runs/halfcheetah/forgetting" / v / "seed0" for v in ("ewc-weak", "ewc-strong")}
    targets = [str((run / "results.parquet").relative_to(tmp_path)) for run in runs.values()]
    write_overlay(100.0)
    proc = snakemake(tmp_path, *targets, "--configfile", str(overlay), "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for variant, coeff in (("ewc-weak", 0.5), ("ewc-strong", 100.0)):
        spec = yaml.safe_load((runs[variant] / "config.resolved.yaml").read_text())
        # the variant's value wins over ewc's scenario override for halfcheetah/forgetting (0.01)
        assert (spec["method"], spec["variant"], spec["method_hp"]["fisher_coeff"]) == ("ewc", variant, coeff)
        meta = json.loads((runs[variant] / "meta.json").read_text())
        assert (meta["method"], meta["base_method"]) == (variant, "ewc")
        assert set(pd.read_parquet(runs[variant] / "results.parquet")["method"]) == {variant}
    weak = {p.name: p.stat().st_mtime_ns for p in runs["ewc-weak"].iterdir()}

    write_overlay(50.0)
    proc = snakemake(tmp_path, *targets, "--configfile", str(overlay), "--config", "preset=smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(re.findall(r"wildcards: .*method=([\w.=-]+)", proc.stdout + proc.stderr)) == {"ewc-strong"}
    assert {p.name: p.stat().st_mtime_ns for p in runs["ewc-weak"].iterdir()} == weak
    assert yaml.safe_load((runs["ewc-strong"] / "config.resolved.yaml").read_text())["method_hp"]["fisher_coeff"] == 50.0
