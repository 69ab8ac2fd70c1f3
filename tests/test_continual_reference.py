"""The continual suite's SAC update pinned bit for bit, before the one-engine merge (issue 16) moves any code.

`ReferenceContinualSAC` is today's Rewire/SaLinA-flavour update written out in its most direct form: the TD target
with the batch-mean entropy (fidelity audit D1) and the target multiplier, the policy loss over both steps of every
window (2·batch states), α through exp(log α), the policy/target delays, PackNet's fine-tune variant (target update
inside the policy branch, α at the policy's learning rate), the methods' own hooks (batch preparation, extra loss,
gradient masks) and PyTorch's default Adam. The engine's `SACLearner`, driven as the training loop drives it, must
leave every parameter, target parameter, Adam moment and step, log α, the job's generator and torch's global
generator *equal* to the reference after dozens of updates — for ft_1, ft_l2 and EWC on their second task (their
penalties active), PNN's second column, Rewire, CSP's second anchor, PackNet's second task (gradient masks) and
PackNet's fine-tune. A merge that reorders floating-point work fails here; if a kernel change alone moves the last
bits, rebase this file in one commit named for it and say so.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import fake_env_factory
from torch.nn import functional as F

from rlrepro.continual import TaskTrainer, TrainEnvEvaluator, TrainSpec, build_method
from rlrepro.continual.config import SACConfig, learner_config
from rlrepro.continual.methods.base import TaskContext
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import TwinCritic, upgrade_legacy_state_dict

NET = NetworkConfig(hidden_sizes=(16, 16))
SAC = SACConfig(batch_size=32, initial_buffer_size=64, policy_update_delay=2, target_update_delay=2,
                lr_policy=1e-3, lr_q=1e-3, clip_grad=0.0)  # fmt: skip
# CSP with the original's random stream (`alpha_draws: on_redraw`): the pins below were made with it
HP = {"packnet": {"finetune_updates": 0}, "csp": {"n_estimations": 2, "n_samples": 64, "n_rollouts": 2,
                                                  "alpha_draws": "on_redraw"},
      "ewc": {"fisher_coeff": 10.0, "n_samples": 64}, "ft_l2": {"l2_coeff": 10.0}}  # fmt: skip
UPDATES = 40


class ReferenceContinualSAC:
    """Today's continual update in direct form, on its own copies of the method, critic and target critic."""

    def __init__(self, method, critic, target, cfg: SACConfig, action_dim: int, log_alpha: torch.Tensor,
                 target_in_policy_branch: bool = False, batch_mean_entropy: bool = True) -> None:  # fmt: skip
        self.method, self.critic, self.target, self.cfg = method, critic, target, cfg
        self.actor = method.train_actor()
        self.log_alpha = log_alpha.detach().clone().requires_grad_(True)
        self.target_entropy = -cfg.target_multiplier * action_dim
        self.actor_params = list(method.trainable_parameters())
        self.opt_actor = torch.optim.Adam(self.actor_params, lr=cfg.lr_policy)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_q)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr_entropy)
        self.in_branch, self.batch_mean = target_in_policy_branch, batch_mean_entropy
        self.iteration = 0

    def update(self, batch, generator: torch.Generator, extra_loss=None, grad_masks=None) -> None:
        cfg = self.cfg
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_action, next_logp = self.actor.sample(batch.next_obs, generator)
            t1, t2 = self.target(batch.next_obs, next_action)
            entropy = next_logp.mean() if self.batch_mean else next_logp
            y = batch.reward * cfg.reward_scaling + cfg.discount * batch.not_done * (torch.min(t1, t2) - alpha * entropy)
        q1, q2 = self.critic(batch.obs, batch.action)
        self.opt_critic.zero_grad(set_to_none=True)
        (F.mse_loss(q1, y) + F.mse_loss(q2, y)).backward()
        self.opt_critic.step()
        policy_step = self.iteration % cfg.policy_update_delay == 0
        if policy_step:
            obs = batch.policy_obs if batch.policy_obs is not None else torch.cat([batch.obs, batch.next_obs], dim=0)
            self.critic.requires_grad_(False)
            action, logp = self.actor.sample(obs, generator)
            p1, p2 = self.critic(obs, action)
            loss = -torch.min(p1, p2).mean() + (alpha * logp).mean()
            extra = extra_loss() if extra_loss is not None else None
            if extra is not None:
                loss = loss + extra
            self.opt_actor.zero_grad(set_to_none=True)
            loss.backward()
            for param, mask in grad_masks() if grad_masks is not None else []:  # the method's frozen weights
                if param.grad is not None:
                    param.grad.mul_(mask)
            self.opt_actor.step()
            self.critic.requires_grad_(True)
            self.opt_alpha.zero_grad(set_to_none=True)
            (-(self.log_alpha.exp() * (logp + self.target_entropy).detach()).mean()).backward()
            self.opt_alpha.step()
        if self.iteration % cfg.target_update_delay == 0 and (policy_step or not self.in_branch):
            with torch.no_grad():
                for t, s in zip(self.target.parameters(), self.critic.parameters(), strict=True):
                    t.lerp_(s, cfg.tau)
        self.iteration += 1


