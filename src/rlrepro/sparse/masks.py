"""Sparse topologies: DAPD's global SNIP masks (dapd.md §2.2) and the RiGL/RLx2 DST scheduler (§3.1)."""

from __future__ import annotations

import math
from collections import deque

import torch

from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import MLPStack


def global_topk_masks(scores: torch.Tensor, keep_ratio: float, shapes: list[torch.Size]) -> list[torch.Tensor] | None:
    """Keep entries scoring ≥ the k-th largest (k = int(N·keep_ratio)) over all layers jointly; None if k == 0."""
    k = int(scores.numel() * keep_ratio)
    if k <= 0:
        return None
    threshold = torch.topk(scores, k, sorted=True).values[-1]
    keep = (scores >= threshold).float()
    return [part.view(shape) for part, shape in zip(keep.split([math.prod(s) for s in shapes]), shapes, strict=True)]


class PathwayMasks:
    """One network's DAPD mask: moving average of the last K normalised |W·∂L/∂W| vectors, one global budget."""

    def __init__(self, keep_ratio: float, history_len: int) -> None:
        self.keep_ratio = keep_ratio
        self.history: deque[torch.Tensor] = deque(maxlen=history_len)
        self.masks: list[torch.Tensor] | None = None
        self.updates = 0

    def update(self, layer_scores: list[torch.Tensor]) -> list[torch.Tensor] | None:
        flat = torch.cat([s.abs().flatten() for s in layer_scores])
        total = flat.sum()
        if total > 0:  # all-zero scores (no gradient at all) carry no ranking: keep the old mask
            self.history.append(flat / total)
        if not self.history:
            return self.masks
        average = torch.stack(list(self.history)).mean(0)
        k = int(average.numel() * self.keep_ratio)
        threshold = torch.topk(average, k, sorted=True).values[-1] if k > 0 else average.max() + 1
        if threshold == 0 and self.masks is not None:
            return self.masks  # the original's guard: a zero threshold keeps the previous mask
        self.masks = global_topk_masks(average, self.keep_ratio, [s.shape for s in layer_scores])
        self.updates += 1
        return self.masks

    def state_dict(self) -> dict:
        return {"history": list(self.history), "masks": self.masks, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.history = deque(state["history"], maxlen=self.history.maxlen)
        self.masks, self.updates = state["masks"], state["updates"]


def erk_densities(shapes: list[tuple[int, int]], density: float) -> list[float]:
    """Erdős–Rényi-Kernel densities per (fan_in, fan_out) layer so the whole set keeps `density` of its weights.

    Density ∝ (fan_in + fan_out)/(fan_in·fan_out); a layer that would exceed 1 becomes dense and the remaining
    budget is redistributed over the others (RigL's `sparse_set`, keep_first_layer_dense = False).
    """
    if density >= 1.0:
        return [1.0] * len(shapes)
    dense: set[int] = set()
    while True:
        budget, divisor, raw = 0.0, 0.0, {}
        for i, (fan_in, fan_out) in enumerate(shapes):
            n = fan_in * fan_out
            if i in dense:
                budget -= n * (1 - density)
            else:
                budget += n * density
                raw[i] = (fan_in + fan_out) / (fan_in * fan_out)
                divisor += raw[i] * n
        eps = budget / divisor
        largest = max(raw.values())
        if largest * eps <= 1:
            break
        dense |= {i for i, r in raw.items() if r == largest}
    return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]


def magnitude_masks(net: MLPStack, densities: list[float]) -> list[torch.Tensor]:
    """Per prunable matrix, keep the int(density·n) largest |W| (the RiGL initial mask), stacked per layer."""
    masks = [torch.zeros_like(w) for w in net.weights]
    views = list(net.layers())
    for view, density, (layer, group) in zip(views, densities, _layer_group_index(net), strict=True):
        n_keep = int(density * view.weight.numel())
        idx = torch.topk(view.weight.abs().flatten(), n_keep).indices
        masks[layer][group].view(-1)[idx] = 1.0
    return masks


def _layer_group_index(net: MLPStack) -> list[tuple[int, int]]:
    return [(layer, group) for layer in range(len(net.weights)) for group in range(net.groups)]


