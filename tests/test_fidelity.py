"""One test per item of the fidelity audit (../shared/specs/fidelity_audit.md): each fails on the behaviour before
the item was closed, and checks the faithful default and, where there is one, its flag."""

from __future__ import annotations

import pytest
import torch
from conftest import fake_env_factory
from torch.nn import functional as F

from rlrepro.config import load_config
from rlrepro.continual import TrainSpec, build_method, train
from rlrepro.methods.base import TaskContext
from rlrepro.sac.config import NetworkConfig, SACConfig
from rlrepro.sac.learner import critic_loss
from rlrepro.sac.networks import GaussianActor, TwinCritic
from rlrepro.sac.replay import Batch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
NET = NetworkConfig(hidden_sizes=(16, 16))


def fixed_batch(b: int = 32, obs_dim: int = 3, action_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    done = (torch.rand(b, generator=g) < 0.2).float()
    return Batch(torch.randn(b, obs_dim, generator=g), torch.rand(b, action_dim, generator=g) * 2 - 1,
                 torch.randn(b, generator=g), done, torch.randn(b, obs_dim, generator=g))  # fmt: skip


def critic_grads(loss: torch.Tensor, critic: TwinCritic) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(critic.parameters())))


def test_d1_critic_target_uses_the_batch_mean_entropy_as_the_originals_broadcast():
    torch.manual_seed(0)
    actor, critic = GaussianActor(3, 2, NET), TwinCritic(3, 2, NET)
    target = TwinCritic(3, 2, NET)
    batch, alpha, cfg = fixed_batch(), torch.tensor(2.0), SACConfig()

    def loss(batch_mean: bool) -> torch.Tensor:
        return critic_loss(critic, target, actor, batch, alpha, cfg, torch.Generator().manual_seed(1), batch_mean)

    # The original, literally: log-probs [B, 1] against Q-values [B] broadcast to a [B, B] target, squared error
    # averaged over every pair (rows: whose log-prob, columns: whose Q).
    with torch.no_grad():
        next_action, next_logp = actor.sample(batch.next_obs, torch.Generator().manual_seed(1))
        tq = torch.min(*target(batch.next_obs, next_action))
        y = batch.reward[None, :] + cfg.discount * (1 - batch.done[None, :]) * (tq[None, :] - alpha * next_logp[:, None])
    q1, q2 = critic(batch.obs, batch.action)
    original = ((q1[None, :] - y) ** 2).mean() + ((q2[None, :] - y) ** 2).mean()
    theirs = critic_grads(original, critic)
    for a, b in zip(critic_grads(loss(True), critic), theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    per_sample = critic_grads(loss(False), critic)  # the flag off: each sample's own log-prob, a different gradient
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(per_sample, theirs, strict=True))


def test_d2_pnn_critic_keeps_the_shared_3x256_whatever_the_policy_width(fake_scenario, tmp_path):
    raw = load_config(ROOT / "config.yaml", {"preset": "smoke"}).train_spec("pnn", "halfcheetah/forgetting", 0)
    spec = TrainSpec.from_dict(raw)
    assert spec.network.hidden_sizes == (96, 96, 96) and spec.critic_network.hidden_sizes == (256, 256, 256)
    small = TrainSpec("pnn", fake_scenario, seed=0, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                      network=NetworkConfig(hidden_sizes=(8, 8)),
                      critic_network=NetworkConfig(hidden_sizes=(12, 12, 12)))  # fmt: skip
    train(small, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / "state.pt", weights_only=False)["payload"]
    critic_widths = [m.out_features for m in saved["critic"].q1 if isinstance(m, torch.nn.Linear)]
    assert critic_widths == [12, 12, 12, 1]
    assert saved["method"].columns[0].w[0].out_features == 8


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
    from rlrepro import continual
    from rlrepro.continual import EvalSpec, evaluate

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
    from rlrepro.methods import packnet

    seen = []

    class Recording(packnet.SACLearner):
        def __init__(self, *args, **kwargs):
            seen.append(args[3])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(packnet, "SACLearner", Recording)
    m = build_method("packnet", 3, 2, NET, {"finetune_updates": 2, "finetune_alpha_lr_from_policy": flag})
    from test_methods import filled_replay

    sac = SACConfig(batch_size=8, lr_policy=1e-3, lr_entropy=7e-4)
    m.on_task_end(0, TaskContext(filled_replay(), torch.Generator().manual_seed(0), TwinCritic(3, 2, NET), sac))
    assert seen[0].lr_entropy == expected_lr and seen[0].lr_policy == 1e-3


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
