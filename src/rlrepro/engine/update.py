"""One SAC update as one function of tensors, compiled whole with `torch.compile(fullgraph=True)`.

`sac_update` takes the parameters, the Adam states, a replay batch and the Gaussian noise its two samples use (drawn
before the call from the job's generator, in the order the stateful update drew it), and returns the losses. The
gradients come from `torch.func.grad_and_value` over `torch.func.functional_call` of the learner's own modules, so
every network the engine and the continual methods build (masked stacks, Rewire's wiring, PNN's columns, CSP's
subspace) runs its usual forward inside the graph, and a method's extra loss is evaluated while its parameters are
the ones being differentiated. The three Adam steps are `torch.optim.adam.adam` (torch's own multi-tensor kernel)
on the optimisers' state tensors, and the target critic moves by Polyak averaging: all inside the same function,
mutating the state in place, nothing read back to the host.

The delays are static arguments: `policy_step` and `target_step` select one of at most four graphs, each traced once.
Run uncompiled (`engine.compile: false`), the function is the reference: it reproduces the stateful update of
engine 0.2.0 bit for bit (`tests/test_compiled_update.py`), since it runs the same operations in the same order and
keeps Adam's bias corrections on the host as torch's default optimiser does. Compiled, Adam's bias corrections are
computed on the device (`capturable`, so no step count is read back) and inductor fuses the elementwise work; the
results then move in their last bits (float32 tolerance after 200 updates, measured in the same test).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value
from torch.optim.adam import adam as adam_kernel

from rlrepro.engine.config import EngineConfig, LearnerConfig
from rlrepro.engine.replay import Batch

AUTO_COMPILE_MIN_UPDATES = 20_000
"""`compile: auto` compiles a job whose planned updates reach this many: a cold compile costs ~30-60 s on one CPU
core, which a job of fewer updates would not win back (benchmarks/sac_update.py measures both)."""


def compile_wanted(engine: EngineConfig, planned_updates: int) -> bool:
    """Whether a learner compiles its update: true/false as said; `auto` when it outlasts its compile."""
    if isinstance(engine.compile, bool):
        return engine.compile
    return planned_updates >= AUTO_COMPILE_MIN_UPDATES


@dataclass
class AdamState:
    """One optimiser's parameters and state tensors, in one order (what torch.optim.adam.adam takes)."""

    params: list[torch.Tensor]
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]
    step: list[torch.Tensor]
    lr: float
    betas: tuple[float, float]
    eps: float
    capturable: bool

    @classmethod
    def of(cls, opt: torch.optim.Adam, capturable: bool) -> AdamState:
        """The state tensors of `opt` (allocated as its first `step()` would), shared with it: checkpoints keep
        saving and loading the optimiser itself. `capturable`: Adam's bias corrections computed from step counts
        kept on the parameters' device (the compiled update; torch allows it eagerly on accelerators only)."""
        (group,) = opt.param_groups
        params = [p for p in group["params"] if p.requires_grad]
        for p in params:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if capturable and state["step"].device != p.device:
                # once per learner (and after a checkpoint load, which puts it back on the CPU); opt.step() reads a
                # step count from any device
                state["step"] = state["step"].to(p.device)
            if capturable and p.device.type == "cuda":
                # state the graph mutates in place: CUDA graphs record it at a fixed address instead of copying it in
                for key in ("step", "exp_avg", "exp_avg_sq"):
                    torch._dynamo.mark_static_address(state[key])
        return cls(params, [opt.state[p]["exp_avg"] for p in params], [opt.state[p]["exp_avg_sq"] for p in params],
                   [opt.state[p]["step"] for p in params], group["lr"], tuple(group["betas"]), group["eps"],
                   capturable)  # fmt: skip

    def apply(self, grads: list[torch.Tensor]) -> None:
        """Adam's step on the parameters in place (torch's multi-tensor kernel, as `torch.optim.Adam(foreach=True)`)."""
        # capturable where torch allows it: in the compiled graph, or eagerly on an accelerator (a compiled update that
        # runs eagerly after all, e.g. under TORCH_COMPILE_DISABLE=1 on a CPU, steps as torch's default Adam does)
        capturable = self.capturable and (torch.compiler.is_compiling() or self.params[0].device.type != "cpu")
        adam_kernel(
            self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.step, foreach=True, capturable=capturable,
            amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0, eps=self.eps,
            maximize=False,
        )  # fmt: skip


