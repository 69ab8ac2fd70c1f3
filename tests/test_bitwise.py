"""Speed work must not change results: the engine's SAC update is bit-identical to a plain reference update.

The reference below is the sparse-suite SAC update as it was before any performance work (issue 8), written in the
most direct form: per-layer masked weights, the general n-step target and window sampler for every n, PyTorch's
default (single-tensor) Adam, losses built exactly as the engine's first version built them. Both run from the same
initial weights, replay and generator seed; after dozens of updates every parameter, target parameter, Adam moment
and α must be *equal* (torch.equal), not close. Any optimisation that reorders floating-point work fails here.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from rlrepro.engine.learner import SACLearner
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.train import build_learner

OBS, ACT, BATCH = 17, 6, 64


class ReferenceSAC:
    """The pre-optimisation update, on its own copies of the agent's initial parameters."""

    def __init__(self, agent: SACLearner, masks: dict[str, list[torch.Tensor] | None], cfg: SparseSACConfig) -> None:
        self.cfg = cfg
        self.actor_w = [w.detach().clone().requires_grad_(True) for w in agent.actor.net.weights]
        self.actor_b = [b.detach().clone().requires_grad_(True) for b in agent.actor.net.biases]
        self.critic_w = [w.detach().clone().requires_grad_(True) for w in agent.critic.net.weights]
        self.critic_b = [b.detach().clone().requires_grad_(True) for b in agent.critic.net.biases]
        self.target_w = [w.detach().clone() for w in agent.target_critic.net.weights]
        self.target_b = [b.detach().clone() for b in agent.target_critic.net.biases]
        self.log_alpha = agent.log_alpha.detach().clone().requires_grad_(True)
        self.actor_masks = masks["actor"] or [None] * len(self.actor_w)
        self.critic_masks = masks["critic"] or [None] * len(self.critic_w)
        betas = tuple(cfg.adam_betas)
        self.actor_opt = torch.optim.Adam([*self.actor_w, *self.actor_b], lr=cfg.lr, betas=betas)
        self.critic_opt = torch.optim.Adam([*self.critic_w, *self.critic_b], lr=cfg.lr, betas=betas)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr, betas=betas)
        self.updates = 0

    @staticmethod
    def mlp(weights, biases, masks, x: torch.Tensor) -> torch.Tensor:
        for i, (w, b, m) in enumerate(zip(weights, biases, masks, strict=True)):
            w = w if m is None else w * m
            if w.shape[0] == 1:
                x = F.linear(x, w[0], b[0])
            elif x.dim() == 2:
                x = torch.matmul(x, w.transpose(1, 2)) + b[:, None, :]
            else:
                x = torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))
            if i < len(weights) - 1:
                x = F.relu(x)
        return x

    def sample_action(self, obs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.mlp(self.actor_w, self.actor_b, self.actor_masks, obs).chunk(2, dim=-1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)
        eps = torch.randn(mu.shape, generator=gen)
        u = mu + log_std.exp() * eps
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def q(self, weights, biases, obs, action) -> torch.Tensor:
        return self.mlp(weights, biases, self.critic_masks, torch.cat([obs, action], dim=-1)).squeeze(-1)

    @staticmethod
    def sample(replay: ReplayBuffer, batch: int, gen: torch.Generator, n: int):
        start = torch.randint(0, replay.size, (batch, 1), generator=gen)
        offset = start + torch.arange(n)
        valid = (offset < replay.size).float()
        idx = (replay.oldest + offset.clamp(max=replay.size - 1)) % replay.capacity
        return (replay.obs[idx], replay.action[idx], replay.reward[idx], replay.next_obs[idx], replay.not_done[idx],
                replay.ended[idx], valid)  # fmt: skip

    @staticmethod
    def target(reward, not_done, ended, valid, soft_entropy, next_q, discount: float) -> torch.Tensor:
        n = reward.shape[1]
        before_end = torch.cumprod(torch.cat([torch.ones_like(ended[:, :1]), 1 - ended[:, :-1]], dim=1), dim=1)
        alive = before_end * torch.cumprod(valid, dim=1)
        powers = discount ** torch.arange(n + 1, dtype=reward.dtype)
        last = alive.sum(1).long() - 1
        rows = torch.arange(reward.shape[0])
        target = (alive * (powers[:n] * reward + powers[1:] * not_done * soft_entropy)).sum(1)
        return target + powers[last + 1] * not_done[rows, last] * next_q[rows, last]

    def update(self, replay: ReplayBuffer, gen: torch.Generator, n: int) -> None:
        cfg = self.cfg
        obs, action, reward, next_obs, not_done, ended, valid = self.sample(replay, cfg.batch_size, gen, n)
        b = reward.shape[0]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            flat_next = next_obs.reshape(b * n, -1)
            next_action, next_log_prob = self.sample_action(flat_next, gen)
            next_q = self.q(self.target_w, self.target_b, flat_next, next_action).min(0).values.view(b, n)
            y = self.target(reward, not_done, ended, valid, -alpha * next_log_prob.view(b, n), next_q, cfg.discount)
        q = self.q(self.critic_w, self.critic_b, obs[:, 0], action[:, 0])
        loss_q = F.mse_loss(q[0], y) + F.mse_loss(q[1], y)
        self.critic_opt.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_opt.step()
        if self.updates % cfg.actor_update_frequency == 0:
            pi, log_prob = self.sample_action(obs[:, 0], gen)
            loss_pi = (alpha * log_prob - self.q(self.critic_w, self.critic_b, obs[:, 0], pi).min(0).values).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            loss_pi.backward(inputs=[*self.actor_w, *self.actor_b])
            self.actor_opt.step()
            alpha_loss = (self.log_alpha.exp() * (-log_prob - (-float(ACT))).detach()).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
        if self.updates % cfg.critic_target_update_frequency == 0:
            with torch.no_grad():
                for tp, p in zip([*self.target_w, *self.target_b], [*self.critic_w, *self.critic_b], strict=True):
                    tp.lerp_(p, cfg.tau)
        self.updates += 1


def filled_replay(capacity: int, seed: int) -> ReplayBuffer:
    g = torch.Generator().manual_seed(seed)
    replay = ReplayBuffer(capacity, OBS, ACT, torch.device("cpu"), action_means=True)
    for t in range(capacity):
        obs, nxt = torch.randn(OBS, generator=g), torch.randn(OBS, generator=g)
        action = torch.rand(ACT, generator=g) * 2 - 1
        done = float(t % 37 == 36)
        replay.add(obs, action, float(torch.randn(1, generator=g)), nxt, 1.0 - done * (t % 2), done)
    return replay


def random_masks(net, keep: float, gen: torch.Generator) -> list[torch.Tensor]:
    return [(torch.rand(w.shape, generator=gen) < keep).float() for w in net.weights]


@pytest.mark.parametrize(
    ("masked", "nstep", "hidden"),
    [(False, 1, [64, 64]), (True, 1, [64, 64]), (False, 3, [64, 64]), (True, 1, [32, 48, 40])],
    ids=["dense", "masked", "nstep3", "masked-3layer"],
)
def test_engine_update_is_bit_identical_to_the_reference(masked: bool, nstep: int, hidden: list[int]):
    torch.manual_seed(3)
    cfg = SparseSACConfig(hidden_sizes=hidden, batch_size=BATCH)
    agent = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11))
    masks: dict[str, list[torch.Tensor] | None] = {"actor": None, "critic": None}
    if masked:
        g = torch.Generator().manual_seed(5)
        masks = {"actor": random_masks(agent.actor.net, 0.3, g), "critic": random_masks(agent.critic.net, 0.3, g)}
        agent.set_masks(masks["actor"], masks["critic"])
    reference = ReferenceSAC(agent, copy.deepcopy(masks), cfg)
    replay = filled_replay(400, seed=7)
    ref_gen = torch.Generator().manual_seed(11)
    for _ in range(40):
        agent.update(replay.sample_windows(cfg.batch_size, agent.generator, nstep))
        reference.update(replay, ref_gen, nstep)

    pairs = [
        *zip(agent.actor.net.weights, reference.actor_w, strict=True),
        *zip(agent.actor.net.biases, reference.actor_b, strict=True),
        *zip(agent.critic.net.weights, reference.critic_w, strict=True),
        *zip(agent.critic.net.biases, reference.critic_b, strict=True),
        *zip(agent.target_critic.net.weights, reference.target_w, strict=True),
        *zip(agent.target_critic.net.biases, reference.target_b, strict=True),
        (agent.log_alpha, reference.log_alpha),
    ]
    for ours, ref in pairs:
        assert torch.equal(ours.detach(), ref.detach())
    for ours_opt, ref_opt in ((agent.opt_critic, reference.critic_opt), (agent.opt_actor, reference.actor_opt)):
        for ours_state, ref_state in zip(ours_opt.state.values(), ref_opt.state.values(), strict=True):
            assert torch.equal(ours_state["exp_avg"], ref_state["exp_avg"])
            assert torch.equal(ours_state["exp_avg_sq"], ref_state["exp_avg_sq"])
    assert torch.equal(agent.generator.get_state(), ref_gen.get_state())  # same random draws, in the same order


