"""Figures: one function per figure, reading result frames only; Agg backend, one style, colour-blind palette."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from rlrepro import metrics
from rlrepro.io import atomic_write
from rlrepro.metrics.stats import BootstrapConfig, mean_ci
from rlrepro.naming import display_name, method_rank, split_variant

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
# Legend placement beside the axes (saved with bbox_inches="tight"): with many methods a legend inside covers lines.
LEGEND_BESIDE = {"frameon": False, "loc": "center left", "bbox_to_anchor": (1.0, 0.5)}


# (palette colour, look) of each paper method. Eight colours for nine continual methods: the one shared colour is
# FT-L2's and FT-N's (two fine-tuning baselines, told apart by marker and line), so the methods the studies compare
# most (FT-1, SAC-N, EWC, PackNet, Rewire) never share one; Rewire, the paper's method, is black. The sparse suite's
# four methods have four colours among themselves.
METHOD_LOOKS = {"ft_1": (0, 0), "ft_l2": (1, 0), "ewc": (2, 0), "pnn": (3, 0), "packnet": (4, 0), "sac_n": (5, 0),
                "ft_n": (1, 1), "csp": (6, 0), "rewire": (7, 0),
                "dense": (7, 1), "rigl": (2, 1), "rlx2": (3, 1), "dapd": (0, 1)}  # fmt: skip


def method_style(method: str) -> dict[str, str]:
    """Colour, marker and line style of a method, the same in every figure: the paper methods' from METHOD_LOOKS;
    methods added later follow, fixed by their name, with looks the paper methods do not use. A variant keeps its
    base's colour, with a look (fixed by its name) that no paper method of that colour has."""
    method = str(method)
    base, suffix = split_variant(method)
    colour, look = METHOD_LOOKS.get(base, (sum(map(ord, base)) % len(PALETTE), 2 + sum(map(ord, base)) % 6))
    if suffix:
        taken = {lk for c, lk in METHOD_LOOKS.values() if c == colour} | {look}
        free = [j for j in range(8) if j not in taken]
        look = free[sum(map(ord, suffix)) % len(free)]
    return {"color": PALETTE[colour], "marker": "os^Dv<>p"[look], "linestyle": ["-", "--", ":", "-."][look % 4]}


