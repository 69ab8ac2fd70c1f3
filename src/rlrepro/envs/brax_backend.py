"""Brax 0.14 backend: scenario variants applied to the compiled MuJoCo model, one jitted step per env shape.

Variants only change parameter values of the brax `System`, never its structure, so the jitted reset/step take
the System as an argument: a task switch reuses the compiled functions (one compile per batch size).
"""

from __future__ import annotations

import functools
import os
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import torch
from brax import envs as brax_envs
from brax.io import mjcf
from etils import epath

from rlrepro.envs.base import StepResult
from rlrepro.scenarios import ScenarioSpec, TaskSpec

BACKENDS = ("positional", "spring", "generalized", "mjx")


def _bodies_in_id_order(spec: mujoco.MjSpec) -> list:
    """Spec bodies in model-id order (depth first; mujoco 3.3.0's `spec.bodies` is breadth first, and some bodies
    are unnamed, e.g. the ant's lower legs)."""

    def walk(body):
        yield body
        for child in body.bodies:
            yield from walk(child)

    return list(walk(spec.worldbody))


def _selection(stock: mujoco.MjModel, part: str, body_map: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Body ids whose mass the variant key `part` scales, and geom ids whose radius it scales."""
    geoms_of = {b: [g for g in range(stock.ngeom) if stock.geom_bodyid[g] == b] for b in range(stock.nbody)}
    entry = body_map.get(part)
    if entry is None:  # the original's rule: every body whose name contains `part`, radius of its first geom
        bodies = [b for b in range(1, stock.nbody) if part in stock.body(b).name]
        return bodies, [geoms_of[b][0] for b in bodies if geoms_of[b]]
    if "bodies" in entry:
        bodies = [stock.body(name).id for name in entry["bodies"]]
    else:
        owned = entry["bodies_owning"]
        bodies = [b for b in range(1, stock.nbody) if any(p in stock.geom(g).name for g in geoms_of[b] for p in owned)]
    geoms = [g for b in bodies for g in geoms_of[b] if any(p in stock.geom(g).name for p in entry["radius_geoms"])]
    return bodies, geoms


def edited_model(options: dict[str, Any], variant: dict[str, Any]) -> mujoco.MjModel:
    """Compile the domain's MJCF (after brax's body fusing) with the variant's physical edits.

    Inertials are frozen at their unedited values first, so a mass edit changes only the mass and a radius edit
    does not change the mass (the original scaled mass and collider radius, never inertia).
    """
    asset = options["asset"]
    xml = mjcf.fuse_bodies((epath.resource_path("brax") / "envs/assets" / asset).read_text())
    spec = mujoco.MjSpec.from_string(xml)
    stock = spec.compile()
    bodies = _bodies_in_id_order(spec)
    for body_id in range(1, stock.nbody):
        body = bodies[body_id]
        body.explicitinertial = True
        body.mass = float(stock.body_mass[body_id])
        body.ipos = stock.body_ipos[body_id].copy()
        body.iquat = stock.body_iquat[body_id].copy()
        body.inertia = stock.body_inertia[body_id].copy()
    spec.compiler.inertiafromgeom = mujoco.mjtInertiaFromGeom.mjINERTIAFROMGEOM_AUTO
    spec.compiler.settotalmass = -1
    if "gravity" in variant:
        spec.option.gravity = np.asarray(spec.option.gravity) * variant["gravity"]
    if "friction" in variant:
        for geom in spec.geoms:
            geom.friction[0] *= variant["friction"]
    geoms = [g for body in bodies for g in body.geoms]  # model geom ids follow bodies in id order
    if [g.name for g in geoms] != [stock.geom(i).name for i in range(stock.ngeom)]:
        raise RuntimeError(f"spec geoms of {asset} do not follow the compiled model's order")
    for part, coeff in variant.get("bodies", {}).items():
        body_ids, geom_ids = _selection(stock, part, options.get("body_map", {}))
        if not body_ids:
            raise ValueError(f"variant edits bodies matching {part!r}, but {asset} has none")
        for b in body_ids:
            bodies[b].mass = bodies[b].mass * coeff
        for g in geom_ids:
            geoms[g].size[0] *= coeff
    return spec.compile()


def _env_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.get("env_kwargs", {}).items()}


def build_system(options: dict[str, Any], backend: str, variant: dict[str, Any]):
    """The brax System of a variant, with the stock env's per-backend tweaks (timestep, gears) applied."""
    model = edited_model(options, variant)
    original_load = mjcf.load
    mjcf.load = lambda _path: mjcf.load_model(model)
    try:
        env = brax_envs.get_environment(options["brax_env"], backend=backend, **_env_kwargs(options))
    finally:
        mjcf.load = original_load
    return env.sys


def obs_mask(obs_dim: int, fraction: float | None) -> np.ndarray:
    """The defective-module mask: int(f·d) zeros placed by numpy's legacy RNG seeded 0, as the original did."""
    if not fraction:
        return np.ones(obs_dim, dtype=np.float32)
    zeros = int(fraction * obs_dim)
    return np.random.RandomState(0).permutation([0] * zeros + [1] * (obs_dim - zeros)).astype(np.float32)


def action_scale(action_dim: int, variant: dict[str, Any], order: list[int] | None = None) -> np.ndarray:
    """Per-actuator factor (0 masked, −1 swapped); legacy index i is today's actuator order[i]."""
    order = order or list(range(action_dim))
    scale = np.ones(action_dim, dtype=np.float32)
    scale[[order[i] for i in variant.get("action_mask", [])]] = 0.0
    scale[[order[i] for i in variant.get("action_swap", [])]] = -1.0
    return scale