def test_the_reference_check_can_fail():
    """One ulp of difference in one weight is caught: the comparison above is exact, not approximate."""
    torch.manual_seed(3)
    cfg = SparseSACConfig(hidden_sizes=[64, 64], batch_size=BATCH)
    agent = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11))
    reference = ReferenceSAC(agent, {"actor": None, "critic": None}, cfg)
    with torch.no_grad():
        w = reference.critic_w[1]
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(math.inf))
    replay = filled_replay(400, seed=7)
    ref_gen = torch.Generator().manual_seed(11)
    for _ in range(5):
        agent.update(replay.sample_windows(cfg.batch_size, agent.generator, 1))
        reference.update(replay, ref_gen, 1)
    assert not torch.equal(agent.critic.net.weights[1].detach(), reference.critic_w[1].detach())


def test_continual_learner_foreach_adam_is_bit_identical_to_default_adam():
    """The continual suite's learner steps with multi-tensor (foreach) Adam; PyTorch's default loop gives the same bits."""
    from rlrepro.continual.config import SACConfig, learner_config
    from rlrepro.engine.config import NetworkConfig
    from rlrepro.engine.learner import SACLearner
    from rlrepro.engine.networks import GaussianActor, TwinCritic
    from rlrepro.engine.replay import Batch

    def learner(default_adam: bool) -> SACLearner:
        torch.manual_seed(0)
        net = NetworkConfig(hidden_sizes=(32, 32))
        actor, critic = GaussianActor(OBS, ACT, net), TwinCritic(OBS, ACT, net)
        out = SACLearner(actor, critic, learner_config(SACConfig(), ACT), torch.Generator().manual_seed(1))
        if default_adam:
            assert out.opt_critic.defaults["foreach"] is True
            for name in ("opt_actor", "opt_critic", "opt_alpha"):
                opt = getattr(out, name)
                setattr(out, name, torch.optim.Adam(opt.param_groups[0]["params"], lr=opt.defaults["lr"]))
        return out

    engine, reference = learner(False), learner(True)
    g = torch.Generator().manual_seed(2)
    for _ in range(25):
        obs, nxt = torch.randn(BATCH, OBS, generator=g), torch.randn(BATCH, OBS, generator=g)
        batch = Batch(obs, torch.rand(BATCH, ACT, generator=g) * 2 - 1, torch.randn(BATCH, generator=g),
                      (torch.rand(BATCH, generator=g) >= 0.05).float(), nxt)  # fmt: skip
        engine.update(batch)
        reference.update(batch)
    for ours, ref in zip([*engine.actor.parameters(), *engine.critic.parameters(), *engine.target_critic.parameters()],
                         [*reference.actor.parameters(), *reference.critic.parameters(),
                          *reference.target_critic.parameters()], strict=True):  # fmt: skip
        assert torch.equal(ours.detach(), ref.detach())
    assert torch.equal(engine.log_alpha.detach(), reference.log_alpha.detach())


