"""Replay for single-env SAC: a ring of transitions with n-step windows and RLx2's shrinkable oldest end."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Window:
    """A batch of windows of n consecutive transitions ([B, n, ...]); n = 1 is the ordinary SAC batch."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    not_done: torch.Tensor
    """0 at a true terminal (time-limit ends still bootstrap: pytorch_sac's not_done_no_max)."""
    ended: torch.Tensor
    """1 where the episode ended after this transition (terminal or time limit: RLx2's reset flag)."""
    valid: torch.Tensor
    """0 for window steps past the newest stored transition."""


class TransitionReplay:
    """Pre-allocated ring buffer; `oldest`/`size` delimit the live transitions so RLx2 can drop the oldest ones."""

    FIELDS = ("obs", "action", "reward", "next_obs", "not_done", "ended", "action_mean")

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device) -> None:
        self.capacity = int(capacity)
        self.device = device
        self.obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.action = torch.zeros(self.capacity, action_dim, device=device)
        self.action_mean = torch.zeros(self.capacity, action_dim, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.not_done = torch.zeros(self.capacity, device=device)
        self.ended = torch.zeros(self.capacity, device=device)
        self.oldest = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, not_done: float, ended: float, action_mean=None) -> None:
        i = (self.oldest + self.size) % self.capacity
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.not_done[i] = not_done
        self.ended[i] = ended
        self.action_mean[i] = action if action_mean is None else action_mean
        if self.size == self.capacity:
            self.oldest = (self.oldest + 1) % self.capacity
        else:
            self.size += 1

    def sample(self, batch_size: int, generator: torch.Generator, n: int = 1) -> Window:
        """Uniform start positions (with replacement) over the live transitions; windows of n steps from there."""
        start = torch.randint(0, self.size, (batch_size, 1), generator=generator, device=generator.device)
        start = start.to(self.device)
        if n == 1:  # the ordinary SAC batch: the same indices as the general case, in fewer ops
            valid = torch.ones(start.shape, device=self.device)
            idx = (self.oldest + start) % self.capacity
        else:
            offset = start + torch.arange(n, device=self.device)
            valid = (offset < self.size).float()
            idx = (self.oldest + offset.clamp(max=self.size - 1)) % self.capacity
        return Window(
            self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx],
            self.not_done[idx], self.ended[idx], valid,
        )  # fmt: skip

    def oldest_states(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The n oldest live (obs, action_mean) pairs (RLx2's policy-distance check)."""
        idx = (self.oldest + torch.arange(min(n, self.size), device=self.device)) % self.capacity
        return self.obs[idx], self.action_mean[idx]

    def drop_oldest(self, count: int) -> None:
        count = min(int(count), self.size)
        self.oldest = (self.oldest + count) % self.capacity
        self.size -= count

    def state_dict(self) -> dict:
        """Live transitions only, oldest first (a checkpoint of a short run stays small)."""
        idx = (self.oldest + torch.arange(self.size, device=self.device)) % self.capacity
        return {"capacity": self.capacity, **{f: getattr(self, f)[idx].cpu() for f in self.FIELDS}}

    def load_state_dict(self, state: dict) -> None:
        n = state["obs"].shape[0]
        for f in self.FIELDS:
            getattr(self, f)[:n] = state[f].to(self.device)
        self.oldest, self.size = 0, n


def nstep_soft_target(
    reward: torch.Tensor,
    not_done: torch.Tensor,
    ended: torch.Tensor,
    valid: torch.Tensor,
    soft_entropy: torch.Tensor,
    next_q: torch.Tensor,
    discount: float,
) -> torch.Tensor:
    """RLx2's multi-step soft TD target over [B, n] windows.

    Σ_k γ^k r_k + Σ_k γ^(k+1)·not_done_k·(−α log π(a'_k|s'_k)) + γ^(m+1)·not_done_m·Q(s'_m, a'_m), summed over the
    steps k ≤ m still inside the episode (the window stops after an episode end or at the newest transition).
    For n = 1 this is the ordinary SAC target r + γ·not_done·(min Q − α log π).
    """
    n = reward.shape[1]
    if n == 1:  # the general formula below with its exact ×1 and one-term sums dropped: bit-identical, fewer ops
        bootstrap = discount * not_done[:, 0]
        return reward[:, 0] + bootstrap * soft_entropy[:, 0] + bootstrap * next_q[:, 0]
    before_end = torch.cumprod(torch.cat([torch.ones_like(ended[:, :1]), 1 - ended[:, :-1]], dim=1), dim=1)
    alive = before_end * torch.cumprod(valid, dim=1)
    powers = discount ** torch.arange(n + 1, device=reward.device, dtype=reward.dtype)
    last = alive.sum(1).long() - 1
    rows = torch.arange(reward.shape[0], device=reward.device)
    target = (alive * (powers[:n] * reward + powers[1:] * not_done * soft_entropy)).sum(1)
    return target + powers[last + 1] * not_done[rows, last] * next_q[rows, last]
