"""pytorch_sac-style SAC with maskable networks (dapd.md §4), the learner of every sparse-suite method.

One update per env step: critic every step, actor and α every `actor_update_frequency` steps, a Polyak target
update every `critic_target_update_frequency` steps. The target critic uses the critic's masks.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.masks import DSTScheduler
from rlrepro.sparse.networks import FusedTwinCritic, MaskedMLPStack, SquashedGaussianActor, forward_flops
from rlrepro.sparse.replay import Window, nstep_soft_target


class SparseSAC(nn.Module):
    def __init__(
        self, obs_dim: int, action_dim: int, cfg: SparseSACConfig, device: torch.device, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.cfg, self.device, self.generator = cfg, device, generator
        self.action_dim = action_dim
        bounds = (cfg.log_std_min, cfg.log_std_max)
        self.actor = SquashedGaussianActor(obs_dim, action_dim, cfg.hidden_sizes, bounds, cfg.init)
        self.critic = FusedTwinCritic(obs_dim, action_dim, cfg.hidden_sizes, cfg.init)
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature)))
        self.target_entropy = -float(action_dim)
        self.to(device)
        betas = tuple(cfg.adam_betas)
        # foreach: one multi-tensor kernel per Adam op instead of a Python loop over tensors (bit-identical).
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, betas=betas, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr, betas=betas, foreach=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr, betas=betas, foreach=True)
        self.actor_dst: DSTScheduler | None = None
        self.critic_dst: DSTScheduler | None = None
        self.zero_pruned = False
        self.critic_grow_includes_actor_grad = False
        self._critic_grads_from_actor: list[torch.Tensor] | None = None
        self.updates = 0
        self.train_flops = 0.0
        self.last_losses: dict[str, torch.Tensor] = {}

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    # --- topology -----------------------------------------------------------------------------------------
    def set_masks(self, actor_masks: list[torch.Tensor] | None, critic_masks: list[torch.Tensor] | None) -> None:
        """Install masks on actor, critic and (the critic's) on the target critic; raw weights are kept."""
        self.actor.net.set_masks(actor_masks)
        self.critic.net.set_masks(critic_masks)
        self.critic_target.net.set_masks(critic_masks)

    def enable_dst(self, actor_sparsity: float, critic_sparsity: float, *, delta: int, zeta: float, t_end: int,
                   random_grow: bool, critic_grow_includes_actor_grad: bool = True) -> None:  # fmt: skip
        """RiGL/RLx2: ERK magnitude masks now, pruned weights zeroed, topology updates during `update`. With
        `critic_grow_includes_actor_grad` the critic's grow score adds the actor loss's gradient of the step before
        (RLx2's backward hooks see it, fidelity audit R1)."""
        self.critic_grow_includes_actor_grad = critic_grow_includes_actor_grad
        actor_t_end = t_end // self.cfg.actor_update_frequency
        self.actor_dst = DSTScheduler(self.actor.net, actor_sparsity, delta, zeta, actor_t_end, random_grow)
        self.critic_dst = DSTScheduler(self.critic.net, critic_sparsity, delta, zeta, t_end, random_grow)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.net.set_masks(self.critic.net.masks)
        self.zero_pruned = True

    # --- acting ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, mean action) for one observation [obs_dim]."""
        mean = self.actor.mean_action(obs[None])[0]
        if deterministic:
            return mean, mean
        return self.actor.sample(obs[None], self.generator)[0][0], mean

    # --- learning -------------------------------------------------------------------------------------------
    def update(self, batch: Window) -> None:
        """One SAC update on a [B, n] window batch (n > 1: RLx2's multi-step target)."""
        cfg = self.cfg
        b, n = batch.reward.shape
        alpha = self.log_alpha.detach().exp()
        self._want_dense(self.critic_dst, self.critic.net)
        loss_q = critic_loss(self.actor, self.critic, self.critic_target, batch, alpha, cfg.discount, self.generator)
        self.critic_opt.zero_grad(set_to_none=True)
        loss_q.backward()
        extra, self._critic_grads_from_actor = self._critic_grads_from_actor, None
        self._step(self.critic_opt, self.critic_dst, self.critic.net, extra)
        flops_a, flops_c = forward_flops(self.actor.net), forward_flops(self.critic.net)  # cached counts, no sync
        flops = n * (flops_a + flops_c) + 3 * flops_c
        if self.updates % cfg.actor_update_frequency == 0:
            self._want_dense(self.actor_dst, self.actor.net)
            # The next critic step is a topology update: keep this actor loss's gradient at the critic's weights.
            keep_critic = self.critic_grow_includes_actor_grad and self.critic_dst is not None
            self.critic.net.dense_grads = [] if keep_critic and self.critic_dst.wants_dense_grad() else None
            loss_pi, log_prob = actor_loss(self.actor, self.critic, batch.obs[:, 0], alpha, self.generator)
            critic_ws, self.critic.net.dense_grads = self.critic.net.dense_grads or [], None
            self.actor_opt.zero_grad(set_to_none=True)
            loss_pi.backward(inputs=[*self.actor.parameters(), *critic_ws])
            if critic_ws:
                self._critic_grads_from_actor = [w.grad for w in critic_ws]
            self._step(self.actor_opt, self.actor_dst, self.actor.net)
            alpha_loss = (self.alpha * (-log_prob - self.target_entropy).detach()).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            self.last_losses = {"critic_loss": loss_q.detach(), "actor_loss": loss_pi.detach(),
                                "entropy": -log_prob.detach().mean()}  # fmt: skip
            flops += 3 * flops_a + 3 * flops_c
        if self.updates % cfg.critic_target_update_frequency == 0:
            self._soft_update()
        self.train_flops += float(flops * b)
        self.updates += 1

    @staticmethod
    def _want_dense(dst: DSTScheduler | None, net: MaskedMLPStack) -> None:
        net.dense_grads = [] if dst is not None and dst.wants_dense_grad() else None

    def _step(
        self, opt: torch.optim.Optimizer, dst: DSTScheduler | None, net: MaskedMLPStack,
        extra_grads: list[torch.Tensor] | None = None,
    ) -> None:  # fmt: skip
        dense = net.dense_grads
        net.dense_grads = None
        if dst is None:
            opt.step()
            return
        grads = [w.grad for w in dense] if dense else None
        if grads is not None and extra_grads is not None:
            grads = [g + e for g, e in zip(grads, extra_grads, strict=True)]
        if dst(grads, self.generator):
            opt.step()
        if grads is not None:
            self.train_flops += 2.0 * forward_flops(net, dense=True) * self.cfg.batch_size  # the dense backward
        net.zero_pruned_weights()

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.cfg.tau
        for p, tp in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
            tp.lerp_(p, tau)
        if self.zero_pruned:
            self.critic_target.net.zero_pruned_weights()

    # --- checkpoints ----------------------------------------------------------------------------------------
    def masks_state(self) -> dict:
        return {"actor": self.actor.net.masks, "critic": self.critic.net.masks}

    def full_state(self) -> dict:
        return {
            "modules": self.state_dict(),
            "masks": self.masks_state(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "actor_dst": self.actor_dst.state_dict() if self.actor_dst else None,
            "critic_dst": self.critic_dst.state_dict() if self.critic_dst else None,
            "updates": self.updates,
            "train_flops": self.train_flops,
            "critic_grads_from_actor": self._critic_grads_from_actor,
        }

    def load_full_state(self, state: dict) -> None:
        self.load_state_dict(state["modules"])
        masks = state["masks"]
        self.actor.net.set_masks(masks["actor"] if any(m is not None for m in masks["actor"]) else None)
        critic = masks["critic"] if any(m is not None for m in masks["critic"]) else None
        self.critic.net.set_masks(critic)
        self.critic_target.net.set_masks(critic)
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        if self.actor_dst is not None:
            self.actor_dst.load_state_dict(state["actor_dst"])
            self.critic_dst.load_state_dict(state["critic_dst"])
        self.updates, self.train_flops = state["updates"], state["train_flops"]
        self._critic_grads_from_actor = state.get("critic_grads_from_actor")


def critic_loss(actor: SquashedGaussianActor, critic: FusedTwinCritic, critic_target: FusedTwinCritic, batch: Window,
                alpha: torch.Tensor, discount: float, generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """MSE(Q1, y) + MSE(Q2, y) with the (n-step) soft target y, detached."""
    b, n = batch.reward.shape
    with torch.no_grad():
        next_obs = batch.next_obs.reshape(b * n, -1)
        next_action, next_log_prob = actor.sample(next_obs, generator)
        next_q = critic_target(next_obs, next_action).min(0).values.view(b, n)
        target = nstep_soft_target(
            batch.reward, batch.not_done, batch.ended, batch.valid, -alpha * next_log_prob.view(b, n), next_q, discount
        )
    q = critic(batch.obs[:, 0], batch.action[:, 0])
    return (q - target).pow(2).mean(1).sum()  # = MSE(Q1, y) + MSE(Q2, y), bit for bit, in fewer ops


def actor_loss(actor: SquashedGaussianActor, critic: FusedTwinCritic, obs: torch.Tensor, alpha: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """mean(α log π(a|s) − min(Q1, Q2)(s, a)) with a reparameterised, and log π (for the α loss)."""
    action, log_prob = actor.sample(obs, generator)
    return (alpha * log_prob - critic(obs, action).min(0).values).mean(), log_prob


def snip_scores(agent: SparseSAC, batch: Window, *, fixed_alpha: float | None, critic_includes_actor_loss: bool
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:  # fmt: skip
    """DAPD's connection sensitivities |W ⊙ ∂L/∂W| on a dense copy of the raw weights (dapd.md §2.2 steps 1–5).

    The copy's α is `fixed_alpha` (the original never copies log α, so it scores at α = init_temperature) or the
    agent's current α. Critic scores include the actor loss's gradient when `critic_includes_actor_loss` (the
    original's accumulated backward), else only the critic loss's.
    """
    actor, critic, target = (copy.deepcopy(m) for m in (agent.actor, agent.critic, agent.critic_target))
    for net in (actor.net, critic.net, target.net):
        net.set_masks(None)
    alpha = torch.tensor(fixed_alpha, device=agent.device) if fixed_alpha is not None else agent.alpha.detach()
    actor_w, critic_w = list(actor.net.weights), list(critic.net.weights)
    loss_q = critic_loss(actor, critic, target, batch, alpha, agent.cfg.discount, agent.generator)
    critic_grads = torch.autograd.grad(loss_q, critic_w)
    loss_pi, _ = actor_loss(actor, critic, batch.obs[:, 0], alpha, agent.generator)
    pi_grads = torch.autograd.grad(loss_pi, actor_w + critic_w)
    actor_grads = pi_grads[: len(actor_w)]
    if critic_includes_actor_loss:
        critic_grads = [g + h for g, h in zip(critic_grads, pi_grads[len(actor_w) :], strict=True)]
    actor_scores = [(w * g).abs().detach() for w, g in zip(actor_w, actor_grads, strict=True)]
    critic_scores = [(w * g).abs().detach() for w, g in zip(critic_w, critic_grads, strict=True)]
    return actor_scores, critic_scores
