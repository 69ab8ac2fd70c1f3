"""The engine's networks, one set for both papers: a maskable MLP stack, the tanh-Gaussian actor, the twin critic.

`MLPStack` holds `groups` MLPs of one shape, each Linear weight stored as a `[groups, out, in]` tensor that may carry
a 0/1 mask used as `W ⊙ M` in the forward pass (the gradient reaching `W` is then `M ⊙ ∂L/∂(W ⊙ M)`: DAPD keeps the
raw values of masked weights, RiGL/RLx2 also zero them). The twin critic is one stack with two groups, so both Q
networks are evaluated by one batched matmul per hidden layer.

Where the two originals differ, `NetworkConfig` says which one a network follows, and each choice reproduces that
original's numbers bit for bit (tests/test_continual_reference.py, tests/test_bitwise.py pin them):
- `init`: `torch_default` draws every Linear as PyTorch's nn.Linear does, network by network (Rewire/SaLinA);
  `xavier_normal` (pytorch_sac, DAPD: biases U(±1/√fan_in)) and `orthogonal` (RLx2: zero biases) draw layer by layer.
- `log_std_mode`: clamp (SaLinA) or tanh-rescale (pytorch_sac) of the raw log σ.
- `log_prob_mode`: log N(u; μ, σ) from the sample with σ + 1e-8 (SaLinA) or from the standard-normal noise
  (pytorch_sac): the same density, other last bits.
- `critic_head`: the critic's scalar output layer per Q network (`per_network`, the bits of two separate networks:
  PyTorch's kernel for a one-column output differs from the batched one) or batched with the hidden layers.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rlrepro.engine.config import NetworkConfig

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LayerView:
    """One prunable weight matrix: a (possibly sliced) view of a stacked parameter and of its mask."""

    name: str
    weight: torch.Tensor
    mask: torch.Tensor | None
    fan_in: int
    fan_out: int


def activation(cfg: NetworkConfig) -> nn.Module:
    """The hidden activation as a module (the continual methods' own architectures use it)."""
    if cfg.activation == "leaky_relu":
        return nn.LeakyReLU(cfg.negative_slope)
    return nn.ReLU() if cfg.activation == "relu" else nn.Tanh()


class MLPStack(nn.Module):
    """`groups` independent MLPs of identical shape (`sizes` = [in, hidden..., out]), each weight optionally masked."""

    def __init__(self, groups: int, sizes: list[int], names: list[str], cfg: NetworkConfig,
                 batched_head: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.groups, self.sizes, self.names, self.cfg = groups, list(sizes), list(names), cfg
        self.batched_head = batched_head or groups == 1
        self.act = activation(cfg)
        pairs = list(itertools.pairwise(sizes))
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(groups, o, i)) for i, o in pairs)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(groups, o)) for _, o in pairs)
        self._init(cfg.init)
        self.masks: list[torch.Tensor | None] = [None] * len(self.weights)
        # counted once: the training loop reads them every update (FLOP accounting) and the shapes never change
        self._n_weights = sum(w.numel() for w in self.weights)
        self._n_biases = sum(b.numel() for b in self.biases)
        self._active_weights = self._n_weights
        self.dense_grads: list[torch.Tensor] | None = None
        """When set to a list before a forward, the layers' effective weights retain their (dense) gradient."""

    @torch.no_grad()
    def _init(self, init: str) -> None:
        if init == "torch_default":  # nn.Linear's draws, one network after the other (two nn.Sequential)
            for g in range(self.groups):
                for w, b in zip(self.weights, self.biases, strict=True):
                    nn.init.kaiming_uniform_(w[g], a=math.sqrt(5))
                    bound = 1.0 / math.sqrt(w.shape[2]) if w.shape[2] > 0 else 0.0
                    nn.init.uniform_(b[g], -bound, bound)
            return
        for w, b in zip(self.weights, self.biases, strict=True):  # DAPD/RLx2: layer by layer, all groups at once
            for g in range(self.groups):
                (nn.init.xavier_normal_ if init == "xavier_normal" else nn.init.orthogonal_)(w[g])
            if init == "xavier_normal":
                bound = 1.0 / math.sqrt(w.shape[2])
                b.uniform_(-bound, bound)
            else:
                b.zero_()

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
            b = self.biases[i]
            if self.groups == 1:
                x = F.linear(x, w[0], b[0])
            elif i == n - 1 and not self.batched_head:
                x = torch.stack([F.linear(x[g], w[g], b[g]) for g in range(self.groups)])
            else:  # one batched matmul for every group, the bias added by the GEMM
                x = torch.baddbmm(b[:, None, :], x.expand(self.groups, *x.shape[-2:]), w.transpose(1, 2))
            if i < n - 1:
                x = self.act(x)
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
        return self._n_weights

    def n_biases(self) -> int:
        return self._n_biases

    def n_active_weights(self) -> int:
        """Unmasked weights (as of the last `set_masks`; RiGL/RLx2 updates keep every layer's count)."""
        return self._active_weights


