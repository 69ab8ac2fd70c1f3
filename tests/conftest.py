"""Shared fixtures. `FakeVecEnv` is a test double of the VecEnv interface: a tiny linear system that lets the
training loop, methods and checkpoints be unit-tested in milliseconds. Everything physical is tested on real Brax."""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from pathlib import Path

import jax
import pytest
import torch

# Reuse XLA compilations across test processes and workflow jobs (the engine CLI uses the same cache).
jax.config.update("jax_compilation_cache_dir", os.environ.get("RLREPRO_JAX_CACHE", str(Path.home() / ".cache/rlrepro/jax")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

from rlrepro.envs.base import StepResult  # noqa: E402
from rlrepro.scenarios import ScenarioSpec, TaskSpec  # noqa: E402

torch.set_num_threads(1)


class FakeVecEnv:
    """Test double (not a physics env): s' = s + 0.1·a·gain, reward = −|s|², episodes of `episode_length` steps."""

    obs_dim = 3
    action_dim = 2

    def __init__(self, task: TaskSpec, n_envs: int, episode_length: int, device: torch.device) -> None:
        self.n_envs, self.episode_length, self.device = n_envs, episode_length, device
        self.gain = float(task.variant.get("gravity", 1.0))
        self.steps_taken = 0

    def reset(self, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        self.first = torch.rand(self.n_envs, self.obs_dim, generator=g) - 0.5
        self.state, self.t = self.first.clone(), torch.zeros(self.n_envs)
        return self.state.clone()

    def get_state(self) -> dict:
        return {"first": self.first.clone(), "state": self.state.clone(), "t": self.t.clone()}

    def set_state(self, state: dict) -> None:
        self.first, self.state, self.t = (state[k].clone() for k in ("first", "state", "t"))

    def step(self, action: torch.Tensor) -> StepResult:
        self.steps_taken += self.n_envs
        self.state = self.state + 0.1 * self.gain * torch.cat([action, action[:, :1]], dim=1)
        reward = -(self.state**2).sum(1)
        self.t += 1
        done = (self.t >= self.episode_length).float()
        final = self.state.clone()
        self.state = torch.where(done[:, None] > 0, self.first, self.state)
        self.t = torch.where(done > 0, torch.zeros_like(self.t), self.t)
        return StepResult(self.state.clone(), reward, done, done.clone(), final)


def fake_env_factory(scenario, task, *, n_envs, env_cfg, device):
    return FakeVecEnv(task, n_envs, scenario.episode_length, device)


@pytest.fixture
def fake_scenario() -> ScenarioSpec:
    tasks = (TaskSpec("a", {}), TaskSpec("b", {"gravity": -1.0}))
    return ScenarioSpec(
        "fake/two", "fake", "fake", tasks, steps_per_task=256, n_train_envs=4, n_eval_envs=4, episode_length=16
    )