def save(fig: plt.Figure, stem: Path | str, data: pd.DataFrame | None = None) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically, and the plotted numbers as `stem`.csv when given (figure data:
    what a reader re-plots or checks, and what the snapshot tests compare)."""
    stem = Path(stem)
    paths = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        atomic_write(path, lambda p, ext=ext: fig.savefig(p, format=ext, bbox_inches="tight"))
        paths.append(path)
    plt.close(fig)
    if data is not None:
        path = stem.with_suffix(".csv")
        atomic_write(path, lambda p: data.to_csv(p, index=False, float_format="%.6g"))
        paths.append(path)
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


def _ordered(methods) -> list[str]:
    return sorted(dict.fromkeys(str(m) for m in methods), key=lambda m: (method_rank(m), m))


def stage_performance_data(results: pd.DataFrame) -> pd.DataFrame:
    """Per method and stage: mean and std over seeds of the average return on the tasks trained so far."""
    rows = []
    for method in _ordered(results["method"]):
        runs = results[results["method"] == method].groupby("seed")
        curves = np.array([metrics.mean_seen_per_stage(metrics.performance_matrix(run)) for _, run in runs])
        for stage, (mean, std) in enumerate(zip(curves.mean(axis=0), curves.std(axis=0), strict=True)):
            rows.append({"method": method, "stage": stage, "mean": mean, "std": std, "n_seeds": len(curves)})
    return pd.DataFrame(rows, columns=["method", "stage", "mean", "std", "n_seeds"])


def stage_performance(results: pd.DataFrame, stem: Path | str) -> list[Path]:
    """Average return over the tasks trained so far, after each stage, per method (mean ± std over seeds)."""
    data = stage_performance_data(results)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 3.0))
        for method, group in data.groupby("method", sort=False):
            stages, mean, std = group["stage"].to_numpy(), group["mean"].to_numpy(), group["std"].to_numpy()
            style = method_style(method)
            ax.plot(stages, mean, marker=style["marker"], color=style["color"], linestyle=style["linestyle"],
                    label=display_name(method))  # fmt: skip
            if group["n_seeds"].iloc[0] > 1:
                ax.fill_between(stages, mean - std, mean + std, color=style["color"], alpha=0.2)
        ax.set_xlabel("training stage (task index)")
        ax.set_ylabel("avg return on tasks seen so far")
        ax.set_title(str(results["scenario"].iloc[0]))
        ax.legend(**LEGEND_BESIDE)
        return save(fig, stem, data)


TASK_PERFORMANCE_COLUMNS = ["task", "task_name", "trained_at", "method", "stage", "mean", "std", "n_seeds", "random",
                            "metric"]  # fmt: skip


def task_performance_data(results: pd.DataFrame, random: pd.DataFrame | None = None) -> pd.DataFrame:
    """One scenario's performance (success on Continual World, return elsewhere) on each task after each stage, per
    method: mean and std over the seeds evaluated at that stage, next to a uniform-random policy's on the task (mean
    over the reference's seeds; NaN without one). `trained_at`: the stages that train the task, i.e. every task of
    its name (a scenario that repeats its tasks trains one env again: robustness's revisits)."""
    from rlrepro.tables import performance_metric, random_levels

    scenarios = results["scenario"].astype(str).unique()
    if len(scenarios) != 1:
        raise ValueError(f"task_performance_data reads one scenario's runs, got {sorted(scenarios)}")
    metric = performance_metric(scenarios[0])
    names = results.dropna(subset=["task"]).drop_duplicates("task").set_index("task")["task_name"].astype(str)
    floor = random_levels(random, scenarios[0], metric)
    rows = []
    for method in _ordered(results["method"]):
        matrices = [metrics.performance_matrix(run, metric) for _, run in results[results["method"] == method].groupby("seed")]
        n_stages = max((p.shape[0] for p in matrices), default=0)
        n_tasks = max((p.shape[1] for p in matrices), default=0)
        for task in range(n_tasks):
            name = names.get(task, str(task))
            trained_at = " ".join(str(j) for j in range(n_tasks) if names.get(j, str(j)) == name)
            for stage in range(n_stages):  # the seeds evaluated at this stage
                values = np.array([p[stage, task] for p in matrices if p.shape[0] > stage and p.shape[1] > task])
                values = values[np.isfinite(values)]
                if len(values):
                    rows.append({"task": task, "task_name": name, "trained_at": trained_at, "method": method,
                                 "stage": stage, "mean": values.mean(), "std": values.std(), "n_seeds": len(values),
                                 "random": floor.get(task, np.nan), "metric": metric})  # fmt: skip
    if not rows:
        raise ValueError(f"no {metric} rows in {scenarios[0]}'s results: nothing to plot")
    data = pd.DataFrame(rows, columns=TASK_PERFORMANCE_COLUMNS)
    return data.sort_values(["task", "stage"], kind="stable").reset_index(drop=True)


def task_panels(data: pd.DataFrame) -> dict[int, list[int]]:
    """The task-performance figure's panels: first task → the tasks it shows. A repeated task (same name) whose
    numbers equal its first occurrence's (the same env, evaluated the same way) shares that panel."""
    panels: dict[int, list[int]] = {}
    for task in dict.fromkeys(data["task"]):
        mine = data[data["task"] == task]
        first = data[data["task_name"] == mine["task_name"].iloc[0]]
        first = first[first["task"] == first["task"].min()]
        keys = ["method", "stage"]
        if (first["task"].iloc[0] != task and first[keys].to_numpy().tolist() == mine[keys].to_numpy().tolist()
                and np.allclose(first["mean"].to_numpy(), mine["mean"].to_numpy())):  # fmt: skip
            panels[int(first["task"].iloc[0])].append(int(task))
        else:
            panels[int(task)] = [int(task)]
    return panels


def task_performance(results: pd.DataFrame, stem: Path | str, random: pd.DataFrame | None = None) -> list[Path]:
    """One panel per task: its performance after every stage, per method (mean ± std over seeds), the stages before
    its env was first trained hatched, every stage that trains it marked (a repeated task: a revisit), and a random
    policy's level dashed; a repeated task whose numbers equal its first occurrence's shares its panel. What
    forgetting and revisits do to each task, where the stage figure averages them."""
    data = task_performance_data(results, random)
    panels = task_panels(data)
    tasks = list(panels)
    cols = min(len(tasks), 4)
    rows = -(-len(tasks) // cols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.2, 2.3 * rows), squeeze=False, sharey=True)
        for ax, task in zip(axes.flat, tasks, strict=False):
            panel = data[data["task"] == task]
            trained_at = [int(j) for j in panel["trained_at"].iloc[0].split()]
            for method, group in panel.groupby("method", sort=False):
                stages, mean, std = group["stage"].to_numpy(), group["mean"].to_numpy(), group["std"].to_numpy()
                style = method_style(method)
                ax.plot(stages, mean, marker=style["marker"], color=style["color"], linestyle=style["linestyle"],
                        markersize=4, label=display_name(method))  # fmt: skip
                if group["n_seeds"].max() > 1:
                    ax.fill_between(stages, mean - std, mean + std, color=style["color"], alpha=0.15)
            if trained_at[0] > 0:
                ax.axvspan(-0.5, trained_at[0] - 0.5, fill=False, hatch="///", edgecolor="0.85", linewidth=0)
            for j in trained_at:
                ax.axvline(j, color="0.6", linestyle=":", linewidth=0.8)
            if not np.isnan(panel["random"].iloc[0]):
                ax.axhline(panel["random"].iloc[0], color="grey", linestyle="--", linewidth=0.8, label="random policy")
            shown = panels[task]
            ax.set_title(f"task{'s' * (len(shown) > 1)} {', '.join(map(str, shown))}: {panel['task_name'].iloc[0]}",
                         fontsize=8)  # fmt: skip
            ax.set_xticks(sorted(panel["stage"].unique()))
            ax.set_xlabel("after stage")
        for ax in axes.flat[len(tasks):]:
            ax.set_visible(False)
        label = "success rate" if data["metric"].iloc[0].startswith("success") else "average return"
        for row in axes:
            row[0].set_ylabel(label)
        fig.suptitle(f"{results['scenario'].iloc[0]}: each task after each stage\n(dotted: the stages that train it; "
                     "hatched: before the first)", fontsize=9)  # fmt: skip
        fig.tight_layout()
        legend = {}  # every panel's entries, once each (a random level may be missing from some panels)
        for ax in axes.flat:
            legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
        fig.legend(list(legend.values()), list(legend.keys()), **LEGEND_BESIDE)
        return save(fig, stem, data)


def continual_curves(results: pd.DataFrame, stem: Path | str, boot: BootstrapConfig | None = None) -> list[Path]:
    """Training return over the run's env steps (task k spans [k·budget, (k+1)·budget)), per method, mean and
    bootstrap band over seeds on the common grid of curve points; dotted lines mark task switches. A point exists
    where episodes ended since the previous one (runs whose episodes never end within the budget have none)."""
    data, offsets = continual_curve_data(results, boot)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6.0, 3.0))
        for method, group in data.groupby("method", sort=False):
            style = method_style(method)
            ax.plot(group["x"], group["mean"], color=style["color"], linestyle=style["linestyle"], label=display_name(method))
            if group["n_seeds"].max() > 1:
                ax.fill_between(group["x"], group["low"], group["high"], color=style["color"], alpha=0.2)
        names = results.dropna(subset=["task"]).drop_duplicates("task").set_index("task")["task_name"].astype(str)
        for task, start in offsets.items():
            if start > 0:
                ax.axvline(start, color="grey", linestyle=":", linewidth=0.8)
            ax.text(start, 1.0, f" {task}: {names.get(task, task)}", transform=ax.get_xaxis_transform(), fontsize=7,
                    va="top")  # fmt: skip
        ax.set_xlabel("env steps (all tasks)")
        ax.set_ylabel("training episode return")
        ax.set_title(str(results["scenario"].iloc[0]), pad=14)
        ax.legend(fontsize=7, **LEGEND_BESIDE)
        return save(fig, stem, data)


