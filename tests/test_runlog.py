"""Opt-in TensorBoard logging: event files appear while a run trains and hold the same numbers as its rows."""

from __future__ import annotations

import pytest
from conftest import fake_env_factory
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrepro.continual import TrainSpec, train
from rlrepro.continual.config import SACConfig, TrainLogConfig
from rlrepro.engine.config import NetworkConfig
from rlrepro.runlog import RunLog


def scalars(path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("RLREPRO_TENSORBOARD_DIR", raising=False)
    log = RunLog("x")
    log.scalars(1, {"a": 1.0})
    log.close()
    assert log.writer is None and not any(tmp_path.iterdir())


def test_continual_training_curves_are_written_as_it_trains(fake_scenario, tmp_path, monkeypatch):
    """On the fake env (a test double, conftest.FakeVecEnv): the event files, not the physics, are under test."""
    monkeypatch.setenv("RLREPRO_TENSORBOARD_DIR", str(tmp_path))
    spec = TrainSpec("ft_1", fake_scenario, seed=0, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                     network=NetworkConfig(hidden_sizes=(8, 8)), log=TrainLogConfig(curve_points=8))  # fmt: skip
    run_log = RunLog("fake/ft_1/seed0")
    result = train(spec, env_factory=fake_env_factory, run_log=run_log)
    run_log.close()
    logged = scalars(tmp_path / "fake/ft_1/seed0")
    rows = [(r["task"] * fake_scenario.steps_per_task + r["step"], r["value"]) for r in result.rows
            if r["metric"] == "train_return"]  # fmt: skip
    assert [s for s, _ in logged["train/return"]] == [s for s, _ in rows]
    assert [v for _, v in logged["train/return"]] == pytest.approx([v for _, v in rows], rel=1e-6)
    assert {"train/alpha", "train/critic_loss", "train/actor_loss"} <= set(logged)
    assert all(0 < v for _, v in logged["train/alpha"])


def test_sparse_evaluations_and_densities_are_written(tmp_path, monkeypatch):
    from test_sparse import smoke_spec

    from rlrepro.sparse.train import train_sparse

    monkeypatch.setenv("RLREPRO_TENSORBOARD_DIR", str(tmp_path))
    run_log = RunLog("sparse/rigl")
    result = train_sparse(smoke_spec("rigl"), run_log=run_log)
    run_log.close()
    logged = scalars(tmp_path / "sparse/rigl")
    evals = [(step, value) for step, metric, layer, value in result.rows if metric == "eval_return"]
    assert logged["sparse/eval_return"] == [(s, pytest.approx(v)) for s, v in evals]
    assert "sparse/actor_density" in logged and "sparse/alpha" in logged
