"""Continual World tasks on MetaWorld v3 (scenarios.md §2, §4.3): random object and goal at every reset, 200-step
episodes, the per-step `success` flag kept so both success definitions can be computed.

MetaWorld v3 is not the v1 of the papers (39-d observations, re-tuned objects): numbers are not comparable.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
import torch
from gymnasium.spaces import Space

from rlrepro.envs.base import StepResult
from rlrepro.scenarios import ScenarioSpec, TaskSpec

_NOT_STATE = frozenset({"model", "data", "mujoco_renderer", "spec"})
"""Env attributes that are the compiled model, its data (saved as its integration state) or renderer and spec (never
change)."""
_MODEL_STATE = ("body_pos", "body_quat", "site_pos", "site_quat", "eq_data")
"""MjModel fields that MetaWorld's resets write (object, goal and target placement; mocap welds): part of the state."""
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _physics(env) -> np.ndarray:
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    out = np.empty(mujoco.mj_stateSize(env.model, spec), dtype=np.float64)
    mujoco.mj_getState(env.model, env.data, out, spec)
    return out


def _to_data(value: Any, where: str) -> Any:
    """An env attribute as tensors and plain values: numpy arrays and scalars tagged `__ndarray__` / `__scalar__`,
    numpy Generators `__generator__` (their bit generator's state), gymnasium spaces `space_rng` (a space is rebuilt by
    the env itself; only its RNG moves)."""
    if isinstance(value, np.generic):  # before Python's types: np.float64 is a float
        return {"__scalar__": torch.from_numpy(np.array(value))}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(value.copy())}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, Space):
        rng = value._np_random  # None until first used: nothing to restore
        return {"space_rng": None if rng is None else rng.bit_generator.state}
    if isinstance(value, list | tuple):
        return type(value)(_to_data(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _to_data(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"MetaWorld env attribute {where} of type {type(value).__name__} has no data form for checkpoints")


def _from_data(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return type(value)(_from_data(v) for v in value)
    if not isinstance(value, dict):
        return value
    if value.keys() == {"__ndarray__"}:
        return value["__ndarray__"].cpu().numpy().copy()
    if value.keys() == {"__scalar__"}:
        return value["__scalar__"].cpu().numpy()[()]
    if value.keys() == {"__generator__"}:
        return _set_generator(None, value["__generator__"])
    return {k: _from_data(v) for k, v in value.items()}


def _set_generator(generator: np.random.Generator | None, state: dict) -> np.random.Generator:
    """`generator` (or a new one) set to a saved bit-generator state; only numpy's own bit generators are built."""
    if state.get("bit_generator") not in _BIT_GENERATORS:
        raise ValueError(f"saved RNG state of an unknown bit generator {state.get('bit_generator')!r}")
    if generator is None or type(generator.bit_generator).__name__ != state["bit_generator"]:
        generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
    generator.bit_generator.state = state
    return generator


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
        """Each env's physics (MuJoCo's integration state, `mjSTATE_INTEGRATION`: what the next `mj_step` reads;
        MetaWorld recomputes everything derived with its own `mj_forward` after stepping), the MjModel fields its
        resets move (e.g. window-close places the window body and the goal site in the model) and its Python
        attributes (RNG, goal, object positions, path length, previous observation), all as tensors and plain values."""
        return {
            "t": torch.from_numpy(self.t.copy()),
            "pending": torch.from_numpy(self.pending.copy()),
            "envs": [{"attrs": {k: _to_data(v, k) for k, v in env.__dict__.items() if k not in _NOT_STATE},
                      "physics": torch.from_numpy(_physics(env)),
                      "model": {name: torch.from_numpy(getattr(env.model, name).copy()) for name in _MODEL_STATE}}
                     for env in self.envs],
        }  # fmt: skip

    def set_state(self, state: dict) -> None:
        # .cpu(): a checkpoint is mapped to the job's device; MetaWorld's state lives on the host
        self.t[:], self.pending[:] = state["t"].cpu().numpy(), state["pending"].cpu().numpy()
        for env, saved in zip(self.envs, state["envs"], strict=True):
            for key, value in saved["attrs"].items():
                current = env.__dict__.get(key)
                if isinstance(value, dict) and value.keys() == {"space_rng"}:  # the env's own space (or a cached one
                    if isinstance(current, Space) and value["space_rng"] is not None:  # it rebuilds alike): its RNG
                        _set_generator(current.np_random, value["space_rng"])
                else:
                    env.__dict__[key] = _from_data(value)
            physics = saved["physics"].cpu().numpy()
            if physics.shape != _physics(env).shape:
                raise ValueError("a saved MetaWorld physics state of another model size")
            for name, value in saved["model"].items():
                if name in _MODEL_STATE:
                    getattr(env.model, name)[...] = value.cpu().numpy()
            mujoco.mj_setState(env.model, env.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)

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