CURVE_COLUMNS = ["method", "x", "mean", "low", "high", "n_seeds"]


def continual_curve_data(results: pd.DataFrame, boot: BootstrapConfig | None) -> tuple[pd.DataFrame, dict]:
    """Per method, the training return at each curve point on the run's env-step axis (task k's steps offset by the
    budgets of tasks < k): mean and bootstrap band over the seeds that have that point. Also the task offsets."""
    rows = results[results["metric"] == "train_return"].dropna(subset=["step"])
    budget = results[results["metric"] == "train_env_steps"].groupby("task", observed=True)["value"].max()
    offsets = budget.sort_index().cumsum().shift(fill_value=0).to_dict()
    parts = []
    for method in _ordered(rows["method"]):
        group = rows[rows["method"] == method]
        steps = group["step"].astype(float) + group["task"].map(offsets).astype(float)
        curve = group.assign(x=steps).pivot_table(index="x", columns="seed", values="value")
        mean, low, high = _ci_band(curve, boot)
        parts.append(pd.DataFrame({"method": method, "x": curve.index.to_numpy(dtype=float), "mean": mean, "low": low,
                                   "high": high, "n_seeds": curve.notna().sum(axis=1).to_numpy()}))  # fmt: skip
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)), offsets


def _ci_band(curve: pd.DataFrame, boot: BootstrapConfig | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% bootstrap band over seeds (columns) at each step (rows)."""
    if boot is None or curve.shape[1] < 2:
        mean = curve.mean(axis=1).to_numpy()
        return mean, mean, mean
    est = np.array([mean_ci(row.to_numpy(), boot) for _, row in curve.iterrows()])
    return est[:, 0], est[:, 1], est[:, 2]


def _common_eval_grid(evals: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Evaluations of several seeds on one grid: the k-th evaluation of every seed is one point (its step, flagged
    every `every_steps` but run at the next episode end, differs between seeds where episodes end early), at the
    seeds' mean step. Returns (evaluation index × seed) values and the x of each index."""
    ranked = evals.sort_values("step").assign(k=lambda d: d.groupby("seed", observed=True).cumcount())
    curve = ranked.pivot_table(index="k", columns="seed", values="value")
    x = ranked.groupby("k")["step"].mean().reindex(curve.index).to_numpy(dtype=float)
    return curve, x


def sparse_curves(results: pd.DataFrame, stem: Path | str, boot: BootstrapConfig | None = None) -> list[Path]:
    """One env of the sparse suite: evaluation return vs env steps per (method, keep ratio), mean and bootstrap
    band over seeds; the networks' density over time; and DAPD's mask turnover (share of kept connections that
    are new at each mask update: the warm-up, then nothing once frozen)."""
    evals = results[results["metric"] == "eval_return"]
    density = results[results["metric"].isin(["actor_density", "critic_density"])]
    turnover = results[results["metric"].isin(["actor_mask_change", "critic_mask_change"])]
    with plt.rc_context(STYLE):
        fig, (ax, ax_d, ax_t) = plt.subplots(1, 3, figsize=(11, 3.0), gridspec_kw={"width_ratios": [3, 2, 2]})
        data = sparse_curve_data(evals, boot)
        for (method, keep), group in data.groupby(["method", "keep_ratio"], sort=False):
            style = method_style(method)
            color = style["color"]
            ax.plot(group["x"], group["mean"], color=color, linestyle=style["linestyle"],
                    label=f"{display_name(method)} (keep {keep:g})")  # fmt: skip
            if group["n_seeds"].max() > 1:
                ax.fill_between(group["x"], group["low"], group["high"], color=color, alpha=0.2)
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
        return save(fig, stem, data)


def sparse_curve_data(evals: pd.DataFrame, boot: BootstrapConfig | None) -> pd.DataFrame:
    """Per (method, keep ratio): the evaluation curve on the common grid (the k-th evaluation of every seed, at the
    seeds' mean step), mean and bootstrap band over seeds."""
    parts = []
    keys = evals[["method", "keep_ratio"]].drop_duplicates()
    pairs = zip(keys["method"].astype(str), keys["keep_ratio"], strict=True)
    order = sorted(pairs, key=lambda t: (method_rank(t[0]), t[0], -t[1]))
    for method, keep in order:
        group = evals[(evals["method"] == method) & (evals["keep_ratio"] == keep)]
        curve, x = _common_eval_grid(group)
        mean, low, high = _ci_band(curve, boot)
        parts.append(pd.DataFrame({"method": method, "keep_ratio": keep, "k": curve.index.to_numpy(), "x": x, "mean": mean,
                                   "low": low, "high": high, "n_seeds": curve.notna().sum(axis=1).to_numpy()}))  # fmt: skip
    columns = ["method", "keep_ratio", "k", "x", "mean", "low", "high", "n_seeds"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def sparse_layer_density(results: pd.DataFrame, stem: Path | str) -> list[Path]:
    """Per sparse method (panels), the density of every layer over training (mean over seeds)."""
    rows = results[(results["metric"] == "layer_density") & (results["method"] != "dense")]
    runs = list(rows.groupby(["method", "keep_ratio"], observed=True))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(len(runs), 1), figsize=(3.3 * max(len(runs), 1), 2.8), squeeze=False)
        for ax, ((method, keep), group) in zip(axes[0], runs, strict=False):
            for i, (layer, series) in enumerate(group.groupby("layer", observed=True)):
                line = series.groupby("step")["value"].mean()
                style = "-" if str(layer).startswith("actor") else ":"
                ax.plot(line.index, line.values, style, color=PALETTE[i % len(PALETTE)], label=str(layer))
            ax.set_title(f"{method} (keep {keep:g})")
            ax.set_yscale("log")
            ax.set_xlabel("env steps")
        axes[0][0].set_ylabel("layer density")
        axes[0][-1].legend(fontsize=6, **LEGEND_BESIDE)
        return save(fig, stem)


def tradeoff(runs: pd.DataFrame, domain: str, stem: Path | str, boot: BootstrapConfig) -> list[Path]:
    """Performance vs model size in one domain: per method, final performance normalised by the reference method
    (mean over the domain's scenarios per seed, bootstrap CI over seeds) against inference size (× one policy)."""
    data = tradeoff_data(runs, domain, boot)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for row in data.itertuples():
            style = method_style(row.method)
            ax.errorbar([row.model_size], [row.mean], yerr=[[row.mean - row.low], [row.high - row.mean]],
                        fmt=style["marker"], color=style["color"], capsize=3)  # fmt: skip
            ax.annotate(display_name(row.method), (row.model_size, row.mean), textcoords="offset points", xytext=(5, 4),
                        fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("model size (whole state dict, × one policy)")
        ax.set_ylabel("final performance (÷ reference)")
        ax.set_title(domain)
        return save(fig, stem, data)


def tradeoff_data(runs: pd.DataFrame, domain: str, boot: BootstrapConfig) -> pd.DataFrame:
    """Per method of the domain: model size (mean) and normalised final performance (per seed the mean over the
    domain's scenarios, then mean and bootstrap CI over seeds); methods without a finite value are left out."""
    mine = runs[runs["domain"] == domain]
    rows = []
    for method in _ordered(mine["method"]):
        per_seed = mine[mine["method"] == method].groupby("seed")[["final_normalised", "model_size_rel"]].mean()
        y, low, high = mean_ci(per_seed["final_normalised"].to_numpy(), boot)
        if not np.isnan(y):
            rows.append({"method": method, "model_size": float(per_seed["model_size_rel"].mean()), "mean": y,
                         "low": low, "high": high, "n_seeds": len(per_seed)})  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "model_size", "mean", "low", "high", "n_seeds"])


