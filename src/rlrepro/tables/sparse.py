"""Sparse-suite tables: per-run scores from the evaluation curve, then per (env, method, keep ratio) summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlrepro.naming import display_name

SPARSE_RUN_KEYS = ["suite", "env", "method", "keep_ratio", "seed"]


def _last(run: pd.DataFrame, metric: str) -> float:
    values = run[run["metric"] == metric].sort_values("step")["value"]
    return float(values.iloc[-1]) if len(values) else np.nan


def sparse_run_metrics(results: pd.DataFrame, last_k: int) -> pd.DataFrame:
    """One row per run: mean eval return over its last k evaluations (the paper's score), densities, sizes, cost."""
    rows = []
    for key, run in results.groupby(SPARSE_RUN_KEYS, observed=True):
        evals = run[run["metric"] == "eval_return"].sort_values("step")
        frozen = run[run["metric"] == "mask_frozen_at"]["value"]
        rows.append(
            {
                **dict(zip(SPARSE_RUN_KEYS, key, strict=True)),
                "steps": int(run["step"].max()),
                "n_evals": len(evals),
                "final_return": float(evals["value"].tail(last_k).mean()) if len(evals) else np.nan,
                "best_return": float(evals["value"].max()) if len(evals) else np.nan,
                "actor_density": _last(run, "actor_density"),
                "critic_density": _last(run, "critic_density"),
                "actor_params": _last(run, "actor_params"),
                "critic_params": _last(run, "critic_params"),
                "actor_inference_flops": _last(run, "actor_inference_flops"),
                "train_flops": _last(run, "train_flops"),
                "mask_frozen_at": float(frozen.iloc[0]) if len(frozen) else np.nan,
                "train_wall_time_s": float(run["train_wall_time_s"].iloc[0]),
            }
        )
    runs = pd.DataFrame(rows, columns=[*SPARSE_RUN_KEYS, "steps", "n_evals", "final_return", "best_return",
                                       "actor_density", "critic_density", "actor_params", "critic_params",
                                       "actor_inference_flops", "train_flops", "mask_frozen_at",
                                       "train_wall_time_s"])  # fmt: skip
    runs["label"] = [f"{m} @ {k:g}" for m, k in zip(runs["method"], runs["keep_ratio"], strict=True)]
    runs["params"] = runs["actor_params"] + runs["critic_params"]
    dense = runs[runs["method"] == "dense"].groupby("env", observed=True)[["final_return", "params", "train_flops"]].mean()
    for column in ("final_return", "params", "train_flops"):
        reference = runs["env"].map(dense[column]).astype(float)
        name = "return_rel_dense" if column == "final_return" else f"{column}_rel_dense"
        runs[name] = runs[column] / reference
    return runs


SPARSE_SUMMARY_METRICS = ["final_return", "actor_density", "critic_density", "actor_params", "critic_params",
                          "train_flops", "train_wall_time_s"]  # fmt: skip
RELATIVE_TO_DENSE = ["return_rel_dense", "params_rel_dense", "train_flops_rel_dense"]


def sparse_summary(run_metrics: pd.DataFrame, expected_seeds: int | None = None) -> pd.DataFrame:
    """Mean/std over seeds per (env, method, keep ratio), the return, parameters and training FLOPs relative to the
    env's dense runs (the mean of the runs' ratios to the dense mean = the ratio of the means), and
    `missing_seeds` for runs that are absent."""
    grouped = run_metrics.groupby(["suite", "env", "method", "keep_ratio"], observed=True)
    out = grouped[SPARSE_SUMMARY_METRICS].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out[RELATIVE_TO_DENSE] = grouped[RELATIVE_TO_DENSE].mean()
    out["n_seeds"] = grouped.size()
    if expected_seeds is not None:
        out["missing_seeds"] = expected_seeds - out["n_seeds"]
    return out.reset_index()


def _mean_std(row: pd.Series, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    return "n/a" if pd.isna(mean) else f"{mean:.4g}" + ("" if pd.isna(std) else f" ± {std:.2g}")


def _ratio(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.3g}"


SPARSE_HEADER = ["method", "keep", "return (last evals)", "× dense", "actor dens.", "critic dens.", "params", "× dense",
                 "train FLOPs", "× dense", "train time (s)", "seeds"]  # fmt: skip


def _sparse_cells(row: pd.Series) -> list[str]:
    params = row["actor_params_mean"] + row["critic_params_mean"]
    return [
        display_name(row["method"]),
        f"{row['keep_ratio']:g}",
        _mean_std(row, "final_return"),
        _ratio(row["return_rel_dense"]),
        f"{row['actor_density_mean']:.3f}",
        f"{row['critic_density_mean']:.3f}",
        f"{params:,.0f}",
        _ratio(row["params_rel_dense"]),
        f"{row['train_flops_mean']:.3g}",
        _ratio(row["train_flops_rel_dense"]),
        f"{row['train_wall_time_s_mean']:.0f}",
        str(int(row["n_seeds"])),
    ]


def render_sparse_markdown(
    summary: pd.DataFrame, ips_threshold_fraction: float | None = None, threshold_from_dense: bool = False
) -> str:
    """One Markdown table per env: rows = (method, keep ratio), cells = mean ± std over seeds; under it the DAPD
    freeze threshold: the one each dapd run used (threshold_from_dense), or the one our dense runs suggest
    (ips_threshold_fraction × dense return)."""
    parts = []
    for env, group in summary.groupby("env", observed=True):
        lines = [f"### {env}", "", "| " + " | ".join(SPARSE_HEADER) + " |", "|" + "---|" * len(SPARSE_HEADER)]
        ordered = group.sort_values(["keep_ratio", "method"], ascending=[False, True])
        lines += ["| " + " | ".join(_sparse_cells(row)) + " |" for _, row in ordered.iterrows()]
        missing = group.get("missing_seeds")
        if missing is not None and (missing > 0).any():
            short = ", ".join(
                f"{display_name(m)} keep {k:g}: {int(n)}"
                for m, k, n in zip(group["method"], group["keep_ratio"], missing, strict=True)
                if n > 0
            )
            lines += ["", f"Missing seeds (failed or absent runs): {short}."]
        dense = group[group["method"] == "dense"]["final_return_mean"]
        if threshold_from_dense:
            lines += ["", f"DAPD freeze threshold: {ips_threshold_fraction:g} × the final return of the dense run of "
                      "the same seed at this budget (ips_threshold_from_dense; each run's value in its meta.json)."]
        elif ips_threshold_fraction is not None and len(dense) and pd.notna(dense.iloc[0]):
            dense_return = float(dense.iloc[0])
            suggested = f"{ips_threshold_fraction:g} × {dense_return:.4g} = {ips_threshold_fraction * dense_return:.4g}"
            lines += ["", f"DAPD freeze threshold these dense runs suggest: {suggested} (sparse.methods.dapd.ips_threshold)."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
