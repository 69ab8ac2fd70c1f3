"""One test per item of the fidelity audit (../shared/specs/fidelity_audit.md): each fails on the behaviour before
the item was closed, and checks the faithful default and, where there is one, its flag."""

from __future__ import annotations

import pytest
import torch
from conftest import fake_env_factory
from torch.nn import functional as F

from rlrepro.config import load_config
from rlrepro.continual import TrainSpec, build_method, train
from rlrepro.continual.config import Quirks, SACConfig, learner_config
from rlrepro.continual.methods.base import TaskContext
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.learner import critic_loss
from rlrepro.engine.networks import GaussianActor, TwinCritic
from rlrepro.engine.replay import Batch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
NET = NetworkConfig(hidden_sizes=(16, 16))


def fixed_batch(b: int = 32, obs_dim: int = 3, action_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    not_done = (torch.rand(b, generator=g) >= 0.2).float()
    return Batch(torch.randn(b, obs_dim, generator=g), torch.rand(b, action_dim, generator=g) * 2 - 1,
                 torch.randn(b, generator=g), not_done, torch.randn(b, obs_dim, generator=g))  # fmt: skip


def critic_grads(loss: torch.Tensor, critic: TwinCritic) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(critic.parameters())))


def test_d1_critic_target_uses_the_batch_mean_entropy_as_the_originals_broadcast():
    torch.manual_seed(0)
    actor, critic = GaussianActor(3, 2, NET), TwinCritic(3, 2, NET)
    target = TwinCritic(3, 2, NET)
    batch, alpha, cfg = fixed_batch(), torch.tensor(2.0), SACConfig()

    def loss(batch_mean: bool) -> torch.Tensor:
        rule = learner_config(cfg, 2, Quirks(batch_mean_entropy_target=batch_mean))
        return critic_loss(actor, critic, target, batch, alpha, rule, torch.Generator().manual_seed(1))

    # The original, literally: log-probs [B, 1] against Q-values [B] broadcast to a [B, B] target, squared error
    # averaged over every pair (rows: whose log-prob, columns: whose Q).
    with torch.no_grad():
        next_action, next_logp = actor.sample(batch.next_obs, torch.Generator().manual_seed(1))
        tq = torch.min(*target(batch.next_obs, next_action))
        y = batch.reward[None, :] + cfg.discount * batch.not_done[None, :] * (tq[None, :] - alpha * next_logp[:, None])
    q1, q2 = critic(batch.obs, batch.action)
    original = ((q1[None, :] - y) ** 2).mean() + ((q2[None, :] - y) ** 2).mean()
    theirs = critic_grads(original, critic)
    for a, b in zip(critic_grads(loss(True), critic), theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    per_sample = critic_grads(loss(False), critic)  # the flag off: each sample's own log-prob, a different gradient
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(per_sample, theirs, strict=True))


def test_d2_pnn_critic_keeps_the_shared_3x256_whatever_the_policy_width(fake_scenario, tmp_path):
    """On the fake env (a test double, conftest.FakeVecEnv): the critic's shape does not depend on the physics."""
    raw = load_config(ROOT / "config.yaml", {"preset": "smoke"}).train_spec("pnn", "halfcheetah/forgetting", 0)
    spec = TrainSpec.from_dict(raw)
    assert spec.network.hidden_sizes == (96, 96, 96) and spec.critic_network.hidden_sizes == (256, 256, 256)
    small = TrainSpec("pnn", fake_scenario, seed=0, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                      network=NetworkConfig(hidden_sizes=(8, 8)),
                      critic_network=NetworkConfig(hidden_sizes=(12, 12, 12)))  # fmt: skip
    train(small, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / "state.pt", weights_only=True)["payload"]
    critic_widths = [saved["critic"]["state"][f"net.weights.{i}"].shape[1] for i in range(4)]
    assert critic_widths == [12, 12, 12, 1]
    assert saved["method"]["state"]["columns.0.w.0.weight"].shape[0] == 8


