"""Maskable MLPs of the sparse suite (dapd.md §2.1, §4): the actor and a fused twin critic.

Every Linear weight may carry a 0/1 mask used in the forward pass as `W ⊙ M`, so the gradient reaching `W` is
already `M ⊙ ∂L/∂(W ⊙ M)`: masked connections get exactly zero gradient while their raw values are kept (DAPD).
RiGL/RLx2 additionally zero the raw weights (`zero_pruned_weights`). The twin critic stores both Q networks in one
tensor per layer (`[2, out, in]`) so that both are evaluated with one batched matmul.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class LayerView:
    """One prunable weight matrix: a (possibly sliced) view of a stacked parameter and of its mask."""

    name: str
    weight: torch.Tensor
    mask: torch.Tensor | None
    fan_in: int
    fan_out: int


class MaskedMLPStack(nn.Module):
    """`groups` independent ReLU MLPs of identical shape, each Linear weight optionally masked.

    Weights are xavier-normal per matrix and biases keep PyTorch's Linear default (U(±1/√fan_in)), as DAPD does.
    """

    def __init__(self, groups: int, sizes: list[int], names: list[str], init: str = "xavier_normal") -> None:
        super().__init__()
        if init not in ("xavier_normal", "orthogonal"):
            raise ValueError(f"unknown init {init!r}; valid: xavier_normal, orthogonal")
        self.groups, self.sizes, self.names = groups, list(sizes), list(names)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            w = torch.empty(groups, fan_out, fan_in)
            for g in range(groups):
                (nn.init.xavier_normal_ if init == "xavier_normal" else nn.init.orthogonal_)(w[g])
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(w))
            bias = (
                torch.empty(groups, fan_out).uniform_(-bound, bound)
                if init == "xavier_normal"
                else torch.zeros(groups, fan_out)
            )
            self.biases.append(nn.Parameter(bias))
        self.masks: list[torch.Tensor | None] = [None] * len(self.weights)
        self._active_weights = self.n_weights()
        self.dense_grads: list[torch.Tensor] | None = None
        """When set to a list before a forward, the layers' effective weights retain their (dense) gradient."""

    def effective(self, layer: int) -> torch.Tensor:
        mask = self.masks[layer]
        return self.weights[layer] if mask is None else self.weights[layer] * mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, in] → [groups, B, out] (or [B, out] when groups == 1)."""
        n = len(self.weights)
        for i in range(n):
            w = self.effective(i)
            if self.dense_grads is not None:
                w.retain_grad()
                self.dense_grads.append(w)
            if self.groups == 1:
                x = F.linear(x, w[0], self.biases[i][0])
            else:  # one batched matmul for every group, the bias added by the GEMM
                x = torch.baddbmm(self.biases[i][:, None, :], x.expand(self.groups, *x.shape[-2:]), w.transpose(1, 2))
            if i < n - 1:
                x = F.relu(x)
        return x

    def layers(self) -> Iterator[LayerView]:
        """Every prunable matrix, one per (group, layer), named `<name>.l<k>`."""
        for i, w in enumerate(self.weights):
            mask = self.masks[i]
            for g in range(self.groups):
                yield LayerView(f"{self.names[g]}.l{i}", w.data[g], None if mask is None else mask[g], w.shape[2], w.shape[1])

    def set_masks(self, masks: list[torch.Tensor] | None) -> None:
        """Install masks (one [groups, out, in] 0/1 tensor per layer) or remove them (None: dense)."""
        if masks is None:
            self.masks = [None] * len(self.weights)
        else:
            self.masks = [m.to(dtype=w.dtype, device=w.device) for m, w in zip(masks, self.weights, strict=True)]
        # Counted once here (one host sync), not per update: topology updates swap connections 1:1 in place.
        self._active_weights = sum(
            w.numel() if m is None else int(m.sum().item()) for w, m in zip(self.weights, self.masks, strict=True)
        )

    @torch.no_grad()
    def zero_pruned_weights(self) -> None:
        for w, m in zip(self.weights, self.masks, strict=True):
            if m is not None:
                w.mul_(m)

    def n_weights(self) -> int:
        return sum(w.numel() for w in self.weights)

    def n_biases(self) -> int:
        return sum(b.numel() for b in self.biases)

    def n_active_weights(self) -> int:
        """Unmasked weights (as of the last `set_masks`; RiGL/RLx2 updates keep every layer's count)."""
        return self._active_weights


class SquashedGaussianActor(nn.Module):
    """obs → tanh-squashed Gaussian; log σ = tanh(raw) rescaled into [log_std_min, log_std_max] (pytorch_sac)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: list[int],
        log_std_bounds: tuple[float, float],
        init: str = "xavier_normal",
    ) -> None:
        super().__init__()
        self.net = MaskedMLPStack(1, [obs_dim, *hidden, 2 * action_dim], ["actor"], init)
        self.log_std_min, self.log_std_max = log_std_bounds

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(obs).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1)
        return mu, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action tanh(μ + σε) and log π of it (tanh correction 2(log 2 − u − softplus(−2u)))."""
        mu, log_std = self.dist_params(obs)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + log_std.exp() * eps
        log_prob = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist_params(obs)[0])


class FusedTwinCritic(nn.Module):
    """Q1 and Q2 over concat(obs, action), both in one stacked MLP."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], init: str = "xavier_normal") -> None:
        super().__init__()
        self.net = MaskedMLPStack(2, [obs_dim + action_dim, *hidden, 1], ["q1", "q2"], init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """[2, B] Q-values (row 0 = Q1, row 1 = Q2)."""
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def forward_flops(net: MaskedMLPStack, dense: bool = False) -> int:
    """Multiply-adds ×2 plus bias adds of one sample through the (masked) network."""
    weights = net.n_weights() if dense else net.n_active_weights()
    return 2 * weights + net.n_biases()
