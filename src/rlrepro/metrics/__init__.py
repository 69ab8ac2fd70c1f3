"""Continual-RL metrics as pure functions over the stage×task performance matrix p[s][j] (rewire.md §5.2).

p[s][j] is the evaluation of task j after training stage s. With T tasks and T stages:
- final average performance  P  = mean_j p[T−1][j]
- forgetting                 F  = mean_j (p[j][j] − p[T−1][j])
- normalised final           Pn = mean_j p[T−1][j] / r_j   (r_j = the reference method's p[j][j], e.g. sac_n)
- forward transfer           FT = mean_j (p[j][j] − r_j) / |r_j|   (CSP-style, end of each task)
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def performance_matrix(run: pd.DataFrame, metric: str = "avg_return") -> np.ndarray:
    """The S×T matrix of one run from its long-format rows."""
    rows = run[run["metric"] == metric]
    table = rows.pivot_table(index="stage", columns="task", values="value", aggfunc="first", observed=True)
    return table.sort_index().sort_index(axis=1).to_numpy(dtype=float)


def final_performance(p: np.ndarray) -> float:
    return float(np.mean(p[-1]))


def forgetting(p: np.ndarray) -> float:
    n = min(p.shape)
    return float(np.mean([p[j, j] - p[-1, j] for j in range(n)]))


def diagonal(p: np.ndarray) -> np.ndarray:
    return np.array([p[j, j] for j in range(min(p.shape))])


def normalised_final(p: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(p[-1] / reference))


def forward_transfer(p: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((diagonal(p) - reference) / np.abs(reference)))


def mean_seen_per_stage(p: np.ndarray) -> np.ndarray:
    """Average over the tasks trained so far (0..s) after each stage s."""
    return np.array([np.mean(p[s, : s + 1]) for s in range(p.shape[0])])
