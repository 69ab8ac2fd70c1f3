"""rewire (rewire.md §3.1): learnable neuron permutations ("wirings") over shared weights, K modes per task,
per-task cached wirings and head slots, mode selection with roll-back, and an alignment-aware anchor regulariser.

Layers: L1 = LinearRewire(obs→h, note 1), L2..Ln = LinearRewire(h→h, note 3), head = one Linear(h→2A) per slot.
A LinearRewire permutes its outputs: current task on replay batches through SoftSort straight-through on the
scores of a random mode (gradient ×K); when acting, the hard argsort of that mode's scores; for a finished task,
its cached index vector. `cycle` maps task t to slot t mod cycle (−1: one slot per task).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rlrepro import faults
from rlrepro.continual.methods.base import Method, TaskContext
from rlrepro.engine.networks import GaussianActor, activation, count_parameters


def gumbel_like(x: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(x)
    return -torch.log(-torch.log(u + 1e-20) + 1e-20)


def softsort_st(scores: torch.Tensor, tau: float, beta: float) -> torch.Tensor:
    """SoftSort (L1, ascending) with straight-through: forward is the hard permutation matrix of the (noisy)
    scores' argsort, backward the soft relaxation. Row i selects the input at the i-th smallest score."""
    s = scores + beta * gumbel_like(scores) if beta > 0 else scores
    s_sorted = s.sort().values
    soft = torch.softmax(-(s_sorted.unsqueeze(-1) - s.unsqueeze(-2)).abs() / tau, dim=-1)
    # one-hot of the argmax by scatter: F.one_hot reads the indices back to check their range (a host sync per
    # forward on a GPU); the result is the same tensor
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return hard + soft - soft.detach()


