"""Continual World tasks on MetaWorld v3 (scenarios.md §2, §4.3): random object and goal at every reset, 200-step
episodes, the per-step `success` flag kept so both success definitions can be computed.

MetaWorld v3 is not the v1 of the papers (39-d observations, re-tuned objects): numbers are not comparable.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rlrepro.envs.base import StepResult
from rlrepro.scenarios import ScenarioSpec, TaskSpec

_NOT_STATE = frozenset({"model", "data", "mujoco_renderer", "spec"})
"""Env attributes that are the compiled model, its data (saved whole) or renderer and spec (never change)."""
_MODEL_STATE = ("body_pos", "body_quat", "site_pos", "site_quat", "eq_data")
"""MjModel fields that MetaWorld's resets write (object, goal and target placement; mocap welds): part of the state."""


def make_task_env(env_name: str, horizon: int):
    import metaworld

    mt1 = metaworld.MT1(env_name, seed=1)  # task 0 only switches the env into goal-observable mode
    env = mt1.train_classes[env_name]()
    env.set_task(mt1.train_tasks[0])
    env._freeze_rand_vec = False  # Continual World's random_init_all: a fresh object/goal at every reset
    env.seeded_rand_vec = True  # ... drawn from the env's own seeded RNG, so runs are reproducible
    env.max_path_length = horizon
    return env


class MetaWorldVecEnv:
    """`n_envs` MetaWorld envs stepped in a loop (Continual World uses one).

    With `spurious_reset_transition` (the original's SaLinA gym auto-reset), the step after an episode ends resets
    the env and returns reward 0, done 0 and the reset observation, ignoring the action: the replay then holds a
    (final state → reset state) transition, as the original's did. Otherwise the env auto-resets within the step.
    """

    def __init__(
        self,
        scenario: ScenarioSpec,
        task: TaskSpec,
        *,
        n_envs: int,
        device: torch.device,
        spurious_reset_transition: bool = True,
    ) -> None:
        self.n_envs = n_envs
        self.episode_length = scenario.episode_length
        self.device = device
        self.spurious = spurious_reset_transition
        self.envs = [make_task_env(task.variant["env"], self.episode_length) for _ in range(n_envs)]
        self.obs_dim = int(self.envs[0].observation_space.shape[0])
        self.action_dim = int(self.envs[0].action_space.shape[0])
        self.t = np.zeros(n_envs, dtype=np.int64)
        self.pending = np.zeros(n_envs, dtype=bool)

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def reset(self, seed: int) -> torch.Tensor:
        obs = []
        for k, env in enumerate(self.envs):
            env.seed(seed + k)
            obs.append(env.reset(seed=seed + k)[0])
        self.t[:] = 0
        self.pending[:] = False
        return self._tensor(obs)

    def get_state(self) -> dict:
        """Each env's whole MjData (derived quantities included: MetaWorld reads body positions left by the last
        mj_step, so a restored qpos/qvel alone would not reproduce the next step), the MjModel fields its resets move
        (e.g. window-close places the window body and the goal site in the model) and its Python attributes (RNG,
        goal, object positions, path length, previous observation); MetaWorld's own pickling is lossy."""
        return {
            "t": self.t.copy(),
            "pending": self.pending.copy(),
            "envs": [
                {
                    "attrs": {k: v for k, v in env.__dict__.items() if k not in _NOT_STATE},
                    "data": env.data,
                    "model": {name: getattr(env.model, name).copy() for name in _MODEL_STATE},
                }
                for env in self.envs
            ],
        }

    def set_state(self, state: dict) -> None:
        self.t[:], self.pending[:] = state["t"], state["pending"]
        for env, saved in zip(self.envs, state["envs"], strict=True):
            env.__dict__.update(copy.deepcopy(saved["attrs"]))
            env.data = copy.deepcopy(saved["data"])
            for name, value in saved["model"].items():
                getattr(env.model, name)[...] = value

    def step(self, action: torch.Tensor) -> StepResult:
        actions = action.detach().cpu().numpy()
        out = {key: [] for key in ("obs", "reward", "done", "truncated", "final_obs", "success")}
        for k, env in enumerate(self.envs):
            if self.pending[k]:
                obs = env.reset()[0]
                self.t[k], self.pending[k] = 0, False
                values = (obs, 0.0, 0.0, 0.0, obs, 0.0)
            else:
                obs, reward, terminated, truncated, info = env.step(actions[k])
                self.t[k] += 1
                truncated = bool(truncated) or self.t[k] >= self.episode_length
                done = bool(terminated) or truncated
                final = obs
                if done and self.spurious:
                    self.pending[k] = True
                elif done:
                    obs = env.reset()[0]
                    self.t[k] = 0
                values = (obs, reward, float(done), float(truncated and not terminated), final, info["success"])
            for key, value in zip(out, values, strict=True):
                out[key].append(value)
        return StepResult(**{key: self._tensor(value) for key, value in out.items()})
