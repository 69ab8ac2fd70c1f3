"""Figures: one function per figure, reading result frames only; Agg backend, one style, colour-blind palette."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rlrepro import metrics
from rlrepro.io import atomic_write

# Okabe–Ito colour-blind-safe palette.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "figure.dpi": 120,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def save(fig: plt.Figure, stem: Path | str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically."""
    stem = Path(stem)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        atomic_write(path, lambda p, ext=ext: fig.savefig(p, format=ext, bbox_inches="tight"))
        paths.append(path)
    plt.close(fig)
    return paths


def transfer_matrix(run: pd.DataFrame, stem: Path | str) -> list[Path]:
    """Heatmap of p[s][j]: evaluation return on task j (columns) after training stage s (rows)."""
    p = metrics.performance_matrix(run)
    names = run.dropna(subset=["task"]).drop_duplicates("task").sort_values("task")["task_name"].astype(str).tolist()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.2 + 0.7 * p.shape[1], 1.0 + 0.55 * p.shape[0]))
        image = ax.imshow(p, cmap="viridis", aspect="auto")
        for (s, j), value in np.ndenumerate(p):
            label = f"{value:.0f}" if abs(value) >= 100 else f"{value:.2g}"
            ax.text(j, s, label, ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(p.shape[1]), [f"{j}:{n}" for j, n in enumerate(names)], rotation=45, ha="right")
        ax.set_yticks(range(p.shape[0]))
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after training stage")
        run_id = f"{run['method'].iloc[0]} · {run['scenario'].iloc[0]} · seed {run['seed'].iloc[0]}"
        ax.set_title(run_id)
        fig.colorbar(image, ax=ax, label="average return")
        return save(fig, stem)


def stage_performance(results: pd.DataFrame, stem: Path | str) -> list[Path]:
    """Average return over the tasks trained so far, after each stage, per method (mean ± std over seeds)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
        for method, group in results.groupby("method", observed=True):
            runs = group.groupby("seed")
            curves = np.array([metrics.mean_seen_per_stage(metrics.performance_matrix(run)) for _, run in runs])
            stages = np.arange(curves.shape[1])
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            ax.plot(stages, mean, marker="o", label=str(method))
            if len(curves) > 1:
                ax.fill_between(stages, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("training stage (task index)")
        ax.set_ylabel("avg return on tasks seen so far")
        ax.set_title(str(results["scenario"].iloc[0]))
        ax.legend(frameon=False)
        return save(fig, stem)


def sparse_curves(results: pd.DataFrame, stem: Path | str) -> list[Path]:
    """One env of the sparse suite: evaluation return vs env steps per (method, keep ratio), mean ± std band over
    seeds; the networks' density over time; and DAPD's mask turnover (share of kept connections that are new at
    each mask update: the warm-up, then zero once frozen)."""
    evals = results[results["metric"] == "eval_return"]
    density = results[results["metric"].isin(["actor_density", "critic_density"])]
    turnover = results[results["metric"].isin(["actor_mask_change", "critic_mask_change"])]
    with plt.rc_context(STYLE):
        fig, (ax, ax_d, ax_t) = plt.subplots(1, 3, figsize=(11, 3.0), gridspec_kw={"width_ratios": [3, 2, 2]})
        for i, ((method, keep), group) in enumerate(evals.groupby(["method", "keep_ratio"], observed=True)):
            color = PALETTE[i % len(PALETTE)]
            curve = group.pivot_table(index="step", columns="seed", values="value")
            mean, std = curve.mean(axis=1), curve.std(axis=1)
            ax.plot(curve.index, mean, color=color, label=f"{method} (keep {keep:g})")
            if curve.shape[1] > 1:
                ax.fill_between(curve.index, mean - std, mean + std, color=color, alpha=0.2)
            for frame, axis in ((density, ax_d), (turnover, ax_t)):
                mine = frame[(frame["method"] == method) & (frame["keep_ratio"] == keep)]
                for prefix, style in (("actor", "-"), ("critic", ":")):
                    series = mine[mine["metric"].astype(str).str.startswith(prefix)].groupby("step")["value"].mean()
                    if len(series):
                        axis.plot(series.index, series.values, style, color=color)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return (deterministic)")
        ax.set_title(str(results["env_id"].iloc[0]))
        ax.legend(frameon=False, fontsize=7)
        ax_d.set_xlabel("env steps")
        ax_d.set_ylabel("density (— actor, ··· critic)")
        ax_d.set_yscale("log")
        ax_t.set_xlabel("env steps")
        ax_t.set_ylabel("new share of the kept mask (DAPD)")
        return save(fig, stem)
