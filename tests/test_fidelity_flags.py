"""Each fidelity flag's effect asserted as what it changes, with the flag set where a user sets it (config.yaml's
`quirks` block, a sparse method's block) and the run on the real env: the critic a new task starts from, the
transitions a time-limit end stores, the reset transition Continual World's replay holds, the α and the gradients
DAPD's connection scores use."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import yaml

from rlrepro.config import load_config
from rlrepro.continual import TaskTrainer, TrainSpec, train
from rlrepro.sparse import train as sparse_train
from rlrepro.sparse.config import SparseSpec
from rlrepro.sparse.dapd import snip_scores

ROOT = Path(__file__).resolve().parents[1]
QUIRKS = yaml.safe_load((ROOT / "config.yaml").read_text())["quirks"]


def continual_spec(method: str, scenario: str, **quirks) -> TrainSpec:
    """The job spec the pipeline would give (smoke preset, `quirks` overridden in the config), shrunk to a tiny
    budget and 8-wide networks."""
    config = load_config(ROOT / "config.yaml", {"preset": "smoke", "quirks": {**QUIRKS, **quirks}})
    spec = config.train_spec(method, scenario, 0)
    if scenario.startswith("continual_world"):
        spec["scenario"].update(steps_per_task=120, episode_length=30)
        spec["sac"].update(n_timesteps=10, inner_epochs=2, batch_size=16, initial_buffer_size=32, start_steps=5)
    else:
        spec["scenario"].update(steps_per_task=128, n_train_envs=4, n_eval_envs=4, episode_length=20)
        spec["sac"].update(batch_size=16, initial_buffer_size=32)
    spec["network"]["hidden_sizes"] = spec["critic_network"]["hidden_sizes"] = [8, 8]
    return TrainSpec.from_dict(spec)


def trainers_seen(monkeypatch) -> list[dict]:
    """Spy on the real training loop: for each task, the trainer's critic and replay, and the critic's values when
    the task's training starts and when it ends."""
    seen: list[dict] = []
    real_init, real_run = TaskTrainer.__init__, TaskTrainer.run

    def values(critic) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in critic.state_dict().items()}

    def init(self, method, critic, env, spec, task_index, generator, *args, **kwargs):
        real_init(self, method, critic, env, spec, task_index, generator, *args, **kwargs)
        seen.append({"critic": critic, "start": values(critic)})

    def run(self, *args, **kwargs):
        rows = real_run(self, *args, **kwargs)
        seen[-1].update(end=values(self.learner.critic), replay=self.replay, n_envs=self.env.n_envs)
        return rows

    monkeypatch.setattr(TaskTrainer, "__init__", init)
    monkeypatch.setattr(TaskTrainer, "run", run)
    return seen


@pytest.mark.parametrize("method", ["ft_1", "sac_n"])
@pytest.mark.parametrize("keep", [True, False])
def test_keep_critic_across_tasks_decides_which_critic_task_one_starts_from(method, keep, monkeypatch):
    """Faithful (true): task 1 trains the very critic task 0 left, from its trained values, even for SAC-N. False: a
    newly initialised critic, none of whose tensors is task 0's."""
    seen = trainers_seen(monkeypatch)
    train(continual_spec(method, "halfcheetah/forgetting", keep_critic_across_tasks=keep))
    task0, task1 = seen
    assert any(not torch.equal(task0["start"][k], task0["end"][k]) for k in task0["end"])  # task 0 trained it
    if keep:
        assert task1["critic"] is task0["critic"]
        assert all(torch.equal(task1["start"][k], task0["end"][k]) for k in task0["end"])
    else:
        assert task1["critic"] is not task0["critic"]
        weights = [k for k in task0["end"] if k.endswith("weight") or ".weights." in k]
        assert weights and not any(torch.equal(task1["start"][k], task0["end"][k]) for k in weights)


@pytest.mark.parametrize("terminal", [True, False])
def test_truncation_as_terminal_decides_what_a_time_limit_end_stores(terminal, monkeypatch):
    """Real Brax HalfCheetah ends episodes only by the time limit. Faithful (true): those transitions are stored as
    terminal (not_done 0) with the auto-reset state as next state. False: not terminal, with the state the step
    reached as next state. Transitions that did not end an episode are the same either way."""
    seen = trainers_seen(monkeypatch)
    train(continual_spec("ft_1", "halfcheetah/forgetting", truncation_as_terminal=terminal))
    replay, n = seen[0]["replay"], seen[0]["n_envs"]
    rows = len(replay) - n  # each row's successor (same env, next step) is n rows later
    ended = replay.ended[:rows] > 0
    assert ended.sum() >= n  # 20-step episodes: several ends per env
    assert torch.equal(replay.not_done[:rows][~ended], torch.ones(int((~ended).sum())))
    follows = (replay.next_obs[:rows] == replay.obs[n : rows + n]).all(1)  # next state = the next step's state
    assert follows[~ended].all()
    assert replay.not_done[:rows][ended].eq(0.0 if terminal else 1.0).all()
    assert follows[ended].all() if terminal else not follows[ended].any()