def aggregate(runs: pd.DataFrame, stem: Path | str, boot: BootstrapConfig, metric: str = "final_normalised") -> list[Path]:
    """Across scenarios: IQM and mean of `metric` with CIs per method, and performance profiles (rliable)."""
    from rlrepro.metrics.stats import aggregate_metrics, performance_profiles
    from rlrepro.tables.paper import aggregate_table

    _, scores = aggregate_table(runs, metric, boot)
    stats = aggregate_metrics(scores, boot)
    methods = sorted(stats, key=lambda m: (method_rank(m), m))
    with plt.rc_context(STYLE):
        fig, (ax_iqm, ax_mean, ax_p) = plt.subplots(1, 3, figsize=(11, 0.6 + 0.35 * max(len(methods), 2)),
                                                    gridspec_kw={"width_ratios": [2, 2, 3]})  # fmt: skip
        for ax, name in ((ax_iqm, "iqm"), (ax_mean, "mean")):
            for i, method in enumerate(methods):
                point, low, high = stats[method][name]
                ax.barh(i, high - low, left=low, height=0.6, color=method_style(method)["color"], alpha=0.6)
                ax.plot([point, point], [i - 0.3, i + 0.3], color="black")
            labels = [display_name(m) for m in methods]
            ax.set_yticks(range(len(methods)), labels if ax is ax_iqm else [""] * len(methods))
            ax.set_xlabel(f"{name.upper() if name == 'iqm' else name} ({metric})")
        finite = np.concatenate([m.ravel() for m in scores.values()]) if scores else np.array([0.0, 1.0])
        finite = finite[np.isfinite(finite)]
        taus = np.linspace(min(0.0, finite.min(initial=0.0)), max(1.5, finite.max(initial=1.5)), 61)
        for method, band in sorted(performance_profiles(scores, taus, boot).items()):
            style = method_style(method)
            ax_p.plot(taus, band[0], color=style["color"], linestyle=style["linestyle"], label=display_name(method))
            ax_p.fill_between(taus, band[1], band[2], color=style["color"], alpha=0.15)
        ax_p.set_xlabel(f"τ ({metric})")
        ax_p.set_ylabel("fraction of runs > τ")
        ax_p.legend(fontsize=7, **LEGEND_BESIDE)
        return save(fig, stem)
