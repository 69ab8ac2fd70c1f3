"""Typed configuration of the continual suite; each field documents one key of config.yaml's `sac` block and of the
framework's own blocks. `learner_config` turns the `sac` block into the engine's update rule (the Rewire/SaLinA
flavour)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rlrepro.engine.config import LearnerConfig


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (rewire.md §2.3; the defaults are the generic block of the original)."""

    lr_policy: float = 3e-4
    """Adam learning rate of the policy."""
    lr_q: float = 3e-4
    """Adam learning rate of the twin critic."""
    lr_entropy: float = 3e-4
    """Adam learning rate of log α."""
    reward_scaling: float = 1.0
    """Rewards are multiplied by this before the TD target."""
    policy_update_delay: int = 2
    """Policy and α are updated when the update counter is a multiple of this."""
    target_update_delay: int = 1
    """Target critics are Polyak-updated when the update counter is a multiple of this."""
    batch_size: int = 256
    """Windows (transitions) per gradient step."""
    init_temperature: float = 2.0
    """α at the start of every task (α is re-initialised per task)."""
    target_multiplier: float = 2.0
    """Target entropy is −target_multiplier·|A| (no 0.5 factor, as in the Rewire code)."""
    clip_grad: float = 0.0
    """Gradient-norm clipping for every optimizer; 0 disables it."""
    grad_updates_per_step: float = 0.5
    """Updates per epoch = int(inner_epochs · grad_updates_per_step)."""
    inner_epochs: int | None = None
    """Base count of the updates per epoch; null means the number of train envs (the original's default)."""
    n_timesteps: int = 2
    """Acquisition window: each epoch collects n_timesteps−1 new steps per env."""
    discount: float = 0.99
    """γ."""
    tau: float = 0.005
    """Polyak coefficient of the target update."""
    buffer_size: int = 1_280_000
    """Replay capacity in transitions (the buffer is new for every task; never larger than the task needs)."""
    initial_buffer_size: int = 12_800
    """Transitions collected before the first update of a task."""
    start_steps: int = 0
    """Acquisition calls (one per time step, whole batch) that use uniform random actions, counted from 0 inclusive."""


@dataclass(frozen=True)
class Quirks:
    """Upstream behaviours that change results; the defaults reproduce the original code (README, "Fidelity flags")."""

    keep_critic_across_tasks: bool = True
    """The original creates the critic once and keeps it for every task, even for sac_n (rewire.md §2.2, §7.2.8)."""
    truncation_as_terminal: bool = True
    """The original treats the 1000-step time limit as a terminal state in the TD target (rewire.md §7.2.9)."""
    cw_spurious_reset_transition: bool = True
    """Continual World: the original's gym auto-reset stores a (final → reset state, reward 0) transition."""
    batch_mean_entropy_target: bool = True
    """The critic's TD target subtracts α times the batch mean of the next log-probs, not each sample's own
    (fidelity audit D1: the original's shape broadcast averages the squared error over all B×B pairs)."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation after every stage on every task (rewire.md §5.1)."""

    n_rollouts: int = 10
    """Sequential rollouts per (stage, task); each env contributes one episode per rollout."""
    seed_stride_run: int = 13
    """The evaluation seed after stage s is seed·seed_stride_run + (s+1)·seed_stride_stage, as in the original (its
    stage counter is incremented before the evaluation)."""
    seed_stride_stage: int = 100


@dataclass(frozen=True)
class TrainLogConfig:
    """How a training job reports progress."""

    log_interval_s: float = 30.0
    """Seconds between one-line progress logs when stderr is not a terminal."""
    curve_points: int = 50
    """Points per task of the training-return curve stored in the results."""


def learner_config(cfg: SACConfig, action_dim: int, quirks: Quirks | None = None, **overrides) -> LearnerConfig:
    """The engine's update rule for one continual task: SaLinA's arithmetic, the policy loss over both steps of
    every window, target entropy −target_multiplier·|A|, separate learning rates, no Adam-β change."""
    quirks = quirks or Quirks()
    rule = LearnerConfig(
        lr_actor=cfg.lr_policy, lr_critic=cfg.lr_q, lr_alpha=cfg.lr_entropy, init_temperature=cfg.init_temperature,
        target_entropy=-cfg.target_multiplier * action_dim, discount=cfg.discount, tau=cfg.tau,
        reward_scaling=cfg.reward_scaling, policy_delay=cfg.policy_update_delay, target_delay=cfg.target_update_delay,
        clip_grad=cfg.clip_grad, policy_states="window", arithmetic="salina",
        entropy_target="batch_mean" if quirks.batch_mean_entropy_target else "per_sample",
    )  # fmt: skip
    return dataclasses.replace(rule, **overrides)
