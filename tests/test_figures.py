"""Figures a reviewer can trust: one look per method everywhere, and seeds averaged on a common grid."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlrepro.figures import _common_eval_grid, method_style, sparse_curves
from rlrepro.naming import METHOD_ORDER, display_name


def test_every_method_has_one_distinct_look_in_every_figure():
    looks = [(method_style(m)["color"], method_style(m)["marker"], method_style(m)["linestyle"]) for m in METHOD_ORDER]
    assert len(set(looks)) == len(METHOD_ORDER)
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