def clip_by_total_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """`nn.utils.clip_grad_norm_`'s arithmetic on a list of gradients (no `.grad` attributes in a pure update)."""
    total = torch.nn.utils.get_total_norm(grads, 2.0)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return torch._foreach_mul(grads, coef)


class PolicyObjective(nn.Module):
    """The policy step's loss as a module, so that `functional_call` swaps the parameters of the actor and of the
    method together (a method's extra loss reads its own parameters, which are the actor's)."""

    def __init__(self, actor: nn.Module, critic: nn.Module, owner: nn.Module | None,
                 extra_loss: Callable[[], torch.Tensor | None] | None, cfg: LearnerConfig) -> None:  # fmt: skip
        super().__init__()
        self.actor, self.owner = actor, owner
        self._critic = [critic]  # not a submodule: the policy step does not differentiate the critic
        self._extra_loss, self.cfg = extra_loss, cfg

    def forward(self, obs: torch.Tensor, alpha: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from rlrepro.engine.learner import actor_loss

        loss, logp = actor_loss(self.actor, self._critic[0], obs, alpha, self.cfg, None, noise)
        if self._extra_loss is not None:
            penalty = self._extra_loss()
            if penalty is not None:
                loss = loss + penalty
        return loss, logp


def parameter_names(root: nn.Module, params: list[torch.Tensor]) -> list[str]:
    """The name under which `root` reaches each of `params` (a trainable subset may belong to a method's modules).

    The update swaps each parameter under this one name (`functional_call(..., tie_weights=False)`), which reaches
    every path to it when the paths share the module holding it (a method's actor is often a view of the method's
    own modules). A parameter held by two different modules would keep its old value on the other path: refused."""
    names: dict[int, str] = {}
    holders: dict[int, set[int]] = {}
    for module_name, module in root.named_modules(remove_duplicate=False):
        for name, p in module.named_parameters(recurse=False):
            names.setdefault(id(p), f"{module_name}.{name}" if module_name else name)
            holders.setdefault(id(p), set()).add(id(module))
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"{len(missing)} trainable parameter(s) are not reachable from the policy objective")
    if any(len(holders[id(p)]) > 1 for p in params):
        raise ValueError("a trainable parameter is held by two different modules: the pure update cannot swap both")
    return [names[id(p)] for p in params]


@dataclass
class UpdateFunction:
    """What the pure update closes over that is not a tensor it changes: modules (their forward code), names and
    the config. Built once per learner (and again when a method changes what its actor trains)."""

    actor: nn.Module
    critic: nn.Module
    target_critic: nn.Module
    objective: PolicyObjective
    actor_names: list[str]
    actor_params: list[torch.Tensor]
    critic_names: list[str]
    cfg: LearnerConfig
    zero_pruned_actor: bool = False
    """Zero the masked weights after each step (RiGL/RLx2 networks; DAPD keeps their raw values)."""
    zero_pruned_critic: bool = False
    zero_pruned_target: bool = False
    compiled: Any = field(default=None, repr=False)
    cuda_graphs: bool = False
    """The compiled function replays CUDA graphs: its outputs live in the graphs' memory, overwritten by the next
    replay, so the caller gets copies (device-side, no sync)."""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor | None, ...]:
        if self.compiled is None:
            return sac_update(self, *args, **kwargs)
        if not self.cuda_graphs:
            return self.compiled(self, *args, **kwargs)
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(t.clone() if t is not None else None for t in self.compiled(self, *args, **kwargs))


