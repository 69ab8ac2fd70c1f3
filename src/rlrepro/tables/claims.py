"""The papers' qualitative claims, each decided from a study's runs: holds, does not hold, or undecided at this budget.

A claim is decided from an interval over seeds (rliable's stratified bootstrap, `metrics.stats`), never from a
point estimate alone: it *holds* when the whole interval is on the claim's side of its threshold, *does not hold*
when the whole interval is on the other side, and is *undecided* otherwise (including with one seed). The
thresholds are this project's, stated next to every verdict; the papers give none.

Continual claims (Rewire paper; per scenario of each study):
- learning: SAC-N's performance on each task right after training it, minus a uniform-random policy's on that
  task (the pipeline's random reference): holds when every task's interval is above 0;
- retention: per run, the fraction of its gain over random that the tasks before the last keep at the end of the
  sequence, `Σ_j (p[T-1][j] - r_j) / Σ_j (p[j][j] - r_j)` over j < T-1; a method *retains* its tasks when
  the interval is at or above RETENTION (0.9) and *forgets* when it is below (FT-1's claim is that it forgets).
  Retention is a share of what was learned: where a method's gain over random on the earlier tasks (the
  denominator) is not shown above 0 by its interval, its retention claim is undecided, its numbers shown but not read;
- Rewire against each other method: the difference of final performance (mean over tasks after the last stage),
  Rewire minus the other, above 0 (holds) or below (does not hold);
- model size: Rewire's inference size relative to one policy, against SAC-N's (exact, no interval; PNN's, PackNet's
  and CSP's are shown beside it).

Sparse claims (DAPD paper; per environment and keep ratio):
- DAPD close to dense SAC: DAPD's last-k return over dense SAC's mean (the sparse table's `return_rel_dense`),
  interval at or above CLOSE_TO_DENSE (0.9);
- DAPD against RiGL and RLx2: the difference of last-k returns above 0;
- parameter and training-FLOP savings: the fraction of dense SAC's (exact), at most 2× the keep ratio.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rlrepro import metrics
from rlrepro.metrics.stats import BootstrapConfig, interval_estimates, mean_ci
from rlrepro.naming import display_name, job_label, method_rank
from rlrepro.tables import performance_metric, random_levels
from rlrepro.tables.paper import format_number

RETENTION = 0.9
"""A method retains its tasks when it keeps at least this fraction of its gain over the random policy."""
CLOSE_TO_DENSE = 0.9
"""DAPD is 'close to dense' when its return is at least this fraction of dense SAC's."""
SAVINGS_FACTOR = 2.0
"""Parameters and FLOPs count as saved at keep ratio k when they are at most this many times k of dense's."""
MIN_GAIN = 1e-9
"""A task whose just-trained performance is not above random's by more than this has no retention to measure."""

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        if np.isnan(self.mean):
            return "n/a"
        return f"{format_number(self.mean)} [{format_number(self.low)}, {format_number(self.high)}] (n={self.n})"


def verdict(interval: Interval, threshold: float, *, above: bool = True) -> str:
    """Holds when the whole interval is on the claim's side of `threshold` (above it, or below it when `above` is
    False), does not hold when it is wholly on the other side, undecided otherwise or with fewer than two seeds."""
    if interval.n < 2 or np.isnan(interval.low):
        return UNDECIDED
    if above:
        wholly, partly = interval.low >= threshold, interval.high >= threshold
    else:
        wholly, partly = interval.high < threshold, interval.low < threshold
    if wholly:
        return HOLDS
    return UNDECIDED if partly else FAILS


def _interval(values: np.ndarray, cfg: BootstrapConfig) -> Interval:
    values = np.asarray(values, dtype=float)
    return Interval(*mean_ci(values, cfg), n=int(np.count_nonzero(~np.isnan(values))))  # mean_ci drops the NaNs


def difference_interval(x: np.ndarray, y: np.ndarray, cfg: BootstrapConfig) -> Interval:
    """mean(x) − mean(y) over independent seeds, each resampled within itself (stratified bootstrap)."""
    x, y = (np.asarray(v, dtype=float) for v in (x, y))
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]  # the interval's n counts the seeds that have a value
    if x.size == 0 or y.size == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    est = interval_estimates({"d": (x[:, None], y[:, None])}, lambda a, b: np.array([a.mean() - b.mean()]), cfg)["d"]
    return Interval(float(est[0, 0]), float(est[1, 0]), float(est[2, 0]), n=int(min(x.size, y.size)))