class DSTScheduler:
    """RiGL topology updates for one network: every `delta` optimizer steps until `t_end`, drop the smallest |W| and
    grow the largest dense |∂L/∂W| (drop fraction ζ/2·(1 + cos(π·t/t_end))); pruned weights are exactly zero."""

    def __init__(
        self, net: MLPStack, sparsity: float, delta: int, zeta: float, t_end: int, random_grow: bool = False
    ) -> None:
        self.net, self.delta, self.zeta, self.t_end, self.random_grow = net, int(delta), zeta, int(t_end), random_grow
        self.densities = erk_densities([(v.fan_in, v.fan_out) for v in net.layers()], 1.0 - sparsity)
        net.set_masks(magnitude_masks(net, self.densities))
        net.zero_pruned_weights()
        self.step = 0
        self.topology_updates = 0

    def wants_dense_grad(self, ahead: int = 0) -> bool:
        """Whether the next call (`ahead` calls later: the one after) is a topology update (so this batch's dense
        gradient must be kept)."""
        nxt = self.step + 1 + ahead
        return nxt % self.delta == 0 and nxt < self.t_end

    def drop_fraction(self) -> float:
        return self.zeta / 2 * (1 + math.cos(math.pi * self.step / self.t_end))

    def __call__(self, dense_grads: list[torch.Tensor] | None, generator: torch.Generator | None = None) -> bool:
        """Count one optimizer step; on an update step change the topology and return False (skip the step)."""
        self.step += 1
        if not (self.step % self.delta == 0 and self.step < self.t_end):
            return True
        if dense_grads is None:
            raise RuntimeError("a DST step needs the dense gradient of the batch before it (wants_dense_grad)")
        self._update_topology(dense_grads, generator)
        return False

    @torch.no_grad()
    def _update_topology(self, dense_grads: list[torch.Tensor], generator: torch.Generator | None) -> None:
        fraction = self.drop_fraction()
        for layer, group in _layer_group_index(self.net):
            mask = self.net.masks[layer][group]
            weight = self.net.weights[layer].data[group]
            old = mask.clone()
            n_active = int(old.sum().item())
            n_prune = int(n_active * fraction)
            if n_prune == 0:
                continue
            # Drop among active connections only (an inactive zero never outranks an active one on ties).
            drop_score = torch.where(old > 0, weight.abs(), torch.full_like(weight, -1.0)).flatten()
            keep_idx = torch.topk(drop_score, n_active - n_prune).indices
            new = torch.zeros_like(old).flatten()
            new[keep_idx] = 1.0
            if self.random_grow:
                grow_score = torch.rand(new.shape, generator=generator, device=new.device)
            else:
                grow_score = dense_grads[layer][group].abs().flatten().clone()
            grow_score[keep_idx] = -math.inf
            new[torch.topk(grow_score, n_prune).indices] = 1.0
            new = new.view_as(old)
            weight[(new > 0) & (old == 0)] = 0.0  # grown connections start at zero; dropped-and-regrown keep theirs
            mask.copy_(new)
        self.net.zero_pruned_weights()
        self.topology_updates += 1

    def state_dict(self) -> dict:
        return {"step": self.step, "topology_updates": self.topology_updates}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.topology_updates = state["step"], state["topology_updates"]


def enable_dst(learner: SACLearner, actor_sparsity: float, critic_sparsity: float, *, delta: int, zeta: float,
               t_end: int, random_grow: bool, critic_grow_includes_actor_grad: bool = True) -> None:  # fmt: skip
    """RiGL/RLx2 on a learner: ERK magnitude masks now, pruned weights zeroed, topology updates during its updates.
    With `critic_grow_includes_actor_grad` the critic's grow score adds the actor loss's gradient of the step
    before (RLx2's backward hooks see it, fidelity audit R1)."""
    learner.critic_grow_includes_actor_grad = critic_grow_includes_actor_grad
    actor_t_end = t_end // learner.cfg.policy_delay
    learner.actor_topology = DSTScheduler(learner.actor.net, actor_sparsity, delta, zeta, actor_t_end, random_grow)
    learner.critic_topology = DSTScheduler(learner.critic.net, critic_sparsity, delta, zeta, t_end, random_grow)
    learner.target_critic.load_state_dict(learner.critic.state_dict())
    learner.target_critic.net.set_masks(learner.critic.net.masks)
    learner.zero_pruned = True