_LEGACY_DOTTED = re.compile(r"^(?P<prefix>.*?)net\.(?P<index>\d+)\.(?P<kind>weight|bias)$")
_LEGACY_TWIN = re.compile(r"^(?P<prefix>.*?)q(?P<group>[12])\.(?P<index>\d+)\.(?P<kind>weight|bias)$")
_LEGACY_BUFFER = re.compile(r"^(?P<prefix>\w+?__.*?)net_(?P<index>\d+)_(?P<kind>weight|bias)$")
_PLURAL = {"weight": "weights", "bias": "biases"}


def upgrade_legacy_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Rename pre-merge keys in place (and return the dict): engine 0.2.0 built each MLP as an nn.Sequential, so a
    policies file of that version holds `…net.<2i>.weight` (actors), `q1.<2i>.weight` / `q2.…` (critics) and
    per-parameter method buffers named `<kind>__…net_<2i>_weight` (EWC, FT-L2, PackNet); today each layer is one
    stacked `[groups, out, in]` MLPStack parameter. Keys of any other form are left as they are."""
    twins: dict[str, list[torch.Tensor | None]] = {}
    for key in list(state):
        if m := _LEGACY_DOTTED.match(key):
            state[f"{m['prefix']}net.{_PLURAL[m['kind']]}.{int(m['index']) // 2}"] = state.pop(key).unsqueeze(0)
        elif m := _LEGACY_BUFFER.match(key):
            state[f"{m['prefix']}net_{_PLURAL[m['kind']]}_{int(m['index']) // 2}"] = state.pop(key).unsqueeze(0)
        elif m := _LEGACY_TWIN.match(key):
            new = f"{m['prefix']}net.{_PLURAL[m['kind']]}.{int(m['index']) // 2}"
            twins.setdefault(new, [None, None])[int(m["group"]) - 1] = state.pop(key)
    for key, (q1, q2) in twins.items():
        state[key] = torch.stack([q1, q2])
    return state


def squashed_log_prob(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(tanh(u)) of a diagonal Gaussian pre-squash sample u, with SaLinA's σ + 1e-8 and the tanh correction."""
    std = log_std.exp()
    gauss = -0.5 * (((u - mu) / (std + 1e-8)) ** 2 + 2 * log_std + LOG_2PI)
    correction = 2 * (math.log(2) - u - F.softplus(-2 * u))
    return gauss.sum(-1) - correction.sum(-1)


class GaussianActor(nn.Module):
    """obs → (μ, log σ); actions are tanh(μ + σ·ε) when sampled and tanh(μ) when deterministic.

    The continual methods' own architectures (Rewire's rewiring, PNN's columns, CSP's subspace) subclass it and
    replace `net`; everything about the distribution stays here.
    """

    def __init__(self, obs_dim: int, action_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.action_dim = action_dim
        self.net = MLPStack(1, [obs_dim, *cfg.hidden_sizes, 2 * action_dim], ["actor"], cfg)

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(obs).chunk(2, dim=-1)
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        if self.cfg.log_std_mode == "clip":
            return mu, raw.clamp(lo, hi)
        return mu, lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """A reparameterised action and its log-probability; `noise` (standard normal, μ's shape) when drawn by the
        caller (the compiled update draws it before the graph, from the same generator, in the same order)."""
        mu, log_std = self.dist_params(obs)
        if noise is None:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + log_std.exp() * noise
        if self.cfg.log_prob_mode == "sample":
            return torch.tanh(u), squashed_log_prob(u, mu, log_std)
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)  # before tanh(u): autograd's order
        return torch.tanh(u), log_prob

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist_params(obs)[0])


class TwinCritic(nn.Module):
    """Q1 and Q2 over concat(obs, action), both in one stacked MLP; `forward` returns them as a [2, B] tensor."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = MLPStack(2, [obs_dim + action_dim, *cfg.hidden_sizes, 1], ["q1", "q2"], cfg,
                            batched_head=cfg.critic_head == "batched")  # fmt: skip

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """[2, B] Q-values (row 0 = Q1, row 1 = Q2)."""
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(net: MLPStack, dense: bool = False) -> int:
    """Multiply-adds ×2 plus bias adds of one sample through the (masked) network."""
    weights = net.n_weights() if dense else net.n_active_weights()
    return 2 * weights + net.n_biases()
