"""ft_1, ft_n and sac_n (rewire.md §3.2–3.4): one policy fine-tuned, cloned per task, or fresh per task."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from rlrepro.continual.methods.base import Method, TaskContext
from rlrepro.engine.networks import GaussianActor, count_parameters


class PolicyList(Method):
    """One actor per task seen so far; the last one trains. Subclasses choose how a new task's actor starts."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policies = nn.ModuleList([self.new_actor()])

    def next_policy(self) -> GaussianActor:
        raise NotImplementedError

    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        if task_index > 0:
            self.policies[-1].requires_grad_(False)
            self.policies.append(self.next_policy())

    def train_actor(self) -> GaussianActor:
        return self.policies[-1]

    def policy_for_task(self, task_index: int) -> GaussianActor:
        return self.policies[min(task_index, len(self.policies) - 1)]

    def memory_report(self) -> dict[str, int]:
        n = count_parameters(self.policies)
        return {"inference_parameters": n, "stored_parameters": n}

    def structure(self) -> dict[str, Any]:
        return {**super().structure(), "n_policies": len(self.policies)}

    def rebuild(self, structure: dict[str, Any]) -> None:
        super().rebuild(structure)
        while len(self.policies) < structure["n_policies"]:
            self.policies.append(self.new_actor())


class FineTuneOne(Method):
    """ft_1: one network trained on every task in turn; it answers for every task."""

    name = "ft_1"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.policy = self.new_actor()

    def train_actor(self) -> GaussianActor:
        return self.policy

    def policy_for_task(self, task_index: int) -> GaussianActor:
        return self.policy

    def memory_report(self) -> dict[str, int]:
        n = count_parameters(self.policy)
        return {"inference_parameters": n, "stored_parameters": n}


class FineTuneN(PolicyList):
    """ft_n: the last policy is copied at each new task and the copy is fine-tuned; earlier copies stay fixed."""

    name = "ft_n"

    def next_policy(self) -> GaussianActor:
        return copy.deepcopy(self.policies[-1]).requires_grad_(True)


class SACN(PolicyList):
    """sac_n: a freshly initialised policy per task (the critic is still kept across tasks: Quirks)."""

    name = "sac_n"

    def next_policy(self) -> GaussianActor:
        return self.new_actor()