def trained_state(method_name: str, scenario, task: int):
    """The method, critic and a filled replay at the start of `task`'s updates, earlier tasks trained for real."""
    spec = TrainSpec(method_name, scenario, seed=7, method_hp=HP.get(method_name, {}), sac=SAC, network=NET)
    torch.manual_seed(7)
    generator = torch.Generator().manual_seed(7)
    env = fake_env_factory(scenario, scenario.tasks[0], n_envs=scenario.n_train_envs, env_cfg={}, device="cpu")
    method = build_method(method_name, env.obs_dim, env.action_dim, NET, spec.method_hp)
    critic = TwinCritic(env.obs_dim, env.action_dim, NET)
    for k in range(task + 1):
        env = fake_env_factory(scenario, scenario.tasks[k], n_envs=scenario.n_train_envs, env_cfg={}, device="cpu")
        context = TaskContext(None, generator, critic, SAC, evaluate=TrainEnvEvaluator(env, spec, k), env=env,
                              make_env=lambda n, k=k: fake_env_factory(scenario, scenario.tasks[k], n_envs=n, env_cfg={},
                                                                       device="cpu"))  # fmt: skip
        method.on_task_start(k, context)
        critic = context.critic = method.critic_for_task(critic)
        trainer = TaskTrainer(method, critic, env, spec, k, generator)
        if k < task:
            trainer.run()
            context.replay = trainer.replay
            method.on_task_end(k, context)
        else:
            while len(trainer.replay) < 4 * SAC.batch_size:
                trainer.collect(trainer.new_steps)
    return spec, method, critic, trainer, generator


def flat_state(method, critic, target, opts, log_alpha, generator) -> list[torch.Tensor]:
    tensors = [*method.state_dict().values(), *critic.state_dict().values(), *target.state_dict().values(), log_alpha]
    for opt in opts:
        for state in opt.state_dict()["state"].values():
            tensors += [state[k] for k in sorted(state)]
    return [*tensors, generator.get_state(), torch.get_rng_state()]


CASES = [("ft_1", 1), ("ft_l2", 1), ("ewc", 1), ("pnn", 1), ("rewire", 0), ("rewire", 1), ("csp", 1), ("packnet", 1),
         ("packnet-finetune", 0)]  # fmt: skip


@pytest.mark.parametrize(("case", "task"), CASES)
def test_continual_update_is_bit_identical_to_the_reference(case, task, fake_scenario):
    """On the fake env (a test double, conftest.FakeVecEnv): the engine's updates against the reference's, bit for bit."""
    name = case.removesuffix("-finetune")
    scenario = dataclasses.replace(fake_scenario, steps_per_task=384)
    _, method, critic, trainer, generator = trained_state(name, scenario, task)
    finetune = case.endswith("-finetune")
    cfg = dataclasses.replace(SAC, lr_entropy=SAC.lr_policy) if finetune else SAC
    if finetune:  # PackNet's fine-tune learner, as packnet.finetune builds it
        method._set_trainable(lambda owner: owner == task)
        rule = learner_config(cfg, 2, target_update_in_policy_branch=True)
        learner = SACLearner(method.policy, critic, rule, generator, actor_grad_masks=method.gradient_masks)
    else:
        learner = trainer.learner
    # The reference starts from copies of everything the engine starts from, RNG states included.
    ref_method, ref_critic, ref_target = copy.deepcopy(method), copy.deepcopy(critic), copy.deepcopy(learner.target_critic)
    reference = ReferenceContinualSAC(ref_method, ref_critic, ref_target, cfg, 2, learner.log_alpha,
                                      target_in_policy_branch=finetune)  # fmt: skip
    if not finetune:  # the engine's actor parameters are the method's: point the reference at its own copies
        assert [id(p) for p in learner.actor_parameters] == [id(p) for p in method.trainable_parameters()]
    replay, ref_replay = trainer.replay, copy.deepcopy(trainer.replay)
    ref_generator = torch.Generator().set_state(generator.get_state())
    global_rng = torch.get_rng_state()

    for _ in range(UPDATES):
        with method.learning_mode():
            batch = replay.sample(cfg.batch_size, generator)
            batch = batch if finetune else method.prepare_batch(batch, generator)
            learner.update(batch, None if finetune else method.extra_loss)
    engine = flat_state(method, critic, learner.target_critic, [learner.opt_actor, learner.opt_critic, learner.opt_alpha],
                        learner.log_alpha, generator)  # fmt: skip

    torch.set_rng_state(global_rng)
    masks = ref_method.gradient_masks
    for _ in range(UPDATES):
        with ref_method.learning_mode():
            batch = ref_replay.sample(cfg.batch_size, ref_generator)
            batch = batch if finetune else ref_method.prepare_batch(batch, ref_generator)
            reference.update(batch, ref_generator, None if finetune else ref_method.extra_loss, masks)
    ref = flat_state(ref_method, ref_critic, ref_target, [reference.opt_actor, reference.opt_critic, reference.opt_alpha],
                     reference.log_alpha, ref_generator)  # fmt: skip

    assert len(engine) == len(ref)
    moved = [i for i, (a, b) in enumerate(zip(engine, ref, strict=True)) if not torch.equal(a, b)]
    assert not moved, f"{case}: {len(moved)} of {len(engine)} tensors differ from the reference"
    assert learner.updates == UPDATES and not math.isnan(float(learner.log_alpha.detach()))