class _PermuteColumns(torch.autograd.Function):
    """`out @ permᵀ` for a 2-D `out` and a straight-through permutation matrix, its forward a gather.

    `perm` = hard + soft − soft.detach() has exact zeros off the hard one-hot and 1 + ε on it (|ε| ≤ 2⁻²⁴), one per
    row, so each output of the GEMM is the single product out[:, j]·perm[i, j] plus exact zeros: the gather times
    that entry is the same float. The backward is the two GEMMs autograd would run (`out`'s gradient grad @ perm;
    `perm`'s gradᵀ @ out, its layout for a transposed right operand): a column of `perm` holds two nonzeros when two
    scores tie exactly, and the GEMM's fused multiply-add then rounds their sum differently from a scatter.
    """

    @staticmethod
    def forward(out: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        index = perm.argmax(-1)
        return out.index_select(-1, index) * perm.gather(-1, index[:, None]).squeeze(-1)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(*inputs)  # a separate context: what torch.func's transforms (the pure update) need

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        out, perm = ctx.saved_tensors
        grad_out = grad.mm(perm) if ctx.needs_input_grad[0] else None
        grad_perm = grad.t().mm(out) if ctx.needs_input_grad[1] else None
        return grad_out, grad_perm


def permute_columns_by_gemm(out: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """`out @ perm.transpose(-1, -2)` as a GEMM: the layout engine 0.2.0 first shipped, the reference of the gather."""
    return out @ perm.transpose(-1, -2)


def permute_columns(out: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """`out @ perm.transpose(-1, -2)`, bit for bit (values and gradients); the forward a gather where `out` is 2-D
    (every no-grad forward of the learning route, e.g. the TD target's, skips its GEMMs)."""
    if out.dim() == 2 and perm.dim() == 2:
        return _PermuteColumns.apply(out, perm)
    return permute_columns_by_gemm(out, perm)


def mul_grad(x: torch.Tensor, k: float) -> torch.Tensor:
    """Identity in value, gradient × k (each of the K modes is trained only 1/K of the time)."""
    return x * k - x.detach() * (k - 1)


def spaced_scores(perm: torch.Tensor) -> torch.Tensor:
    """Scores evenly spaced in [0, 1] whose ascending argsort is `perm`."""
    n = perm.shape[-1]
    return torch.argsort(perm, dim=-1).to(torch.float32) / max(n - 1, 1)


def init_sort(v: torch.Tensor) -> torch.Tensor:
    """Keep each row's permutation but re-space its scores at 1/(n−1)."""
    return spaced_scores(torch.argsort(v, dim=-1))


class LinearRewire(nn.Module):
    """A Linear shared by all tasks whose outputs are permuted by a wiring; `note` 3 layers also align inputs."""

    def __init__(self, in_f: int, out_f: int, k: int, note: int, dropout: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(in_f, out_f)
        self.v = nn.Parameter(torch.linspace(0, 1, out_f).repeat(k, 1))
        self.zv = nn.Parameter(torch.linspace(0, 1, out_f))
        self.av = nn.Parameter(torch.linspace(0, 1, in_f)) if note == 3 else None
        self.register_buffer("weight_mean", torch.zeros_like(self.linear.weight))
        self.register_buffer("bias_mean", torch.zeros_like(self.linear.bias))
        self.register_buffer("cache", torch.zeros(0, out_f, dtype=torch.long))
        self.dropout = nn.Dropout(0.1) if dropout else None

    def forward(self, x: torch.Tensor, route: tuple[str, int], k: int, tau: float, beta: float) -> torch.Tensor:
        out = self.linear(x)
        if self.dropout is not None:
            out = self.dropout(out)
        kind, index = route
        if kind == "learn":
            perm = softsort_st(mul_grad(self.v[index], k), tau, beta)
            return permute_columns(out, perm)
        if kind == "hard":
            return out[..., torch.argsort(self.v[index].detach())]
        return out[..., self.cache[index]]

    def regulariser(self, next_layer: LinearRewire | None, tau2: float, beta2: float) -> torch.Tensor:
        """‖θ‖² − 2⟨θ, Zᵀ m A⟩ for the weight and ‖b‖² − 2⟨b, Zᵀ m_b⟩ for the bias (A only on note-3 layers)."""
        z = softsort_st(self.zv, tau2, beta2)
        target = z.transpose(0, 1) @ self.weight_mean
        if self.av is not None:
            target = target @ softsort_st(self.av, tau2, beta2)
        w, b = self.linear.weight, self.linear.bias
        target_b = z.transpose(0, 1) @ self.bias_mean
        return (w**2).sum() - 2 * (w * target).sum() + (b**2).sum() - 2 * (b * target_b).sum()


class RewireActor(GaussianActor):
    """A view of the shared layers: `route` picks the wiring, `slot` the head; `owner` holds the parameters."""

    def __init__(self, owner: Rewire, route: tuple[str, int] | None, slot: int) -> None:
        nn.Module.__init__(self)
        self.cfg, self.action_dim = owner.network, owner.action_dim
        self.owner, self.route, self.slot = [owner], route, slot  # a list: not registered as a submodule

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return self.owner[0].parameters(recurse)

    def train(self, mode: bool = True) -> RewireActor:
        self.owner[0].train(mode)
        self.training = mode
        return self

    def net(self, obs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        owner = self.owner[0]
        route = self.route
        if route is None:  # the current task: a random mode per forward, SoftSort when learning
            k = int(torch.randint(owner.k, ()))
            route = ("learn", k) if owner.learning else ("hard", k)
        out = owner.trunk(obs, route)
        out = owner.heads[self.slot](out)
        if self.route is None and owner.learning and torch.is_grad_enabled() and owner.k > 1:
            owner.record_divergence(obs, out, route[1], self.slot)
        return out


class Rewire(Method):
    name = "rewire"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hp = self.hp
        self.k = int(hp.get("k", 3))
        self.tau, self.beta = float(hp.get("tau", 1.0)), float(hp.get("beta", 0.1))
        self.tau2, self.beta2 = float(hp.get("tau2", 0.1)), float(hp.get("beta2", 0.0))
        self.cycle = int(hp.get("cycle", -1))
        self.divergence = float(hp.get("divergence", 1e-5))
        self.coeff = float(hp.get("coeff", 0.0))
        self.improvement_threshold = float(hp.get("improvement_threshold", 0.0))
        sizes = [self.obs_dim, *self.network.hidden_sizes]
        self.layers = nn.ModuleList(
            LinearRewire(a, b, self.k, 1 if i == 0 else 3, dropout=self.beta == 0)
            for i, (a, b) in enumerate(itertools.pairwise(sizes))
        )
        self.act = activation(self.network)
        self.heads = nn.ModuleList([nn.Linear(sizes[-1], 2 * self.action_dim)])
        self.register_buffer("head_weight_mean", torch.zeros_like(self.heads[0].weight))
        self.register_buffer("head_bias_mean", torch.zeros_like(self.heads[0].bias))
        self.cnt = 0
        self.learning = False
        self.r0 = 0.0
        self.selected_mode = 0
        self._divergence: torch.Tensor | None = None

    # --- slots -------------------------------------------------------------------------------------------------
    def train_slot(self) -> int:
        return self.cnt % self.cycle if self.cycle > 0 else self.cnt

    def inference_slot(self, task_index: int) -> int:
        slot = task_index % self.cycle if self.cycle > 0 else task_index
        return min(slot, self.cnt - 1)

    def revisiting(self) -> bool:
        return self.cycle > 0 and self.cnt >= self.cycle

    # --- forward -------------------------------------------------------------------------------------------------
    def trunk(self, obs: torch.Tensor, route: tuple[str, int]) -> torch.Tensor:
        h = obs
        for layer in self.layers:
            h = self.act(layer(h, route, self.k, self.tau, self.beta))
        return h

    def record_divergence(self, obs: torch.Tensor, out: torch.Tensor, k: int, slot: int) -> None:
        """Σ (μ_k − μ′)² + (log σ_k − log σ′)² against another mode k′, computed without gradient for k′."""
        other = (k + int(torch.randint(1, self.k, ()))) % self.k
        with torch.no_grad():
            mu_o, ls_o = self.heads[slot](self.trunk(obs, ("hard", other))).chunk(2, dim=-1)
            mu_o, ls_o = mu_o.clamp(-20, 20), ls_o.clamp(self.network.log_std_min, self.network.log_std_max)
        mu, ls = out.chunk(2, dim=-1)
        ls = ls.clamp(self.network.log_std_min, self.network.log_std_max)
        self._divergence = ((mu - mu_o) ** 2 + (ls - ls_o) ** 2).sum()

    @contextmanager
    def learning_mode(self) -> Iterator[None]:
        self.learning = True
        try:
            yield
        finally:
            self.learning = False
            self._divergence = None

    def extra_loss(self) -> torch.Tensor | None:
        loss = None
        if self._divergence is not None:
            loss = self.divergence * self._divergence
            self._divergence = None
        if self.cnt > 0 and self.coeff > 0:
            layers = list(self.layers)
            reg = sum(
                layer.regulariser(layers[i + 1] if i + 1 < len(layers) else None, self.tau2, self.beta2)
                for i, layer in enumerate(layers)
            )
            loss = self.coeff * reg if loss is None else loss + self.coeff * reg
        return loss

    # --- hooks -------------------------------------------------------------------------------------------------
    def train_actor(self) -> GaussianActor:
        return RewireActor(self, None, self.train_slot())

    def trainable_parameters(self) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        for layer in self.layers:
            params += [layer.linear.weight, layer.linear.bias, layer.v]
            # alignment scores exist from the second task on and only the regulariser (coeff > 0) reads them: without
            # it they get no gradient, which torch's Adam skips and a pure update would step with zeros
            if self.cnt > 0 and self.coeff > 0:
                params += [layer.zv] + ([layer.av] if layer.av is not None else [])
        return params + list(self.heads[self.train_slot()].parameters())

    def policy_for_task(self, task_index: int) -> GaussianActor:
        if self.cnt == 0:
            return RewireActor(self, ("hard", self.selected_mode), 0)
        slot = self.inference_slot(task_index)
        return RewireActor(self, ("cached", slot), slot)

    @torch.no_grad()
    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        for layer in self.layers:
            if self.revisiting():
                layer.v.copy_(spaced_scores(layer.cache[self.train_slot()]).expand_as(layer.v))
            layer.v.copy_(init_sort(layer.v))
        if self.cnt > 0:
            slot = self.train_slot()
            if not self.revisiting():
                self.heads.append(copy.deepcopy(self.heads[-1]))
            for i, head in enumerate(self.heads):
                head.requires_grad_(i == slot)
            self.head_weight_mean.copy_(self.heads[slot].weight)
            self.head_bias_mean.copy_(self.heads[slot].bias)
        if task_index > 0 and context.evaluate is not None:
            self.r0 = context.evaluate(RewireActor(self, ("hard", 0), self.train_slot()))

    @torch.no_grad()
    def roll_back(self) -> None:
        """Restore the weights, head and wiring the task started from (no mode beat the pre-training policy)."""
        slot = self.train_slot()
        cached = slot if self.revisiting() else self.cnt - 1
        for layer in self.layers:
            layer.linear.weight.copy_(layer.weight_mean)
            layer.linear.bias.copy_(layer.bias_mean)
            layer.v.copy_(spaced_scores(layer.cache[cached]).expand_as(layer.v))
        self.heads[slot].weight.copy_(self.head_weight_mean)
        self.heads[slot].bias.copy_(self.head_bias_mean)
        self._reset_alignment()

    @torch.no_grad()
    def _reset_alignment(self) -> None:
        for layer in self.layers:
            layer.zv.copy_(torch.linspace(0, 1, layer.zv.numel()))
            if layer.av is not None:
                layer.av.copy_(torch.linspace(0, 1, layer.av.numel()))

    @torch.no_grad()
    def consolidate(self) -> None:
        """Re-map cached wirings through the learned alignments, snapshot anchors, fresh identity alignments."""
        layers = list(self.layers)
        if self.cnt > 0:
            sigma_z = [torch.argsort(layer.zv) for layer in layers]
            rho_a = [torch.argsort(torch.argsort(layer.av)) if layer.av is not None else None for layer in layers]
            for i, layer in enumerate(layers):
                nxt = rho_a[i + 1] if i + 1 < len(layers) else None
                for j in range(layer.cache.shape[0]):
                    wiring = sigma_z[i][layer.cache[j]]
                    layer.cache[j] = wiring[nxt] if nxt is not None else wiring
        for layer in layers:
            layer.weight_mean.copy_(layer.linear.weight)
            layer.bias_mean.copy_(layer.linear.bias)
        self._reset_alignment()

    @torch.no_grad()
    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        if task_index > 0 and context.evaluate is not None:
            faults.reached("phase:rewire-selection")
            returns = [context.evaluate(RewireActor(self, ("hard", m), self.train_slot())) for m in range(self.k)]
            if max(returns) < self.r0 * (1 + self.improvement_threshold):
                self.roll_back()
            self.selected_mode = int(torch.tensor(returns).argmax())
        else:
            self.selected_mode = 0  # the original always keeps mode 0 after the first task
        self.consolidate()
        slot = self.train_slot()
        for layer in self.layers:
            wiring = torch.argsort(layer.v[self.selected_mode]).unsqueeze(0)
            if slot < layer.cache.shape[0]:
                layer.cache[slot] = wiring[0]
            else:
                layer.cache = torch.cat([layer.cache, wiring])
            layer.v.copy_(layer.v[self.selected_mode].expand_as(layer.v).clone())
        self.cnt += 1
        super().on_task_end(task_index, context)

    def memory_report(self) -> dict[str, int]:
        hidden = sum(count_parameters(layer.linear) for layer in self.layers)
        wirings = sum(layer.cache.numel() for layer in self.layers)
        stored = sum(t.numel() for t in self.state_dict().values())
        if self.cnt <= 1:  # the original registers the head's anchors from task 1 on (audit D12)
            stored -= self.head_weight_mean.numel() + self.head_bias_mean.numel()
        return {"inference_parameters": hidden + count_parameters(self.heads) + wirings, "stored_parameters": stored}

    def structure(self) -> dict[str, Any]:
        return {
            **super().structure(),
            "cnt": self.cnt,
            "n_heads": len(self.heads),
            "selected_mode": self.selected_mode,
            "n_slots": int(self.layers[0].cache.shape[0]),
        }

    def rebuild(self, structure: dict[str, Any]) -> None:
        super().rebuild(structure)
        self.cnt, self.selected_mode = int(structure["cnt"]), int(structure["selected_mode"])
        while len(self.heads) < structure["n_heads"]:
            self.heads.append(copy.deepcopy(self.heads[-1]))
        for layer in self.layers:
            layer.cache = torch.zeros(structure["n_slots"], layer.cache.shape[1], dtype=torch.long)

    def runtime_state(self) -> dict[str, Any]:
        return {**super().runtime_state(), "r0": self.r0}  # the pre-training return the task's selection compares to

    def load_runtime_state(self, state: dict[str, Any]) -> None:
        super().load_runtime_state(state)
        self.r0 = state["r0"]
