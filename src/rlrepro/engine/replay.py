"""The engine's one replay: a pre-allocated ring of transitions for vectorised (continual) and single-env (sparse)
collection, sampled as flat batches or as windows of n consecutive transitions (n-step targets).

`oldest`/`size` delimit the live transitions, so RLx2's dynamic buffer can drop the oldest ones; a put larger than
the free tail wraps around. Optional columns: `behaviour_dim` > 0 keeps what the acting policy was conditioned on
(CSP's α); `next_actions` keeps the action taken at s' (the second step of SaLinA's window; filled by the next put);
`action_means` keeps the policy's mean action (RLx2's policy-distance check).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Sampled transitions: [B, ...] from `sample`, [B, n, ...] windows from `sample_windows`."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    not_done: torch.Tensor
    """0 where the TD target must not bootstrap."""
    next_obs: torch.Tensor
    ended: torch.Tensor | None = None
    """1 where the episode ended after this transition (terminal or time limit: RLx2's reset flag); windows only."""
    valid: torch.Tensor | None = None
    """0 for window steps past the newest stored transition; windows only."""
    behaviour: torch.Tensor | None = None
    """What the acting policy was conditioned on besides the state (CSP: the env's α), when the replay keeps it."""
    next_action: torch.Tensor | None = None
    """The action taken at the next state, when the replay keeps it."""
    policy_obs: torch.Tensor | None = None
    """States of the policy step when a method sets them (CSP: with α appended); None: the learner's rule."""


class ReplayBuffer:
    """A circular buffer of transitions; see the module docstring."""

    COLUMNS = ("obs", "next_obs", "action", "reward", "not_done", "ended", "behaviour", "next_action", "action_mean")

    def __init__(
        self, capacity: int, obs_dim: int, action_dim: int, device: torch.device, behaviour_dim: int = 0,
        next_actions: bool = False, action_means: bool = False,
    ) -> None:  # fmt: skip
        self.capacity = int(capacity)
        self.device = device
        self.obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=device)
        self.action = torch.zeros(self.capacity, action_dim, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.not_done = torch.zeros(self.capacity, device=device)
        self.ended = torch.zeros(self.capacity, device=device)
        self.behaviour = torch.zeros(self.capacity, behaviour_dim, device=device) if behaviour_dim > 0 else None
        self.next_action = torch.zeros(self.capacity, action_dim, device=device) if next_actions else None
        self.action_mean = torch.zeros(self.capacity, action_dim, device=device) if action_means else None
        self._last_idx: torch.Tensor | None = None
        self.oldest = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def _advance(self, n: int) -> None:
        overflow = max(self.size + n - self.capacity, 0)
        self.oldest = (self.oldest + overflow) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def put(self, obs, action, reward, not_done, next_obs, behaviour=None, ended=None) -> None:
        """A batch of transitions (one per env), in the rows after the newest."""
        n = obs.shape[0]
        idx = (torch.arange(n, device=self.device) + (self.oldest + self.size)) % self.capacity
        if self.next_action is not None:
            if self._last_idx is not None:
                self.next_action[self._last_idx] = action  # this step's action is the previous rows' next action
            self._last_idx = idx
        if self.behaviour is not None:
            self.behaviour[idx] = behaviour.to(self.device)
        self.obs[idx] = obs
        self.action[idx] = action
        self.reward[idx] = reward
        self.not_done[idx] = not_done
        self.ended[idx] = 1.0 - not_done if ended is None else ended
        self.next_obs[idx] = next_obs
        self._advance(n)

    def add(self, obs, action, reward: float, next_obs, not_done: float, ended: float, action_mean=None) -> None:
        """One transition (single-env collection: plain row writes, no index tensors)."""
        i = (self.oldest + self.size) % self.capacity
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.not_done[i] = not_done
        self.ended[i] = ended
        if self.action_mean is not None:
            self.action_mean[i] = action if action_mean is None else action_mean
        self._advance(1)

    def _rows(self, start: torch.Tensor) -> torch.Tensor:
        """Storage rows of live positions (0 = the oldest live transition)."""
        start = start.to(self.device)
        return start if self.oldest == 0 else (self.oldest + start) % self.capacity

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A flat batch of transitions, uniformly with replacement."""
        idx = self._rows(torch.randint(0, self.size, (batch_size,), generator=generator, device=generator.device))
        extras = {name: getattr(self, name)[idx] for name in ("behaviour", "next_action") if getattr(self, name) is not None}
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.not_done[idx], self.next_obs[idx], **extras)

    def sample_windows(self, batch_size: int, generator: torch.Generator, n: int = 1) -> Batch:
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
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.not_done[idx], self.next_obs[idx],
                     ended=self.ended[idx], valid=valid)  # fmt: skip

    def sample_obs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Observations only (EWC's Fisher, PackNet and CSP use these after a task)."""
        return self.sample(n, generator).obs

    def oldest_states(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The n oldest live (obs, action_mean) pairs (RLx2's policy-distance check)."""
        idx = (self.oldest + torch.arange(min(n, self.size), device=self.device)) % self.capacity
        return self.obs[idx], self.action_mean[idx]

    def drop_oldest(self, count: int) -> None:
        count = min(int(count), self.size)
        self.oldest = (self.oldest + count) % self.capacity
        self.size -= count

    # --- checkpoints: only the live rows travel, oldest first (a 1M-row buffer early in a task is mostly zeros) ---
    def _live(self) -> torch.Tensor:
        return (self.oldest + torch.arange(self.size, device=self.device)) % self.capacity

    def state_dict(self) -> dict:
        idx = self._live()
        columns = {c: getattr(self, c)[idx].cpu() for c in self.COLUMNS if getattr(self, c) is not None}
        last = None if self._last_idx is None else ((self._last_idx - self.oldest) % self.capacity).cpu()
        return {"capacity": self.capacity, "last_idx": last, **columns}

    def load_state_dict(self, state: dict) -> None:
        n = state["obs"].shape[0]
        for c in self.COLUMNS:
            if getattr(self, c) is not None:
                getattr(self, c)[:n] = state[c].to(self.device)
        self.oldest, self.size = 0, n
        self._last_idx = None if state["last_idx"] is None else state["last_idx"].to(self.device)


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