@functools.cache
def _compiled(brax_env: str, backend: str, n_envs: int, episode_length: int, env_kwargs: tuple = ()):
    """Jitted reset/step for one env shape; every variant shares them.

    The System goes in as its array leaves and is rebuilt on the stock tree structure: a System's static fields
    hold numpy arrays that compare by identity, so passing a freshly built System would recompile on every task.
    """
    env = _stock_env(brax_env, backend, env_kwargs)
    treedef = jax.tree.structure(env.sys)

    def with_sys(leaves, fn, *args):
        stock = env.sys
        env.sys = jax.tree.unflatten(treedef, leaves)
        try:
            return fn(*args)
        finally:
            env.sys = stock

    def reset(leaves, key, mask):
        inner = with_sys(leaves, jax.vmap(env.reset), jax.random.split(key, n_envs))
        carry = {"inner": inner, "first": inner, "steps": jnp.zeros(n_envs, jnp.int32)}
        return carry, inner.obs * mask

    def step(leaves, carry, action, scale, mask):
        inner = with_sys(leaves, jax.vmap(env.step), carry["inner"], action * scale)
        steps = carry["steps"] + 1
        truncated = (steps >= episode_length) & (inner.done == 0)
        done = (inner.done > 0) | truncated

        def where_done(first, current):
            shaped = jnp.reshape(done, (n_envs,) + (1,) * (current.ndim - 1))
            return jnp.where(shaped, first, current)

        nxt = jax.tree.map(where_done, carry["first"], inner)
        carry = {"inner": nxt, "first": carry["first"], "steps": jnp.where(done, 0, steps)}
        flags = done.astype(jnp.float32), truncated.astype(jnp.float32)
        return carry, nxt.obs * mask, inner.reward, *flags, inner.obs * mask

    return env, treedef, jax.jit(reset), jax.jit(step)


@functools.cache
def _stock_env(brax_env: str, backend: str, env_kwargs: tuple = ()):
    """The stock brax env of one shape (its MJCF parsed once per process)."""
    return brax_envs.get_environment(brax_env, backend=backend, **dict(env_kwargs))


@functools.cache
def _observation_size(brax_env: str, backend: str, env_kwargs: tuple = ()) -> int:
    """brax's `env.observation_size` runs an eager (un-jitted) reset: 2–5 s on CPU, once per task. Its shape alone,
    from an abstract evaluation of the reset, costs a trace, and is computed once per env shape."""
    env = _stock_env(brax_env, backend, env_kwargs)
    return int(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1])


def _to_torch(x: jax.Array, device: torch.device) -> torch.Tensor:
    return torch.from_dlpack(x).to(device)


class BraxVecEnv:
    """`n_envs` copies of one task on brax; torch tensors in and out (DLPack, no copy on CPU)."""

    def __init__(self, scenario: ScenarioSpec, task: TaskSpec, *, n_envs: int, backend: str, device: torch.device) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.n_envs = n_envs
        self.episode_length = scenario.episode_length
        self.device = device
        options = scenario.options
        env_kwargs = tuple(sorted(_env_kwargs(options).items()))
        env, treedef, self._reset, self._step = _compiled(
            options["brax_env"], backend, n_envs, scenario.episode_length, env_kwargs
        )
        self.obs_dim = _observation_size(options["brax_env"], backend, env_kwargs)
        self.action_dim = int(env.action_size)
        # Commit every input to the device: mixing committed and uncommitted arrays makes jit compile twice.
        self._device = jax.devices()[0]
        sys = build_system(options, backend, task.variant)
        if jax.tree.structure(sys).num_leaves != treedef.num_leaves:
            raise ValueError(f"variant {task.name} changed the structure of the {options['brax_env']} model")
        self.sys = jax.device_put(jax.tree.leaves(sys), self._device)
        self.obs_mask = jax.device_put(obs_mask(self.obs_dim, task.variant.get("obs_mask")), self._device)
        scale = action_scale(self.action_dim, task.variant, options.get("action_order"))
        self.action_scale = jax.device_put(scale, self._device)
        self._carry = None

    def reset(self, seed: int) -> torch.Tensor:
        key = jax.device_put(jax.random.PRNGKey(seed), self._device)
        self._carry, obs = jax.device_put(self._reset(self.sys, key, self.obs_mask), self._device)
        return _to_torch(obs, self.device)

    def get_state(self) -> list[torch.Tensor]:
        """The auto-reset carry (current and initial brax states, step counters): its array leaves as CPU tensors, in
        the tree's order (the tree itself, brax's classes, is this env's own and is never saved)."""
        return [torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(jax.device_get(self._carry))]

    def set_state(self, state: list[torch.Tensor]) -> None:
        if self._carry is None:
            self.reset(0)  # the carry's tree, filled below
        leaves, treedef = jax.tree.flatten(self._carry)
        arrays = [t.cpu().numpy() for t in state]
        if [(a.shape, a.dtype) for a in arrays] != [(x.shape, x.dtype) for x in leaves]:
            raise ValueError("a saved env state that does not fit this env (other arrays, shapes or dtypes)")
        self._carry = jax.device_put(jax.tree.unflatten(treedef, arrays), self._device)

    def step(self, action: torch.Tensor) -> StepResult:
        # Zero-copy on the action's own device (the DLPack exchange orders the CUDA streams); device_put is a
        # no-op when torch and JAX share the device, and the one transfer when they do not.
        act = jax.device_put(jax.dlpack.from_dlpack(action.detach().to(torch.float32).contiguous()), self._device)
        self._carry, *out = self._step(self.sys, self._carry, act, self.action_scale, self.obs_mask)
        return StepResult(*(_to_torch(x, self.device) for x in out))
