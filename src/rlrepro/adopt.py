"""Adopt finished runs that arrive without Snakemake's records: a fresh clone of a published study (git keeps neither
file times nor `.snakemake/`), or runs copied from another machine.

Snakemake decides what to rerun from its metadata (params, code, input) and, for outputs it has no record of, from
file times alone. On a fresh clone those times follow the checkout order, not the order the jobs ran in: a committed
DAPD run can look older than the dense run its threshold came from and retrain, and a config changed since the runs
were made goes unnoticed. `rlrepro adopt` checks every finished run of the preset's grid against the job spec the
current config gives it (meta.json's `config_hash`; the evaluation's `eval_config_hash`, kept in its Parquet's
attributes; for DAPD the threshold re-derived from the dense run it read), marks the runs that match as up to date
with `snakemake --touch`, and moves the ones that do not into `<results_dir>/stale/<UTC time>/` (never deleted), so
that Snakemake reruns them.

Runs that travel are data, never code: before a run is adopted its policies.pt (or model.pt) is read the way the
pipeline reads it (`torch.load(weights_only=True)`). A file that holds pickled objects (a hostile file, or one an
older rlrepro wrote) is refused: reported with the command that converts a trusted one, neither adopted nor moved.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rlrepro.config import RANDOM_REFERENCE, RUN_DIR, SPARSE_DIR, Resolved, stable_hash
from rlrepro.naming import job_label


@dataclass
class Adoption:
    """What `plan` found: outputs to mark up to date (Snakemake targets) and outputs that no longer match the config."""

    adopted: list[Path] = field(default_factory=list)
    stale: list[tuple[Path, str]] = field(default_factory=list)
    waiting: list[tuple[Path, str]] = field(default_factory=list)  # left alone: their input is rerun first
    refused: list[str] = field(default_factory=list)
    """Why a run's policies or model file was refused (it names the file); the run is left alone."""


def _eval_hash(path: Path) -> str | None:
    return pd.read_parquet(path).attrs.get("eval_config_hash")


def _meta_hash(run_dir: Path) -> str | None:
    return json.loads((run_dir / "meta.json").read_text()).get("config_hash")


def _refusal(path: Path) -> str | None:
    """Why the run file at `path` cannot be adopted (not data, or not what its job writes), or None."""
    from rlrepro.continual import read_policies
    from rlrepro.errors import ConfigError
    from rlrepro.io import read_torch_data

    try:
        if path.name == "policies.pt":
            read_policies(path)
        elif not {"actor", "critic", "masks"} <= set(read_torch_data(path)):
            return f"{path}: not a sparse run's model file (no actor, critic and masks)"
    except ConfigError as err:
        return str(err)
    except Exception as err:  # a torn or foreign file
        return f"{path}: unreadable ({type(err).__name__}: {err})"
    return None


def _mismatch(what: str, got: str | None, want: str) -> str:
    return f"{what} with spec {got or 'unrecorded'}, the config now gives {want}"


def _check_evaluation(out: Adoption, path: Path, spec: dict[str, Any]) -> None:
    if not path.exists():
        return
    want = stable_hash(spec)
    if (got := _eval_hash(path)) == want:
        out.adopted.append(path)
    else:  # only the evaluation reruns: a continual run's training stands
        out.stale.append((path, _mismatch("evaluated", got, want)))