def test_d4_pnn_first_column_output_passes_through_the_activation():
    pnn = build_method("pnn", 3, 2, NetworkConfig(hidden_sizes=(8, 8)), {})
    pnn.on_task_start(1, TaskContext(None, torch.Generator(), TwinCritic(3, 2, NET), SACConfig()))
    x = torch.randn(5, 3)
    col0, col1 = pnn.columns
    h = x
    for layer in col0.w:
        h = F.leaky_relu(layer(h), 0.2)  # every layer, the output one included
    assert torch.allclose(pnn.policy_for_task(0).net(x), h)
    assert (pnn.policy_for_task(0).net(x) < 0).any()  # LeakyReLU's negative side: the output is not clipped at 0
    out1 = pnn.policy_for_task(1).net(x)
    hs0 = [x]
    for layer in col0.w:
        hs0.append(F.leaky_relu(layer(hs0[-1]), 0.2))
    z = x
    for i, layer in enumerate(col1.w):
        pre = layer(z) + (col1.u[i - 1](F.leaky_relu(col1.v[i - 1](col1.alpha[i - 1] * hs0[i]), 0.2)) if i else 0)
        z = pre if i == len(col1.w) - 1 else F.leaky_relu(pre, 0.2)  # later columns: linear output
    assert torch.allclose(out1, z, atol=1e-6)
    linear = build_method("pnn", 3, 2, NetworkConfig(hidden_sizes=(8, 8)), {"first_column_output_activation": False})
    linear.load_state_dict({k: v for k, v in pnn.state_dict().items() if k.startswith("columns.0.")}, strict=False)
    assert not torch.allclose(linear.policy_for_task(0).net(x), h)


def test_d10_evaluation_after_stage_s_is_seeded_with_s_plus_one(fake_scenario, monkeypatch):
    """On the fake env (a test double, conftest.FakeVecEnv): the seeds evaluation passes, not the physics."""
    from rlrepro.continual import EvalSpec, evaluate
    from rlrepro.continual import loop as continual

    spec = TrainSpec("ft_1", fake_scenario, seed=4, sac=SACConfig(batch_size=16, initial_buffer_size=32), network=NET)
    policies = train(spec, env_factory=fake_env_factory).policies()
    seeds = []
    real = continual.run_episodes
    monkeypatch.setattr(continual, "run_episodes", lambda p, env, n, seed: seeds.append(seed) or real(p, env, n, seed))
    evaluate(EvalSpec(fake_scenario, seed=4), policies, env_factory=fake_env_factory)
    # every (task j, stage s) cell: seed·13 + (s+1)·100 (the original's stage counter is incremented before evaluating)
    assert seeds == [4 * 13 + (s + 1) * 100 for _j in range(2) for s in range(2)]


@pytest.mark.parametrize(("flag", "expected_lr"), [(True, 1e-3), (False, 7e-4)])
def test_d11_packnet_finetune_alpha_learns_at_the_policy_lr(flag, expected_lr, monkeypatch):
    from rlrepro.continual.methods import packnet

    seen = []

    class Recording(packnet.SACLearner):
        def __init__(self, *args, **kwargs):
            seen.append(args[2])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(packnet, "SACLearner", Recording)
    m = build_method("packnet", 3, 2, NET, {"finetune_updates": 2, "finetune_alpha_lr_from_policy": flag})
    from test_methods import filled_replay

    sac = SACConfig(batch_size=8, lr_policy=1e-3, lr_entropy=7e-4)
    m.on_task_end(0, TaskContext(filled_replay(), torch.Generator().manual_seed(0), TwinCritic(3, 2, NET), sac))
    assert seen[0].lr_alpha == expected_lr and seen[0].lr_actor == 1e-3


def test_d12_rewire_stage_zero_size_leaves_out_the_head_anchors():
    m = build_method("rewire", 3, 2, NET, {})
    from test_methods import context

    m.on_task_start(0, context())
    m.on_task_end(0, context())
    full = sum(t.numel() for t in m.state_dict().values())
    head = m.head_weight_mean.numel() + m.head_bias_mean.numel()
    assert m.memory_report()["stored_parameters"] == full - head
    m.on_task_start(1, context())
    m.on_task_end(1, context())
    assert m.memory_report()["stored_parameters"] == sum(t.numel() for t in m.state_dict().values())


