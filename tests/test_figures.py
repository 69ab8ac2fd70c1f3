"""Figures a reviewer can trust: one look per method everywhere, and seeds averaged on a common grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlrepro.figures import METHOD_LOOKS, _common_eval_grid, method_style, sparse_curves
from rlrepro.naming import METHOD_ORDER, display_name


def test_every_method_has_one_distinct_look_in_every_figure():
    looks = [(method_style(m)["color"], method_style(m)["marker"], method_style(m)["linestyle"]) for m in METHOD_ORDER]
    assert len(set(looks)) == len(METHOD_ORDER) and set(METHOD_LOOKS) == set(METHOD_ORDER)
    for together in (["ft_1", "sac_n", "ewc", "packnet", "rewire", "pnn", "csp", "ft_l2"], ["dense", "rigl", "rlx2", "dapd"]):
        assert len({method_style(m)["color"] for m in together}) == len(together), together  # a colour each
    papers = [method_style(m) for m in METHOD_ORDER]
    for variant in (f"{m}-{suffix}" for m in METHOD_ORDER for suffix in ("coeff100", "coeff=100", "a", "b", "lr3e-4")):
        base = variant.split("-")[0]
        assert method_style(variant)["color"] == method_style(base)["color"] and method_style(variant) not in papers
    assert method_style("my_method") not in papers
    assert method_style("rewire") == method_style("rewire")  # by name, not by position in a figure's legend
    assert display_name("sac_n") == "SAC-N" and display_name("my_method") == "my_method"


def test_sparse_curves_average_seeds_whose_evaluations_land_on_different_steps(tmp_path):
    """Evaluations are flagged every 5000 steps but run at the next episode end, so on Hopper-like envs no two
    seeds share a step: the k-th evaluation of each seed is one point of the curve."""
    steps = {0: [5000, 10012, 15003], 1: [5020, 10000, 15100], 2: [5007, 10044, 15009]}
    rows = [(seed, s, float(10 * k + seed)) for seed, ss in steps.items() for k, s in enumerate(ss)]
    evals = pd.DataFrame(rows, columns=["seed", "step", "value"])
    curve, x = _common_eval_grid(evals)
    assert curve.shape == (3, 3) and not curve.isna().any().any()  # one row per evaluation, every seed in it
    np.testing.assert_allclose(
        x, [np.mean([5000, 5020, 5007]), np.mean([10012, 10000, 10044]), np.mean([15003, 15100, 15009])]
    )
    np.testing.assert_allclose(curve.mean(axis=1), [1.0, 11.0, 21.0])
    frame = evals.assign(metric="eval_return", method="dapd", keep_ratio=0.05, env_id="Hopper-v5", layer=None)
    paths = sparse_curves(frame, tmp_path / "hopper")
    assert all(p.stat().st_size > 0 for p in paths)


def continual_training_rows() -> pd.DataFrame:
    """Two methods x 3 seeds x 2 tasks of training-return curve points (seed 2 of ft_1 lacks its last point)."""
    rows = []
    for method, slope in (("sac_n", 2.0), ("ft_1", 1.0)):
        for seed in range(3):
            for task in range(2):
                rows.append((method, seed, task, "train_env_steps", 300.0, None))
                for step in (100, 200, 300):
                    if not (method == "ft_1" and seed == 2 and task == 1 and step == 300):
                        rows.append((method, seed, task, "train_return", slope * step / 100 + seed - 5 * task, step))
    frame = pd.DataFrame(rows, columns=["method", "seed", "task", "metric", "value", "step"])
    return frame.assign(scenario="halfcheetah/robustness", task_name=frame["task"].map({0: "normal", 1: "inverted_actions"}))


def figure_data_snapshot(name: str, data: pd.DataFrame) -> None:
    from test_tables import check_snapshot

    check_snapshot(f"figure_data/{name}.csv", data.to_csv(index=False, float_format="%.6g"))


def test_figure_data_matches_the_snapshots(tmp_path):
    """The numbers behind the learning-curve, stage and trade-off figures (written next to each figure as .csv) for
    fixed inputs: a change in averaging, grids, bands or method order shows up here (regenerate with
    RLREPRO_UPDATE_SNAPSHOTS=1 after checking it is intended)."""
    from test_tables import BOOT, synthetic_results

    from rlrepro.figures import (
        continual_curve_data,
        continual_curves,
        sparse_curve_data,
        stage_performance_data,
        tradeoff_data,  # fmt: skip
    )
    from rlrepro.tables import continual_run_metrics

    training = continual_training_rows()
    curves, offsets = continual_curve_data(training, BOOT)
    assert offsets == {0: 0.0, 1: 300.0} and list(curves["method"].unique()) == ["ft_1", "sac_n"]  # papers' order
    assert curves[(curves["method"] == "ft_1") & (curves["x"] == 600)]["n_seeds"].item() == 2  # the missing point
    figure_data_snapshot("continual_curves", curves)
    paths = continual_curves(training, tmp_path / "curves", BOOT)
    assert pd.read_csv(paths[-1]).shape == curves.shape

    results = synthetic_results()
    figure_data_snapshot("stage_performance", stage_performance_data(results[results["scenario"] == "halfcheetah/forgetting"]))
    figure_data_snapshot("tradeoff", tradeoff_data(continual_run_metrics(results, "sac_n"), "halfcheetah", BOOT))

    steps = {0: [5000, 10012, 15003], 1: [5020, 10000, 15100], 2: [5007, 10044]}
    rows = [(m, keep, seed, s, float(10 * k + seed + (5 if m == "dapd" else 0)))
            for m, keep in (("dapd", 0.05), ("dense", 1.0)) for seed, ss in steps.items() for k, s in enumerate(ss)]
    evals = pd.DataFrame(rows, columns=["method", "keep_ratio", "seed", "step", "value"])
    figure_data_snapshot("sparse_curves", sparse_curve_data(evals, BOOT))


def test_task_performance_shows_each_task_after_each_stage_next_to_the_random_policy(tmp_path):
    """One panel per task: the scenario's own metric (success on Continual World), every seed of a method averaged
    at each stage, and the random policy's level on that task from the scenario's references only."""
    from test_tables import synthetic_results

    from rlrepro.figures import task_panels, task_performance, task_performance_data

    cw = synthetic_results().query("scenario == 'continual_world/t1'")
    cw = cw.assign(task_name=cw["task"].map({0: "window-close", 1: "handle-press-side"}))
    random = pd.DataFrame({"scenario": ["continual_world/t1"] * 4 + ["continual_world/t2"], "seed": 0,
                           "task": [0, 1, 0, 1, 1], "metric": ["success_last"] * 2 + ["avg_return"] * 2 + ["success_last"],
                           "value": [0.1, 0.3, 5.0, 7.0, 0.9]})  # fmt: skip
    data = task_performance_data(cw, random)
    assert set(data["metric"]) == {"success_last"} and len(data) == 2 * 2 * 2  # tasks × methods × stages
    after = data.query("method == 'sac_n' and task == 0 and stage == 1")
    # synthetic_results: success = min(scale · (1 + stage + task + seed / 10) / 4, 1) once the task is trained
    assert after["mean"].item() == pytest.approx(np.mean([(2 + seed / 10) / 4 for seed in range(3)]))
    assert after["n_seeds"].item() == 3 and set(data.query("method == 'ft_1'")["n_seeds"]) == {2}
    assert data.groupby("task")["random"].first().tolist() == [0.1, 0.3]  # this scenario's references only
    assert data.groupby("task")["trained_at"].first().tolist() == ["0", "1"]
    paths = task_performance(cw, tmp_path / "cw", random)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".csv"] and pd.read_csv(paths[-1]).shape == data.shape

    # A seed not yet evaluated after stage 1 leaves that stage to the others; a repeated task name is the same task
    # trained again (robustness's revisits), so its panel marks both stages.
    partial = cw[~((cw["method"] == "sac_n") & (cw["seed"] == 0) & (cw["stage"] == 1))]
    partial = partial.assign(task_name="window-close")
    data = task_performance_data(partial, random)
    assert data.query("method == 'sac_n' and stage == 0")["n_seeds"].tolist() == [3, 3]
    assert data.query("method == 'sac_n' and stage == 1")["n_seeds"].tolist() == [2, 2]
    assert set(data["trained_at"]) == {"0 1"}
    assert task_panels(data) == {0: [0], 1: [1]}  # the same name, other numbers: a panel each
    same = data.assign(mean=data.groupby(["method", "stage"])["mean"].transform("first"))
    assert task_panels(same) == {0: [0, 1]}  # the same numbers too: one panel
    with pytest.raises(ValueError, match="one scenario"):
        task_performance_data(synthetic_results(), random)
    figure_data_snapshot("task_performance", task_performance_data(synthetic_results().query(
        "scenario == 'halfcheetah/forgetting'")))  # fmt: skip