POWER = 0.8
"""The chance of deciding a claim that `seeds_to_decide` plans for."""


def _mean_var(values: np.ndarray) -> tuple[float, float, int]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return np.nan, np.nan, int(values.size)
    return float(values.mean()), float(values.var(ddof=1)), int(values.size)


def seeds_to_decide(x: np.ndarray, threshold: float, cfg: BootstrapConfig, y: np.ndarray | None = None) -> float:
    """About how many seeds per method would decide an undecided claim with an 80% chance (POWER) at the same budget,
    if the observed mean and spread held: n = ((z + z_power) · s / |gap|)², the normal approximation, with z the
    interval's quantile (1.96 at 95%), s the standard deviation over seeds and gap = mean − threshold; for a
    difference of two methods (`y`), gap = mean(x) − mean(y) − threshold and s² = s_x² + s_y². Never fewer than one
    seed more than the claim already has. NaN where fewer than two seeds (of either method) have a value; inf when
    the mean sits on the threshold."""
    mean, var, n = _mean_var(x)
    gap = mean - threshold
    if y is not None:
        mean_y, var_y, n_y = _mean_var(y)
        gap, var, n = gap - mean_y, var + var_y, min(n, n_y)
    if np.isnan(gap) or np.isnan(var):
        return np.nan
    if gap == 0:
        return np.inf
    z = NormalDist().inv_cdf(0.5 + cfg.confidence / 2) + NormalDist().inv_cdf(POWER)
    return float(max(n + 1, math.ceil(z * z * var / (gap * gap))))


def continual_runs(results: pd.DataFrame, random: pd.DataFrame) -> pd.DataFrame:
    """One row per continual run: gain over random on each task just trained, retention, final performance."""
    rows = []
    for (scenario, method, seed), run in results.groupby(["scenario", "method", "seed"], observed=True):
        perf = performance_metric(scenario)
        p = metrics.performance_matrix(run, perf)  # stages so far × every task of the scenario
        n, complete = p.shape[1], p.shape[0] == p.shape[1]
        if p.size == 0:
            continue
        r = random_levels(random, scenario, perf).reindex(range(n)).to_numpy(dtype=float)
        gains = np.array([p[j, j] - r[j] if j < p.shape[0] else np.nan for j in range(n)])
        earlier = range(n - 1)  # every task but the last has a later stage to be forgotten in
        total_gain = float(np.sum([gains[j] for j in earlier])) if complete else np.nan
        kept = float(np.sum([p[-1, j] - r[j] for j in earlier])) if complete else np.nan
        rows.append({"scenario": scenario, "method": method, "seed": int(seed), "n_tasks": n,
                     "complete": complete, "final": metrics.final_performance(p) if complete else np.nan,
                     "earlier_gain": total_gain,
                     "retention": kept / total_gain if total_gain > MIN_GAIN else np.nan,
                     "task0_retention": (p[-1, 0] - r[0]) / gains[0] if complete and gains[0] > MIN_GAIN else np.nan,
                     "task0_after_next": (p[1, 0] - r[0]) / gains[0] if complete and n > 1 and gains[0] > MIN_GAIN
                     else np.nan,
                     **{f"gain_{j}": gains[j] for j in range(n)}})  # fmt: skip
    return pd.DataFrame(rows)


def _budget(results: pd.DataFrame, scenario: str) -> str:
    rows = results[(results["scenario"] == scenario) & (results["metric"] == "train_env_steps")]
    steps = rows.groupby(["method", "seed", "stage"], observed=True)["value"].max()
    per_task = int(steps.median()) if len(steps) else 0
    n_tasks = int(results.loc[results["scenario"] == scenario, "task"].max()) + 1
    seeds = results.loc[results["scenario"] == scenario].groupby("method", observed=True)["seed"].nunique()
    lo, hi = int(seeds.min()), int(seeds.max())
    return f"{n_tasks} tasks × {per_task / 1000:.0f}k steps, {lo if lo == hi else f'{lo}–{hi}'} seed{'s' * (hi > 1)}"


