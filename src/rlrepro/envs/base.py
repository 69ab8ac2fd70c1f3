"""The environment interface every backend implements. The backends import it; it imports none of them (the
factory that picks a backend is `rlrepro.envs.factory`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class StepResult:
    """One vectorised step. `obs` is already the reset observation where an episode ended (auto-reset)."""

    obs: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    """1.0 where the episode ended, by termination or by the time limit."""
    truncated: torch.Tensor
    """1.0 where the episode ended only because of the time limit."""
    final_obs: torch.Tensor
    """The observation the step reached, before any auto-reset (differs from `obs` only where `done`)."""
    success: torch.Tensor | None = None
    """Per-step task success flag where the backend has one (MetaWorld), else None."""


class VecEnv(Protocol):
    """B parallel copies of one task, auto-resetting to the initial state of the last `reset` (Brax v1 semantics)."""

    n_envs: int
    obs_dim: int
    action_dim: int
    episode_length: int

    def reset(self, seed: int) -> torch.Tensor: ...

    def step(self, action: torch.Tensor) -> StepResult: ...

    def get_state(self) -> Any:
        """Everything the next steps depend on, picklable (resume checkpoints restore it with `set_state`)."""
        ...

    def set_state(self, state: Any) -> None: ...
