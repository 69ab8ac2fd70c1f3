"""Pick and build the backend a scenario's domain names. Backends are imported on first use: a MetaWorld job never
imports JAX, a Brax job never imports MetaWorld."""

from __future__ import annotations

from typing import Any

import torch

from rlrepro.envs.base import VecEnv
from rlrepro.scenarios import ScenarioSpec, TaskSpec


def make_env(scenario: ScenarioSpec, task: TaskSpec, *, n_envs: int, env_cfg: dict[str, Any], device: torch.device) -> VecEnv:
    """Build the env of one task of a scenario with the backend its domain names."""
    if scenario.backend == "metaworld":
        from rlrepro.envs.metaworld_backend import MetaWorldVecEnv

        spurious = env_cfg.get("cw_spurious_reset_transition", True)
        return MetaWorldVecEnv(scenario, task, n_envs=n_envs, device=device, spurious_reset_transition=spurious)
    from rlrepro.envs.brax_backend import BraxVecEnv

    return BraxVecEnv(scenario, task, n_envs=n_envs, backend=env_cfg.get("backend", "positional"), device=device)