def csp_at_second_task(n_envs: int = 4, **hp):
    from conftest import FakeVecEnv

    from rlrepro.scenarios import TaskSpec

    m = build_method("csp", 3, 2, NET, {"n_samples": 64, "n_estimations": 2, "n_rollouts": 4, **hp})
    env = FakeVecEnv(TaskSpec("a", {}), n_envs, 16, torch.device("cpu"))
    ctx = TaskContext(None, torch.Generator().manual_seed(0), TwinCritic(3, 2, NET), SACConfig(), env=env)
    m.on_task_start(0, ctx)
    m.on_task_end(0, ctx)
    m.on_task_start(1, ctx)
    return m, env, ctx


def test_d5_csp_online_critic_sees_the_stored_behaviour_alpha(fake_scenario, tmp_path):
    """On the fake env (a test double, conftest.FakeVecEnv): what the critic is given, not the physics."""
    m, _, _ = csp_at_second_task()
    batch = fixed_batch(8)
    behaviour = torch.tensor([[0.7, 0.3], [1.0, 0.0]]).repeat(4, 1)  # half the envs act in the old subspace
    batch.behaviour = behaviour
    prepared = m.prepare_batch(batch, torch.Generator())
    assert torch.equal(prepared.obs[:, 3:], behaviour)
    fresh = build_method("csp", 3, 2, NET, {"stored_behaviour_alpha": False})
    fresh.load_state_dict(m.state_dict(), strict=False)
    for layer in fresh.layers:
        layer.add_anchor()
    assert not torch.equal(fresh.prepare_batch(batch, torch.Generator()).obs[:, 3:], behaviour)
    # In training, the replay keeps each transition's acting α: at task 1 the second half of the envs act in the old
    # subspace (last weight 0), the first half in the new one.
    spec = TrainSpec("csp", fake_scenario, seed=0, sac=SACConfig(batch_size=16, initial_buffer_size=32), network=NET,
                     method_hp={"n_samples": 64, "n_estimations": 2, "n_rollouts": 2})  # fmt: skip
    train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    replay = torch.load(tmp_path / "state.pt", weights_only=True)["payload"]["trainer"]["replay"]
    rows = replay["behaviour"].view(-1, 4, 2)  # [time, env, α] (the checkpoint keeps the live rows, oldest first)
    assert (rows[:, 2:, 1] == 0).all() and (rows[:, :2, 1] > 0).all()
    assert torch.allclose(rows.sum(-1), torch.ones(rows.shape[:2]))


def test_d6_alpha_search_rolls_out_on_its_own_env_one_episode_per_candidate():
    """On fake envs (test doubles, conftest.FakeVecEnv): which env the search builds and the steps it spends."""
    m, env, ctx = csp_at_second_task(n_rollouts=4, n_validation_steps=16)
    made = []

    def make_env(n):
        from conftest import FakeVecEnv

        from rlrepro.scenarios import TaskSpec

        made.append(n)
        return FakeVecEnv(TaskSpec("a", {}), n, 16, torch.device("cpu"))

    ctx.make_env, ctx.seed = make_env, 5
    from test_methods import filled_replay

    ctx.replay, ctx.critic = filled_replay(), m.critic_for_task(ctx.critic)
    m.on_task_end(1, ctx)
    assert made == [4]  # n_rollouts envs, not the training env's 4·k
    assert ctx.extra_env_steps == 4 * 16 and m.reserved_env_steps(env) == 4 * 16
    assert env.steps_taken == 0  # the training env is untouched


