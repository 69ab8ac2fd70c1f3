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


class ReplayBuffer:
    """A circular buffer; a put larger than the free tail wraps around, like SaLinA's time-window buffer."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device) -> None:
        self.capacity = int(capacity)
        self.device = device
        self.obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.action = torch.zeros(self.capacity, action_dim, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.done = torch.zeros(self.capacity, device=device)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def put(self, obs, action, reward, done, next_obs) -> None:
        n = obs.shape[0]
        idx = (torch.arange(n, device=self.device) + self.pos) % self.capacity
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
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.done[idx], self.next_obs[idx])

    def __getstate__(self) -> dict:
        """For resume checkpoints: only the filled rows travel (a 1M-row buffer early in a task is mostly zeros)."""
        state = self.__dict__.copy()
        for name in ("obs", "next_obs", "action", "reward", "done"):
            state[name] = getattr(self, name)[: self.size].clone()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name in ("obs", "next_obs", "action", "reward", "done"):
            filled = state[name]
            full = torch.zeros((self.capacity, *filled.shape[1:]), dtype=filled.dtype, device=filled.device)
            full[: self.size] = filled
            setattr(self, name, full)

    def sample_obs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Observations only (EWC's Fisher, PackNet and CSP use these after a task)."""
        return self.sample(n, generator).obs
