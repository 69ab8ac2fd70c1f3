"""All 18 scenarios: the catalog, Ant/Humanoid variants on real Brax, and Continual World on real MetaWorld v3."""

import jax
import numpy as np
import pytest
import torch

from rlrepro.envs import make_env
from rlrepro.envs.brax_backend import BraxVecEnv, action_scale, build_system, edited_model
from rlrepro.envs.metaworld_backend import MetaWorldVecEnv
from rlrepro.scenarios import TaskSpec, catalog, get_scenario, scale_scenario, scenario_names

CPU = torch.device("cpu")


def test_the_eighteen_scenarios_of_the_paper():
    names = scenario_names()
    assert len(names) == 18
    assert sum(n.startswith("continual_world/") for n in names) == 9
    assert [t.name for t in get_scenario("continual_world/t3").tasks] == [
        "window-close",
        "handle-press-side",
        "peg-unplug-side",
    ]
    assert get_scenario("humanoid/hard").steps_per_task == 2_000_000 and get_scenario("humanoid/hard").n_tasks == 4
    ant = get_scenario("ant/transfer")
    assert ant.n_tasks == 8 and ant.tasks[4].name == "disabled_first_diagonal"
    cw10 = get_scenario("continual_world/cw10")
    assert cw10.n_tasks == 10 and cw10.episode_length == 200 and cw10.n_train_envs == 1


@pytest.mark.parametrize("domain", ["halfcheetah", "ant", "humanoid"])
def test_every_brax_variant_builds_with_the_stock_structure(domain):
    dom = catalog()["domains"][domain]
    options = {k: dom[k] for k in ("brax_env", "asset", "action_order", "body_map", "env_kwargs") if k in dom}

    def shapes(sys):  # the static fields hold the MjModel itself, so compare the array leaves
        return [np.shape(leaf) for leaf in jax.tree.leaves(sys)]

    stock = shapes(build_system(options, "spring", {}))
    for name, variant in dom["variants"].items():
        assert shapes(build_system(options, "spring", variant)) == stock, name


def test_ant_variants_on_todays_model():
    options = get_scenario("ant/forgetting").options
    stock, huge = edited_model(options, {}), edited_model(options, {"bodies": {"Body": 1.5}})
    lower_legs = [
        b
        for b in range(stock.nbody)
        if any("ankle" in stock.geom(g).name for g in range(stock.ngeom) if stock.geom_bodyid[g] == b)
    ]
    assert len(lower_legs) == 4
    for b in range(stock.nbody):
        assert huge.body_mass[b] == pytest.approx(stock.body_mass[b] * (1.5 if b in lower_legs else 1.0))
    for g in range(stock.ngeom):
        scaled = "_ankle_geom" in stock.geom(g).name or "_foot_geom" in stock.geom(g).name
        assert huge.geom_size[g, 0] == pytest.approx(stock.geom_size[g, 0] * (1.5 if scaled else 1.0))
    # scenarios.md §3.5: disabled_forefeet (legacy legs 1 and 2) is the modern mask [1,1,0,0,0,0,1,1]
    np.testing.assert_array_equal(
        action_scale(8, {"action_mask": [0, 1, 2, 3]}, options["action_order"]), [1, 1, 0, 0, 0, 0, 1, 1]
    )


def test_ant_remap_drives_the_legacy_leg():
    """disabled_hard1 leaves only legacy leg 1 (front, +x+y) actuated: full torque must move hip_1/ankle_1 most."""
    scenario = scale_scenario(get_scenario("ant/compositionality"), {"episode_length": 50})
    task = scenario.tasks[0]
    assert task.name == "disabled_hard1"
    env = BraxVecEnv(scenario, task, n_envs=1, backend="spring", device=CPU)
    model = edited_model(scenario.options, {})
    env.reset(0)
    start = np.asarray(env._carry["inner"].pipeline_state.q[0])
    for _ in range(5):
        env.step(torch.ones(1, 8))
    moved = np.abs(np.asarray(env._carry["inner"].pipeline_state.q[0]) - start)
    joints = {model.joint(j).name: model.jnt_qposadr[j] for j in range(model.njnt) if model.joint(j).name}
    legs = {name: moved[adr] for name, adr in joints.items() if name.startswith(("hip", "ankle"))}
    assert set(sorted(legs, key=legs.get)[-2:]) == {"hip_1", "ankle_1"}, legs


