"""SAC losses and one update step, faithful to rewire.md §2.2 (the original Rewire/SaLinA SAC)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rlrepro.sac.config import SACConfig
from rlrepro.sac.networks import GaussianActor, TwinCritic
from rlrepro.sac.replay import Batch


def critic_loss(
    critic: TwinCritic,
    target_critic: TwinCritic,
    actor: GaussianActor,
    batch: Batch,
    alpha: torch.Tensor,
    cfg: SACConfig,
    generator: torch.Generator | None = None,
    batch_mean_entropy: bool = True,
) -> torch.Tensor:
    """MSE(Q1, y) + MSE(Q2, y), y = r·scale + γ(1−d)(min Q̄(s', a') − α·H), a' ~ π(·|s').

    H is the batch mean of log π(a'|s') with `batch_mean_entropy` (faithful, fidelity audit D1): the original's
    log-probs are [T, B, 1] against [T, B] Q-values, so its target broadcasts to [B, B] and the squared error is
    averaged over all pairs, whose gradient is that of this target. Otherwise H is each sample's own log π(a'|s').
    """
    with torch.no_grad():
        next_action, next_logp = actor.sample(batch.next_obs, generator)
        tq1, tq2 = target_critic(batch.next_obs, next_action)
        entropy = next_logp.mean() if batch_mean_entropy else next_logp
        soft_value = torch.min(tq1, tq2) - alpha * entropy
        target = batch.reward * cfg.reward_scaling + cfg.discount * (1.0 - batch.done) * soft_value
    q1, q2 = critic(batch.obs, batch.action)
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def actor_loss(
    critic: TwinCritic,
    actor: GaussianActor,
    obs: torch.Tensor,
    alpha: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """−mean(min Q(s, ã)) + mean(α·log π(ã|s)); returns the loss and the log-probs (for the α step)."""
    action, logp = actor.sample(obs, generator)
    q1, q2 = critic(obs, action)
    return -torch.min(q1, q2).mean() + (alpha.detach() * logp).mean(), logp


def entropy_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """−mean(α·(log π + H̄)), with α = exp(log α) as in the original (not log α)."""
    return -(log_alpha.exp() * (logp + target_entropy).detach()).mean()


def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, tau)


@dataclass
class UpdateStats:
    """Detached tensors: reading them as floats is left to the (infrequent) logger, to avoid host syncs."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor | None
    alpha: torch.Tensor


class SACLearner:
    """Optimisers, α and target critic for one task; the actor and critic modules are owned by the method."""

    def __init__(
        self,
        actor: GaussianActor,
        actor_parameters: Iterable[nn.Parameter],
        critic: TwinCritic,
        cfg: SACConfig,
        action_dim: int,
        generator: torch.Generator,
        target_update_in_policy_branch: bool = False,
        actor_grad_hook: Callable[[], None] | None = None,
        batch_mean_entropy: bool = True,
    ) -> None:
        self.actor = actor
        self.critic = critic
        self.cfg = cfg
        self.generator = generator
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        device = next(critic.parameters()).device
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=device, requires_grad=True)
        self.target_entropy = -cfg.target_multiplier * action_dim
        self.actor_parameters = list(actor_parameters)
        # foreach: one multi-tensor kernel per Adam op instead of a loop over tensors; bit-identical results.
        self.opt_actor = torch.optim.Adam(self.actor_parameters, lr=cfg.lr_policy, foreach=True)
        self.opt_critic = torch.optim.Adam(critic.parameters(), lr=cfg.lr_q, foreach=True)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr_entropy, foreach=True)
        self.iteration = 0
        # PackNet's fine-tune in the original nests the target update inside the policy-update branch.
        self.target_update_in_policy_branch = target_update_in_policy_branch
        self.actor_grad_hook = actor_grad_hook
        self.batch_mean_entropy = batch_mean_entropy

    def _step(
        self, opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], hook: Callable | None = None
    ) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if hook is not None:
            hook()
        if self.cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        opt.step()

    def update(self, batch: Batch, extra_loss: Callable[[], torch.Tensor | None] | None = None) -> UpdateStats:
        """One gradient step: critic; then policy and α every policy_update_delay; then the target update."""
        cfg = self.cfg
        alpha = self.log_alpha.detach().exp()
        q_loss = critic_loss(
            self.critic, self.target_critic, self.actor, batch, alpha, cfg, self.generator, self.batch_mean_entropy
        )
        self._step(self.opt_critic, q_loss, list(self.critic.parameters()))
        pi_value = None
        if self.iteration % cfg.policy_update_delay == 0:
            # The policy loss covers both steps of every window (2·batch states), as the original does.
            obs = batch.policy_obs if batch.policy_obs is not None else torch.cat([batch.obs, batch.next_obs], dim=0)
            self.critic.requires_grad_(False)
            pi_loss, logp = actor_loss(self.critic, self.actor, obs, alpha, self.generator)
            if extra_loss is not None:
                extra = extra_loss()
                if extra is not None:
                    pi_loss = pi_loss + extra
            self._step(self.opt_actor, pi_loss, self.actor_parameters, self.actor_grad_hook)
            self.critic.requires_grad_(True)
            self._step(self.opt_alpha, entropy_loss(self.log_alpha, logp, self.target_entropy), [self.log_alpha])
            pi_value = pi_loss.detach()
        policy_step = self.iteration % cfg.policy_update_delay == 0
        if self.iteration % cfg.target_update_delay == 0 and (policy_step or not self.target_update_in_policy_branch):
            polyak(self.target_critic, self.critic, cfg.tau)
        self.iteration += 1
        return UpdateStats(q_loss.detach(), pi_value, alpha)