# The reference above starts from the engine's own initial weights; this file pin also covers how the engine builds
# them (init order, RNG draws) and survives a change of layout (tests/test_continual_reference.py explains).
SPARSE_PIN = Path(__file__).parent / "snapshots" / "sparse_engine" / "end_state.pt"


@pytest.mark.parametrize("init", ["xavier_normal", "orthogonal"])
def test_sparse_engine_matches_its_pre_merge_end_state(init: str):
    torch.manual_seed(3)
    cfg = SparseSACConfig(hidden_sizes=[32, 32], batch_size=BATCH, init=init)
    agent = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(5)
    agent.set_masks(random_masks(agent.actor.net, 0.3, g), random_masks(agent.critic.net, 0.3, g))
    replay = filled_replay(400, seed=7)
    for k in range(40):
        agent.update(replay.sample_windows(cfg.batch_size, agent.generator, 1 if k < 20 else 3))
    ours = {
        "modules": {k: v.detach().clone() for k, v in agent.state_dict().items()},
        "critic_opt": [s[k] for s in agent.opt_critic.state.values() for k in sorted(s)],
        "actor_opt": [s[k] for s in agent.opt_actor.state.values() for k in sorted(s)],
        "generator": agent.generator.get_state(),
    }
    path = SPARSE_PIN.with_name(f"end_state-{init}.pt")
    if os.environ.get("RLREPRO_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ours, path)
    stored = torch.load(path, weights_only=True)
    # pre-merge name of the target critic (the sparse agent's own attribute); tensors and layout are unchanged
    stored["modules"] = {k.replace("critic_target.", "target_critic.", 1): v for k, v in stored["modules"].items()}
    assert sorted(ours["modules"]) == sorted(stored["modules"])
    assert all(torch.equal(ours["modules"][k], stored["modules"][k]) for k in ours["modules"])
    for part in ("critic_opt", "actor_opt"):
        assert len(ours[part]) == len(stored[part])
        assert all(torch.equal(a, b) for a, b in zip(ours[part], stored[part], strict=True))
    assert torch.equal(ours["generator"], stored["generator"])
