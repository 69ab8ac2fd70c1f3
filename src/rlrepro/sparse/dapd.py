"""DAPD's connection scores (dapd.md §2.2): SNIP-style sensitivities of both SAC losses on a dense copy."""

from __future__ import annotations

import copy

import torch

from rlrepro.engine.learner import SACLearner, actor_loss, critic_loss
from rlrepro.engine.replay import Batch


def snip_scores(learner: SACLearner, batch: Batch, *, fixed_alpha: float | None, critic_includes_actor_loss: bool
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:  # fmt: skip
    """|W ⊙ ∂L/∂W| on a dense copy of the raw weights (dapd.md §2.2 steps 1–5).

    The copy's α is `fixed_alpha` (the original never copies log α, so it scores at α = init_temperature) or the
    learner's current α. Critic scores include the actor loss's gradient when `critic_includes_actor_loss` (the
    original's accumulated backward), else only the critic loss's.
    """
    actor, critic, target = (copy.deepcopy(m) for m in (learner.actor, learner.critic, learner.target_critic))
    for net in (actor.net, critic.net, target.net):
        net.set_masks(None)
    device = learner.log_alpha.device
    alpha = torch.tensor(fixed_alpha, device=device) if fixed_alpha is not None else learner.alpha.detach()
    actor_w, critic_w = list(actor.net.weights), list(critic.net.weights)
    cfg = learner.cfg
    loss_q = critic_loss(actor, critic, target, batch, alpha, cfg, learner.generator)
    critic_grads = torch.autograd.grad(loss_q, critic_w)
    loss_pi, _ = actor_loss(actor, critic, batch.obs[:, 0], alpha, cfg, learner.generator)
    pi_grads = torch.autograd.grad(loss_pi, actor_w + critic_w)
    actor_grads = pi_grads[: len(actor_w)]
    if critic_includes_actor_loss:
        critic_grads = [g + h for g, h in zip(critic_grads, pi_grads[len(actor_w) :], strict=True)]
    actor_scores = [(w * g).abs().detach() for w, g in zip(actor_w, actor_grads, strict=True)]
    critic_scores = [(w * g).abs().detach() for w, g in zip(critic_w, critic_grads, strict=True)]
    return actor_scores, critic_scores
