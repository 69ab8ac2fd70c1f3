"""The claims table (rlrepro.tables.claims): verdicts from intervals, retention from the stage×task matrix, and a
whole study's claims decided from Parquet tables built here (numbers constructed so each verdict is known)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rlrepro.metrics.stats import BootstrapConfig
from rlrepro.tables.claims import (
    FAILS,
    HOLDS,
    RETENTION,
    UNDECIDED,
    Interval,
    claims_table,
    continual_runs,
    difference_interval,
    render_claims_markdown,
    verdict,
)

CFG = BootstrapConfig(reps=200)
SCENARIO = "halfcheetah/robustness"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("interval", "above", "expected"),
    [
        (Interval(1.0, 0.95, 1.05, 3), True, HOLDS),
        (Interval(0.8, 0.7, 0.85, 3), True, FAILS),
        (Interval(0.9, 0.8, 0.95, 3), True, UNDECIDED),
        (Interval(1.0, 0.95, 1.05, 1), True, UNDECIDED),  # one seed decides nothing
        (Interval(0.1, -0.1, 0.3, 3), False, HOLDS),
        (Interval(0.95, 0.92, 0.99, 3), False, FAILS),
        (Interval(0.85, 0.6, 0.95, 3), False, UNDECIDED),
    ],
)
def test_verdict_needs_the_whole_interval_on_one_side(interval, above, expected):
    assert verdict(interval, RETENTION, above=above) == expected


def test_difference_interval_brackets_the_difference_of_means():
    x, y = np.array([10.0, 12.0, 11.0]), np.array([1.0, 2.0, 3.0])
    d = difference_interval(x, y, CFG)
    assert d.mean == pytest.approx(x.mean() - y.mean())
    assert d.low <= d.mean <= d.high and d.low > 0
    assert difference_interval(x, np.array([np.nan]), CFG).n == 0


Z = 1.959964 + 0.841621  # the 95% interval's quantile plus 80% power's


def test_seeds_to_decide_follows_the_normal_approximation():
    from rlrepro.tables.claims import seeds_to_decide

    x = np.array([0.8, 1.0, 1.2, np.nan])  # mean 1.0, s = 0.2 over the three seeds with a value: 0.1 above 0.9
    assert seeds_to_decide(x, 0.9, CFG) == np.ceil(Z**2 * 0.04 / 0.01)  # 32
    y = np.array([0.6, 0.8, 1.0])  # a difference of 0.2, 0.1 above the threshold 0.1, with s² = 0.04 + 0.04
    assert seeds_to_decide(x, 0.1, CFG, y) == np.ceil(Z**2 * 0.08 / 0.01)  # 63
    assert seeds_to_decide(np.array([5.0, 7.0]), 6.0, CFG) == np.inf
    assert np.isnan(seeds_to_decide(np.array([1.0, np.nan]), 0.0, CFG))
    assert np.isnan(seeds_to_decide(x, 0.0, CFG, np.array([0.5])))  # one seed of the other method: no spread
    assert seeds_to_decide(np.array([10.0, 10.1, 10.2]), 0.0, CFG) == 4  # never fewer than one seed more


def _rows(method: str, seed: int, p: np.ndarray) -> list[dict]:
    return [{"suite": "continual", "scenario": SCENARIO, "method": method, "seed": seed, "stage": s, "task": j,
             "task_name": f"t{j}", "metric": "avg_return", "value": float(p[s, j])}
            for s in range(p.shape[0]) for j in range(p.shape[1])] + [
        {"suite": "continual", "scenario": SCENARIO, "method": method, "seed": seed, "stage": s, "task": s,
         "task_name": f"t{s}", "metric": "train_env_steps", "value": 1000.0} for s in range(p.shape[0])]  # fmt: skip


def _random(n_tasks: int, value: float = -100.0) -> pd.DataFrame:
    return pd.DataFrame([{"scenario": SCENARIO, "seed": 0, "task": j, "task_name": f"t{j}", "metric": "avg_return",
                          "value": value} for j in range(n_tasks)])  # fmt: skip


def test_retention_is_the_kept_fraction_of_the_gain_over_random():
    p = np.array([[900.0, 50.0, 10.0], [400.0, 700.0, 20.0], [650.0, 300.0, 800.0]])
    runs = continual_runs(pd.DataFrame(_rows("ft_1", 0, p)), _random(3))
    row = runs.iloc[0]
    # the gain over random (-100) the first two tasks keep after the last, of what they had (the last has no later stage)
    assert row["retention"] == pytest.approx(((650 + 100) + (300 + 100)) / ((900 + 100) + (700 + 100)))
    assert row["task0_retention"] == pytest.approx((650 + 100) / (900 + 100))
    assert row["task0_after_next"] == pytest.approx((400 + 100) / (900 + 100))  # before any later stage restored it
    assert row["final"] == pytest.approx(p[2].mean())
    assert row["gain_1"] == pytest.approx(p[1, 1] + 100)


def test_an_unfinished_run_has_no_retention_or_final():
    p = np.array([[900.0, 50.0]])  # stage 1 not evaluated yet
    row = continual_runs(pd.DataFrame(_rows("ft_1", 0, p)), _random(2)).iloc[0]
    assert not row["complete"] and np.isnan(row["retention"]) and np.isnan(row["final"])


def _study(tmp_path, matrices: dict[str, list[np.ndarray]]):
    rows = [r for method, ps in matrices.items() for seed, p in enumerate(ps) for r in _rows(method, seed, p)]
    (tmp_path / "tables").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "tables" / "results.parquet")
    sizes = [{"scenario": SCENARIO, "method": method, "seed": seed, "inference_size_rel": 1.0}
             for method, ps in matrices.items() for seed in range(len(ps))]  # fmt: skip
    pd.DataFrame(sizes).to_parquet(tmp_path / "tables" / "continual_runs.parquet")
    ref = tmp_path / "references" / SCENARIO / "seed0"
    ref.mkdir(parents=True)
    _random(2).to_parquet(ref / "random.parquet")
    return tmp_path


def test_a_study_decides_forgetting_retention_and_rewire_comparisons(tmp_path):
    rng = np.random.default_rng(0)

    def runs(keep: float, level: float) -> list[np.ndarray]:
        out = []
        for _ in range(3):
            a, b = level + rng.uniform(-20, 20), level + rng.uniform(-20, 20)
            out.append(np.array([[a, -90.0], [-100 + keep * (a + 100), b]]))
        return out

    study = _study(tmp_path / "s", {"ft_1": runs(0.0, 1000), "sac_n": runs(1.0, 1000), "rewire": runs(1.0, 1500)})
    table = claims_table({"demo": study}, CFG, {SCENARIO: "8 tasks × 1M steps, 10 seeds"}, "1M steps, 5 seeds")
    claims = dict(zip(table["claim"], table["verdict"], strict=True))
    assert claims["SAC learns every task (SAC-N above a random policy on each task)"] == HOLDS
    assert claims["FT-1 forgets earlier tasks"] == HOLDS
    assert claims["SAC-N retains earlier tasks"] == HOLDS
    assert claims["Rewire retains earlier tasks"] == HOLDS
    assert claims["Rewire's final performance ≥ FT-1's"] == HOLDS
    assert claims["Rewire's final performance ≥ SAC-N's"] == HOLDS
    assert table["to_decide"].isna().all()  # every claim decided (the undecided case: the test after the next)
    assert set(table["budget"]) == {"2 tasks × 1k steps, 3 seeds"}
    assert set(table["shown_in"]) <= {str(study / "tables" / n) for n in ("continual_tasks.md", "continual_tables.md")}
    figure = study / "figures" / "task_performance" / f"{SCENARIO}.png"  # once the study has built it, it is named too
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    shown = claims_table({"demo": study}, CFG, {}, "").set_index("claim")["shown_in"]
    assert shown["Rewire retains earlier tasks"] == f"{study / 'tables' / 'continual_tasks.md'}, {figure}"
    assert shown["Rewire's final performance ≥ FT-1's"] == str(study / "tables" / "continual_tables.md")
    assert f"`{study / 'tables' / 'continual_tasks.md'}`, `{figure}`" in render_claims_markdown(claims_table(
        {"demo": study}, CFG, {}, ""), [])  # fmt: skip
    text = render_claims_markdown(table, ["validate_cw"])
    assert "| Rewire | FT-1 forgets earlier tasks | demo (engine unknown) · halfcheetah/robustness | ✅ holds |" in text
    assert "no tables yet" in text and "validate_cw" in text
    twice = claims_table({"demo": study, "copy": study}, CFG, {}, "")
    assert set(twice["study"].dropna()) == {"demo (engine unknown)", "copy"}
    assert "copy and demo hold the same tables" in render_claims_markdown(twice)


@pytest.mark.parametrize(("rewire_size", "expected"), [(1.03, HOLDS), (2.5, FAILS)])
def test_rewires_size_is_read_from_the_studys_continual_runs_table(tmp_path, rewire_size, expected):
    p = [np.array([[1000.0 + s, -90.0], [900.0, 900.0]]) for s in range(2)]
    study = _study(tmp_path, {"sac_n": [*p, p[0][:1]], "rewire": p})  # SAC-N's seed 2 has not finished its last task
    sizes = pd.DataFrame({"scenario": SCENARIO, "method": ["sac_n"] * 3 + ["rewire"] * 2, "seed": [0, 1, 2, 0, 1],
                          "inference_size_rel": [2.0, 2.0, 1.0, rewire_size, rewire_size]})  # fmt: skip
    sizes.to_parquet(study / "tables" / "continual_runs.parquet")
    row = claims_table({"s": study}, CFG, {}, "").set_index("claim").loc[
        "Rewire needs fewer parameters than a policy per task (SAC-N)"]
    assert row["verdict"] == expected
    assert row["evidence"] == f"inference size × one policy: Rewire {rewire_size:.3g}, SAC-N 2"  # complete runs only
    (study / "tables" / "continual_runs.parquet").unlink()  # tables from before the sizes were read from it
    with pytest.raises(FileNotFoundError, match=r"no continual_runs.parquet with inference_size_rel.*make validate-tables"):
        claims_table({"s": study}, CFG, {}, "")


def test_learning_with_an_unfinished_task_has_no_seed_estimate(tmp_path):
    # task 1 finished by one seed only: undecided, and its spread unknown, so the row names no seed count
    p = [np.array([[500.0 + 100 * s, -90.0], [400.0, 600.0]]) for s in range(3)]
    p[1], p[2] = p[1][:1], p[2][:1]
    table = claims_table({"s": _study(tmp_path, {"sac_n": p})}, CFG, {}, "")
    row = table.set_index("claim").loc["SAC learns every task (SAC-N above a random policy on each task)"]
    assert row["verdict"] == UNDECIDED and np.isnan(row["to_decide"])


def test_a_forgetting_structure_method_is_reported_as_not_retaining(tmp_path):
    p = [np.array([[1000.0 + s, -90.0], [-100.0, 900.0]]) for s in range(3)]
    table = claims_table({"s": _study(tmp_path, {"packnet": p})}, CFG, {}, "")
    assert dict(zip(table["claim"], table["verdict"], strict=True))["PackNet retains earlier tasks"] == FAILS


def test_an_undecided_claim_says_about_how_many_seeds_would_decide_it(tmp_path):
    # retention (over random's -100) 0.85, 0.97, 1.0: the interval straddles 0.9
    p = [np.array([[900.0, -90.0], [-100.0 + keep * 1000.0, 900.0]]) for keep in (0.85, 0.97, 1.0)]
    table = claims_table({"s": _study(tmp_path, {"packnet": p, "ft_1": p[:1]})}, CFG, {}, "")
    row = table.set_index("claim").loc["PackNet retains earlier tasks"]
    assert row["verdict"] == UNDECIDED
    kept = np.array([0.85, 0.97, 1.0])
    assert row["to_decide"] == np.ceil(Z**2 * kept.var(ddof=1) / (kept.mean() - 0.9) ** 2)
    text = render_claims_markdown(table)
    assert f"| ≈ {row['to_decide']:.0f} |" in text
    assert "| ➖ undecided | retention 0.85 [0.85, 0.85] (n=1) | – |" in text  # FT-1, one seed: no spread to use


def test_sparse_claims_compare_dapd_with_dense_and_the_dst_methods(tmp_path):
    rows = []
    for seed in range(3):
        for method, keep, ret, params in (("dense", 1.0, 5000, 1.0), ("dapd", 0.05, 4900, 0.057),
                                          ("rigl", 0.05, 3000, 0.057), ("rlx2", 0.05, 4800, 0.3)):  # fmt: skip
            rows.append({"env": "hopper", "method": method, "keep_ratio": keep, "seed": seed, "steps": 100000,
                         "final_return": ret + 10 * seed, "params_rel_dense": params,
                         "train_flops_rel_dense": params})  # fmt: skip
    dense_mean = np.mean([r["final_return"] for r in rows if r["method"] == "dense"])
    for r in rows:
        r["return_rel_dense"] = r["final_return"] / dense_mean  # as the sparse tables compute it
    (tmp_path / "tables").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "tables" / "sparse_runs.parquet")
    table = claims_table({"s": tmp_path}, CFG, {}, "1M steps, 5 seeds")
    claims = dict(zip(table["claim"], table["verdict"], strict=True))
    assert claims["DAPD at this keep ratio comes close to dense SAC"] == HOLDS
    assert claims["DAPD's return ≥ RiGL's"] == HOLDS
    assert claims["DAPD's return ≥ RLx2's"] == HOLDS
    assert claims["DAPD saves parameters and training FLOPs"] == HOLDS
    assert claims["RLx2 saves parameters and training FLOPs"] == FAILS  # 0.3 of dense's > 2 × 0.05
    assert set(table["scenario"]) == {"hopper @ 0.05"}


def test_two_studies_compared_cell_by_cell_flag_intervals_that_do_not_overlap(tmp_path):
    def study(name: str, rewire_mean: float) -> object:
        d = tmp_path / name / "tables"
        d.mkdir(parents=True)
        rows = [("ft_1", 450.0, 400.0, 500.0), ("rewire", rewire_mean, rewire_mean - 50, rewire_mean + 50)]
        cells = [{"table": "continual", "section": SCENARIO, "row": m, "metric": "final_avg_return", "mean": x,
                  "low": lo, "high": hi, "n_seeds": 3} for m, x, lo, hi in rows]  # fmt: skip
        pd.DataFrame(cells).to_parquet(d / "continual_tables.parquet")
        return d.parent

    from rlrepro.tables.claims import compare_studies, render_comparison_markdown

    table = compare_studies(study("a", 900.0), study("b", 1200.0))
    overlap = dict(zip(table["row"], table["overlap"], strict=True))
    assert overlap == {"ft_1": True, "rewire": False}
    text = render_comparison_markdown(table, "a", "b")
    assert "| Rewire | 900 [850, 950] (3) | 1,200 [1,150, 1,250] (3) | **no** |" in text


def test_cost_sums_each_jobs_training_and_evaluation(tmp_path):
    from rlrepro.tables.claims import hours_per_job, render_cost_markdown, study_cost

    (tmp_path / "tables").mkdir()
    runs = pd.DataFrame({"scenario": [SCENARIO] * 3, "method": ["ft_1", "ft_1", "rewire"], "seed": [0, 1, 0],
                         "train_wall_time_s": [600.0, 1200.0, 3000.0], "eval_wall_time_s": [60.0, 60.0, 240.0]})  # fmt: skip
    runs.to_parquet(tmp_path / "tables" / "continual_runs.parquet")
    cost = study_cost(tmp_path).set_index("job")
    assert cost.loc[f"{SCENARIO} · FT-1", "jobs"] == 2
    assert cost.loc[f"{SCENARIO} · FT-1", "core_hours"] == pytest.approx((600 + 1200 + 120) / 3600)
    assert hours_per_job(study_cost(tmp_path)) == pytest.approx({f"{SCENARIO} · FT-1": (600 + 1200 + 120) / 3600 / 2,
                                                                 f"{SCENARIO} · Rewire": (3000 + 240) / 3600})  # fmt: skip
    text = render_cost_markdown({"s": study_cost(tmp_path)})
    assert "## s: 3 jobs, 1.4 core-hours" in text and f"| {SCENARIO} · FT-1 | 2 | 10–20 min | 0.53 |" in text
    assert f"| {SCENARIO} · Rewire | 1 | 50 min | 0.90 |" in text


def test_cost_of_the_same_jobs_on_two_engines_side_by_side(tmp_path):
    from rlrepro.tables.claims import render_cost_comparison, render_cost_markdown, study_cost

    def study(name, train_s):
        (tmp_path / name / "tables").mkdir(parents=True)
        runs = pd.DataFrame({"scenario": [SCENARIO] * len(train_s), "method": ["ft_1"] * len(train_s),
                             "seed": range(len(train_s)), "train_wall_time_s": train_s, "eval_wall_time_s": 0.0})  # fmt: skip
        runs.to_parquet(tmp_path / name / "tables" / "continual_runs.parquet")
        return study_cost(tmp_path / name)

    old, new = study("old", [1800.0, 1800.0]), study("new", [900.0])
    assert "## new: 1 job, 0.2 core-hours" in render_cost_markdown({"new": new})
    text = render_cost_comparison(old, new, ("old", "new"))
    assert f"| {SCENARIO} · FT-1 | 2 / 1 | 30 min | 15 min | 0.50 | 0.25 | 0.50 |" in text
    assert "0.5 core-hours on old, 0.2 on new (0.50×)" in text
    assert render_cost_comparison(old, study("empty", []).iloc[0:0], ("old", "empty")) == ""


def test_a_task_never_learned_is_not_learning(tmp_path):
    p = [np.array([[-100.0, -100.0], [-100.0, 500.0 + s]]) for s in range(3)]  # task 0 exactly at random's level
    table = claims_table({"s": _study(tmp_path, {"sac_n": p})}, CFG, {}, "")
    learned = table[table["claim"].str.startswith("SAC learns")]["verdict"].item()
    assert learned == FAILS


def test_retention_is_not_read_where_the_method_is_not_shown_to_have_learned(tmp_path):
    # PackNet's gain on task 0 straddles 0 (seeds at -10, +5, +8 over random): its "retention" (of the two seeds with a
    # gain, both 0) is a ratio of noise
    packnet = [np.array([[-100.0 + gain, -90.0], [-100.0, 900.0]]) for gain in (-10.0, 5.0, 8.0)]
    ft_1 = [np.array([[1000.0 + s, -90.0], [-100.0, 900.0]]) for s in range(3)]  # learned, then forgot: read
    table = claims_table({"s": _study(tmp_path, {"packnet": packnet, "ft_1": ft_1})}, CFG, {}, "").set_index("claim")
    row = table.loc["PackNet retains earlier tasks"]
    assert row["verdict"] == UNDECIDED and np.isnan(row["to_decide"])
    assert row["evidence"].startswith("retention ") and "not read: PackNet's gain on the earlier tasks" in row["evidence"]
    assert table.loc["FT-1 forgets earlier tasks", "verdict"] == HOLDS


def test_tables_built_from_runs_no_longer_there_are_out_of_date(tmp_path):
    from rlrepro.tables.claims import stale_tables

    study = _study(tmp_path / "s", {"ft_1": [np.array([[900.0, -90.0], [-100.0, 900.0]])]})
    (study / "tables" / "sparse_results.parquet").unlink(missing_ok=True)
    tables = pd.read_parquet(study / "tables" / "results.parquet").assign(config_hash="abc")
    tables.to_parquet(study / "tables" / "results.parquet")
    sparse = pd.DataFrame({"env": ["hopper"], "method": ["dapd"], "keep_ratio": [0.05], "seed": [1], "config_hash": ["d1"]})
    sparse.to_parquet(study / "tables" / "sparse_results.parquet")
    run, sparse_run = study / f"runs/{SCENARIO}/ft_1/seed0", study / "sparse/hopper/dapd/keep0.05/seed1"
    assert stale_tables(study) == [run, sparse_run]  # the tables' runs moved aside (`rlrepro adopt`)
    for folder, rows in ((run, tables), (sparse_run, sparse)):
        folder.mkdir(parents=True)
        rows.to_parquet(folder / "results.parquet")
    assert stale_tables(study) == []  # the runs the tables were built from
    tables.assign(config_hash="retrained").to_parquet(run / "results.parquet")
    assert stale_tables(study) == [run]  # a run of another job spec since


def test_claims_are_not_read_from_a_preset_whose_runs_were_moved_aside(tmp_path, monkeypatch):
    """The CLI on a preset mid-re-run: its old tables are listed as out of date, not read, and the comparison with
    the kept copy of them says it was not made (an earlier comparison file never stands)."""
    from rlrepro.cli import main

    kept = _study(tmp_path / "kept", {"ft_1": [np.array([[900.0, -90.0], [-100.0, 900.0]])]})
    sizes = pd.read_parquet(kept / "tables" / "continual_runs.parquet")
    sizes.assign(train_wall_time_s=600.0).to_parquet(kept / "tables" / "continual_runs.parquet")
    results = pd.read_parquet(kept / "tables" / "results.parquet").assign(engine_version="0.2.0", config_hash="abc")
    results.to_parquet(kept / "tables" / "results.parquet")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["presets"]["validate"]["results_dir"] = "results/study"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(kept, tmp_path / "results/study")  # the tables, without the runs they were built from
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "claims.md"
    (out.parent / "kept_vs_validate.md").parent.mkdir()
    (out.parent / "kept_vs_validate.md").write_text("an earlier comparison")
    args = ["claims", "--config", str(tmp_path / "config.yaml"), "--preset", "validate", "--study", f"kept={kept}"]
    assert main([*args, "--compare", "kept,validate", "--out", str(out)]) == 0
    text = out.read_text()
    assert "not read until `make validate-tables` rebuilds them: validate (1 run)." in text
    assert set(pd.read_parquet(out.with_suffix(".parquet"))["study"].str.split(" ").str[0]) == {"kept"}
    assert "Not compared: validate (out of date)" in (out.parent / "kept_vs_validate.md").read_text()
    with pytest.raises(SystemExit, match="--compare takes two of the studies"):
        main([*args, "--compare", "kept,nope", "--out", str(out)])
