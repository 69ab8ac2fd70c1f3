"""The one SAC learner of both papers; its flavour is a `LearnerConfig` (rlrepro.engine.config).

Rewire/SaLinA flavour (`rlrepro.continual.config.learner_config`): flat batches of replay windows, the policy loss
over both steps of every window, α's target entropy −2·|A|, the TD target with the batch-mean entropy (fidelity audit
D1), separate learning rates, the method's own hooks (extra loss, gradient masks, PackNet's fine-tune target rule).
DAPD/pytorch_sac flavour (`rlrepro.sparse.config.learner_config`): [B, n] windows with the n-step target (n = 1 is
plain SAC), the policy loss on the batch's states, masks and RiGL/RLx2 topology updates on the networks.

One update: the critic step; every `policy_delay` updates the actor step and the α step; every `target_delay`
updates the Polyak target step. α is learned through log α, α = exp(log α) in every loss. Nothing here reads a value
back to the host: the returned statistics are tensors, read by the (infrequent) loggers.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from rlrepro.engine.compiled_check import CompiledCheck
from rlrepro.engine.config import LearnerConfig
from rlrepro.engine.networks import GaussianActor, MLPStack, TwinCritic, forward_flops
from rlrepro.engine.replay import Batch, nstep_soft_target
from rlrepro.engine.update import AdamState, PolicyObjective, UpdateFunction, compile_update, parameter_names, sac_update

log = logging.getLogger("rlrepro")


class Topology(Protocol):
    """A network's dynamic sparse training schedule (RiGL/RLx2: rlrepro.sparse.masks.DSTScheduler)."""

    def wants_dense_grad(self, ahead: int = 0) -> bool: ...
    def __call__(self, dense_grads: list[torch.Tensor] | None, generator: torch.Generator) -> bool: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def min_q(q: torch.Tensor, cfg: LearnerConfig) -> torch.Tensor:
    """min(Q1, Q2) of a [2, ...] twin output. Equal values, different gradients on exact ties (Q1 == Q2 in float32:
    first seen at update 3,752 of a real ft_1 run, and every later bit moves with it): SaLinA's
    `torch.min(q1, q2)` splits the gradient between both (the pre-merge continual engine did the same); the
    pre-merge sparse engine's reduction `min(0)` gives all of it to Q1 (pytorch_sac's own `torch.min` splits it:
    a difference left for the next sparse engine version, README "Known deviations")."""
    return torch.minimum(q[0], q[1]) if cfg.arithmetic == "salina" else q.min(0).values


