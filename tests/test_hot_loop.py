"""No host syncs in the learners' update: nothing reads a tensor's value back to Python except Adam's step counters.

On a GPU every `.item()`, `bool(t)` or `float(t)` of a device tensor blocks until the device catches up. PyTorch's
Adam (capturable=False) keeps its step counters on the CPU, so reading those is free; anything else read back in
an update would stall a GPU run once per update. The check intercepts the one aten op behind every such read
(`_local_scalar_dense`) and attributes it to the tensor it reads.
"""

from __future__ import annotations

import torch
from test_bitwise import ACT, OBS, filled_replay, random_masks
from torch.utils._python_dispatch import TorchDispatchMode

from rlrepro.sac.config import NetworkConfig, SACConfig
from rlrepro.sac.learner import SACLearner
from rlrepro.sac.networks import GaussianActor, TwinCritic
from rlrepro.sac.replay import Batch
from rlrepro.sparse.agent import SparseSAC
from rlrepro.sparse.config import SparseSACConfig


class ScalarReads(TorchDispatchMode):
    """Records every tensor whose value is read back to Python while active."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.read.append(args[0])
        return func(*args, **(kwargs or {}))


def step_counters(*optimizers: torch.optim.Optimizer) -> set[int]:
    return {id(state["step"]) for opt in optimizers for state in opt.state.values()}


def test_sparse_sac_update_reads_back_only_adam_step_counters():
    torch.manual_seed(0)
    agent = SparseSAC(OBS, ACT, SparseSACConfig(hidden_sizes=[32, 32], batch_size=32), torch.device("cpu"),
                      torch.Generator().manual_seed(0))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    agent.set_masks(random_masks(agent.actor.net, 0.5, g), random_masks(agent.critic.net, 0.5, g))
    replay = filled_replay(200, seed=2)
    for _ in range(2):  # Adam's state exists from here on
        agent.update(replay.sample(32, agent.generator, 1))
    allowed = step_counters(agent.actor_opt, agent.critic_opt, agent.alpha_opt)
    with ScalarReads() as mode:
        for n in (1, 1, 3):
            agent.update(replay.sample(32, agent.generator, n))
    assert mode.read, "the interception saw no reads at all: Adam's own counter reads should appear"
    assert all(id(t) in allowed for t in mode.read)


def test_sparse_sac_check_catches_a_read_back():
    """The same check fails when an update reads a loss back (what a per-update log line would do)."""
    torch.manual_seed(0)
    agent = SparseSAC(OBS, ACT, SparseSACConfig(hidden_sizes=[32, 32], batch_size=32), torch.device("cpu"),
                      torch.Generator().manual_seed(0))  # fmt: skip
    replay = filled_replay(200, seed=2)
    agent.update(replay.sample(32, agent.generator, 1))
    allowed = step_counters(agent.actor_opt, agent.critic_opt, agent.alpha_opt)
    with ScalarReads() as mode:
        agent.update(replay.sample(32, agent.generator, 1))
        float(agent.last_losses["critic_loss"])
    assert not all(id(t) in allowed for t in mode.read)


def test_continual_learner_update_reads_back_only_adam_step_counters():
    torch.manual_seed(0)
    net = NetworkConfig(hidden_sizes=(32, 32))
    actor, critic = GaussianActor(OBS, ACT, net), TwinCritic(OBS, ACT, net)
    learner = SACLearner(actor, actor.parameters(), critic, SACConfig(), ACT, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)

    def batch() -> Batch:
        return Batch(torch.randn(32, OBS, generator=g), torch.rand(32, ACT, generator=g) * 2 - 1,
                     torch.randn(32, generator=g), torch.zeros(32), torch.randn(32, OBS, generator=g))  # fmt: skip

    for _ in range(2):
        learner.update(batch())
    allowed = step_counters(learner.opt_actor, learner.opt_critic, learner.opt_alpha)
    with ScalarReads() as mode:
        for _ in range(3):
            learner.update(batch())
    assert all(id(t) in allowed for t in mode.read)