def test_d7_policy_step_draws_its_own_alpha():
    m, _, _ = csp_at_second_task()
    batch = fixed_batch(8)
    batch.behaviour = torch.full((8, 2), 0.5)
    prepared = m.prepare_batch(batch, torch.Generator())
    policy_alpha, target_alpha = prepared.policy_obs[:8, 3:], prepared.next_obs[:, 3:]
    assert prepared.policy_obs.shape == (16, 5)
    assert not torch.equal(policy_alpha, prepared.obs[:, 3:]) and not torch.equal(prepared.policy_obs[8:, 3:], target_alpha)
    assert torch.equal(prepared.policy_obs[:8, :3], batch.obs) and torch.equal(prepared.policy_obs[8:, :3], batch.next_obs)


@pytest.mark.parametrize("draws", ["on_redraw", "every_step"])
def test_d8_alpha_is_redrawn_at_episode_ends_and_on_the_originals_step_counter(draws):
    """The original's counter (RewireNeuron agents/brax_agents.py) is incremented in place after it is written to
    the workspace (which keeps the reference): it reads t + 1 in a task's first episode, then 1, 2, ... after each
    auto-reset. So no second draw one step after an end (the audit expected one), and the first episode's redraws
    come one transition earlier than later episodes'. The host-sync-free draws (`alpha_draws: every_step`) redraw
    at exactly the same transitions."""
    m, _, _ = csp_at_second_task(n_envs=4, repeat_alpha=5, alpha_draws=draws)  # envs 0, 1: the new subspace
    done_at = {3}  # env 0's episode ends at transition 3; env 1 never ends
    changed = []
    for t in range(14):
        before = m.env_alpha.clone()
        m.on_env_step(torch.tensor([1.0 if t in done_at else 0.0, 0.0, 0.0, 0.0]))
        changed.append(tuple(bool(c) for c in (m.env_alpha != before).any(-1)))
    env0 = [t for t, c in enumerate(changed) if c[0]]
    env1 = [t for t, c in enumerate(changed) if c[1]]
    assert env0 == [3, 8, 13]  # its end (counter 5 too), then counter 5 and 10 of the new episode (transitions 8, 13)
    assert env1 == [3, 8, 13]  # counter 5, 10, 15 of the first episode: transitions 3, 8, 13


def test_d9_alpha_search_critic_estimate_averages_both_window_steps():
    from rlrepro.engine.replay import ReplayBuffer

    m, _, ctx = csp_at_second_task(n_estimations=1)
    replay = ReplayBuffer(4, 3, 2, torch.device("cpu"), behaviour_dim=2, next_actions=True)
    obs, nxt = torch.randn(1, 3), torch.randn(1, 3)
    replay.put(obs, torch.tensor([[0.5, -0.5]]), torch.zeros(1), torch.ones(1), nxt, torch.tensor([[0.5, 0.5]]))
    replay.put(nxt, torch.tensor([[-0.9, 0.9]]), torch.zeros(1), torch.ones(1), obs, torch.tensor([[0.5, 0.5]]))
    replay.size = 1  # only the first window, whose next action (-0.9, 0.9) the second put filled in
    ctx.replay, ctx.critic = replay, m.critic_for_task(ctx.critic)
    alphas = m.sample_alpha((16,), 2, "flat")
    values = m._critic_values(ctx, alphas)
    with torch.no_grad():
        q_now = ctx.critic(torch.cat([obs.expand(16, -1), alphas], -1), torch.tensor([[0.5, -0.5]]).expand(16, -1))[0]
        q_next = ctx.critic(torch.cat([nxt.expand(16, -1), alphas], -1), torch.tensor([[-0.9, 0.9]]).expand(16, -1))[0]
    assert torch.allclose(values, (q_now + q_next) / 2)
    assert not torch.allclose(values, q_now)  # the first step alone (the behaviour before) is another estimate


# --- sparse suite -------------------------------------------------------------------------------------------------


