"""The hook interface every continual-RL method implements on top of the shared SAC learner.

A method owns the policy (or policies) and decides what is trained on each task and what answers for task k at
inference; the framework (rlrepro.continual) owns the loop, the critic, replay, evaluation and checkpoints.
Adding a method = one file here, one line in registry.py, one block under `methods:` in config.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from rlrepro.continual.config import Quirks, SACConfig
from rlrepro.engine.compiled_check import CompiledCheck
from rlrepro.engine.config import EngineConfig, NetworkConfig
from rlrepro.engine.networks import GaussianActor, TwinCritic
from rlrepro.engine.replay import Batch, ReplayBuffer


@dataclass
class TaskContext:
    """What the framework lends a method when a task ends (consolidation, pruning and fine-tuning need it)."""

    replay: ReplayBuffer | None
    """The task's replay buffer (None when the task starts)."""
    generator: torch.Generator
    critic: TwinCritic
    """The critic the framework keeps (a method may train it, as PackNet's fine-tune does)."""
    sac: SACConfig
    """The task's SAC hyperparameters."""
    evaluate: Callable[[GaussianActor], float] | None = None
    """Mean deterministic return of an actor on the task's training env (Rewire's mode selection uses it); the
    environment steps it spends are counted in `extra_env_steps`, apart from the training budget."""
    extra_env_steps: int = 0
    env: Any = None
    """The task's training env."""
    quirks: Quirks = field(default_factory=Quirks)
    """The job's fidelity flags (a method that builds its own learner passes them on)."""
    make_env: Callable[[int], Any] | None = None
    """A fresh instance of the task's env with the given number of copies (CSP's AlphaSearch rolls out on one)."""
    seed: int = 0
    """The run's seed."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """How a learner the method builds runs its update (PackNet's fine-tune)."""
    compiled_check: CompiledCheck | None = None
    """The job's check of compiled updates, for a learner the method builds."""


class Method(nn.Module):
    """Base class: the hooks, with the behaviour of a single fine-tuned policy as the default."""

    name: ClassVar[str]
    hyperparameters: ClassVar[tuple[str, ...]] = ()
    """Method-specific keys accepted in config.yaml `methods.<name>` (besides `sac` and `network`)."""

    def __init__(self, obs_dim: int, action_dim: int, network: NetworkConfig, hp: dict[str, Any]) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.network = network
        self.hp = dict(hp)
        self.tasks_seen = 0

    def new_actor(self) -> GaussianActor:
        return GaussianActor(self.obs_dim, self.action_dim, self.network)

    # --- hooks -------------------------------------------------------------------------------------------------
    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        """A new task begins: grow, clone or allocate what it trains."""

    def train_actor(self) -> GaussianActor:
        """The actor that acts and is optimised on the current task."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.train_actor().parameters())

    def extra_loss(self) -> torch.Tensor | None:
        """A regulariser added to the policy loss (None: nothing)."""
        return None

    def critic_for_task(self, critic: TwinCritic) -> TwinCritic:
        """The critic this task trains with (default: the framework's, kept across tasks; CSP builds its own)."""
        return critic

    def reserved_env_steps(self, env: Any) -> int:
        """Environment steps of the task's budget the method spends itself (CSP's AlphaSearch rollouts)."""
        return 0

    def replay_columns(self) -> dict[str, Any]:
        """Optional replay columns the method needs (`ReplayBuffer`'s `behaviour_dim`, `next_actions`)."""
        return {}

    def behaviour(self) -> torch.Tensor | None:
        """What the acting policy is conditioned on besides the state, stored with each transition (CSP: α)."""
        return None

    def on_env_step(self, done: torch.Tensor) -> None:
        """Called after every acquisition step with the done flags (CSP re-draws α at episode ends)."""

    def prepare_batch(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Transform a replay batch before an update (CSP appends freshly drawn α to the states)."""
        return batch

    @contextmanager
    def learning_mode(self) -> Iterator[None]:
        """Wraps every gradient update (Rewire's actor forwards differently on replay batches than when acting)."""
        yield

    def gradient_masks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(parameter, 0/1 mask) pairs multiplied into the policy step's gradients before its optimizer step
        (PackNet freezes owned weights here); none by default."""
        return []

    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        """The current task's training is over (consolidate, prune, cache)."""
        self.tasks_seen = task_index + 1

    def policy_for_task(self, task_index: int) -> GaussianActor:
        """The actor that answers for task k at inference (deterministic evaluation uses tanh(μ))."""
        raise NotImplementedError

    def memory_report(self) -> dict[str, int]:
        """Parameter counts: what inference on every task needs, and everything the method stores."""
        raise NotImplementedError

    # --- stage checkpoints ---------------------------------------------------------------------------------------
    def structure(self) -> dict[str, Any]:
        """What `rebuild` needs to recreate the module layout before loading a state dict."""
        return {"tasks_seen": self.tasks_seen}

    def rebuild(self, structure: dict[str, Any]) -> None:
        self.tasks_seen = int(structure["tasks_seen"])

    # --- resume checkpoints (mid-task) -------------------------------------------------------------------------
    def runtime_state(self) -> dict[str, Any]:
        """What a checkpoint taken inside a task needs besides `structure()` and the state dict, as data: the
        parameters frozen so far (`requires_grad` is not in a state dict) and a method's own per-task attributes."""
        return {"frozen": [name for name, p in self.named_parameters() if not p.requires_grad]}

    def load_runtime_state(self, state: dict[str, Any]) -> None:
        frozen = set(state["frozen"])
        for name, p in self.named_parameters():
            p.requires_grad_(name not in frozen)