def plan(resolved: Resolved) -> Adoption:
    """Compare every finished run of the grid (its meta.json exists: a train job writes it last) with its job spec."""
    from rlrepro.sparse.config import resolve_threshold_from_dense

    root = Path(resolved.results_dir)
    out = Adoption()
    for run in resolved.runs:
        run_dir = root / RUN_DIR.format(scenario=run.scenario, method=run.method, seed=run.seed)
        if not (run_dir / "meta.json").exists():
            continue
        want = stable_hash(resolved.train_spec(run.method, run.scenario, run.seed))
        if (got := _meta_hash(run_dir)) != want:
            out.stale.append((run_dir, _mismatch("trained", got, want)))
            continue
        if (why := _refusal(run_dir / "policies.pt")) is not None:
            out.refused.append(why)
            continue
        out.adopted.append(run_dir / "meta.json")  # the training matches; now its evaluation
        _check_evaluation(out, run_dir / "results.parquet", resolved.eval_spec(run.scenario, run.seed))
    for scenario, seed in sorted({(r.scenario, r.seed) for r in resolved.runs}):
        reference = root / RANDOM_REFERENCE.format(scenario=scenario, seed=seed)
        _check_evaluation(out, reference, resolved.eval_spec(scenario, seed))
    # Dense runs first: a DAPD run is checked against the threshold its (adopted) dense run gives.
    for run in sorted(resolved.sparse.runs, key=lambda r: resolved.sparse.threshold_rule(r.method) is not None):
        run_dir = root / SPARSE_DIR.format(env=run.env, method=run.method, keep=run.keep, seed=run.seed)
        if not (run_dir / "meta.json").exists():
            continue
        spec: dict[str, Any] = resolved.sparse.spec(run.method, run.env, run.keep_ratio, run.seed)
        ref = resolved.sparse.dense_reference(run.method, run.env, run.seed)
        if ref is not None:
            dense = root / SPARSE_DIR.format(env=ref.env, method=ref.method, keep=ref.keep, seed=ref.seed) / "results.parquet"
            if dense not in out.adopted:
                out.waiting.append((run_dir, f"its threshold's dense run {dense.parent} is not adopted: it reruns after it"))
                continue
            spec = resolve_threshold_from_dense(spec, dense)
        want = stable_hash(spec)
        if (got := _meta_hash(run_dir)) != want:
            out.stale.append((run_dir, _mismatch("trained", got, want)))
        elif (why := _refusal(run_dir / "model.pt")) is not None:
            out.refused.append(why)
        else:
            out.adopted.append(run_dir / "results.parquet")
    return out


def study_status(preset: str, resolved: Resolved, hours_per_job: dict[str, float] | None = None) -> str:
    """How many of a preset's jobs have finished runs that match their job spec today (engine version included), and,
    given `hours_per_job` (core-hours of one of the study's jobs, by "scenario · Method" / "env · Method", as its
    tables measured them), about what the rest cost."""
    root = Path(resolved.results_dir)
    jobs = {root / RUN_DIR.format(scenario=r.scenario, method=r.method, seed=r.seed): job_label(r.scenario, r.method)
            for r in resolved.runs}  # fmt: skip
    jobs |= {root / SPARSE_DIR.format(env=r.env, method=r.method, keep=r.keep, seed=r.seed): job_label(r.env, r.method)
             for r in resolved.sparse.runs}  # fmt: skip
    adoption = plan(resolved)
    # done = trained and evaluated as today's spec says (a continual run's results.parquet is adopted only then)
    done = {p.parent for p in adoption.adopted if p.name == "results.parquet"} & set(jobs)
    stale = {p for p, _ in adoption.stale} & set(jobs)
    waiting = {p for p, _ in adoption.waiting} & set(jobs)
    rest = len(jobs) - len(done) - len(stale) - len(waiting) - len(adoption.refused)
    extra = f", {len(waiting)} waiting for a rerun of their input" if waiting else ""
    extra += f", {len(adoption.refused)} refused (unreadable files)" if adoption.refused else ""
    line = (f"{preset}: {len(done)} of {len(jobs)} jobs done on the current engine and config, {len(stale)} from an "
            f"older engine or config{extra}, {rest} not run or not evaluated")  # fmt: skip
    todo = [key for path, key in jobs.items() if path not in done]
    if hours_per_job is None or not todo:
        return line
    known = [hours_per_job[key] for key in todo if key in hours_per_job]
    line += f"; the {len(todo)} to run: about {sum(known):.1f} core-hours at its jobs' measured times"
    unknown = len(todo) - len(known)
    return line + (f" ({unknown} of a method and scenario it has not measured yet, not counted)" if unknown else "")


def move_aside(adoption: Adoption, root: Path) -> Path:
    """Move every stale output under `<root>/stale/<UTC time>[-n]/` (a new directory each call: two calls within one
    second never overwrite each other's files), keeping its path below root."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (root / "stale").mkdir(parents=True, exist_ok=True)
    dest, n = root / "stale" / stamp, 0
    while True:
        try:
            dest.mkdir()
            break
        except FileExistsError:
            n += 1
            dest = root / "stale" / f"{stamp}-{n}"
    for path, _ in adoption.stale:
        target = dest / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    return dest


def touch(targets: list[Path], snakemake_args: list[str]) -> None:
    """Snakemake's own `--touch`: the adopted outputs and everything upstream of them get their times in DAG order."""
    if not targets:
        return
    cmd = [sys.executable, "-m", "snakemake", "--touch", "--cores", "1", *snakemake_args, "--", *map(str, targets)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