def test_r1_critic_grow_score_adds_the_actor_gradient_of_the_step_before(monkeypatch):
    from test_sparse import filled_replay, make_agent

    from rlrepro.engine import learner as agent_module
    from rlrepro.sparse.masks import enable_dst

    recorded = []
    real_actor_loss = agent_module.actor_loss

    def recording_actor_loss(actor, critic, obs, alpha, cfg, generator, noise=None):
        critic.net.dense_grads, before = [], critic.net.dense_grads
        loss, log_prob = real_actor_loss(actor, critic, obs, alpha, cfg, generator, noise)
        recorded.append(torch.autograd.grad(loss, critic.net.dense_grads, retain_graph=True))
        critic.net.dense_grads = before
        return loss, log_prob

    captured = {}
    replay = filled_replay()
    for flag in (True, False):
        agent = make_agent(1)
        enable_dst(agent, 0.9, 0.9, delta=3, zeta=0.5, t_end=100, random_grow=False, critic_grow_includes_actor_grad=flag)
        seen = []
        monkeypatch.setattr(agent.critic_topology, "_update_topology", lambda grads, g, seen=seen: seen.append(grads))
        monkeypatch.setattr(agent_module, "actor_loss", recording_actor_loss if not flag else real_actor_loss)
        if not flag:  # the recording reads autograd's graph: every update on the stateful route (the same bits)
            monkeypatch.setattr(agent, "_topology_step", lambda policy_step: True)
        batches = [replay.sample_windows(32, torch.Generator().manual_seed(i)) for i in range(3)]
        for batch in batches:  # the third critic step is the topology update
            agent.update(batch)
        captured[flag] = seen[0]
    actor_grad_before = recorded[1]  # the actor loss of update 2 (t − 1), at the critic's effective weights
    for with_actor, without, extra in zip(captured[True], captured[False], actor_grad_before, strict=True):
        assert torch.allclose(with_actor, without + extra, atol=1e-6)
        assert not torch.allclose(with_actor, without)


@pytest.mark.parametrize("flag", [True, False])
def test_r2_rlx2_collects_with_the_mean_action_after_the_random_phase(flag, monkeypatch):
    from test_sparse import smoke_spec

    from rlrepro.engine.replay import ReplayBuffer
    from rlrepro.sparse.train import train_sparse

    added = []
    real_add = ReplayBuffer.add

    def recording_add(self, obs, action, reward, next_obs, not_done, ended, action_mean=None):
        added.append((action.clone(), None if action_mean is None else action_mean.clone()))
        real_add(self, obs, action, reward, next_obs, not_done, ended, action_mean)

    monkeypatch.setattr(ReplayBuffer, "add", recording_add)
    train_sparse(smoke_spec("rigl", mean_action_collection=flag))
    policy_steps = added[100:]  # seed_steps = 100
    same = [torch.equal(a, m) for a, m in policy_steps]
    assert all(same) if flag else not any(same)


def test_r3_a_sparse_method_can_run_on_its_own_sac():
    import yaml

    from rlrepro.config import Resolved, validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    overlay = yaml.safe_load((ROOT / "config/overlays/rlx2_published.yaml").read_text())
    for method in ("rigl", "rlx2"):
        config["sparse"]["methods"][method].update(overlay["sparse"]["methods"][method])
    config["preset"] = "demo_sparse"
    sparse = Resolved(validate(config)).sparse
    assert sparse.spec("rlx2", "halfcheetah", 0.05, 0)["sac"]["lr"] == 3e-4
    assert sparse.spec("rigl", "halfcheetah", 0.05, 0)["sac"]["init"] == "orthogonal"
    assert sparse.spec("dapd", "halfcheetah", 0.05, 0)["sac"]["lr"] == 1e-3  # the shared block stays for the others
    assert "sac" not in sparse.spec("rlx2", "halfcheetah", 0.05, 0)["method_hp"]
    from rlrepro.engine.config import NetworkConfig
    from rlrepro.engine.networks import MLPStack

    net = MLPStack(1, [8, 8, 4], ["n"], NetworkConfig(init="orthogonal", activation="relu"))
    assert torch.allclose(net.weights[0][0] @ net.weights[0][0].T, torch.eye(8), atol=1e-5)
    assert all((b == 0).all() for b in net.biases)


