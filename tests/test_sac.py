"""SAC losses on fixed tensors against values computed by hand, and the replay buffer."""

import math

import pytest
import torch

from rlrepro.continual.config import SACConfig, learner_config
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.learner import actor_loss, critic_loss, entropy_loss, polyak
from rlrepro.engine.networks import GaussianActor, TwinCritic, squashed_log_prob
from rlrepro.engine.replay import Batch, ReplayBuffer


def test_squashed_log_prob_matches_hand_computation():
    u, mu, log_std = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, 0.0]]), torch.tensor([[0.0, math.log(0.5)]])
    expected = 0.0
    for ui, mi, ls in zip([0.5, -1.0], [0.2, 0.0], [0.0, math.log(0.5)], strict=True):
        std = math.exp(ls)
        expected += -0.5 * (((ui - mi) / (std + 1e-8)) ** 2 + 2 * ls + math.log(2 * math.pi))
        expected -= math.log(1 - math.tanh(ui) ** 2)  # the softplus form is the stable version of this
    assert squashed_log_prob(u, mu, log_std).item() == pytest.approx(expected, rel=1e-5)


class ConstActor(GaussianActor):
    """An actor whose μ and log σ are fixed tensors, so losses can be computed by hand."""

    def __init__(self, mu, log_std):
        super().__init__(1, mu.shape[-1], NetworkConfig(hidden_sizes=(1,)))
        self.mu, self.ls = mu, log_std

    def dist_params(self, obs):
        return self.mu.expand(obs.shape[0], -1), self.ls.expand(obs.shape[0], -1)


class LinearCritic(TwinCritic):
    """Q1 = Σs + Σa, Q2 = 2·Σs: simple enough to evaluate by hand."""

    def __init__(self):
        torch.nn.Module.__init__(self)
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, obs, action):
        return torch.stack([self.w * (obs.sum(-1) + action.sum(-1)), 2 * obs.sum(-1)])


def test_critic_loss_by_hand():
    cfg = SACConfig(discount=0.9, reward_scaling=2.0)
    actor = ConstActor(torch.zeros(1, 1), torch.full((1, 1), -20.0))  # σ≈0: a' = tanh(0) = 0
    batch = Batch(
        obs=torch.tensor([[1.0], [2.0]]),
        action=torch.tensor([[0.5], [0.0]]),
        reward=torch.tensor([1.0, -1.0]),
        not_done=torch.tensor([1.0, 0.0]),
        next_obs=torch.tensor([[3.0], [4.0]]),
    )
    alpha = torch.tensor(0.5)
    with torch.no_grad():
        _, logp = actor.sample(batch.next_obs, torch.Generator().manual_seed(1))
    # targets: y = 2r + 0.9(1−d)(min(s', 2s') − 0.5·mean(logp)) — the batch mean, as the original (audit D1)
    y0 = 2 * 1.0 + 0.9 * (min(3.0, 6.0) - 0.5 * logp.mean().item())
    y1 = 2 * -1.0
    q1, q2 = [1.5, 2.0], [2.0, 4.0]
    expected = ((q1[0] - y0) ** 2 + (q1[1] - y1) ** 2) / 2 + ((q2[0] - y0) ** 2 + (q2[1] - y1) ** 2) / 2
    critic = LinearCritic()
    loss = critic_loss(actor, critic, critic, batch, alpha, learner_config(cfg, 1), torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_actor_and_entropy_losses_by_hand():
    actor = ConstActor(torch.zeros(1, 1), torch.full((1, 1), -20.0))
    obs = torch.tensor([[1.0], [3.0]])
    loss, logp = actor_loss(actor, LinearCritic(), obs, torch.tensor(0.1), learner_config(SACConfig(), 1), None)
    # a = 0: min(Q1, Q2) = min(s, 2s) = s → −mean(s) + 0.1·mean(logp)
    assert loss.item() == pytest.approx(-2.0 + 0.1 * logp.mean().item(), rel=1e-5)
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    ent = entropy_loss(log_alpha, torch.tensor([1.0, 3.0]), target_entropy=-2.0)
    assert ent.item() == pytest.approx(-0.5 * ((1 - 2) + (3 - 2)) / 2)
    ent.backward()  # gradient through α = exp(log α), not log α itself
    assert log_alpha.grad.item() == pytest.approx(0.0)


def test_polyak_moves_targets_by_tau():
    src, tgt = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = tgt.weight.detach().clone()
    polyak(tgt, src, 0.25)
    assert torch.allclose(tgt.weight, 0.75 * before + 0.25 * src.weight)


def test_actor_log_std_bounds():
    cfg = NetworkConfig(hidden_sizes=(4,), log_std_mode="tanh", log_std_min=-10, log_std_max=2)
    actor = GaussianActor(3, 2, cfg)
    with torch.no_grad():
        actor.net.biases[-1][0, 2:] = 100.0
    assert torch.allclose(actor.dist_params(torch.zeros(1, 3))[1], torch.full((1, 2), 2.0))
    clip = GaussianActor(3, 2, NetworkConfig(hidden_sizes=(4,)))
    with torch.no_grad():
        clip.net.biases[-1][0, 2:] = -100.0
    assert torch.allclose(clip.dist_params(torch.zeros(1, 3))[1], torch.full((1, 2), -20.0))


def test_replay_wraps_and_samples_what_was_put():
    buf = ReplayBuffer(5, 1, 1, torch.device("cpu"))
    for start in (0, 3, 6):
        x = torch.arange(start, start + 3, dtype=torch.float32)
        buf.put(x[:, None], x[:, None], x, torch.ones(3), x[:, None] + 100)
    assert len(buf) == 5
    assert sorted(buf.obs.squeeze(1).tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]  # oldest overwritten first
    g = torch.Generator().manual_seed(0)
    batch = buf.sample(64, g)
    assert set(batch.obs.squeeze(1).tolist()) <= {4.0, 5.0, 6.0, 7.0, 8.0}
    assert torch.equal(batch.next_obs, batch.obs + 100)  # fields of one transition stay together