class _TiedCritic(torch.nn.Module):
    """Q1 = k1·Σ(a − a₀) + c and Q2 = k2·Σ(a − a₀) + c with a₀ = a.detach(): an exact tie at the sampled actions
    with different action gradients (what a real twin critic produces, rarely, after thousands of updates)."""

    def __init__(self, k1: float, k2: float) -> None:
        super().__init__()
        self.k1, self.k2 = k1, k2

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        delta = (action - action.detach()).sum(-1)
        return torch.stack([self.k1 * delta + 3.0, self.k2 * delta + 3.0])


@pytest.mark.parametrize("flavour", ["salina", "pytorch_sac"])
def test_exact_q_ties_route_the_policy_gradient_as_each_original_engine_did(flavour):
    """SaLinA's torch.min(q1, q2) splits the gradient of a tie between the two critics (the continual engine before
    the merge too); the pre-merge sparse engine's min(0) gives it to Q1. Found by tracing a real 4,600-update ft_1 run
    of both engines update by update: they parted at the first tie (update 3,752), which the 40-update pins never hit."""
    from rlrepro.engine.learner import actor_loss
    from rlrepro.engine.networks import GaussianActor
    from rlrepro.sparse.config import SparseSACConfig
    from rlrepro.sparse.config import learner_config as sparse_learner_config

    cfg = learner_config(SAC, 2) if flavour == "salina" else sparse_learner_config(SparseSACConfig(), 2)
    obs = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    grads = {}
    for name, critic in (("tie", _TiedCritic(1.0, 5.0)), ("split", _TiedCritic(3.0, 3.0)), ("q1", _TiedCritic(1.0, 1.0))):
        torch.manual_seed(0)
        actor = GaussianActor(3, 2, NET)
        loss, _ = actor_loss(actor, critic, obs, torch.tensor(0.1), cfg, torch.Generator().manual_seed(1))
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in actor.parameters()])
    expected, other = ("split", "q1") if flavour == "salina" else ("q1", "split")
    assert torch.allclose(grads["tie"], grads[expected], atol=1e-6)
    assert not torch.allclose(grads["tie"], grads[other], atol=1e-3)


def test_the_continual_reference_check_can_fail(fake_scenario):
    """One changed constant (the TD target's discount) in the reference is caught. (On the fake env, a test double:
    conftest.FakeVecEnv.)"""
    scenario = dataclasses.replace(fake_scenario, steps_per_task=384)
    _, method, critic, trainer, generator = trained_state("ft_1", scenario, 0)
    learner = trainer.learner
    ref_method = copy.deepcopy(method)
    reference = ReferenceContinualSAC(ref_method, copy.deepcopy(critic), copy.deepcopy(learner.target_critic),
                                      dataclasses.replace(SAC, discount=0.98), 2, learner.log_alpha)  # fmt: skip
    replay, ref_generator = copy.deepcopy(trainer.replay), torch.Generator().set_state(generator.get_state())
    for _ in range(5):
        learner.update(trainer.replay.sample(SAC.batch_size, generator))
        reference.update(replay.sample(SAC.batch_size, ref_generator), ref_generator)
    assert not all(torch.equal(a, b) for a, b in zip(method.state_dict().values(), ref_method.state_dict().values(),
                                                      strict=True))  # fmt: skip