def inference_sizes(sizes: pd.DataFrame, complete: pd.DataFrame, scenario: str) -> dict[str, float]:
    """Each method's mean inference size relative to one policy over its complete runs (`complete`: scenario, method,
    seed), from a study's `continual_runs` table (which sets what one policy is: `tables.continual_run_metrics`)."""
    keys = ["scenario", "method", "seed"]
    sizes = sizes.astype({"scenario": str, "method": str, "seed": int})[[*keys, "inference_size_rel"]]
    rows = sizes.merge(complete[keys].astype({"scenario": str, "method": str, "seed": int}), on=keys)
    rows = rows[rows["scenario"] == scenario]
    return {str(m): float(v) for m, v in rows.groupby("method")["inference_size_rel"].mean().items()}


def continual_claims(
    results: pd.DataFrame, random: pd.DataFrame, sizes: pd.DataFrame, study: str, cfg: BootstrapConfig,
    full_budget: dict[str, str],
) -> list[dict]:  # fmt: skip
    """The Rewire paper's qualitative claims on each scenario of one study (module docstring). `sizes` is the study's
    `continual_runs` table (inference sizes)."""
    runs = continual_runs(results, random)
    out: list[dict] = []
    for scenario, group in runs.groupby("scenario"):
        shown_per_task = ["tables/continual_tasks.md", f"figures/task_performance/{scenario}.png"]  # table, then figure
        base = {"paper": "Rewire", "study": study, "scenario": scenario, "budget": _budget(results, scenario),
                "full_budget": full_budget.get(scenario, "")}  # fmt: skip
        unit = "success rate" if performance_metric(scenario) == "success_last" else "return"
        by = {m: group[group["method"] == m] for m in sorted(group["method"].unique(), key=lambda m: (method_rank(m), m))}
        if "sac_n" in by:
            n = int(by["sac_n"]["n_tasks"].max())
            gains = [_interval(by["sac_n"][f"gain_{j}"].to_numpy(), cfg) for j in range(n)]
            states = [verdict(g, MIN_GAIN) for g in gains]  # strictly above random
            state = FAILS if FAILS in states else (UNDECIDED if UNDECIDED in states else HOLDS)
            # the seeds the hardest undecided task needs (unknown if any of them has fewer than two seeds)
            needed = [seeds_to_decide(by["sac_n"][f"gain_{j}"].to_numpy(), MIN_GAIN, cfg)
                      for j in range(n) if states[j] == UNDECIDED]  # fmt: skip
            needed = np.nan if not needed or np.isnan(needed).any() else max(needed)
            out.append({**base, "claim": "SAC learns every task (SAC-N above a random policy on each task)",
                        "verdict": state, "threshold": "gain over random > 0",
                        "evidence": "gain over random: " + "; ".join(f"task {j}: {g.text()}" for j, g in enumerate(gains))
                        + f" ({unit})", "to_decide": needed,
                        "shown_in": shown_per_task})  # fmt: skip
        for method, g in by.items():
            retention = _interval(g["retention"].to_numpy(), cfg)
            if method == "ft_1":
                claim, state = "FT-1 forgets earlier tasks", verdict(retention, RETENTION, above=False)
            else:
                claim, state = f"{display_name(method)} retains earlier tasks", verdict(retention, RETENTION)
            evidence = f"retention {retention.text()}"
            task0 = _interval(g["task0_retention"].to_numpy(), cfg)
            if int(g["n_tasks"].max()) > 2 and not np.isnan(task0.mean):  # a longer sequence: where task 0 stood
                after_next = _interval(g["task0_after_next"].to_numpy(), cfg)
                evidence += f"; task 0 alone {task0.text()}, right after task 1 {after_next.text()}"
            to_decide = seeds_to_decide(g["retention"].to_numpy(), RETENTION, cfg)
            gained = verdict(_interval(g["earlier_gain"].to_numpy(), cfg), MIN_GAIN)
            if state != UNDECIDED and gained != HOLDS:  # a share of gains not shown to exist: not read
                state, to_decide = UNDECIDED, np.nan
                evidence += f" — not read: {display_name(method)}'s gain on the earlier tasks is not shown above 0"
            out.append({**base, "claim": claim, "verdict": state, "threshold": f"retention {RETENTION}",
                        "evidence": evidence, "to_decide": to_decide, "shown_in": shown_per_task})  # fmt: skip
        if "rewire" in by:
            for method, g in by.items():
                if method == "rewire":
                    continue
                rewire, other = by["rewire"]["final"].to_numpy(), g["final"].to_numpy()
                diff = difference_interval(rewire, other, cfg)
                out.append({**base, "claim": f"Rewire's final performance ≥ {display_name(method)}'s",
                            "verdict": verdict(diff, 0.0), "threshold": "difference ≥ 0",
                            "to_decide": seeds_to_decide(rewire, 0.0, cfg, other),
                            "evidence": f"Rewire − {display_name(method)}: {diff.text()} ({unit})",
                            "shown_in": ["tables/continual_tables.md"]})  # fmt: skip
            size = inference_sizes(sizes, runs[runs["complete"]], scenario)
            if "rewire" in size and "sac_n" in size:
                shown = {m: size[m] for m in ("rewire", "sac_n", "pnn", "packnet", "csp") if m in size}
                evidence = ", ".join(f"{display_name(m)} {v:.3g}" for m, v in shown.items())
                out.append({**base, "claim": "Rewire needs fewer parameters than a policy per task (SAC-N)",
                            "verdict": HOLDS if size["rewire"] < size["sac_n"] else FAILS, "threshold": "exact",
                            "evidence": f"inference size × one policy: {evidence}",
                            "shown_in": ["tables/continual_tables.md"]})  # fmt: skip
    return out


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def sparse_claims(runs: pd.DataFrame, study: str, cfg: BootstrapConfig, full_budget: str) -> list[dict]:
    """The DAPD paper's qualitative claims per environment and keep ratio (module docstring)."""
    out: list[dict] = []
    runs = runs.astype({"env": str, "method": str})
    for env, group in runs.groupby("env"):
        dense = group[group["method"] == "dense"]
        for keep, sparse in group[group["method"] != "dense"].groupby("keep_ratio"):
            steps = int(sparse["steps"].max())
            base = {"paper": "DAPD", "study": study, "scenario": f"{env} @ {keep:g}",
                    "budget": f"{steps / 1000:.0f}k steps, {_seeds(sparse.groupby('method')['seed'].nunique().min())}",
                    "full_budget": full_budget}  # fmt: skip
            by = {m: g.set_index("seed") for m, g in sorted(sparse.groupby("method"), key=lambda x: method_rank(x[0]))}
            if "dapd" in by and len(dense):
                # the sparse table's return_rel_dense: each run over the mean of the dense runs
                ratio = by["dapd"]["return_rel_dense"].to_numpy()
                interval = _interval(ratio, cfg)
                out.append({**base, "claim": "DAPD at this keep ratio comes close to dense SAC",
                            "verdict": verdict(interval, CLOSE_TO_DENSE), "threshold": f"× dense ≥ {CLOSE_TO_DENSE}",
                            "to_decide": seeds_to_decide(ratio, CLOSE_TO_DENSE, cfg),
                            "evidence": f"DAPD ÷ dense SAC's mean return: {interval.text()}",
                            "shown_in": ["tables/sparse_tables.md"]})  # fmt: skip
            for other in ("rigl", "rlx2"):
                if "dapd" in by and other in by:
                    dapd, rival = (by[m]["final_return"].to_numpy() for m in ("dapd", other))
                    diff = difference_interval(dapd, rival, cfg)
                    out.append({**base, "claim": f"DAPD's return ≥ {display_name(other)}'s",
                                "verdict": verdict(diff, 0.0), "threshold": "difference ≥ 0",
                                "to_decide": seeds_to_decide(dapd, 0.0, cfg, rival),
                                "evidence": f"DAPD − {display_name(other)}: {diff.text()} (return)",
                                "shown_in": ["tables/sparse_tables.md"]})  # fmt: skip
            for method, g in by.items():
                params, flops = float(g["params_rel_dense"].mean()), float(g["train_flops_rel_dense"].mean())
                state = HOLDS if max(params, flops) <= SAVINGS_FACTOR * keep else FAILS
                out.append({**base, "claim": f"{display_name(method)} saves parameters and training FLOPs",
                            "verdict": state, "threshold": f"≤ {SAVINGS_FACTOR:g} × keep ratio of dense's",
                            "evidence": f"parameters {params:.3f}, training FLOPs {flops:.3f} of dense SAC's",
                            "shown_in": ["tables/sparse_tables.md"]})  # fmt: skip
    return out


