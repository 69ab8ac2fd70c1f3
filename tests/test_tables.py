"""Metrics on hand-computed matrices, bootstrap intervals, and the paper tables rendered from a synthetic result
set (snapshot-tested: tests/snapshots/*.md hold the expected text; regenerate with RLREPRO_UPDATE_SNAPSHOTS=1)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlrepro import metrics
from rlrepro.metrics.stats import BootstrapConfig, aggregate_metrics, mean_ci
from rlrepro.results import RESULT_SCHEMA
from rlrepro.tables import continual_run_metrics, paper

SNAPSHOTS = Path(__file__).parent / "snapshots"
BOOT = BootstrapConfig(reps=300, confidence=0.95, random_state=0)
P = np.array([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.2, 1.0, 3.0]])  # p[s][j]
REF = np.array([2.0, 4.0, 3.0])


def test_metrics_on_a_hand_computed_matrix():
    assert metrics.final_performance(P) == pytest.approx((0.2 + 1.0 + 3.0) / 3)
    assert metrics.forgetting(P) == pytest.approx(((1 - 0.2) + (2 - 1) + (3 - 3)) / 3)
    assert metrics.normalised_final(P, REF) == pytest.approx((0.2 / 2 + 1 / 4 + 3 / 3) / 3)
    assert metrics.forward_transfer(P, REF) == pytest.approx(((1 - 2) / 2 + (2 - 4) / 4 + 0) / 3)
    assert metrics.mean_seen_per_stage(P).tolist() == pytest.approx([1.0, 1.25, 1.4])


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    values = np.random.default_rng(1).normal(5.0, 2.0, size=10)
    state = np.random.get_state()
    mean, low, high = mean_ci(values, BOOT)
    assert mean == pytest.approx(values.mean()) and low < mean < high
    assert high - low < 4 * values.std()  # a 95% CI of a mean of 10 is much narrower than the spread
    assert mean_ci(values, BOOT) == (mean, low, high)
    assert mean_ci(values, BootstrapConfig(reps=300, random_state=7)) != (mean, low, high)
    assert np.array_equal(np.random.get_state()[1], state[1])  # the global numpy RNG is left as it was
    assert mean_ci(np.array([3.0]), BOOT) == (3.0, 3.0, 3.0)  # one seed: nothing to resample


def test_bootstrap_interval_of_a_mean_matches_the_normal_closed_form_on_many_seeds():
    """1,000 seeds: the percentile bootstrap of a mean is mean ± z·σ/√n to within its Monte-Carlo error (2,000 reps:
    about 3% of the half-width). A 90% interval (z 1.64 instead of 1.96) or no resampling would be far off."""
    values = np.random.default_rng(2).normal(5.0, 2.0, size=1000)
    mean, low, high = mean_ci(values, BootstrapConfig(reps=2000, confidence=0.95, random_state=0))
    half = 1.959964 * values.std() / np.sqrt(values.size)
    assert mean == pytest.approx(values.mean())
    assert mean - low == pytest.approx(half, rel=0.08) and high - mean == pytest.approx(half, rel=0.08)


def test_stratified_bootstrap_resamples_runs_within_each_task():
    """rliable's stratified bootstrap resamples the runs of each task independently: for the mean over a (runs x tasks)
    matrix the interval is z·sqrt(Σ_j σ_j² / n) / T, whatever the correlation between a run's tasks. Here the four
    tasks of a run are strongly correlated, so resampling whole runs (the wrong axis) would give an interval about
    twice as wide."""
    rng = np.random.default_rng(3)
    n, tasks = 400, 4
    run_effect = rng.normal(0.0, 1.0, size=(n, 1))
    matrix = run_effect + rng.normal(0.0, 0.2, size=(n, tasks)) + np.arange(tasks)
    stats = aggregate_metrics({"a": matrix}, BootstrapConfig(reps=2000, confidence=0.95, random_state=0))["a"]
    point, low, high = stats["mean"]
    stratified = 1.959964 * np.sqrt((matrix.var(axis=0) / n).sum()) / tasks
    whole_runs = 1.959964 * matrix.mean(axis=1).std() / np.sqrt(n)
    assert whole_runs > 1.8 * stratified  # the two axes are far apart on this matrix
    assert point == pytest.approx(matrix.mean())
    assert point - low == pytest.approx(stratified, rel=0.08) and high - point == pytest.approx(stratified, rel=0.08)
    # the other statistics get intervals from the same resamples, around their own point estimates
    for name in ("iqm", "median", "optimality_gap"):
        p, lo, hi = stats[name]
        assert lo <= p <= hi and hi - lo < 4 * stratified, name


def test_aggregate_iqm_and_optimality_gap():
    scores = {"a": np.array([[0.0, 1.0, 2.0, 3.0], [0.5, 1.5, 2.5, 3.5]])}
    stats = aggregate_metrics(scores, BOOT)["a"]
    assert stats["mean"][0] == pytest.approx(1.75)
    assert stats["iqm"][0] == pytest.approx(np.mean([1.0, 1.5, 2.0, 2.5]))  # middle 50% of the 8 scores
    assert stats["optimality_gap"][0] == pytest.approx(np.mean([1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]))
    for point, low, high in stats.values():
        assert low <= point <= high


def synthetic_results() -> pd.DataFrame:
    """Two methods × (one Brax scenario, one Continual World scenario) × 3 seeds, with one seed of ft_1 missing."""
    rows = []
    for scenario in ("halfcheetah/forgetting", "continual_world/t1"):
        cw = scenario.startswith("continual_world")
        for method, scale in (("sac_n", 1.0), ("ft_1", 0.5)):
            for seed in range(3):
                if method == "ft_1" and seed == 2:
                    continue
                for s in range(2):
                    for j in range(2):
                        value = scale * (1 + s + j + 0.1 * seed) if j <= s else 0.1 * seed
                        for metric in ("avg_return", "success_last", "success_any") if cw else ("avg_return",):
                            frac = min(value / 4, 1.0) if metric != "avg_return" else value * 100
                            rows.append(
                                (method, scenario, seed, s, j, metric, frac + (0.05 if metric == "success_any" else 0))
                            )
                    size = (2 if method == "sac_n" else 1) * 1000 if s == 1 else 1000
                    rows += [(method, scenario, seed, s, None, "inference_parameters", size),
                             (method, scenario, seed, s, None, "stored_parameters", size * 2)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["method", "scenario", "seed", "stage", "task", "metric", "value"])
    df["task"] = df["task"].astype("Int64")
    df = df.assign(suite="continual", task_name="t", step=pd.NA, engine_version="0", git_commit="x", config_hash="h",
                   device="cpu", python_version="3.11", torch_version="2", jax_version="0", brax_version="0",
                   mujoco_version="3", train_wall_time_s=1.0, eval_wall_time_s=1.0)  # fmt: skip
    return df[list(RESULT_SCHEMA)].astype(RESULT_SCHEMA)


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("RLREPRO_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; inspect and regenerate with RLREPRO_UPDATE_SNAPSHOTS=1"


def test_continual_tables_render_as_in_the_snapshot():
    runs = continual_run_metrics(synthetic_results(), "sac_n")
    cw = runs[runs["scenario"] == "continual_world/t1"].set_index(["method", "seed"])
    assert cw.loc[("ft_1", 0), "final_success_last"] == pytest.approx((0.5 * 2 / 4 + 0.5 * 3 / 4) / 2)
    assert np.isnan(runs[runs["scenario"] == "halfcheetah/forgetting"]["final_success_last"]).all()
    # D13: the headline model size is the state-dict count the original logged; inference size is a second column
    hc = runs[runs["scenario"] == "halfcheetah/forgetting"].set_index(["method", "seed"])
    assert hc.loc[("sac_n", 0), "model_size_rel"] == 4.0 and hc.loc[("sac_n", 0), "inference_size_rel"] == 2.0
    layout = paper.TableSpec("continual", "scenario", "method", {})
    cells = paper.estimate_cells(runs, layout, list({**paper.BRAX_COLUMNS, **paper.CW_COLUMNS}), BOOT, expected_seeds=3)
    reference = pd.DataFrame({"section": ["halfcheetah/forgetting"], "row": ["ft_1"], "metric": ["final_avg_return"],
                              "value": [200.0]})  # fmt: skip
    cells = paper.attach_reference(cells, reference)
    ft1 = cells[
        (cells["row"] == "ft_1") & (cells["metric"] == "final_avg_return") & (cells["section"] == "halfcheetah/forgetting")
    ]
    assert ft1["diff"].iloc[0] == pytest.approx(ft1["mean"].iloc[0] - 200.0)
    text = ""
    for domain, columns in (("halfcheetah", paper.BRAX_COLUMNS), ("continual_world", paper.CW_COLUMNS)):
        mine = cells[cells["section"].str.startswith(domain)]
        text += paper.render_markdown(mine, columns, domain, "caption")
        assert "\\begin{tabular}" in paper.render_latex(mine, columns, "caption")
    assert "Missing seeds (failed or absent runs, not averaged in): FT-1: 1." in text
    check_snapshot("continual_tables.md", text)


def test_reference_csv_is_read_and_checked(tmp_path):
    path = tmp_path / "continual.csv"
    path.write_text("scenario,method,metric,value\nhalfcheetah/forgetting,rewire,final_avg_return,1234\n")
    ref = paper.read_reference(str(path), "scenario", "method")
    assert ref.to_dict("records") == [
        {"section": "halfcheetah/forgetting", "row": "rewire", "metric": "final_avg_return", "value": 1234}
    ]
    path.write_text("scenario,metric,value\n")
    with pytest.raises(ValueError, match="reference CSV needs columns"):
        paper.read_reference(str(path), "scenario", "method")


def test_sparse_tables_render_as_in_the_snapshot():
    from rlrepro.results import SPARSE_SCHEMA
    from rlrepro.tables.sparse import sparse_run_metrics

    rows = []
    for method, keep, scale, params in (("dense", 1.0, 1.0, 1000.0), ("dapd", 0.05, 0.8, 60.0), ("rigl", 0.05, 0.5, 55.0)):
        for seed in range(3):
            for step in (100, 200, 300):
                rows.append((method, keep, seed, step, "eval_return", scale * step * (1 + 0.1 * seed)))
            final = {"actor_params": params, "critic_params": 2 * params, "train_flops": 1e9 * params, "actor_density": keep}
            rows += [(method, keep, seed, 300, name, value) for name, value in final.items()]
    df = pd.DataFrame(rows, columns=["method", "keep_ratio", "seed", "step", "metric", "value"])
    df = df.assign(suite="sparse", env="hopper", env_id="Hopper-v5", layer=None, engine_version="0", git_commit="x",
                   config_hash="h", device="cpu", python_version="3.11", torch_version="2", gymnasium_version="1",
                   mujoco_version="3", train_wall_time_s=1.0)[list(SPARSE_SCHEMA)].astype(SPARSE_SCHEMA)  # fmt: skip
    runs = sparse_run_metrics(df, last_k=2)
    dapd = runs[runs["method"] == "dapd"].set_index("seed")
    assert dapd.loc[0, "final_return"] == pytest.approx(0.8 * 250)  # mean of the last 2 evaluations
    dense_mean = np.mean([250 * (1 + 0.1 * s) for s in range(3)])
    assert dapd.loc[1, "return_rel_dense"] == pytest.approx(0.8 * 250 * 1.1 / dense_mean)
    assert dapd.loc[0, "params_rel_dense"] == pytest.approx(0.06)
    layout = paper.TableSpec("sparse", "env", "label", paper.SPARSE_COLUMNS)
    cells = paper.estimate_cells(runs, layout, list(paper.SPARSE_COLUMNS), BOOT, expected_seeds=3)
    check_snapshot("sparse_tables.md", paper.render_markdown(cells, paper.SPARSE_COLUMNS, "Sparse suite", "caption"))


def test_a_method_with_no_run_at_all_is_listed_as_missing():
    runs = continual_run_metrics(synthetic_results(), "sac_n")
    layout = paper.TableSpec("continual", "scenario", "method", {})
    expected = [("halfcheetah/forgetting", m) for m in ("ft_1", "sac_n", "ewc")]
    cells = paper.estimate_cells(runs, layout, list(paper.BRAX_COLUMNS), BOOT, 3, expected)
    text = paper.render_markdown(cells[cells["section"] == "halfcheetah/forgetting"], paper.BRAX_COLUMNS, "t", "c")
    assert "| EWC | n/a | n/a | n/a | n/a | n/a | n/a | 0 |" in text
    assert "not averaged in): FT-1: 1, EWC: 3." in text


def test_per_task_table_puts_each_method_next_to_the_random_reference(fake_scenario):
    """The random reference evaluated on the fake env (a test double, conftest.FakeVecEnv)."""
    from conftest import fake_env_factory

    from rlrepro.continual import EvalSpec, evaluate_random
    from rlrepro.tables import continual_task_table, render_task_markdown

    rows = evaluate_random(EvalSpec(fake_scenario, seed=1), env_factory=fake_env_factory)
    assert [(r["task"], r["metric"]) for r in rows] == [(0, "avg_return"), (1, "avg_return")]
    again = evaluate_random(EvalSpec(fake_scenario, seed=1), env_factory=fake_env_factory)
    assert rows == again and rows != evaluate_random(EvalSpec(fake_scenario, seed=2), env_factory=fake_env_factory)
    results = synthetic_results()
    random_ref = pd.DataFrame({"scenario": "halfcheetah/forgetting", "seed": [0, 1, 0, 1], "task": [0, 0, 1, 1],
                               "metric": "avg_return", "value": [-10.0, -20.0, -5.0, -5.0]})  # fmt: skip
    table = continual_task_table(results, random_ref).set_index(["scenario", "method", "task"])
    ft1 = table.loc[("halfcheetah/forgetting", "ft_1", 0)]
    # ft_1's seeds 0 and 1: p[0][0] = 0.5·(1 + 0.1·seed)·100, p[1][0] = 0.5·(2 + 0.1·seed)·100
    assert ft1["just_trained"] == pytest.approx(52.5) and ft1["final"] == pytest.approx(102.5)
    assert ft1["random"] == -15.0 and table.loc[("halfcheetah/forgetting", "sac_n", 1), "random"] == -5.0
    assert np.isnan(table.loc[("continual_world/t1", "ft_1", 0), "random"])  # no reference given for it
    text = render_task_markdown(continual_task_table(results, random_ref), "caption")
    assert "| task | random | FT-1 | SAC-N |" in text and "| 0: t | -15 | 52.5 → 102 | 110 → 210 |" in text


def test_probability_of_improvement_over_the_reference_method():
    from rlrepro.metrics.stats import probability_of_improvement
    from rlrepro.tables import paper

    better, worse = np.array([[2.0, 3.0], [2.5, 3.5], [2.2, 3.1]]), np.array([[1.0, 1.0], [1.5, 2.0], [0.5, 0.1]])
    est = probability_of_improvement({"b>w": (better, worse), "w>b": (worse, better), "b=b": (better, better)}, BOOT)
    assert est["b>w"][0] == 1.0 and est["w>b"][0] == 0.0 and est["b=b"][0] == 0.5
    assert est["b>w"][1] <= 1.0 and est["b=b"][1] <= 0.5 <= est["b=b"][2]
    runs = continual_run_metrics(synthetic_results(), "sac_n")
    cells, _ = paper.aggregate_table(runs, "final_normalised", BOOT, reference="sac_n")
    p = cells[cells["metric"] == "p_improvement"].set_index("row")["mean"]
    assert list(p.index) == ["ft_1"] and 0.0 <= p["ft_1"] < 0.5  # ft_1 (half sac_n's returns) rarely beats it
    text = paper.render_markdown(cells, {"iqm": "IQM", "p_improvement": "P(X > sac_n)"}, "Aggregate", "caption")
    assert "| SAC-N |" in text and "| — |" in text  # the reference has no P(X > itself): a dash, not a crash
