"""Tables computed from run Parquets (pure functions) and rendered separately (Markdown/Parquet)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlrepro import metrics
from rlrepro.naming import display_name, method_rank

RUN_KEYS = ["suite", "scenario", "method", "seed"]


def domain_of(scenario: str) -> str:
    """The scenario's domain: the part before the slash (halfcheetah, ant, humanoid, continual_world)."""
    return str(scenario).split("/", 1)[0]


def performance_metric(scenario: str) -> str:
    """What "performance" means in a scenario: success rate on Continual World (Rewire's success at the last
    step), average return elsewhere."""
    return "success_last" if domain_of(scenario) == "continual_world" else "avg_return"


def random_levels(random: pd.DataFrame | None, scenario: str, metric: str) -> pd.Series:
    """A uniform-random policy's `metric` on each task of `scenario`, mean over the reference's seeds, by task (empty
    without a reference): the level that learning and retention are measured from."""
    if random is None or random.empty:
        return pd.Series(dtype=float)
    mine = random[(random["scenario"].astype(str) == str(scenario)) & (random["metric"] == metric)]
    return mine.groupby("task")["value"].mean()


def continual_run_metrics(results: pd.DataFrame, reference_method: str) -> pd.DataFrame:
    """One row per run: final performance, forgetting, normalised scores, model size, wall time."""
    references: dict[str, np.ndarray] = {}
    for scenario, group in results[results["method"] == reference_method].groupby("scenario", observed=True):
        perf = performance_metric(scenario)
        diagonals = [metrics.diagonal(metrics.performance_matrix(run, perf)) for _, run in group.groupby("seed")]
        references[scenario] = np.mean(diagonals, axis=0)
    # "One policy" for the model-size ratios: ft_1's network in the same scenario (the papers' FT-1 = 1.0), else
    # the run's own first-stage inference size. The headline `model_size_rel` counts what the original logged, the
    # numel of the method's whole state dict (fidelity audit D13: FT-L2 2×, EWC 3×, PackNet's T networks and mask);
    # `inference_size_rel` counts what inference on every task needs.
    is_single = (results["method"] == "ft_1") & (results["stage"] == 0) & (results["metric"] == "inference_parameters")
    single_size = results[is_single].groupby("scenario", observed=True)["value"].first().to_dict()
    rows = []
    for key, run in results.groupby(RUN_KEYS, observed=True):
        perf = performance_metric(key[1])
        p = metrics.performance_matrix(run, perf)
        returns = metrics.performance_matrix(run) if perf != "avg_return" else p
        last = run["stage"].max()
        size = run[(run["stage"] == last) & run["metric"].isin(["inference_parameters", "stored_parameters"])]
        size = dict(zip(size["metric"].astype(str), size["value"], strict=True))
        first_size = run[(run["stage"] == 0) & (run["metric"] == "inference_parameters")]["value"]
        one_policy = single_size.get(key[1], first_size.iloc[0] if len(first_size) else np.nan)
        ref = references.get(key[1])
        usable = ref is not None and len(ref) == min(p.shape) and bool(np.all(ref != 0))
        has_success = (run["metric"] == "success_any").any()
        rows.append(
            {
                **dict(zip(RUN_KEYS, key, strict=True)),
                "domain": domain_of(key[1]),
                "n_tasks": p.shape[1],
                "final_avg_return": metrics.final_performance(returns),
                "final_success_last": metrics.final_performance(p) if perf == "success_last" else np.nan,
                "final_success_any": (
                    metrics.final_performance(metrics.performance_matrix(run, "success_any")) if has_success else np.nan
                ),
                "forgetting": metrics.forgetting(p),
                "final_normalised": metrics.normalised_final(p, ref) if usable else np.nan,
                "forward_transfer": metrics.forward_transfer(p, ref) if usable else np.nan,
                "inference_parameters": size.get("inference_parameters", np.nan),
                "stored_parameters": size.get("stored_parameters", np.nan),
                "model_size_rel": size.get("stored_parameters", np.nan) / one_policy,
                "inference_size_rel": size.get("inference_parameters", np.nan) / one_policy,
                "train_wall_time_s": float(run["train_wall_time_s"].iloc[0]),
                "eval_wall_time_s": float(run["eval_wall_time_s"].iloc[0]),
            }
        )
    return pd.DataFrame(rows)


