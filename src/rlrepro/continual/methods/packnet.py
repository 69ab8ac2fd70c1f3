"""packnet: PackNet (rewire.md §3.8): each task claims the largest free weights, then fine-tunes only them.

Weights owned by earlier tasks are frozen (their gradients are masked, so the fresh Adam of every task never
moves them); free weights train. After SAC: `add_filter` claims, per tensor, the free entries above the
int(N·prune_coeff)-th smallest magnitude (N = all entries, owned ones scoring 0), everything still free is
zeroed, and the task's entries are fine-tuned for `finetune_updates` SAC updates on the task's replay (critic
included, new α and optimisers, target update nested in the policy branch as in the original). A snapshot per
task answers inference.
With prune_coeff 0.875 each task claims about 12.5% of every tensor: 8 tasks fill the network, and from the
9th task on (CW10's last two) nothing is left to claim — those tasks reuse the frozen network unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from rlrepro import faults
from rlrepro.continual.config import SACConfig, learner_config
from rlrepro.continual.methods.base import TaskContext
from rlrepro.continual.methods.finetune import FineTuneOne
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import GaussianActor, count_parameters
from rlrepro.engine.update import compile_wanted

FREE = -1


class PackNet(FineTuneOne):
    name = "packnet"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.snapshots = nn.ModuleList()
        self._trainable: dict[str, torch.Tensor] = {}
        for name, param in self.policy.named_parameters():
            self.register_buffer(self._key(name), torch.full_like(param, FREE, dtype=torch.int16))
        self._set_trainable(lambda owner: owner == FREE)

    @staticmethod
    def _key(name: str) -> str:
        return "owner__" + name.replace(".", "_")

    def owner(self, name: str) -> torch.Tensor:
        return getattr(self, self._key(name))

    def _set_trainable(self, rule) -> None:
        for name, param in self.policy.named_parameters():
            self._trainable[self._key(name)] = rule(self.owner(name)).to(param.dtype)

    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        self._set_trainable(lambda owner: owner == FREE)

    def gradient_masks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        return [(param, self._trainable[self._key(name)]) for name, param in self.policy.named_parameters()]

    @torch.no_grad()
    def add_filter(self, task_index: int) -> None:
        """Claim for `task_index` the free entries above the int(N·prune_coeff)-th smallest magnitude of each tensor."""
        coeff = float(self.hp.get("prune_coeff", 0.875))
        for name, param in self.policy.named_parameters():
            owner = self.owner(name)
            free = owner == FREE
            scores = (param.abs() * free).flatten()
            # the int(N·prune_coeff)-th smallest score (1-based): the N − int(N·coeff) largest free entries survive
            threshold = scores.kthvalue(max(int(scores.numel() * coeff), 1)).values
            owner[free & (param.abs() > threshold)] = task_index

    @torch.no_grad()
    def _zero_unowned(self, task_index: int) -> None:
        for name, param in self.policy.named_parameters():
            owner = self.owner(name)
            param[(owner == FREE) | (owner > task_index)] = 0.0

    def finetune(self, task_index: int, context: TaskContext) -> None:
        updates = int(self.hp.get("finetune_updates", 100_000))
        if updates <= 0 or len(context.replay) == 0:
            return
        self._set_trainable(lambda owner: owner == task_index)
        faults.reached("phase:packnet-finetune")
        cfg: SACConfig = context.sac
        if self.hp.get("finetune_alpha_lr_from_policy", True):
            # The original builds the fine-tune's α optimiser with the policy optimiser's arguments (audit D11).
            cfg = dataclasses.replace(cfg, lr_entropy=cfg.lr_policy)
        rule = learner_config(cfg, self.action_dim, context.quirks, target_update_in_policy_branch=True)
        learner = SACLearner(self.policy, context.critic, rule, context.generator, actor_grad_masks=self.gradient_masks,
                             compile=compile_wanted(context.engine, updates),
                             compiled_check=context.compiled_check)  # fmt: skip
        for _ in range(updates):
            learner.update(context.replay.sample(cfg.batch_size, context.generator))

    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        self.add_filter(task_index)
        self._zero_unowned(task_index)
        self.finetune(task_index, context)
        self._zero_unowned(task_index)  # the final pruning pass
        self.snapshots.append(copy.deepcopy(self.policy).requires_grad_(False))
        super().on_task_end(task_index, context)

    def train_actor(self) -> GaussianActor:
        return self.policy

    def policy_for_task(self, task_index: int) -> GaussianActor:
        if not self.snapshots:
            return self.policy
        return self.snapshots[min(task_index, len(self.snapshots) - 1)]

    def memory_report(self) -> dict[str, int]:
        base = count_parameters(self.policy)
        mask = sum(b.numel() for n, b in self.named_buffers() if n.startswith("owner__"))
        # The working copy equals the last snapshot once a task ends: the original's list of T networks + the mask.
        networks = count_parameters(self.snapshots) if len(self.snapshots) else base
        return {"inference_parameters": base + mask, "stored_parameters": networks + mask}

    def structure(self) -> dict[str, Any]:
        return {**super().structure(), "n_snapshots": len(self.snapshots)}

    def rebuild(self, structure: dict[str, Any]) -> None:
        super().rebuild(structure)
        while len(self.snapshots) < structure["n_snapshots"]:
            self.snapshots.append(self.new_actor().requires_grad_(False))

    def runtime_state(self) -> dict[str, Any]:
        return {**super().runtime_state(), "trainable": dict(self._trainable)}  # which weights this phase trains

    def load_runtime_state(self, state: dict[str, Any]) -> None:
        super().load_runtime_state(state)
        self._trainable = dict(state["trainable"])
