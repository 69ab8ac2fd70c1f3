"""Every scenario trains, evaluates and aggregates: a real Snakemake run of the `smoke_scenarios` preset.

Slow (about a quarter of an hour on 2 cores): excluded from `make test`, run by `make test-scenarios` and CI."""

import pandas as pd
import pytest
from test_workflow import snakemake, workflow_copy  # noqa: F401  (the fixture)

from rlrepro.scenarios import scenario_names

pytestmark = pytest.mark.scenarios


def test_every_scenario_runs_end_to_end(workflow_copy):  # noqa: F811
    proc = snakemake(workflow_copy, "--config", "preset=smoke_scenarios")
    assert proc.returncode == 0, proc.stderr[-4000:]
    tables = workflow_copy / "results" / "tables"
    results = pd.read_parquet(tables / "results.parquet")
    assert sorted(results["scenario"].unique()) == sorted(scenario_names())
    for scenario, group in results.groupby("scenario", observed=True):
        matrix = group[group.metric == "avg_return"]
        assert len(matrix) == 4, scenario  # 2 stages × 2 tasks
        metrics = set(group["metric"].astype(str))
        if scenario.startswith("continual_world/"):
            assert {"success_last", "success_any"} <= metrics, scenario
            success = group[group.metric.isin(["success_last", "success_any"])]["value"]
            assert success.between(0, 1).all()
        else:
            assert "success_last" not in metrics
    summary = pd.read_parquet(tables / "continual_summary.parquet")
    assert len(summary) == len(scenario_names())
