"""The continual framework on the fake env: method hooks, growth, evaluation matrix, determinism and resume."""

import time

import pytest
import torch
from conftest import fake_env_factory

from rlrepro.continual import EvalSpec, TrainSpec, evaluate, load_stage_methods, train
from rlrepro.continual.config import EvalConfig, SACConfig
from rlrepro.continual.methods.registry import method_class, method_names
from rlrepro.engine.config import NetworkConfig

SMALL_NET = NetworkConfig(hidden_sizes=(16, 16))
SMALL_SAC = SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1)


def spec_for(method, scenario, **kw):
    return TrainSpec(method=method, scenario=scenario, seed=3, sac=SMALL_SAC, network=SMALL_NET, **kw)


def actions(policy, obs):
    with torch.no_grad():
        return policy.deterministic(obs)


OBS = torch.linspace(-1, 1, 30).reshape(10, 3)


@pytest.mark.parametrize("method", ["ft_n", "sac_n"])
def test_task_policies_do_not_change_after_later_tasks(method, fake_scenario):
    result = train(spec_for(method, fake_scenario), env_factory=fake_env_factory)
    stage0, stage1 = load_stage_methods(result.policies(), torch.device("cpu"))
    assert torch.equal(actions(stage0.policy_for_task(0), OBS), actions(stage1.policy_for_task(0), OBS))
    assert not torch.equal(actions(stage1.policy_for_task(0), OBS), actions(stage1.policy_for_task(1), OBS))


def test_ft_1_keeps_training_the_same_policy(fake_scenario):
    result = train(spec_for("ft_1", fake_scenario), env_factory=fake_env_factory)
    stage0, stage1 = load_stage_methods(result.policies(), torch.device("cpu"))
    assert not torch.equal(actions(stage0.policy_for_task(0), OBS), actions(stage1.policy_for_task(0), OBS))
    assert torch.equal(actions(stage1.policy_for_task(0), OBS), actions(stage1.policy_for_task(1), OBS))


def test_growth_and_memory_report(fake_scenario):
    one = None
    for name in ("ft_1", "ft_n", "sac_n"):
        result = train(spec_for(name, fake_scenario), env_factory=fake_env_factory)
        sizes = [r["value"] for r in result.rows if r["metric"] == "inference_parameters"]
        one = one or sizes[0]
        assert sizes == ([one, one] if name == "ft_1" else [one, 2 * one])
    # 3→16→16→4 actor: (3·16+16) + (16·16+16) + (16·4+4)
    assert one == 64 + 272 + 68


def test_budget_and_update_counts(fake_scenario):
    result = train(spec_for("ft_1", fake_scenario), env_factory=fake_env_factory)
    steps = [r["value"] for r in result.rows if r["metric"] == "train_env_steps"]
    updates = [r["value"] for r in result.rows if r["metric"] == "train_updates"]
    # 4 envs, 1 new step per epoch; the loop runs while interactions ≤ 256, i.e. stops after exceeding it.
    assert steps == [260.0, 260.0]
    # updates per epoch = int(4 envs · 0.5); warm-up until 32 transitions (8 + first window) is update-free
    assert updates == [2 * ((260 - 8 - 28) // 4), 2 * ((260 - 8 - 28) // 4)]


def test_same_seed_gives_identical_results_and_resume_matches(fake_scenario, tmp_path):
    spec = spec_for("ft_n", fake_scenario)
    a = train(spec, env_factory=fake_env_factory)
    b = train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    for sa, sb in zip(a.stages, b.stages, strict=True):
        assert all(torch.equal(sa["state"][k], sb["state"][k]) for k in sa["state"])
    # The last checkpoint, before task 1's end phase (train() never clears it; the CLI does once outputs exist):
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert (saved["payload"]["task"], saved["payload"]["phase"]) == (1, "end")
    saved["payload"]["wall_time_s"] = 1e6  # the earlier processes' time, as their last checkpoint recorded it
    torch.save(saved, tmp_path / "state.pt")
    started = time.monotonic()
    c = train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    own = time.monotonic() - started
    assert c.resumed_from == {"task": 1, "phase": "end", "task_env_steps": 260, "earlier_wall_time_s": 1e6}
    assert 1e6 <= c.train_wall_time_s <= 1e6 + own  # the cost tables count every process's training time
    assert 0 < b.train_wall_time_s < 1e6
    del saved["payload"]["wall_time_s"]  # a checkpoint that does not record it: this process's time, and it says so
    torch.save(saved, tmp_path / "state.pt")
    started = time.monotonic()
    d = train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    assert d.resumed_from["earlier_wall_time_s"] is None and d.train_wall_time_s <= time.monotonic() - started
    assert all(torch.equal(b.stages[1]["state"][k], c.stages[1]["state"][k]) for k in b.stages[1]["state"])


def test_evaluate_fills_the_stage_by_task_matrix(fake_scenario):
    result = train(spec_for("ft_n", fake_scenario), env_factory=fake_env_factory)
    rows = evaluate(
        EvalSpec(fake_scenario, seed=3, evaluation=EvalConfig(n_rollouts=2)), result.policies(), env_factory=fake_env_factory
    )
    cells = {(r["stage"], r["task"]) for r in rows if r["metric"] == "avg_return"}
    assert cells == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(r["value"] < 0 for r in rows if r["metric"] == "avg_return")  # reward is −|s|²


def test_registry_lists_implemented_methods():
    assert set(method_names()) >= {"ft_1", "ft_n", "sac_n"}
    for name in method_names():
        assert method_class(name).name == name