@pytest.mark.parametrize("spurious", [True, False])
def test_cw_spurious_reset_transition_reaches_the_continual_world_env_from_config(spurious, monkeypatch):
    """quirks.cw_spurious_reset_transition in config.yaml → job spec → training loop → MetaWorld env: with it, every
    episode end is followed in the replay by one (final state → reset state) transition with reward 0 that ends
    nothing; without it, no such transition."""
    seen = trainers_seen(monkeypatch)
    spec = continual_spec("ft_1", "continual_world/t1", cw_spurious_reset_transition=spurious)
    assert spec.scenario.n_train_envs == 1
    train(spec)
    for task in seen:
        replay = task["replay"]
        size = len(replay)
        ends = [i for i in range(size - 1) if replay.ended[i] > 0]
        assert len(ends) >= 2  # 30-step episodes
        after = [i + 1 for i in ends]
        reset_steps = [i for i in after if replay.reward[i] == 0 and replay.ended[i] == 0]
        assert reset_steps == (after if spurious else [])
        if spurious:  # the stored transition starts at the final state and ends at the reset state
            assert all(torch.equal(replay.obs[i], replay.next_obs[i - 1]) for i in reset_steps)


def dapd_agent_and_batch(alpha: float):
    from test_sparse import filled_replay, make_agent

    agent = make_agent()
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(alpha))
    return agent, filled_replay().sample_windows(64, torch.Generator().manual_seed(1))


def scores(agent, batch, **flags) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    agent.generator.manual_seed(7)  # the same policy draws for every call
    return snip_scores(agent, batch, **flags)


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    """Every tensor bit for bit equal."""
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_dapd_snip_fixed_alpha_scores_at_the_initial_temperature_not_the_learned_one():
    """With the flag (faithful), the scoring copy's α is init_temperature whatever the learner has learned: the scores
    of a learner at α = 0.7 equal those of one at α = 0.1 (init_temperature); without it, they are the learned α's."""
    learned, batch = dapd_agent_and_batch(0.7)
    at_init, _ = dapd_agent_and_batch(learned.cfg.init_temperature)
    assert learned.cfg.init_temperature == 0.1
    fixed = scores(learned, batch, fixed_alpha=learned.cfg.init_temperature, critic_includes_actor_loss=True)
    reference = scores(at_init, batch, fixed_alpha=None, critic_includes_actor_loss=True)
    free = scores(learned, batch, fixed_alpha=None, critic_includes_actor_loss=True)
    for net in (0, 1):  # α weighs the entropy terms of both losses: actor and critic scores
        for f, r, x in zip(fixed[net], reference[net], free[net], strict=True):
            scale = f.abs().max()
            assert (f - r).abs().max() < 1e-5 * scale  # α = exp(log 0.1) in float32 is not 0.1 to the last bit
            assert (f - x).abs().max() > 0.1 * scale


def test_dapd_critic_scores_include_actor_loss_adds_the_policy_loss_gradient_to_the_critic_only():
    """With the flag (faithful: the original's accumulated backward), a critic weight's score is |W·(∂L_Q/∂W +
    ∂L_π/∂W)|; without it |W·∂L_Q/∂W|. Actor scores are the same either way. Checked against the two gradients taken
    apart on a dense copy."""
    from rlrepro.engine.learner import actor_loss, critic_loss

    agent, batch = dapd_agent_and_batch(0.1)
    with_pi = scores(agent, batch, fixed_alpha=0.1, critic_includes_actor_loss=True)
    without = scores(agent, batch, fixed_alpha=0.1, critic_includes_actor_loss=False)
    assert same(with_pi[0], without[0]) and not same(with_pi[1], without[1])
    actor, critic, target = (copy.deepcopy(m) for m in (agent.actor, agent.critic, agent.target_critic))
    for net in (actor.net, critic.net, target.net):
        net.set_masks(None)
    weights, alpha = list(critic.net.weights), torch.tensor(0.1)
    agent.generator.manual_seed(7)
    g_q = torch.autograd.grad(critic_loss(actor, critic, target, batch, alpha, agent.cfg, agent.generator), weights)
    g_pi = torch.autograd.grad(actor_loss(actor, critic, batch.obs[:, 0], alpha, agent.cfg, agent.generator)[0], weights)
    for w, q, p, s_with, s_without in zip(weights, g_q, g_pi, with_pi[1], without[1], strict=True):
        assert torch.equal(s_without, (w * q).abs()) and torch.allclose(s_with, (w * (q + p)).abs(), rtol=0, atol=1e-7)


@pytest.mark.parametrize(("fixed", "with_pi"), [(True, True), (False, False)])
def test_dapd_score_flags_reach_the_scoring_from_the_method_block(fixed, with_pi, monkeypatch):
    """sparse.methods.dapd.{snip_fixed_alpha, critic_scores_include_actor_loss} → job spec → the pathway update's
    call of the scoring (a spy passing the call through)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    block = copy.deepcopy(config["sparse"]["methods"]["dapd"])
    block.update(snip_fixed_alpha=fixed, critic_scores_include_actor_loss=with_pi)
    sparse = {**config["sparse"], "methods": {**config["sparse"]["methods"], "dapd": block}}
    spec = SparseSpec.from_dict(load_config(ROOT / "config.yaml", {"preset": "smoke", "sparse": sparse})
                                .sparse.spec("dapd", "halfcheetah", 0.05, 0))  # fmt: skip
    from test_sparse import filled_replay, make_agent

    from rlrepro.sparse.masks import PathwayMasks

    calls = []
    real = sparse_train.snip_scores
    monkeypatch.setattr(sparse_train, "snip_scores", lambda agent, batch, **kw: calls.append(kw) or real(agent, batch, **kw))
    agent = make_agent()
    sparse_train._update_pathways(agent, filled_replay(), (PathwayMasks(0.05, 1), PathwayMasks(0.05, 1)), spec.dapd())
    assert calls == [{"fixed_alpha": agent.cfg.init_temperature if fixed else None, "critic_includes_actor_loss": with_pi}]
