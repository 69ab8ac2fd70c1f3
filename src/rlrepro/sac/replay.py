"""Pre-allocated replay storage of (s, a, r, done, s') windows, sampled uniformly with replacement."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    """1.0 where the TD target must not bootstrap."""
    next_obs: torch.Tensor
    behaviour: torch.Tensor | None = None
    """What the acting policy was conditioned on besides the state (CSP: the env's α), when the replay keeps it."""
    next_action: torch.Tensor | None = None
    """The action taken at the next state (the second step of the original's window), when the replay keeps it."""
    policy_obs: torch.Tensor | None = None
    """States of the policy step; None means both steps of the window, cat(obs, next_obs)."""


class ReplayBuffer:
    """A circular buffer; a put larger than the free tail wraps around, like SaLinA's time-window buffer.

    Optional columns for methods that need more of the original's windows: `behaviour_dim` > 0 keeps what the
    acting policy was conditioned on (CSP's α), `next_actions` keeps the action taken at s' (filled by the next put;
    rows of the latest put hold zeros until then).
    """

    COLUMNS = ("obs", "next_obs", "action", "reward", "done", "behaviour", "next_action")

    def __init__(
        self, capacity: int, obs_dim: int, action_dim: int, device: torch.device, behaviour_dim: int = 0,
        next_actions: bool = False,
    ) -> None:  # fmt: skip
        self.capacity = int(capacity)
        self.device = device
        self.obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.action = torch.zeros(self.capacity, action_dim, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.done = torch.zeros(self.capacity, device=device)
        self.behaviour = torch.zeros(self.capacity, behaviour_dim, device=device) if behaviour_dim > 0 else None
        self.next_action = torch.zeros(self.capacity, action_dim, device=device) if next_actions else None
        self._last_idx: torch.Tensor | None = None
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def put(self, obs, action, reward, done, next_obs, behaviour=None) -> None:
        n = obs.shape[0]
        idx = (torch.arange(n, device=self.device) + self.pos) % self.capacity
        if self.next_action is not None:
            if self._last_idx is not None:
                self.next_action[self._last_idx] = action  # this step's action is the previous rows' next action
            self._last_idx = idx
        if self.behaviour is not None:
            self.behaviour[idx] = behaviour.to(self.device)
        self.obs[idx] = obs
        self.action[idx] = action
        self.reward[idx] = reward
        self.done[idx] = done
        self.next_obs[idx] = next_obs
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), generator=generator, device=generator.device)
        idx = idx.to(self.device)
        extras = {name: getattr(self, name)[idx] for name in ("behaviour", "next_action") if getattr(self, name) is not None}
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.done[idx], self.next_obs[idx], **extras)

    def __getstate__(self) -> dict:
        """For resume checkpoints: only the filled rows travel (a 1M-row buffer early in a task is mostly zeros)."""
        state = self.__dict__.copy()
        for name in self.COLUMNS:
            if state[name] is not None:
                state[name] = state[name][: self.size].clone()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name in self.COLUMNS:
            filled = state[name]
            if filled is None:
                continue
            full = torch.zeros((self.capacity, *filled.shape[1:]), dtype=filled.dtype, device=filled.device)
            full[: self.size] = filled
            setattr(self, name, full)

    def sample_obs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Observations only (EWC's Fisher, PackNet and CSP use these after a task)."""
        return self.sample(n, generator).obs