# --- the pin that survives the merge: today's end states, stored as files ------------------------------------------
# The reference above shares the engine's network classes, so it pins the update's logic but not the networks' kernels
# (a fused critic would move both sides alike). These files hold, for every case, the end state the continual engine
# reached before the one-engine merge: parameters, target, Adam moments and steps by parameter name, log α and both
# generators. A later layout names its tensors differently; `rlrepro.engine.networks.upgrade_legacy_state_dict` maps
# the stored (pre-merge) names onto today's before the exact comparison. Regenerate only in a commit that says why:
# RLREPRO_UPDATE_SNAPSHOTS=1.
SNAPSHOTS = Path(__file__).parent / "snapshots" / "continual_engine"


def named_optimizer_state(opt: torch.optim.Optimizer, owner: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`<parameter name>.<exp_avg|exp_avg_sq|step>` for every parameter the optimizer holds state for."""
    names = {id(p): n for n, p in owner.named_parameters(remove_duplicate=False)}
    out = {}
    for p, state in opt.state.items():
        for key in sorted(state):
            out[f"{names[id(p)]}.{key}"] = state[key].detach().clone()
    return out


def end_state(case: str, task: int, fake_scenario) -> dict[str, object]:
    """Run the engine's UPDATES updates for one case and return its named end state."""
    name = case.removesuffix("-finetune")
    scenario = dataclasses.replace(fake_scenario, steps_per_task=384)
    _, method, critic, trainer, generator = trained_state(name, scenario, task)
    finetune = case.endswith("-finetune")
    cfg = dataclasses.replace(SAC, lr_entropy=SAC.lr_policy) if finetune else SAC
    if finetune:
        method._set_trainable(lambda owner: owner == task)
        rule = learner_config(cfg, 2, target_update_in_policy_branch=True)
        learner = SACLearner(method.policy, critic, rule, generator, actor_grad_masks=method.gradient_masks)
    else:
        learner = trainer.learner
    for _ in range(UPDATES):
        with method.learning_mode():
            batch = trainer.replay.sample(cfg.batch_size, generator)
            batch = batch if finetune else method.prepare_batch(batch, generator)
            learner.update(batch, None if finetune else method.extra_loss)
    clone = lambda sd: {k: v.detach().clone() for k, v in sd.items()}  # noqa: E731
    return {
        "method": clone(method.state_dict()),
        "critic": clone(critic.state_dict()),
        "target": clone(learner.target_critic.state_dict()),
        "log_alpha": learner.log_alpha.detach().clone(),
        "opt_actor": named_optimizer_state(learner.opt_actor, method),
        "opt_critic": named_optimizer_state(learner.opt_critic, critic),
        "opt_alpha": {k: v.detach().clone() for k, v in learner.opt_alpha.state[learner.log_alpha].items()},
        "generator": generator.get_state(),
        "global_rng": torch.get_rng_state(),
    }


@pytest.mark.parametrize(("case", "task"), CASES)
def test_continual_engine_matches_its_pre_merge_end_state(case, task, fake_scenario):
    """On the fake env (a test double, conftest.FakeVecEnv): a whole task's end state against the stored pre-merge snapshot."""
    ours = end_state(case, task, fake_scenario)
    path = SNAPSHOTS / f"{case}-task{task}.pt"
    if os.environ.get("RLREPRO_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ours, path)
    stored = torch.load(path, weights_only=True)
    stored = upgrade_snapshot(stored)
    for part in ("method", "critic", "target", "opt_actor", "opt_critic", "opt_alpha"):
        assert sorted(ours[part]) == sorted(stored[part]), f"{case}: {part} holds other tensors than the pin"
        moved = [k for k in ours[part] if not torch.equal(ours[part][k], stored[part][k])]
        assert not moved, f"{case}: {part} differs from the pre-merge pin in {moved}"
    for part in ("log_alpha", "generator", "global_rng"):
        assert torch.equal(ours[part], stored[part]), f"{case}: {part} differs from the pre-merge pin"


def upgrade_snapshot(stored: dict[str, object]) -> dict[str, object]:
    """Pre-merge tensor names → today's: each nn.Sequential MLP (`…net.<2i>.weight`, the critic's `q1.…`/`q2.…`) is
    now one stacked MLPStack parameter per layer; Adam's moments follow their parameters, its step counts are
    scalars per parameter (equal for the stacked pair)."""
    out = dict(stored)
    for part in ("method", "critic", "target"):
        out[part] = upgrade_legacy_state_dict(dict(stored[part]))
    for part in ("opt_actor", "opt_critic"):
        upgraded = {}
        for key in ("exp_avg", "exp_avg_sq", "step"):
            suffix = f".{key}"
            params = upgrade_legacy_state_dict({k[: -len(suffix)]: v for k, v in stored[part].items()
                                                if k.endswith(suffix)})  # fmt: skip
            for name, value in params.items():
                if key == "step" and value.dim() > 0:
                    assert bool((value == value.flatten()[0]).all())
                    value = value.flatten()[0]
                upgraded[name + suffix] = value
        out[part] = upgraded
    return out