def test_humanoid_variants_match_the_spec_masses():
    options = get_scenario("humanoid/hard").options
    assert edited_model(options, {}).body_mass.sum() == pytest.approx(42.1, abs=0.05)
    carry = edited_model(options, {"bodies": {"torso": 4.0, "lwaist": 4.0}})
    tiny = edited_model(options, {"bodies": {"shin": 0.5}})
    assert carry.body_mass.sum() == pytest.approx(75.6, abs=0.05)
    assert tiny.body_mass.sum() == pytest.approx(37.6, abs=0.05)
    changed = np.flatnonzero(tiny.geom_size[:, 0] != edited_model(options, {}).geom_size[:, 0])
    assert sorted(tiny.geom(int(g)).name for g in changed) == ["left_foot", "right_foot"]
    assert options["env_kwargs"]["healthy_z_range"] == [0.8, 2.1]


@pytest.mark.parametrize("name", ["ant/forgetting", "humanoid/hard"])
def test_brax_scenarios_step_and_terminate(name):
    scenario = scale_scenario(get_scenario(name), {"episode_length": 30})
    env = make_env(scenario, scenario.tasks[1], n_envs=2, env_cfg={"backend": "spring"}, device=CPU)
    obs = env.reset(1)
    assert obs.shape == (2, {"ant": 27, "humanoid": 244}[scenario.domain])
    for _ in range(30):
        res = env.step(torch.zeros(2, env.action_dim))
    assert torch.isfinite(res.obs).all() and res.done.sum() == 2


def cw_env(task="hammer", spurious=True):
    scenario = scale_scenario(get_scenario("continual_world/cw10"), {"episode_length": 20})
    return MetaWorldVecEnv(
        scenario, TaskSpec(task, {"env": f"{task}-v3"}), n_envs=1, device=CPU, spurious_reset_transition=spurious
    )


def test_metaworld_seeded_twice_is_identical_and_resets_move_the_object():
    actions = torch.rand(25, 1, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = []
    for _ in range(2):
        env = cw_env()
        obs = [env.reset(5)]
        for a in actions:
            obs.append(env.step(a).obs)
        runs.append(torch.stack(obs))
    assert torch.equal(runs[0], runs[1])
    first_object = runs[0][0, 0, 4:7]
    after_reset = runs[0][21, 0, 4:7]  # step 20 ends the episode; step 21 is the spurious reset step
    assert not torch.allclose(first_object, after_reset)
    assert cw_env().reset(6)[0, 4:7].tolist() != runs[0][0, 0, 4:7].tolist()


def test_metaworld_success_flags_and_the_spurious_reset_transition():
    env = cw_env()
    env.reset(0)
    results = [env.step(torch.zeros(1, 4)) for _ in range(22)]
    assert all(r.success is not None and r.success.shape == (1,) for r in results)
    assert [float(r.done) for r in results[18:22]] == [0.0, 1.0, 0.0, 0.0]
    reset_step = results[20]
    assert float(reset_step.reward) == 0.0 and float(reset_step.done) == 0.0
    assert torch.equal(results[19].obs, results[19].final_obs)
    plain = cw_env(spurious=False)
    plain.reset(0)
    ends = [plain.step(torch.zeros(1, 4)) for _ in range(21)]
    assert float(ends[19].done) == 1.0 and not torch.equal(ends[19].obs, ends[19].final_obs)
    assert float(ends[20].reward) != 0.0


def test_cw_sac_overrides_reach_the_job(tmp_path):
    import copy
    from pathlib import Path

    import yaml

    from rlrepro.config import Resolved, validate

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    r = Resolved(validate(copy.deepcopy(config) | {"preset": "paper"}))
    sac = r.train_spec("ft_1", "continual_world/t6", 0)["sac"]
    assert (sac["n_timesteps"], sac["batch_size"], sac["init_temperature"], sac["start_steps"]) == (50, 128, 2.7, 1000)
    assert r.train_spec("ft_1", "humanoid/hard", 0)["sac"]["reward_scaling"] == 0.1