def td_target(actor: GaussianActor, target_critic: TwinCritic, batch: Batch, alpha: torch.Tensor, cfg: LearnerConfig,
              generator: torch.Generator | None, noise: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(states, actions, soft TD target y) of the critic step, without gradient: flat batches under SaLinA's
    arithmetic, [B, n] windows with the n-step target under pytorch_sac's. `noise`: the next actions' Gaussian
    noise when drawn by the caller (`next_action_rows` rows)."""
    with torch.no_grad():
        if cfg.arithmetic == "salina":
            obs, action = batch.obs, batch.action
            next_action, next_logp = actor.sample(batch.next_obs, generator, noise)
            next_q = min_q(target_critic(batch.next_obs, next_action), cfg)
            entropy = next_logp.mean() if cfg.entropy_target == "batch_mean" else next_logp
            y = batch.reward * cfg.reward_scaling + cfg.discount * batch.not_done * (next_q - alpha * entropy)
        else:
            b, n = batch.reward.shape
            obs, action = batch.obs[:, 0], batch.action[:, 0]
            next_obs = batch.next_obs.reshape(b * n, -1)
            next_action, next_logp = actor.sample(next_obs, generator, noise)
            next_q = min_q(target_critic(next_obs, next_action), cfg).view(b, n)
            if cfg.entropy_target == "batch_mean":
                next_logp = next_logp.mean().expand(b * n)
            reward = batch.reward if cfg.reward_scaling == 1 else batch.reward * cfg.reward_scaling
            y = nstep_soft_target(reward, batch.not_done, batch.ended, batch.valid, -alpha * next_logp.view(b, n),
                                  next_q, cfg.discount)  # fmt: skip
    return obs, action, y


def next_action_rows(batch: Batch) -> int:
    """Rows of the TD target's next-action sample (the noise the critic step draws)."""
    return batch.next_obs.shape[0] if batch.next_obs.dim() == 2 else batch.next_obs.shape[0] * batch.next_obs.shape[1]


def critic_loss(actor: GaussianActor, critic: TwinCritic, target_critic: TwinCritic, batch: Batch,
                alpha: torch.Tensor, cfg: LearnerConfig, generator: torch.Generator | None,
                noise: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """MSE(Q1, y) + MSE(Q2, y) with the soft TD target y (`td_target`, detached)."""
    obs, action, y = td_target(actor, target_critic, batch, alpha, cfg, generator, noise)
    q = critic(obs, action)
    return (q - y).pow(2).mean(1).sum()  # = MSE(Q1, y) + MSE(Q2, y), bit for bit, in fewer ops


def actor_loss(actor: GaussianActor, critic: TwinCritic, obs: torch.Tensor, alpha: torch.Tensor, cfg: LearnerConfig,
               generator: torch.Generator | None, noise: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """mean(α·log π(ã|s)) − mean(min Q(s, ã)) with ã reparameterised; also returns log π (for the α step)."""
    action, logp = actor.sample(obs, generator, noise)
    # Each original's order of operations: it fixes the order in which autograd sums the gradients reaching a shared
    # node, hence the last bits.
    if cfg.arithmetic == "salina":
        return -min_q(critic(obs, action), cfg).mean() + (alpha * logp).mean(), logp
    entropy_term = alpha * logp
    return (entropy_term - min_q(critic(obs, action), cfg)).mean(), logp


def entropy_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """−mean(α·(log π + H̄)) with α = exp(log α) (the gradient flows through α, not log α, as in both originals)."""
    return -(log_alpha.exp() * (logp + target_entropy).detach()).mean()


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)


def policy_states(batch: Batch, cfg: LearnerConfig) -> torch.Tensor:
    """The states the policy loss averages over."""
    if batch.policy_obs is not None:
        return batch.policy_obs
    if cfg.policy_states == "window":  # both steps of every window (2·batch states), as SaLinA's SAC does
        return torch.cat([batch.obs, batch.next_obs], dim=0)
    return batch.obs[:, 0] if batch.obs.dim() == 3 else batch.obs


@dataclass
class UpdateStats:
    """Detached tensors: reading them as floats is left to the (infrequent) logger, to avoid host syncs."""

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor | None
    alpha: torch.Tensor
    entropy: torch.Tensor | None = None


class SACLearner(nn.Module):
    """Optimisers, α and the target critic around an actor and a critic owned by the caller.

    `actor_parameters` (default: the actor's) are what the policy step optimises (a continual method may train part
    of its actor). `actor_grad_masks` returns (parameter, 0/1 mask) pairs multiplied into the policy step's
    gradients before its optimizer step (PackNet freezes owned weights there). Masked networks (`set_masks`) and
    topology schedules (`actor_topology`, `critic_topology`) serve the sparse suite; `count_flops` accumulates its
    training FLOPs.

    Every update runs `rlrepro.engine.update.sac_update`, one function of tensors, compiled whole when `compile` is
    set (the job spec's `engine.compile`), except the rare updates a topology schedule must see dense gradients in
    (RiGL/RLx2's topology steps, every ΔT updates), which take the stateful route below with the same arithmetic.
    `compiled_check` (the job's, when it asks for one) runs some compiled updates a second time, eagerly, and compares
    (rlrepro.engine.compiled_check).
    """

    def __init__(
        self,
        actor: GaussianActor,
        critic: TwinCritic,
        cfg: LearnerConfig,
        generator: torch.Generator,
        *,
        actor_parameters: Iterable[nn.Parameter] | None = None,
        actor_grad_masks: Callable[[], list[tuple[nn.Parameter, torch.Tensor]]] | None = None,
        count_flops: bool = False,
        compile: bool = False,
        compiled_check: CompiledCheck | None = None,
    ) -> None:
        super().__init__()
        self.actor, self.critic, self.cfg, self.generator = actor, critic, cfg, generator
        self.target_critic = copy.deepcopy(critic).requires_grad_(False)
        device = next(critic.parameters()).device
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_temperature), device=device))
        self.actor_parameters = list(actor.parameters() if actor_parameters is None else actor_parameters)
        betas = tuple(cfg.adam_betas)
        # foreach: one multi-tensor kernel per Adam op instead of a loop over tensors; bit-identical results.
        self.opt_actor = torch.optim.Adam(self.actor_parameters, lr=cfg.lr_actor, betas=betas, foreach=True)
        self.opt_critic = torch.optim.Adam(critic.parameters(), lr=cfg.lr_critic, betas=betas, foreach=True)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr_alpha, betas=betas, foreach=True)
        self.actor_grad_masks = actor_grad_masks
        self.compile = compile
        self.compiled_check = compiled_check if compile else None
        """The job's check of its compiled updates against the eager one (config.yaml's `compiled_check_every`)."""
        self.compile_s = 0.0
        """Seconds spent compiling the update (the first call of each graph)."""
        self._traced: set[tuple[bool, bool, tuple[int, ...]]] = set()
        self._update_fn: UpdateFunction | None = None
        self.actor_topology: Topology | None = None
        self.critic_topology: Topology | None = None
        self.zero_pruned = False
        """Keep masked weights at zero after every step (RiGL/RLx2; DAPD keeps their raw values)."""
        self.critic_grow_includes_actor_grad = False
        self._critic_grads_from_actor: list[torch.Tensor] | None = None
        self.count_flops = count_flops
        self.train_flops = 0.0
        self.updates = 0
        self._batch_rows = 0
        self.last_stats: UpdateStats | None = None
        self.last_policy_stats: UpdateStats | None = None
        """The statistics of the latest update that stepped the actor (its losses are all set)."""

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    # --- masks --------------------------------------------------------------------------------------------------
    def set_masks(self, actor_masks: list[torch.Tensor] | None, critic_masks: list[torch.Tensor] | None) -> None:
        """Install masks on actor, critic and (the critic's) on the target critic; raw weights are kept."""
        self.actor.net.set_masks(actor_masks)
        self.critic.net.set_masks(critic_masks)
        self.target_critic.net.set_masks(critic_masks)

    def masks_state(self) -> dict[str, list[torch.Tensor | None] | None]:
        """Each network's masks; None for a continual method's actor view, whose `net` is not an `MLPStack`."""
        return {name: getattr(m.net, "masks", None) for name, m in (("actor", self.actor), ("critic", self.critic))}

    # --- acting -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, mean action) for one observation [obs_dim]."""
        mean = self.actor.deterministic(obs[None])[0]
        if deterministic:
            return mean, mean
        return self.actor.sample(obs[None], self.generator)[0][0], mean

    # --- learning -----------------------------------------------------------------------------------------------
    def update(self, batch: Batch, extra_loss: Callable[[], torch.Tensor | None] | None = None) -> UpdateStats:
        """One gradient step: critic; then actor and α every policy_delay; then the target every target_delay."""
        cfg = self.cfg
        policy_step = self.updates % cfg.policy_delay == 0
        target_step = self.updates % cfg.target_delay == 0 and (policy_step or not cfg.target_update_in_policy_branch)
        if self._topology_step(policy_step):
            return self._stateful_update(batch, extra_loss)
        self._batch_rows = batch.reward.shape[0]
        fn = self._function(extra_loss)
        # the noise of both samples, from the job's generator in the stateful update's order (critic's, then policy's)
        action_dim = self.actor.action_dim
        noise_next = torch.randn(next_action_rows(batch), action_dim, generator=self.generator, device=batch.obs.device)
        policy_obs = noise_pi = None
        if policy_step:
            policy_obs = policy_states(batch, cfg)
            noise_pi = torch.randn(policy_obs.shape[0], action_dim, generator=self.generator, device=batch.obs.device)
        masks = None
        if self.actor_grad_masks is not None:
            by_param = dict(self.actor_grad_masks())
            masks = [by_param.get(p) for p in fn.actor_params]
        # the optimisers' state tensors, taken afresh: loading a checkpoint into an optimiser replaces them
        adam = [AdamState.of(opt, self.compile) for opt in (self.opt_critic, self.opt_actor, self.opt_alpha)]
        graph = (policy_step, target_step, tuple(batch.reward.shape))
        first_call = fn.compiled is not None and graph not in self._traced
        start = time.perf_counter() if first_call else 0.0
        args = (self.log_alpha, *adam, batch, noise_next, noise_pi, policy_obs, masks, policy_step, target_step)
        check = self.compiled_check
        if check is not None and fn.compiled is not None and check.due(first_call):
            out = check.run(lambda: fn(*args), lambda: sac_update(fn, *args), self._written(fn, adam), self.generator,
                            self.log_alpha.device)  # fmt: skip
        else:
            out = fn(*args)
        q_loss, pi_value, alpha, entropy = out
        if first_call:  # the compile is paid here, once per graph (the job's log says how long it took)
            self._traced.add(graph)
            self.compile_s += time.perf_counter() - start
            log.info("compiled the SAC update (policy step %s, target step %s): %.1f s, %.1f s in all",
                     policy_step, target_step, time.perf_counter() - start, self.compile_s)  # fmt: skip
        for topology in (self.critic_topology, self.actor_topology if policy_step else None):
            if topology is not None:
                topology(None, self.generator)  # counts the step (not a topology step: no draw, no dense gradient)
        if self.count_flops:
            self._count_update_flops(batch, policy_step)
        return self._finish(UpdateStats(q_loss, pi_value, alpha, entropy), policy_step)

    def _written(self, fn: UpdateFunction, adam: list[AdamState]) -> list[tuple[str, str, torch.Tensor]]:
        """Every tensor `sac_update` writes, as (part, name, tensor): the critic's and the actor's parameters, Adam
        moments and step counts, one part each; log α with its moments; the target critic."""
        groups = (("critic", fn.critic_names), ("actor", fn.actor_names), ("log_alpha", ["log_alpha"]))
        out: list[tuple[str, str, torch.Tensor]] = []
        for (part, names), opt in zip(groups, adam, strict=True):
            # log α's moments are one scalar each, whose own steps can vanish by chance: they share log α's part
            first, second = (part, part) if part == "log_alpha" else (f"{part} exp_avg", f"{part} exp_avg_sq")
            for i, name in enumerate(names):
                out += [(part, name, opt.params[i]), (first, f"{name} exp_avg", opt.exp_avg[i]),
                        (second, f"{name} exp_avg_sq", opt.exp_avg_sq[i]), (f"{part} step", name, opt.step[i])]  # fmt: skip
        tensors = self.target_critic.state_dict().items()
        return out + [("target_critic", n, t) for n, t in tensors if t.is_floating_point()]

    def _finish(self, stats: UpdateStats, policy_step: bool) -> UpdateStats:
        self.updates += 1
        self.last_stats = stats
        if policy_step:
            self.last_policy_stats = stats
        return stats

    def _topology_step(self, policy_step: bool) -> bool:
        """Whether this update must see dense gradients (a topology step of the critic's or, on a policy step, the
        actor's schedule, or the policy step before a critic topology step whose growth includes the actor's
        gradient): the only updates that leave the pure function."""
        critic_t, actor_t = self.critic_topology, self.actor_topology
        if critic_t is not None and critic_t.wants_dense_grad():
            return True
        if not policy_step:
            return False
        if actor_t is not None and actor_t.wants_dense_grad():
            return True
        # the policy branch asks after this update's critic step has been counted: one call ahead
        return self.critic_grow_includes_actor_grad and critic_t is not None and critic_t.wants_dense_grad(ahead=1)

    def _function(self, extra_loss: Callable[[], torch.Tensor | None] | None) -> UpdateFunction:
        """The pure update for this learner (built on first use, again if the extra loss changes)."""
        fn = self._update_fn
        if fn is not None and fn.objective._extra_loss == extra_loss:
            return fn
        owner = getattr(extra_loss, "__self__", None)
        objective = PolicyObjective(self.actor, self.critic, owner if isinstance(owner, nn.Module) else None,
                                    extra_loss, self.cfg)  # fmt: skip
        trainable = [p for p in self.actor_parameters if p.requires_grad]
        fn = UpdateFunction(
            actor=self.actor, critic=self.critic, target_critic=self.target_critic, objective=objective,
            actor_names=parameter_names(objective, trainable), actor_params=trainable,
            critic_names=[n for n, _ in self.critic.named_parameters()], cfg=self.cfg,
            zero_pruned_actor=self.actor_topology is not None, zero_pruned_critic=self.critic_topology is not None,
            zero_pruned_target=self.zero_pruned,
        )  # fmt: skip
        if self.compile:
            compile_update(fn, self.log_alpha.device)
        self._update_fn = fn
        return fn

    def _stateful_update(self, batch: Batch, extra_loss: Callable[[], torch.Tensor | None] | None) -> UpdateStats:
        """The update with `.backward()` and the optimisers' own `step()`, for topology steps (dense gradients)."""
        cfg = self.cfg
        self._batch_rows = batch.reward.shape[0]
        alpha = self.log_alpha.detach().exp()
        self._want_dense(self.critic_topology, self.critic)
        q_loss = critic_loss(self.actor, self.critic, self.target_critic, batch, alpha, cfg, self.generator)
        self.opt_critic.zero_grad(set_to_none=True)
        q_loss.backward()
        extra, self._critic_grads_from_actor = self._critic_grads_from_actor, None
        self._step(self.opt_critic, self.critic.parameters(), self.critic_topology, self.critic, None, extra)
        policy_step = self.updates % cfg.policy_delay == 0
        if self.count_flops:
            self._count_update_flops(batch, policy_step)
        pi_value = entropy = None
        if policy_step:
            self._want_dense(self.actor_topology, self.actor)
            # The next critic step is a topology update: keep this actor loss's gradient at the critic's weights.
            keep_critic = self.critic_grow_includes_actor_grad and self.critic_topology is not None
            self.critic.net.dense_grads = [] if keep_critic and self.critic_topology.wants_dense_grad() else None
            pi_loss, logp = actor_loss(self.actor, self.critic, policy_states(batch, cfg), alpha, cfg, self.generator)
            critic_ws, self.critic.net.dense_grads = self.critic.net.dense_grads or [], None
            if extra_loss is not None:
                penalty = extra_loss()
                if penalty is not None:
                    pi_loss = pi_loss + penalty
            self.opt_actor.zero_grad(set_to_none=True)
            pi_loss.backward(inputs=[*(p for p in self.actor_parameters if p.requires_grad), *critic_ws])
            if critic_ws:
                self._critic_grads_from_actor = [w.grad for w in critic_ws]
            self._step(self.opt_actor, self.actor_parameters, self.actor_topology, self.actor, self._mask_actor_grads)
            self.opt_alpha.zero_grad(set_to_none=True)
            entropy_loss(self.log_alpha, logp, cfg.target_entropy).backward()
            self._step(self.opt_alpha, [self.log_alpha], None, None, None)
            pi_value, entropy = pi_loss.detach(), -logp.detach().mean()
        if self.updates % cfg.target_delay == 0 and (policy_step or not cfg.target_update_in_policy_branch):
            self._polyak()
        return self._finish(UpdateStats(q_loss.detach(), pi_value, alpha, entropy), policy_step)

    def _mask_actor_grads(self) -> None:
        if self.actor_grad_masks is not None:
            for param, mask in self.actor_grad_masks():
                if param.grad is not None:
                    param.grad.mul_(mask)

    @staticmethod
    def _want_dense(topology: Topology | None, module: nn.Module) -> None:
        if topology is not None:
            module.net.dense_grads = [] if topology.wants_dense_grad() else None

    def _step(self, opt: torch.optim.Optimizer, params: Iterable[nn.Parameter], topology: Topology | None,
              module: nn.Module | None, hook: Callable[[], None] | None,
              extra_grads: list[torch.Tensor] | None = None) -> None:  # fmt: skip
        if hook is not None:
            hook()
        if self.cfg.clip_grad > 0:
            nn.utils.clip_grad_norm_(list(params), self.cfg.clip_grad)
        if topology is None:
            opt.step()
            return
        net: MLPStack = module.net
        dense, net.dense_grads = net.dense_grads, None
        grads = [w.grad for w in dense] if dense else None
        if grads is not None and extra_grads is not None:
            grads = [g + e for g, e in zip(grads, extra_grads, strict=True)]
        if topology(grads, self.generator):
            opt.step()
        if grads is not None and self.count_flops:
            self.train_flops += 2.0 * forward_flops(net, dense=True) * self._batch_rows  # the dense backward
        net.zero_pruned_weights()

    def _count_update_flops(self, batch: Batch, policy_step: bool) -> None:
        """Forward and backward multiply-adds of this update (cached counts: no host sync)."""
        b, n = batch.reward.shape[0], batch.reward.shape[1] if batch.reward.dim() == 2 else 1
        flops_a, flops_c = forward_flops(self.actor.net), forward_flops(self.critic.net)
        flops = n * (flops_a + flops_c) + 3 * flops_c
        if policy_step:
            flops += 3 * flops_a + 3 * flops_c
        self.train_flops += float(flops * b)

    @torch.no_grad()
    def _polyak(self) -> None:
        polyak(self.target_critic, self.critic, self.cfg.tau)
        if self.zero_pruned:
            self.target_critic.net.zero_pruned_weights()

    # --- checkpoints (both loops': plain data, tensors and numbers) ----------------------------------------------
    def full_state(self) -> dict[str, Any]:
        return {
            "modules": {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                        "target_critic": self.target_critic.state_dict(), "log_alpha": self.log_alpha.detach()},
            "masks": self.masks_state(),  # the target critic's are the critic's
            "opt_actor": self.opt_actor.state_dict(),
            "opt_critic": self.opt_critic.state_dict(),
            "opt_alpha": self.opt_alpha.state_dict(),
            "actor_topology": self.actor_topology.state_dict() if self.actor_topology else None,
            "critic_topology": self.critic_topology.state_dict() if self.critic_topology else None,
            "updates": self.updates,
            "train_flops": self.train_flops,
            "critic_grads_from_actor": self._critic_grads_from_actor,
        }  # fmt: skip

    def load_full_state(self, state: dict[str, Any]) -> None:
        modules = state["modules"]
        self.actor.load_state_dict(modules["actor"])
        self.critic.load_state_dict(modules["critic"])
        self.target_critic.load_state_dict(modules["target_critic"])
        with torch.no_grad():
            self.log_alpha.copy_(modules["log_alpha"])
        masks = {k: v if v is not None and any(m is not None for m in v) else None for k, v in state["masks"].items()}
        if isinstance(self.actor.net, MLPStack):  # a continual method's actor view carries no masks
            self.set_masks(masks["actor"], masks["critic"])
        self.opt_actor.load_state_dict(state["opt_actor"])
        self.opt_critic.load_state_dict(state["opt_critic"])
        self.opt_alpha.load_state_dict(state["opt_alpha"])
        if self.actor_topology is not None:
            self.actor_topology.load_state_dict(state["actor_topology"])
            self.critic_topology.load_state_dict(state["critic_topology"])
        self.updates, self.train_flops = state["updates"], state["train_flops"]
        self._critic_grads_from_actor = state.get("critic_grads_from_actor")
