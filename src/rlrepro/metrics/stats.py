"""Interval estimates over seeds with rliable's stratified bootstrap (pure functions; reps and seed from config).

Every estimate returns (point, low, high). With one seed the bootstrap has nothing to resample, so low = high =
point; tables show the number of seeds next to every cell.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapConfig:
    reps: int = 2000
    """Bootstrap resamples per interval."""
    confidence: float = 0.95
    random_state: int = 0
    """Seed of the resampling, so a table rebuilt from the same Parquet is identical."""


@contextmanager
def _seeded(cfg: BootstrapConfig) -> Iterator[np.random.RandomState]:
    """rliable's StratifiedBootstrap draws its indices from numpy's *global* RNG (its random_state argument only
    reaches arch), so the global state is seeded here for reproducible intervals and restored afterwards."""
    saved = np.random.get_state()
    np.random.seed(cfg.random_state)
    try:
        yield np.random.RandomState(cfg.random_state)
    finally:
        np.random.set_state(saved)


def interval_estimates(
    scores: Mapping[str, np.ndarray | tuple[np.ndarray, ...]], func: Callable[..., np.ndarray], cfg: BootstrapConfig
) -> dict[str, np.ndarray]:
    """For each key, [point..., low..., high...] of func over a (runs × tasks) score matrix — or over a tuple of them
    (func(*matrices), e.g. two methods compared) — by rliable's stratified bootstrap (runs resampled within each
    task). Returns key -> array of shape (3, k) for k statistics."""
    from rliable import library as rly

    out: dict[str, np.ndarray] = {}
    for key, value in scores.items():
        matrices = [np.asarray(m, dtype=float) for m in (value if isinstance(value, tuple) else (value,))]
        point = np.atleast_1d(func(*matrices))
        if min(m.shape[0] for m in matrices) < 2:
            out[key] = np.stack([point, point, point])
            continue
        with _seeded(cfg) as rng, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch's random_state deprecation, raised per call
            _, cis = rly.get_interval_estimates(
                {key: matrices if len(matrices) > 1 else matrices[0]}, func, reps=cfg.reps,
                confidence_interval_size=cfg.confidence, random_state=rng,
            )  # fmt: skip
        ci = np.atleast_2d(cis[key]).reshape(2, -1)
        out[key] = np.stack([point, ci[0], ci[1]])
    return out


def mean_ci(values: np.ndarray, cfg: BootstrapConfig) -> tuple[float, float, float]:
    """Mean over seeds with its stratified-bootstrap CI (values: one number per seed; NaNs dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    est = interval_estimates({"x": values[:, None]}, lambda m: np.array([np.mean(m)]), cfg)["x"]
    return float(est[0, 0]), float(est[1, 0]), float(est[2, 0])


def aggregate_metrics(scores: Mapping[str, np.ndarray], cfg: BootstrapConfig) -> dict[str, dict[str, tuple]]:
    """IQM, mean, median and optimality gap (γ = 1) over (runs × tasks) normalised scores, with CIs."""
    from rliable import metrics

    def all_four(m: np.ndarray) -> np.ndarray:
        return np.array(
            [metrics.aggregate_iqm(m), metrics.aggregate_mean(m), metrics.aggregate_median(m),
             metrics.aggregate_optimality_gap(m, 1.0)]
        )  # fmt: skip

    estimates = interval_estimates(scores, all_four, cfg)
    names = ("iqm", "mean", "median", "optimality_gap")
    return {key: {n: tuple(float(x) for x in est[:, i]) for i, n in enumerate(names)} for key, est in estimates.items()}


def probability_of_improvement(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], cfg: BootstrapConfig
) -> dict[str, tuple[float, float, float]]:
    """P(X > Y) per key (rliable: the Mann-Whitney probability that a run of X beats a run of Y on a task, averaged
    over tasks), with a stratified-bootstrap CI; each value is (X, Y), (runs × tasks) over the same tasks."""
    from rliable import metrics

    def p_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    return {key: tuple(float(v) for v in est[:, 0]) for key, est in interval_estimates(pairs, p_improvement, cfg).items()}


def performance_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, cfg: BootstrapConfig) -> dict[str, np.ndarray]:
    """Fraction of runs with normalised score > τ, per τ, with bootstrap CIs: key -> (3, len(taus))."""
    from rliable import library as rly

    out = {}
    for key, matrix in scores.items():
        matrix = np.asarray(matrix, dtype=float)
        point = np.array([np.mean(matrix > t) for t in taus])
        if matrix.shape[0] < 2:
            out[key] = np.stack([point, point, point])
            continue
        with _seeded(cfg), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            _, cis = rly.create_performance_profile(
                {key: matrix}, taus, reps=cfg.reps, confidence_interval_size=cfg.confidence
            )
        out[key] = np.stack([point, cis[key][0], cis[key][1]])
    return out
