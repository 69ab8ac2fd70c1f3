"""Actor (tanh-squashed Gaussian) and twin critic MLPs, configurable for both papers' SAC flavours."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rlrepro.sac.config import NetworkConfig

LOG_2PI = math.log(2 * math.pi)


def activation(cfg: NetworkConfig) -> nn.Module:
    if cfg.activation == "leaky_relu":
        return nn.LeakyReLU(cfg.negative_slope)
    return nn.ReLU() if cfg.activation == "relu" else nn.Tanh()


def mlp(in_dim: int, out_dim: int, cfg: NetworkConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in cfg.hidden_sizes:
        layers += [nn.Linear(in_dim, width), activation(cfg)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    if cfg.init == "xavier_normal":
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
    return nn.Sequential(*layers)


def squashed_log_prob(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(tanh(u)) of a diagonal Gaussian pre-squash sample u, with the original's 1e-8 and tanh correction."""
    std = log_std.exp()
    gauss = -0.5 * (((u - mu) / (std + 1e-8)) ** 2 + 2 * log_std + LOG_2PI)
    correction = 2 * (math.log(2) - u - F.softplus(-2 * u))
    return gauss.sum(-1) - correction.sum(-1)


class GaussianActor(nn.Module):
    """obs → (μ, log σ); actions are tanh(μ + σ·ε) when sampled and tanh(μ) when deterministic."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.action_dim = action_dim
        self.net = mlp(obs_dim, 2 * action_dim, cfg)

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(obs).chunk(2, dim=-1)
        if self.cfg.log_std_mode == "clip":
            log_std = raw.clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        else:
            lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
            log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1)
        return mu, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability."""
        mu, log_std = self.dist_params(obs)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + log_std.exp() * noise
        return torch.tanh(u), squashed_log_prob(u, mu, log_std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist_params(obs)[0])


class TwinCritic(nn.Module):
    """Two independent Q(s, a) MLPs."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: NetworkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.q1 = mlp(obs_dim + action_dim, 1, cfg)
        self.q2 = mlp(obs_dim + action_dim, 1, cfg)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