def sac_update(f: UpdateFunction, log_alpha: torch.Tensor, critic_opt: AdamState, actor_opt: AdamState,
               alpha_opt: AdamState, batch: Batch, noise_next: torch.Tensor, noise_pi: torch.Tensor | None,
               policy_obs: torch.Tensor | None, grad_masks: list[torch.Tensor | None] | None, policy_step: bool,
               target_step: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """One SAC update (see the module docstring); returns (critic loss, policy loss, α, entropy), all detached.
    `grad_masks`: multiplied into the actor's gradients before its Adam step (PackNet's frozen weights)."""
    from rlrepro.engine.learner import entropy_loss, polyak, td_target

    cfg = f.cfg
    alpha = log_alpha.detach().exp()
    obs, action, y = td_target(f.actor, f.target_critic, batch, alpha, cfg, None, noise_next)

    def td_loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        q = functional_call(f.critic, params, (obs, action), tie_weights=False)
        return (q - y).pow(2).mean(1).sum()  # = MSE(Q1, y) + MSE(Q2, y), bit for bit, in fewer ops

    grads, q_loss = grad_and_value(td_loss)(dict(zip(f.critic_names, critic_opt.params, strict=True)))
    step_with(critic_opt, [grads[n] for n in f.critic_names], cfg, None, f.critic if f.zero_pruned_critic else None)
    pi_value = entropy = None
    if policy_step:

        def policy_loss(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            loss, logp = functional_call(f.objective, params, (policy_obs, alpha, noise_pi), tie_weights=False)
            return loss, logp

        params = dict(zip(f.actor_names, actor_opt.params, strict=True))
        grads, (pi_loss, logp) = grad_and_value(policy_loss, has_aux=True)(params)
        step_with(actor_opt, [grads[n] for n in f.actor_names], cfg, grad_masks, f.actor if f.zero_pruned_actor else None)
        logp = logp.detach()
        alpha_grad, _ = grad_and_value(lambda la: entropy_loss(la, logp, cfg.target_entropy))(log_alpha.detach())
        step_with(alpha_opt, [alpha_grad], cfg, None, None)
        pi_value, entropy = pi_loss.detach(), -logp.mean()
    if target_step:
        polyak(f.target_critic, f.critic, cfg.tau)
        if f.zero_pruned_target:
            f.target_critic.net.zero_pruned_weights()
    return q_loss.detach(), pi_value, alpha, entropy


def step_with(opt: AdamState, grads: list[torch.Tensor], cfg: LearnerConfig, masks: list[torch.Tensor | None] | None,
              pruned: nn.Module | None) -> None:  # fmt: skip
    """Masks, clipping, then Adam, in the stateful update's order (its hook ran before its clipping)."""
    if masks is not None:
        grads = [g if m is None else g * m for g, m in zip(grads, masks, strict=True)]
    if cfg.clip_grad > 0:
        grads = clip_by_total_norm(grads, cfg.clip_grad)
    with torch.no_grad():
        opt.apply(grads)
        if pruned is not None:
            pruned.net.zero_pruned_weights()


def compile_update(f: UpdateFunction, device: torch.device) -> None:
    """Compile `sac_update` whole for this learner: inductor on CPU, CUDA graphs on top of it on a GPU."""
    from torch._dynamo import config as dynamo_config
    from torch._inductor import config as inductor_config

    if dynamo_config.disable:  # TORCH_COMPILE_DISABLE=1: the same function, eagerly (as engine.compile: false)
        logging.getLogger("rlrepro").warning("torch.compile is disabled (TORCH_COMPILE_DISABLE): the update runs eagerly")
        return

    # Random ops stay outside the graph (noise is an input) except a method's own draws (Rewire's Gumbel noise):
    # keep them on the eager generator's stream, so compiling changes arithmetic only, not which numbers are drawn.
    inductor_config.fallback_random = True
    # the graph's inputs are guarded by dynamo already; inductor's own per-call size/stride assertions on ~70 inputs
    # cost a few percent of a small update
    inductor_config.size_asserts = False
    # one graph per update branch for every learner of a job: 2-3 per task, a PackNet fine-tune's 2 more (CW10 with
    # PackNet: ~50); past the limit dynamo would stop compiling (fullgraph: an error), so leave room
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    # $RLREPRO_COMPILE_MODE overrides the choice (benchmarks/gpu.py times the graphs with and without CUDA graphs)
    mode = os.environ.get("RLREPRO_COMPILE_MODE") or ("reduce-overhead" if device.type == "cuda" else "default")
    f.cuda_graphs = mode == "reduce-overhead"
    f.compiled = torch.compile(sac_update, fullgraph=True, dynamic=False, mode=mode)
