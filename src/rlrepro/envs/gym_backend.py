"""Single gymnasium MuJoCo environments for the sparse suite (HalfCheetah/Hopper/Walker2d/Ant-v5).

The DAPD paper used the gym -v2 envs (mujoco_py, MuJoCo 2.0), which cannot be installed today; v5 is the
maintained successor (docs/methods.md, "The sparse suite").
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def make_gym_env(env_id: str, kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """gymnasium.make with the time limit optionally shortened (smoke runs); unknown ids fail with the valid ones."""
    if env_id not in gym.registry:
        mujoco = sorted(k for k, spec in gym.registry.items() if "mujoco" in str(spec.entry_point))
        raise ValueError(f"unknown gymnasium env {env_id!r}; MuJoCo envs: {', '.join(mujoco)}")
    extra = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
    return gym.make(env_id, **(kwargs or {}), **extra)


def rng_state(env: gym.Env) -> dict[str, Any]:
    """The env's and its action space's numpy RNG states (a checkpoint taken between episodes restores them)."""
    return {
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }


def set_rng_state(env: gym.Env, state: dict[str, Any]) -> None:
    env_rng = np.random.Generator(np.random.PCG64())
    env_rng.bit_generator.state = state["env"]
    env.unwrapped.np_random = env_rng
    env.action_space.np_random.bit_generator.state = state["action_space"]
