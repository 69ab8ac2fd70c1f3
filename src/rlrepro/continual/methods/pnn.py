"""pnn: Progressive Neural Networks (rewire.md §3.7): a new column per task, lateral adapters, frozen old columns."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from rlrepro.continual.methods.base import Method, TaskContext
from rlrepro.engine.networks import GaussianActor, activation, count_parameters


class Column(nn.Module):
    """Column c: layers w_0..w_L; for c ≥ 1, adapters u_i(act(v_i(α_i · [h_{i−1} of columns 0..c−1]))) for i ≥ 1."""

    def __init__(
        self, obs_dim: int, out_dim: int, hidden: tuple[int, ...], index: int, act: nn.Module, output_activation: bool
    ) -> None:
        super().__init__()
        self.output_activation = output_activation
        sizes = [obs_dim, *hidden, out_dim]
        self.w = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.index = index
        self.act = act
        if index > 0:
            self.u = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(1, len(sizes) - 1))
            self.v = nn.ModuleList(nn.Linear(sizes[i] * index, sizes[i], bias=False) for i in range(1, len(sizes) - 1))
            self.alpha = nn.ParameterList(nn.Parameter(torch.rand(()) / index) for _ in range(1, len(sizes) - 1))

    def forward(self, x: torch.Tensor, previous: list[list[torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`previous[c][i]` = activation after layer i of column c < index; returns output and own activations."""
        hs = []
        h = x
        last = len(self.w) - 1
        for i, layer in enumerate(self.w):
            z = layer(h)
            if i > 0 and self.index > 0:
                lateral = torch.cat([col[i - 1] for col in previous], dim=-1)
                z = z + self.u[i - 1](self.act(self.v[i - 1](self.alpha[i - 1] * lateral)))
            h = z if i == last and not self.output_activation else self.act(z)
            hs.append(h)
        return h, hs


class PNNActor(GaussianActor):
    """The actor view of columns 0..k: a GaussianActor whose network output is column k's."""

    def __init__(self, pnn: PNN, k: int) -> None:
        nn.Module.__init__(self)
        self.cfg, self.action_dim = pnn.network, pnn.action_dim
        self.columns, self.k = pnn.columns, k

    def net(self, obs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        previous: list[list[torch.Tensor]] = []
        for c in range(self.k + 1):
            out, hs = self.columns[c](obs, previous)
            previous.append(hs)
        return out


class PNN(Method):
    """One column per task (hidden width from the method's `network.hidden_sizes`, 96 in the original's config; the
    critic keeps the shared 3×256, fidelity audit D2).

    `first_column_output_activation` (default true, the original, audit D4): column 0 applies the activation after
    every layer, its output layer included, so task 0's μ and log σ pass through LeakyReLU; later columns' outputs
    are linear. False: every column's output is linear."""

    name = "pnn"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.columns = nn.ModuleList([self._column(0)])

    def _column(self, index: int) -> Column:
        output_activation = index == 0 and bool(self.hp.get("first_column_output_activation", True))
        hidden, act = self.network.hidden_sizes, activation(self.network)
        return Column(self.obs_dim, 2 * self.action_dim, hidden, index, act, output_activation)

    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        if task_index > 0:
            self.columns[-1].requires_grad_(False)
            self.columns.append(self._column(len(self.columns)))

    def train_actor(self) -> GaussianActor:
        return PNNActor(self, len(self.columns) - 1)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.columns[-1].parameters())

    def policy_for_task(self, task_index: int) -> GaussianActor:
        return PNNActor(self, min(task_index, len(self.columns) - 1))

    def memory_report(self) -> dict[str, int]:
        n = count_parameters(self.columns)
        return {"inference_parameters": n, "stored_parameters": n}

    def structure(self) -> dict[str, Any]:
        return {**super().structure(), "n_columns": len(self.columns)}

    def rebuild(self, structure: dict[str, Any]) -> None:
        super().rebuild(structure)
        while len(self.columns) < structure["n_columns"]:
            self.columns.append(self._column(len(self.columns)))
