"""HalfCheetah variants on real Brax (positional backend): each edit changes the physics it claims to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from brax import envs as brax_envs

from rlrepro.envs.brax_backend import BraxVecEnv, build_system, edited_model, obs_mask
from rlrepro.scenarios import TaskSpec, get_scenario, scale_scenario

SCENARIO = scale_scenario(get_scenario("halfcheetah/forgetting"), {"episode_length": 20})
OPTIONS = SCENARIO.options
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fall_distance():
    """Distance the torso falls in 4 env steps after being raised 3 m (no contact): proportional to g."""
    env = brax_envs.get_environment("halfcheetah", backend="positional")

    def fall(sys):
        env.sys = sys
        q = sys.init_q.at[1].add(3.0)
        state = env.pipeline_init(q, jnp.zeros(sys.qd_size()))
        state = jax.lax.fori_loop(0, 4, lambda _, s: env.pipeline_step(s, jnp.zeros(6)), state)
        return q[1] - state.q[1]

    return jax.jit(fall)


def test_moon_scales_gravity_in_the_simulation(fall_distance):
    normal = fall_distance(build_system(OPTIONS, "positional", {}))
    moon = fall_distance(build_system(OPTIONS, "positional", {"gravity": 0.15}))
    assert float(normal) > 0.1
    assert float(moon / normal) == pytest.approx(0.15, rel=0.01)


def test_unedited_variant_is_the_stock_model():
    stock = brax_envs.get_environment("halfcheetah", backend="positional").sys
    ours = build_system(OPTIONS, "positional", {})
    for a, b in zip(jax.tree.leaves(stock), jax.tree.leaves(ours), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_body_scaling_changes_mass_and_radius_of_matching_bodies_only():
    stock, huge = edited_model(OPTIONS, {}), edited_model(OPTIONS, {"bodies": {"foot": 1.5}})
    for i in range(stock.nbody):
        factor = 1.5 if "foot" in stock.body(i).name else 1.0
        assert huge.body_mass[i] == pytest.approx(stock.body_mass[i] * factor)
    for g in range(stock.ngeom):
        factor = 1.5 if stock.geom(g).name in ("bfoot", "ffoot") else 1.0
        assert huge.geom_size[g, 0] == pytest.approx(stock.geom_size[g, 0] * factor)
    carry = edited_model(OPTIONS, {"bodies": {"torso": 4.0}})
    assert carry.body_mass[1] == pytest.approx(4 * stock.body_mass[1])
    assert carry.geom_size[1, 0] == pytest.approx(0.184)  # the torso capsule, not the head


def test_rainfall_scales_friction_of_every_geom():
    stock, rain = edited_model(OPTIONS, {}), edited_model(OPTIONS, {"friction": 0.4})
    np.testing.assert_allclose(rain.geom_friction[:, 0], 0.4 * stock.geom_friction[:, 0])
    np.testing.assert_allclose(rain.geom_friction[:, 1:], stock.geom_friction[:, 1:])


def rollout(task: TaskSpec, actions: torch.Tensor, sign: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    env = BraxVecEnv(SCENARIO, task, n_envs=2, backend="positional", device=CPU)
    obs = [env.reset(7)]
    rewards = []
    for a in actions:
        res = env.step(sign * a)
        obs.append(res.obs)
        rewards.append(res.reward)
    return torch.stack(obs), torch.stack(rewards)


ACTIONS = torch.rand(12, 2, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_action_swap_negates_every_torque():
    inverted = TaskSpec("inverted_actions", {"action_swap": [0, 1, 2, 3, 4, 5]})
    obs_inv, rew_inv = rollout(inverted, ACTIONS)
    obs_neg, rew_neg = rollout(TaskSpec("normal", {}), ACTIONS, sign=-1.0)
    assert torch.equal(obs_inv, obs_neg) and torch.equal(rew_inv, rew_neg)
    obs_pos, _ = rollout(TaskSpec("normal", {}), ACTIONS)
    assert not torch.allclose(obs_pos, obs_inv)


def test_mass_variant_changes_the_trajectory():
    obs_normal, _ = rollout(TaskSpec("normal", {}), ACTIONS)
    obs_huge, _ = rollout(TaskSpec("hugefoot", {"bodies": {"foot": 1.5}}), ACTIONS)
    assert torch.equal(obs_normal[0], obs_huge[0])  # same initial state for the same seed
    assert (obs_normal[-1] - obs_huge[-1]).abs().max() > 1e-3


def test_defective_module_zeroes_the_legacy_rng_entries():
    mask = obs_mask(17, 0.5)
    assert mask.sum() == 9 and mask.shape == (17,)
    np.testing.assert_array_equal(mask, np.random.RandomState(0).permutation([0] * 8 + [1] * 9))
    obs, _ = rollout(TaskSpec("defective_module", {"obs_mask": 0.5}), ACTIONS)
    assert torch.all(obs[:, :, mask == 0] == 0) and torch.all(obs[:, :, mask == 1] != 0)


def test_time_limit_auto_resets_to_the_first_state():
    env = BraxVecEnv(SCENARIO, TaskSpec("normal", {}), n_envs=2, backend="positional", device=CPU)
    first = env.reset(3)
    for t in range(SCENARIO.episode_length):
        res = env.step(torch.zeros(2, 6))
        expected_done = 1.0 if t == SCENARIO.episode_length - 1 else 0.0
        assert torch.all(res.done == expected_done) and torch.all(res.truncated == expected_done)
    assert torch.equal(res.obs, first) and not torch.equal(res.final_obs, first)