def test_s1_dapd_scores_with_time_limit_ends_as_terminal(monkeypatch):
    from test_sparse import filled_replay, make_agent

    from rlrepro.sparse import train as train_module
    from rlrepro.sparse.config import DAPDConfig
    from rlrepro.sparse.masks import PathwayMasks

    seen = []
    real = train_module.snip_scores
    monkeypatch.setattr(train_module, "snip_scores", lambda agent, batch, **kw: seen.append(batch) or real(agent, batch, **kw))
    replay, agent = filled_replay(), make_agent()  # every 100th transition ends its episode by the time limit
    for flag in (True, False):
        train_module._update_pathways(agent, replay, (PathwayMasks(0.05, 1), PathwayMasks(0.05, 1)),
                                      DAPDConfig(score_time_limit_as_terminal=flag))  # fmt: skip
    faithful, bootstrapped = seen
    assert torch.equal(faithful.not_done, 1 - faithful.ended) and (faithful.ended > 0).any()
    assert (bootstrapped.not_done == 1).all()


def test_s2_dapd_initial_collection_has_the_originals_off_by_one():
    import gymnasium as gym
    from test_sparse import make_agent

    from rlrepro.engine.replay import ReplayBuffer
    from rlrepro.sparse import train as train_module
    from rlrepro.sparse.config import DAPDConfig
    from rlrepro.sparse.masks import PathwayMasks

    env = gym.make("HalfCheetah-v5", max_episode_steps=100)
    env.reset(seed=0)
    replay = ReplayBuffer(1000, 17, 6, torch.device("cpu"), action_means=True)
    agent = make_agent()
    pathways = (PathwayMasks(0.05, 1), PathwayMasks(0.05, 1))
    cfg = DAPDConfig(initial_mask_steps=500, score_batch_size=32)
    as_tensor = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    train_module._initial_pathways(agent, env, replay, pathways, cfg, as_tensor, 1.0, 100)
    assert len(replay) == 99 + 5 * 100  # the first episode is one step short, and whole episodes until ≥ 500
    ends = [i for i in range(len(replay)) if replay.ended[i] > 0]
    assert ends[:3] == [98, 198, 298]


def test_f1_rewire_selection_rollouts_are_seeded_like_the_stage_evaluation(fake_scenario, monkeypatch):
    """Found beyond the audit: the original's mode selection calls its stage evaluation during training, before the
    stage counter moves, so every candidate of task k is rolled out with seed·13 + k·100. (On the fake env, a test
    double: conftest.FakeVecEnv.)"""
    from rlrepro.continual import loop as continual

    seeds = []
    real = continual.run_episodes
    monkeypatch.setattr(continual, "run_episodes", lambda p, env, n, seed: seeds.append((n, seed)) or real(p, env, n, seed))
    spec = TrainSpec("rewire", fake_scenario, seed=2, sac=SACConfig(batch_size=16, initial_buffer_size=32), network=NET,
                     method_hp={"selection_rollouts": 2})  # fmt: skip
    train(spec, env_factory=fake_env_factory)
    assert seeds and set(seeds) == {(2, 2 * 13 + 1 * 100)}  # r0 and each of the k modes at task 1
    assert len(seeds) == 1 + 3


def test_r3_a_budget_may_override_a_methods_own_sac_too():
    """`sac` is a valid key of `budget.method_overrides.<m>` (validated like the method block): it must reach the spec."""
    import yaml

    from rlrepro.config import Resolved, validate

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["presets"]["demo_sparse"]["sparse"]["budget"]["method_overrides"]["rlx2"]["sac"] = {"lr": 5.0e-4}
    config["preset"] = "demo_sparse"
    sparse = Resolved(validate(config)).sparse
    assert sparse.spec("rlx2", "halfcheetah", 0.05, 0)["sac"]["lr"] == 5.0e-4
    assert sparse.spec("rigl", "halfcheetah", 0.05, 0)["sac"]["lr"] == 1.0e-3