@dataclass(frozen=True)
class Study:
    """What a study's claims are read from: its continual rows, random references, per-run continual table (sizes),
    sparse runs (empty frames where it has none) and the engine version(s) that trained it."""

    results: pd.DataFrame
    random: pd.DataFrame
    runs: pd.DataFrame
    sparse: pd.DataFrame
    engines: str


def _read_table(directory: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = directory / "tables" / f"{name}.parquet"
    return pd.read_parquet(path, columns=columns) if path.exists() else pd.DataFrame()


def read_study(directory: Path) -> Study:
    """A study's tables as its claims read them, each file once."""
    results = _read_table(directory, "results")
    engines = engine_versions(directory, results)
    if not results.empty:
        results = results[results["suite"] == "continual"].copy()
        for column in ("scenario", "method", "metric", "task_name"):
            results[column] = results[column].astype(str)
    references = sorted((directory / "references").rglob("random.parquet"))
    if not results.empty and not references:
        raise FileNotFoundError(f"{directory}: continual tables but no random-policy references under "
                                f"{directory / 'references'} (learning and retention are measured against them)")  # fmt: skip
    sizes = _read_table(directory, "continual_runs")
    if not results.empty and "inference_size_rel" not in sizes:
        raise FileNotFoundError(f"{directory / 'tables'}: continual results but no continual_runs.parquet with "
                                f"inference_size_rel (tables built by an older rlrepro): rebuild them with `make "
                                f"validate-tables VALIDATE=<preset>`")  # fmt: skip
    random = pd.concat([pd.read_parquet(p) for p in references]) if references else pd.DataFrame(
        columns=["scenario", "seed", "task", "task_name", "metric", "value"])  # fmt: skip
    return Study(results, random.astype({"scenario": str, "metric": str}), sizes, _read_table(directory, "sparse_runs"),
                 engines)  # fmt: skip


def stale_tables(directory: Path) -> list[Path]:
    """The run folders a study's tables were built from that no longer hold those runs: missing (moved aside by
    `rlrepro adopt` for a re-run) or holding a run of another job spec (retrained since). Tables built from them are
    out of date, and no claim is read from them until `make validate-tables` rebuilds them from the runs present.
    Only for a preset's own folder (a kept copy of tables, such as `engine-0.2.0/`, holds no runs by design)."""
    from rlrepro.config import RUN_DIR, SPARSE_DIR, format_keep

    layouts = {"results": (["scenario", "method", "seed"], RUN_DIR),
               "sparse_results": (["env", "method", "keep_ratio", "seed"], SPARSE_DIR)}  # fmt: skip
    gone = []
    for name, (keys, layout) in layouts.items():
        path = directory / "tables" / f"{name}.parquet"
        if not path.exists():
            continue
        hashed = "config_hash" in pq.read_schema(path).names  # tables of an older rlrepro: the runs' presence only
        built = pd.read_parquet(path, columns=keys + ["config_hash"] * hashed).drop_duplicates()
        for row in built.astype({k: str for k in keys if k != "keep_ratio"}).to_dict("records"):
            if "keep_ratio" in row:
                row["keep"] = format_keep(row.pop("keep_ratio"))
            run = directory / layout.format(**row)
            result = run / "results.parquet"
            if not result.exists():
                gone.append(run)
            elif hashed and row["config_hash"] not in set(pd.read_parquet(result, columns=["config_hash"])["config_hash"]):
                gone.append(run)  # only the hash column is read
    return gone


def tables_digest(directory: Path) -> str:
    """One hash of the Parquet tables a study's claims are read from."""
    digest = hashlib.sha256()
    for name in ("results", "continual_runs", "sparse_runs"):
        path = directory / "tables" / f"{name}.parquet"
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def engine_versions(directory: Path, results: pd.DataFrame | None = None) -> str:
    """The engine version(s) that trained a study's runs, from its result tables (`results`: its results table, if
    already read)."""
    versions: set[str] = set()
    for frame in (_read_table(directory, "results", ["engine_version"]) if results is None else results,
                  _read_table(directory, "sparse_results", ["engine_version"])):  # fmt: skip
        if "engine_version" in frame:
            versions |= set(frame["engine_version"].astype(str))
    return ", ".join(sorted(versions)) or "unknown"


def claims_table(
    studies: dict[str, Path], cfg: BootstrapConfig, full_budgets: dict[str, str], sparse_full_budget: str
) -> pd.DataFrame:
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for name, directory in studies.items():
        digest = tables_digest(directory)
        if digest in seen:  # e.g. a study's tables not yet rebuilt from its re-run: the same claims twice
            rows.append({"study": name, "duplicate_of": seen[digest]})
            continue
        seen[digest] = name
        study = read_study(directory)
        name = f"{name} (engine {study.engines})"
        found = []
        if not study.results.empty:
            found += continual_claims(study.results, study.random, study.runs, name, cfg, full_budgets)
        if not study.sparse.empty:
            found += sparse_claims(study.sparse, name, cfg, sparse_full_budget)
        for row in found:  # the table, and the figure where the study has built it
            shown = [str(directory / p) for p in row["shown_in"] if p.startswith("tables/") or (directory / p).exists()]
            rows.append({**row, "shown_in": ", ".join(shown)})
    table = pd.DataFrame(rows, columns=["paper", "claim", "study", "scenario", "verdict", "evidence", "threshold",
                                        "to_decide", "budget", "full_budget", "shown_in", "duplicate_of"])  # fmt: skip
    # only an undecided claim has seeds left to decide it
    table["to_decide"] = table["to_decide"].astype(float).where(table["verdict"] == UNDECIDED)
    return table


def _to_decide(n: float, verdict: str) -> str:
    if verdict != UNDECIDED:
        return ""
    if pd.isna(n):
        return "–"
    return "∞" if np.isinf(n) else ("> 100" if n > 100 else f"≈ {n:.0f}")


def render_claims_markdown(
    table: pd.DataFrame,
    not_built: list[str] = (),
    status: list[str] = (),
    confidence: float = 0.95,
    out_of_date: dict[str, int] | None = None,
) -> str:
    mark = {HOLDS: "✅ holds", FAILS: "❌ does not hold", UNDECIDED: "➖ undecided"}
    lines = [
        "# The papers' claims at this budget",
        "",
        f"Each claim decided from the study's runs by a {confidence:.0%} stratified-bootstrap interval over seeds: **holds** "
        "when the",
        "whole interval is on the claim's side of the threshold, **does not hold** when it is wholly on the other side,",
        "**undecided** otherwise (one seed is always undecided). Retention = the fraction of a task's gain over a",
        "uniform-random policy that the tasks before the last still have at the end of the sequence",
        f"(threshold {RETENTION}).",
        "Thresholds are this project's; the papers state none. Built by `make claims` from the committed runs.",
        "",
        f"Seeds to decide: for an undecided claim, about how many seeds per method would decide it with a {POWER:.0%}",
        "chance at this budget if the observed mean and spread held (normal approximation",
        "`n = ((z + z_power) · s / |gap|)²`: z the interval's quantile, z_power the power's, s the standard deviation",
        "over seeds, gap the mean's distance from the threshold; for a difference of two methods s² = s₁² + s₂²).",
        "∞: the mean sits on the threshold; > 100: at this budget the effect is small against the seed-to-seed spread;",
        "–: fewer than two seeds (of either method) have a value.",
        "",
        f"| paper | claim | study · scenario | verdict | evidence: mean [{confidence:.0%} CI] (seeds) | seeds to decide "
        "| budget here | paper's budget | shown in |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    duplicates = table[table["duplicate_of"].notna()]
    for _, row in table[table["duplicate_of"].isna()].iterrows():
        lines.append(f"| {row['paper']} | {row['claim']} | {row['study']} · {row['scenario']} | {mark[row['verdict']]} "
                     f"| {row['evidence']} | {_to_decide(row['to_decide'], row['verdict'])} | {row['budget']} "
                     f"| {row['full_budget']} | {', '.join(f'`{p}`' for p in row['shown_in'].split(', '))} |")  # fmt: skip
    for _, row in duplicates.iterrows():
        lines += ["", f"{row['study']} and {row['duplicate_of']} hold the same tables; their claims are listed once, under "
                  f"{row['duplicate_of']}."]  # fmt: skip
    if status:
        lines += ["", "Runs behind the studies (`rlrepro adopt --dry-run` per preset):", ""] + [f"- {line}" for line in status]
    if not_built:
        lines += ["", f"Studies with no tables yet (no runs, or `make validate-tables` not run): {', '.join(not_built)}."]
    if out_of_date:
        stale = ", ".join(f"{name} ({n} run{'s' if n != 1 else ''})" for name, n in out_of_date.items())
        lines += ["", f"Studies whose tables were built from runs they no longer hold (moved aside for a re-run, or "
                      f"retrained since), not read until `make validate-tables` rebuilds them: {stale}."]  # fmt: skip
    return "\n".join(lines) + "\n"


COMPARED = {"final_avg_return": "final return", "final_normalised": "final (÷ SAC-N)", "forgetting": "forgetting",
            "final_return": "last-10 return", "return_rel_dense": "÷ dense"}  # fmt: skip
"""The table metrics two runs of one study are compared on (continual_tables / sparse_tables Parquets)."""


def compare_studies(before: Path, after: Path) -> pd.DataFrame:
    """Method by method, the same study's table cells from two sets of runs (e.g. two engine versions): both
    intervals and whether they overlap. Different last bits give different runs, so a reading is unchanged where
    the intervals overlap; where they do not, the conclusion may have moved."""
    frames = []
    for name in ("continual_tables", "sparse_tables"):
        paths = [d / "tables" / f"{name}.parquet" for d in (before, after)]
        if not all(p.exists() for p in paths):
            continue
        a, b = (pd.read_parquet(p) for p in paths)
        keys = ["table", "section", "row", "metric"]
        cols = ["mean", "low", "high", "n_seeds"]
        merged = a[keys + cols].merge(b[keys + cols], on=keys, how="outer", suffixes=("_before", "_after"))
        frames.append(merged[merged["metric"].isin(list(COMPARED))])
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values("row", key=lambda rows: rows.map(lambda r: (method_rank(str(r).split(" @ ")[0]), str(r))),
                          kind="stable")  # fmt: skip
    out["overlap"] = (out["low_before"] <= out["high_after"]) & (out["low_after"] <= out["high_before"])
    return out


def render_comparison_markdown(table: pd.DataFrame, before: str, after: str) -> str:
    from rlrepro.naming import display_label

    def cell(row: pd.Series, side: str) -> str:
        if pd.isna(row[f"mean_{side}"]):
            return "n/a"
        return (f"{format_number(row[f'mean_{side}'])} [{format_number(row[f'low_{side}'])}, "
                f"{format_number(row[f'high_{side}'])}] ({int(row[f'n_seeds_{side}'])})")  # fmt: skip

    lines = [
        f"# {before} against {after}",
        "",
        "Each cell: mean [95% CI] (seeds) over the runs of each. Different last bits give different individual runs;",
        "a reading is unchanged where the two intervals overlap, and may have moved where they do not (**no**).",
        "",
    ]
    for (section, metric), group in table.groupby(["section", "metric"], sort=False):
        lines += [f"## {section}: {COMPARED[metric]}", "", f"| method | {before} | {after} | overlap |", "|---|---|---|---|"]
        for _, row in group.iterrows():
            both = not (pd.isna(row["mean_before"]) or pd.isna(row["mean_after"]))
            overlap = ("yes" if row["overlap"] else "**no**") if both else "—"
            lines.append(f"| {display_label(row['row'])} | {cell(row, 'before')} | {cell(row, 'after')} | {overlap} |")
        lines.append("")
    return "\n".join(lines)


def study_cost(directory: Path) -> pd.DataFrame:
    """Per method of a study: jobs, the shortest and longest training wall time of a job, and core-hours in all (one
    core per job; evaluation included), from the run tables' `train_wall_time_s` / `eval_wall_time_s`."""
    frames = []
    for name, suite in (("continual_runs", "continual"), ("sparse_runs", "sparse")):
        path = directory / "tables" / f"{name}.parquet"
        if path.exists():
            runs = pd.read_parquet(path)
            runs["wall"] = runs["train_wall_time_s"] + runs.get("eval_wall_time_s", 0.0)
            where = runs["scenario"] if "scenario" in runs else runs["env"]
            runs["job"] = [job_label(w, m) for w, m in zip(where.astype(str), runs["method"].astype(str), strict=True)]
            frames.append(runs.assign(suite=suite)[["suite", "job", "method", "seed", "train_wall_time_s", "wall"]])
    if not frames:
        return pd.DataFrame()
    runs = pd.concat(frames, ignore_index=True)
    grouped = runs.groupby(["suite", "job"], sort=False)
    out = grouped.agg(jobs=("seed", "size"), min_s=("train_wall_time_s", "min"), max_s=("train_wall_time_s", "max"),
                      core_hours=("wall", lambda s: s.sum() / 3600)).reset_index()  # fmt: skip
    return out


def hours_per_job(cost: pd.DataFrame) -> dict[str, float]:
    """Core-hours of one job of a study, by job ("scenario · Method" / "env · Method"), from its `study_cost` frame:
    what its jobs measured on average (its own budget; the engine that trained them)."""
    if cost.empty:
        return {}
    return {str(job): float(hours / n) for job, hours, n in zip(cost["job"], cost["core_hours"], cost["jobs"], strict=True)}


def render_cost_markdown(costs: dict[str, pd.DataFrame]) -> str:
    lines = ["# Cost of each study", "",
             "Measured: each job's training wall time (`train_wall_time_s` in its `meta.json`; one core per job, two jobs",
             "at a time on a 2-core machine) and core-hours in all, training plus evaluation.", ""]  # fmt: skip
    for study, table in costs.items():
        if table.empty:
            continue
        total, jobs = table["core_hours"].sum(), int(table["jobs"].sum())
        lines += [f"## {study}: {jobs} job{'s' if jobs != 1 else ''}, {total:.1f} core-hours", "",
                  "| job | runs | training wall time per job | core-hours |", "|---|---|---|---|"]  # fmt: skip
        for _, row in table.iterrows():
            lines.append(f"| {row['job']} | {int(row['jobs'])} | {_minutes(row)} | {row['core_hours']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _minutes(row: pd.Series) -> str:
    low, high = f"{row['min_s'] / 60:.0f}", f"{row['max_s'] / 60:.0f}"
    return f"{low} min" if low == high else f"{low}–{high} min"


def render_cost_comparison(before: pd.DataFrame, after: pd.DataFrame, names: tuple[str, str]) -> str:
    """Job by job, the core-hours of one study's jobs next to another's (the same jobs on two engines): the mean per
    job and its ratio. The ratio measures the machine on the two days as well as the engine (see the docs' Cost)."""
    if before.empty or after.empty:
        return ""
    a, b = (cost.set_index("job") for cost in (before, after))
    per_a, per_b = hours_per_job(before), hours_per_job(after)
    shared = [job for job in a.index if job in b.index]
    lines = [f"## {names[1]} against {names[0]}, per job", "",
             f"| job | runs ({names[0]} / {names[1]}) | training wall time per job, {names[0]} | {names[1]} | "
             f"core-hours per job, {names[0]} | {names[1]} | ratio |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for job in shared:
        x, y = a.loc[job], b.loc[job]
        lines.append(f"| {job} | {int(x['jobs'])} / {int(y['jobs'])} | {_minutes(x)} | {_minutes(y)} | "
                     f"{per_a[job]:.2f} | {per_b[job]:.2f} | {per_b[job] / per_a[job]:.2f} |")  # fmt: skip
    if shared:
        sa, sb = sum(per_a[job] for job in shared), sum(per_b[job] for job in shared)
        lines += ["", f"One job of each of these {len(shared)} kinds: {sa:.1f} core-hours on {names[0]}, "
                      f"{sb:.1f} on {names[1]} ({sb / sa:.2f}×)."]  # fmt: skip
    return "\n".join([*lines, ""])
