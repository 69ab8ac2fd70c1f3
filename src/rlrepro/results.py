"""Tidy results: one long-format Parquet per run, plus provenance (meta.json) — the schema lives here."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from rlrepro import blas
from rlrepro.identity import job_identity

# Provenance columns both suites repeat on every row (from the run's meta.json).
PROVENANCE_SCHEMA: dict[str, str] = {
    "engine_version": "category",
    "git_commit": "category",
    "config_hash": "category",
    "device": "category",
    "python_version": "category",
    "torch_version": "category",
}
# Column -> pandas dtype of a run's results.parquet (docs/results.md documents the same table).
RESULT_SCHEMA: dict[str, str] = {
    "suite": "category",
    "method": "category",
    "scenario": "category",
    "seed": "int64",
    "stage": "int64",
    "task": "Int64",
    "task_name": "category",
    "metric": "category",
    "value": "float64",
    "step": "Int64",
    **PROVENANCE_SCHEMA,
    "jax_version": "category",
    "brax_version": "category",
    "mujoco_version": "category",
    "train_wall_time_s": "float64",
    "eval_wall_time_s": "float64",
}
# Column -> dtype of a sparse-suite run's results.parquet: one row per (step, metric[, layer]).
SPARSE_SCHEMA: dict[str, str] = {
    "suite": "category",
    "method": "category",
    "env": "category",
    "env_id": "category",
    "keep_ratio": "float64",
    "seed": "int64",
    "step": "int64",
    "metric": "category",
    "layer": "category",
    "value": "float64",
    **PROVENANCE_SCHEMA,
    "gymnasium_version": "category",
    "mujoco_version": "category",
    "train_wall_time_s": "float64",
}
PACKAGES = ("torch", "jax", "jaxlib", "brax", "mujoco", "gymnasium", "metaworld", "numpy", "pandas", "snakemake")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def provenance(config_hash: str, device: str, identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Facts about the code, machine and software a job ran with (meta.json; key fields also go in every row).
    `identity`: the job's `rlrepro.identity.job_identity()` taken when it started, the code the process loaded (a
    commit made while it ran, a finished run or a change to src/, moves the checkout's); default: taken now."""
    return {
        **(identity or job_identity()),  # the engine, commit and source tree that ran, and the checkout's
        "config_hash": config_hash,
        "device": device,
        "blas": blas.status(),
        "cpu": blas.cpu_facts(),
        "python_version": platform.python_version(),
        "packages": package_versions(),
        "hostname": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "container": os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"),
        "command": " ".join(sys.argv),
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def provenance_columns(meta: dict[str, Any]) -> dict[str, Any]:
    """The provenance both suites repeat on every result row (from a run's meta.json)."""
    return {
        "engine_version": meta["engine_version"],
        "git_commit": meta["git_commit"],
        "config_hash": meta["config_hash"],
        "device": meta["device"],
        "python_version": meta["python_version"],
        "torch_version": meta["packages"]["torch"],
        "mujoco_version": meta["packages"]["mujoco"],
    }


def run_frame(
    rows: list[dict[str, Any]],
    *,
    suite: str,
    method: str,
    scenario: str,
    seed: int,
    task_names: list[str],
    meta: dict[str, Any],
    train_wall_time_s: float,
    eval_wall_time_s: float,
) -> pd.DataFrame:
    """Rows of (stage, task, metric, value, step) → the documented long format with provenance on every row."""
    df = pd.DataFrame(rows, columns=["stage", "task", "metric", "value", "step"])
    df["task"] = df["task"].astype("Int64")
    df["task_name"] = [task_names[t] if pd.notna(t) else None for t in df["task"]]
    packages = meta["packages"]
    df = df.assign(
        suite=suite,
        method=method,
        scenario=scenario,
        seed=seed,
        **provenance_columns(meta),
        jax_version=packages["jax"],
        brax_version=packages["brax"],
        train_wall_time_s=train_wall_time_s,
        eval_wall_time_s=eval_wall_time_s,
    )
    return df[list(RESULT_SCHEMA)].astype(RESULT_SCHEMA)


def read_results(paths: list[Path | str]) -> pd.DataFrame:
    """Concatenate continual run Parquets, keeping the documented dtypes."""
    return read_frames(paths, RESULT_SCHEMA)


def sparse_run_frame(
    rows: list[tuple[int, str, str | None, float]],
    *,
    method: str,
    env: str,
    env_id: str,
    keep_ratio: float,
    seed: int,
    meta: dict[str, Any],
    train_wall_time_s: float,
) -> pd.DataFrame:
    """(step, metric, layer, value) rows of a sparse run → the documented long format with provenance."""
    df = pd.DataFrame(rows, columns=["step", "metric", "layer", "value"])
    df = df.assign(
        suite="sparse",
        method=method,
        env=env,
        env_id=env_id,
        keep_ratio=keep_ratio,
        seed=seed,
        **provenance_columns(meta),
        gymnasium_version=meta["packages"]["gymnasium"],
        train_wall_time_s=train_wall_time_s,
    )
    return df[list(SPARSE_SCHEMA)].astype(SPARSE_SCHEMA)


def read_frames(paths: list[Path | str], schema: dict[str, str]) -> pd.DataFrame:
    """Concatenate run Parquets of one schema, keeping its dtypes (categories are unioned)."""
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.items()})
    df = pd.concat([f.astype({c: "object" for c, t in schema.items() if t == "category"}) for f in frames])
    return df.reset_index(drop=True).astype(schema)


def provenance_tables(meta_paths: list[Path | str]) -> tuple[str, str]:
    """The runs' provenance (one row per meta.json) and the package versions they used, as Markdown and HTML."""
    import json

    metas = [json.loads(Path(p).read_text()) for p in meta_paths]
    columns = ["suite", "method", "scenario", "env", "keep_ratio", "seed", "engine_version", "git_commit", "git_dirty",
               "config_hash", "device", "hostname", "cpu_model", "cores", "slurm_job_id", "container",
               "train_wall_time_s", "time_utc"]  # fmt: skip
    rows = []
    for m in metas:
        cpu = m.get("cpu") or {}  # empty for runs written before meta.json carried it
        rows.append({**{c: m.get(c, "continual" if c == "suite" else None) for c in columns},
                     "cpu_model": cpu.get("model"), "cores": cpu.get("cores")})  # fmt: skip
    runs = pd.DataFrame(rows, columns=columns)
    runs["git_commit"] = runs["git_commit"].astype(str).str[:12]
    versions = pd.DataFrame([m.get("packages", {}) for m in metas])
    software = pd.DataFrame(
        {"package": versions.columns, "versions": [", ".join(sorted(set(versions[c].dropna().astype(str)))) for c in versions]}
    )
    md = ["# Provenance", "", f"{len(runs)} runs.", "", "## Software", "", software.to_markdown(index=False)]
    md += ["", "## Runs", "", runs.to_markdown(index=False), ""]
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h2>Provenance</h2>"
        f"<p>{len(runs)} runs.</p><h3>Software</h3>{software.to_html(index=False, border=0)}"
        f"<h3>Runs</h3>{runs.to_html(index=False, border=0, na_rep='')}</body></html>\n"
    )
    return "\n".join(md), page