SUMMARY_METRICS = [
    "final_avg_return",
    "final_normalised",
    "forgetting",
    "forward_transfer",
    "model_size_rel",
    "stored_parameters",
    "train_wall_time_s",
]


def continual_summary(run_metrics: pd.DataFrame, expected_seeds: int | None = None) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (scenario, method); `n_seeds` shows missing runs."""
    grouped = run_metrics.groupby(["suite", "scenario", "method"], observed=True)
    out = grouped[SUMMARY_METRICS].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n_seeds"] = grouped.size()
    if expected_seeds is not None:
        out["missing_seeds"] = expected_seeds - out["n_seeds"]
    return out.reset_index()


def render_markdown(summary: pd.DataFrame) -> str:
    """One Markdown table per scenario: rows = methods, cells = mean ± std over seeds."""
    labels = {
        "final_avg_return": "final avg return",
        "final_normalised": "final (norm.)",
        "forgetting": "forgetting",
        "forward_transfer": "fwd transfer",
        "model_size_rel": "model size (×1 policy)",
        "stored_parameters": "state-dict params",
        "train_wall_time_s": "train time (s)",
    }
    parts = []
    for scenario, group in summary.groupby("scenario", observed=True):
        header = ["method", *labels.values(), "seeds"]
        lines = [f"### {scenario}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in group.iterrows():
            cells = [display_name(row["method"])]
            for metric in labels:
                mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
                cells.append("n/a" if pd.isna(mean) else f"{mean:.3g}" + ("" if pd.isna(std) else f" ± {std:.2g}"))
            cells.append(str(int(row["n_seeds"])))
            lines.append("| " + " | ".join(cells) + " |")
        missing = group.get("missing_seeds")
        if missing is not None and (missing > 0).any():
            short = ", ".join(f"{display_name(m)}: {int(n)}" for m, n in zip(group["method"], missing, strict=True) if n > 0)
            lines += ["", f"Missing seeds (failed or absent runs): {short}."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def continual_task_table(results: pd.DataFrame, random_reference: pd.DataFrame | None) -> pd.DataFrame:
    """Per (scenario, task, method): performance on the task right after training it (p[j][j]) and after the last
    task (p[T−1][j]), mean over seeds, next to a uniform-random policy's on the same task (mean over seeds): whether a
    method learned each task, and what it kept of it."""
    rows = []
    for (scenario, method), group in results.groupby(["scenario", "method"], observed=True):
        perf = performance_metric(scenario)
        matrices = [metrics.performance_matrix(run, perf) for _, run in group.groupby("seed", observed=True)]
        names = group.drop_duplicates("task").dropna(subset=["task"]).set_index("task")["task_name"].to_dict()
        for j in range(min(m.shape[1] for m in matrices)):
            trained = [m[j, j] for m in matrices if m.shape[0] > j]
            rows.append({"scenario": scenario, "task": j, "task_name": str(names.get(j, j)), "method": method,
                         "metric": perf, "just_trained": float(np.mean(trained)) if trained else np.nan,
                         "final": float(np.mean([m[-1, j] for m in matrices])), "n_seeds": len(matrices)})  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    if random_reference is not None and not random_reference.empty:
        ref = random_reference.groupby(["scenario", "task", "metric"], observed=True)["value"].mean().rename("random")
        table = table.join(ref, on=["scenario", "task", "metric"])
    else:
        table["random"] = np.nan
    return table


def render_task_markdown(table: pd.DataFrame, caption: str) -> str:
    """One Markdown table per scenario: rows = tasks, a `random` column, then per method `just trained → final`."""
    from rlrepro.tables.paper import format_number

    parts = []
    for scenario, group in table.groupby("scenario", observed=True):
        methods = sorted(dict.fromkeys(group["method"]), key=lambda m: (method_rank(m), m))
        header = ["task", "random", *map(display_name, methods)]
        lines = [f"### {scenario}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for (task, name), rows in group.groupby(["task", "task_name"], observed=True, sort=True):
            by_method = rows.set_index("method")
            cells = [f"{task}: {name}", format_number(rows["random"].iloc[0])]
            for m in methods:
                cells.append(f"{format_number(by_method.loc[m, 'just_trained'])} → {format_number(by_method.loc[m, 'final'])}"
                             if m in by_method.index else "n/a")  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return caption + "\n\n" + "\n\n".join(parts) + "\n"
