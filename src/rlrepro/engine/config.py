"""Typed configuration of the engine: the networks (config.yaml's `network` blocks) and the learner's update rule.

A suite's own config block (the continual `sac:` block, the sparse `sparse.sac:` block) is translated into a
`LearnerConfig` by that suite (`rlrepro.continual.config.learner_config`, `rlrepro.sparse.config.learner_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from rlrepro.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build a config dataclass, rejecting keys it does not have (with the valid ones listed)."""
    data = dict(data or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(names)}")
    return cls(**data)


@dataclass(frozen=True)
class NetworkConfig:
    """Actor and critic architecture (rewire.md §2.1 defaults; the sparse suite builds its own from `sparse.sac`).

    The last four keys choose between the two originals' conventions (rlrepro.engine.networks says what each does).
    """

    hidden_sizes: tuple[int, ...] = (256, 256, 256)
    """Widths of the hidden layers of the actor and of each critic."""
    activation: str = "leaky_relu"
    """One of leaky_relu, relu, tanh."""
    negative_slope: float = 0.2
    """Slope of LeakyReLU."""
    init: str = "torch_default"
    """Weight init: torch_default (nn.Linear's, network by network), xavier_normal (biases U(±1/√fan_in)) or
    orthogonal (zero biases), both layer by layer."""
    log_std_mode: str = "clip"
    """clip: clamp log σ to [min, max]; tanh: min + (max−min)·(tanh(x)+1)/2."""
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    log_prob_mode: str = "sample"
    """sample: log N(u; μ, σ) from the pre-squash sample with σ + 1e-8 (SaLinA); noise: from the noise ε (pytorch_sac)."""
    critic_head: str = "per_network"
    """The critic's output layer: per_network (the bits of two separate Q networks) or batched (one matmul)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        for key, valid in (("activation", ("leaky_relu", "relu", "tanh")), ("init", ("torch_default", "xavier_normal",
                           "orthogonal")), ("log_std_mode", ("clip", "tanh")), ("log_prob_mode", ("sample", "noise")),
                           ("critic_head", ("per_network", "batched"))):  # fmt: skip
            if getattr(self, key) not in valid:
                raise ConfigError(f"unknown {key} {getattr(self, key)!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class LearnerConfig:
    """One SAC update rule; the two papers' flavours are two values of it (`rlrepro.engine.learner`)."""

    lr_actor: float
    lr_critic: float
    lr_alpha: float
    init_temperature: float
    """α at the start (α is learned through log α)."""
    target_entropy: float
    discount: float = 0.99
    tau: float = 0.005
    """Polyak coefficient of the target critic."""
    reward_scaling: float = 1.0
    policy_delay: int = 1
    """Actor and α are updated when the update counter is a multiple of this."""
    target_delay: int = 1
    """The target critic is Polyak-updated when the update counter is a multiple of this."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 0.0
    """Gradient-norm clipping of every optimizer step; 0 disables it."""
    target_update_in_policy_branch: bool = False
    """Update the target only on policy steps (PackNet's fine-tune in the original nests it there)."""
    policy_states: str = "window"
    """window: the policy loss covers both steps of every replay window (2·batch states, SaLinA); first: the batch's
    states (pytorch_sac)."""
    entropy_target: str = "batch_mean"
    """batch_mean: the TD target subtracts α × the batch mean of the next log-probs (the original Rewire code's
    broadcast, fidelity audit D1); per_sample: each sample's own."""
    arithmetic: str = "salina"
    """salina or pytorch_sac: each original's order of operations in the TD target and the policy loss (the same
    mathematics; kept so that each suite reproduces its pinned numbers bit for bit)."""

    def __post_init__(self) -> None:
        for key, valid in (("policy_states", ("window", "first")), ("entropy_target", ("batch_mean", "per_sample")),
                           ("arithmetic", ("salina", "pytorch_sac"))):  # fmt: skip
            if getattr(self, key) not in valid:
                raise ConfigError(f"unknown {key} {getattr(self, key)!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class EngineConfig:
    """How the update runs (config.yaml's `engine` block; part of every training job's spec)."""

    compile: bool | str = "auto"
    """true: the whole update compiled as one graph (torch.compile; CUDA graphs on a GPU); false: the same function
    eagerly (engine 0.2.0's arithmetic bit for bit); auto: compiled in jobs of ≥ 20,000 planned updates."""

    def __post_init__(self) -> None:
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"engine.compile must be auto, true or false, got {self.compile!r}")
