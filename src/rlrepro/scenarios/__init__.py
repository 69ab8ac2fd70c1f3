"""Scenario registry: ordered tasks with budgets, read from catalog.yaml (scenarios are data, not code)."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import yaml

from rlrepro.errors import ConfigError, unknown_name

VARIANT_KEYS = {
    "brax": {"gravity", "friction", "bodies", "obs_mask", "action_mask", "action_swap"},
    "metaworld": {"env"},
}
DOMAIN_OPTION_KEYS = ("brax_env", "asset", "action_order", "body_map", "env_kwargs")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a scenario: a named variant of a domain."""

    name: str
    """Variant name, e.g. `moon`."""
    variant: dict[str, Any] = field(default_factory=dict)
    """Physical edits (see catalog.yaml for the keys)."""


@dataclass(frozen=True)
class ScenarioSpec:
    """An ordered sequence of tasks on one domain, with the budgets a job runs with."""

    name: str
    domain: str
    """Domain key of catalog.yaml, e.g. `halfcheetah`."""
    backend: str
    """Environment backend: brax or metaworld."""
    tasks: tuple[TaskSpec, ...]
    steps_per_task: int
    """Environment steps per task (summed over the parallel train envs)."""
    n_train_envs: int
    n_eval_envs: int
    episode_length: int
    options: dict[str, Any] = field(default_factory=dict)
    """Domain settings of the backend (brax env name, MJCF asset, action order, body map, env kwargs)."""

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = [asdict(t) for t in self.tasks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioSpec:
        data = dict(data)
        data["tasks"] = tuple(TaskSpec(**t) for t in data["tasks"])
        return cls(**data)


@functools.cache
def catalog() -> dict[str, Any]:
    text = resources.files("rlrepro.scenarios").joinpath("catalog.yaml").read_text()
    data = yaml.safe_load(text)
    for domain, dom in data["domains"].items():
        valid = VARIANT_KEYS[dom["backend"]]
        for vname, variant in dom["variants"].items():
            bad = set(variant) - valid
            if bad:
                raise ConfigError(f"variant {domain}/{vname} has unknown keys {sorted(bad)}; valid: {sorted(valid)}")
    return data


def scenario_names() -> list[str]:
    return list(catalog()["scenarios"])


def get_scenario(name: str) -> ScenarioSpec:
    """The scenario at its paper budget (presets scale it with `scale_scenario`)."""
    scenarios = catalog()["scenarios"]
    if name not in scenarios:
        raise unknown_name("scenario", name, list(scenarios))
    raw = scenarios[name]
    domain = catalog()["domains"][raw["domain"]]
    tasks = tuple(TaskSpec(t, dict(domain["variants"][t])) for t in raw["tasks"]) * int(raw.get("repeat", 1))
    return ScenarioSpec(
        name=name,
        domain=raw["domain"],
        backend=domain["backend"],
        tasks=tasks,
        steps_per_task=int(raw["steps_per_task"]),
        n_train_envs=int(raw["n_train_envs"]),
        n_eval_envs=int(raw["n_eval_envs"]),
        episode_length=int(raw["episode_length"]),
        options={k: domain[k] for k in DOMAIN_OPTION_KEYS if k in domain},
    )


def scale_scenario(spec: ScenarioSpec, budget: dict[str, Any]) -> ScenarioSpec:
    """Apply a preset budget: each non-null key caps the paper value (`max_tasks` truncates the sequence)."""
    tasks = spec.tasks
    if budget.get("max_tasks"):
        tasks = tasks[: int(budget["max_tasks"])]
    keys = ("steps_per_task", "n_train_envs", "n_eval_envs", "episode_length")
    changes = {k: min(int(budget[k]), getattr(spec, k)) for k in keys if budget.get(k)}
    return ScenarioSpec(**{**spec.__dict__, "tasks": tasks, **changes})
