"""The continual-RL framework: train a method task by task with SAC, then evaluate every stage on every task.

`train` and `evaluate` are functional: environments, progress and checkpointing are passed in, never global.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlrepro import faults
from rlrepro.checkpoint import CheckpointStore, capture_rng, restore_rng
from rlrepro.continual.config import EvalConfig, Quirks, SACConfig, TrainLogConfig, learner_config
from rlrepro.continual.methods.base import Method, TaskContext
from rlrepro.continual.methods.registry import method_class
from rlrepro.engine.compiled_check import CompiledCheck
from rlrepro.engine.config import EngineConfig, NetworkConfig, from_dict
from rlrepro.engine.learner import SACLearner, UpdateStats
from rlrepro.engine.networks import GaussianActor, TwinCritic, upgrade_legacy_state_dict
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.engine.update import compile_wanted
from rlrepro.envs import VecEnv, make_env
from rlrepro.progress import Progress
from rlrepro.runlog import RunLog
from rlrepro.scenarios import ScenarioSpec, TaskSpec

log = logging.getLogger("rlrepro")
EnvFactory = Callable[..., VecEnv]


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training job depends on: the params slice Snakemake passes to it."""

    method: str
    scenario: ScenarioSpec
    seed: int
    method_hp: dict[str, Any] = field(default_factory=dict)
    sac: SACConfig = field(default_factory=SACConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """The policy's network (the shared block with the method's `network` overrides)."""
    critic_network: NetworkConfig | None = None
    """The critic's network: the shared block, never a method's override (None: the policy's)."""
    quirks: Quirks = field(default_factory=Quirks)
    env: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    engine: EngineConfig = field(default_factory=EngineConfig)
    log: TrainLogConfig = field(default_factory=TrainLogConfig)
    engine_version: str = ""
    variant: str | None = None
    """The variant's name when this run is a named variant of `method` (config `variants`/`sweeps`): its results,
    tables and figures carry that name."""

    @property
    def label(self) -> str:
        """The method name the run's outputs carry."""
        return self.variant or self.method

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        data = dict(data)
        critic = data.pop("critic_network", None)
        return cls(
            method=data.pop("method"),
            scenario=ScenarioSpec.from_dict(data.pop("scenario")),
            seed=int(data.pop("seed")),
            method_hp=data.pop("method_hp", {}),
            sac=from_dict(SACConfig, data.pop("sac", {}), "sac"),
            network=from_dict(NetworkConfig, data.pop("network", {}), "network"),
            critic_network=from_dict(NetworkConfig, critic, "critic_network") if critic is not None else None,
            quirks=from_dict(Quirks, data.pop("quirks", {}), "quirks"),
            env=data.pop("env", {}),
            device=data.pop("device", "cpu"),
            engine=from_dict(EngineConfig, data.pop("engine", {}), "engine"),
            log=from_dict(TrainLogConfig, data.pop("log", {}), "log"),
            **data,
        )


@dataclass(frozen=True)
class EvalSpec:
    """Everything one evaluation job depends on."""

    scenario: ScenarioSpec
    seed: int
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    env: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        return cls(
            scenario=ScenarioSpec.from_dict(data["scenario"]),
            seed=int(data["seed"]),
            evaluation=from_dict(EvalConfig, data.get("evaluation", {}), "evaluation"),
            env=data.get("env", {}),
            device=data.get("device", "cpu"),
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_method(name: str, obs_dim: int, action_dim: int, network: NetworkConfig, hp: dict[str, Any]) -> Method:
    return method_class(name)(obs_dim, action_dim, network, hp)


def _row(stage: int, task: int | None, metric: str, value: float, step: int | None = None) -> dict[str, Any]:
    return {"stage": stage, "task": task, "metric": metric, "value": float(value), "step": step}


class TaskTrainer:
    """SAC on one task (rewire.md §2.2): new replay, α and optimisers; windows of n_timesteps; UTD from config.

    Everything the loop carries between collection epochs lives on this object (learner with its optimisers, α
    and target critic, replay, counters, the current observations and partial returns, the rows so far): its
    `state_dict` (tensors and numbers), loaded into a trainer rebuilt around the restored method, critic and env,
    is enough to continue the task bit for bit.
    """

    def __init__(
        self, method: Method, critic: TwinCritic, env: VecEnv, spec: TrainSpec, task_index: int, generator: torch.Generator,
        compiled_check: CompiledCheck | None = None,
    ) -> None:
        cfg, n_envs = spec.sac, env.n_envs
        self.method, self.env, self.spec, self.task_index, self.generator = method, env, spec, task_index, generator
        self.budget = spec.scenario.steps_per_task - method.reserved_env_steps(env)
        self.device = next(critic.parameters()).device
        self.new_steps = cfg.n_timesteps - 1
        capacity = min(cfg.buffer_size, self.budget + max(cfg.initial_buffer_size, 0) + cfg.n_timesteps * n_envs)
        self.replay = ReplayBuffer(capacity, env.obs_dim, env.action_dim, self.device, **method.replay_columns())
        self.actor = method.train_actor()
        self.updates_per_epoch = int((cfg.inner_epochs or n_envs) * cfg.grad_updates_per_step)
        planned_updates = self.budget // max(self.new_steps * n_envs, 1) * self.updates_per_epoch
        self.learner = SACLearner(
            self.actor, critic, learner_config(cfg, env.action_dim, spec.quirks), generator,
            actor_parameters=method.trainable_parameters(), actor_grad_masks=method.gradient_masks,
            compile=compile_wanted(spec.engine, planned_updates), compiled_check=compiled_check,
        )  # fmt: skip
        self.curve_every = max(self.budget // max(spec.log.curve_points, 1), 1)
        self.obs = env.reset(spec.seed * 1000 + task_index)
        self.calls = 0
        self.episode_return = torch.zeros(n_envs, device=self.device)
        self.finished: list[torch.Tensor] = []
        self.rows: list[dict[str, Any]] = []
        self.next_curve = self.curve_every
        self.interactions = 0
        self.updates = 0
        self.stats = None
        self.last_actor_loss = None
        self.warmed_up = False
        self.done = False
        self.elapsed_s = 0.0

    COUNTERS = ("calls", "interactions", "updates", "next_curve", "warmed_up", "done", "elapsed_s")

    def state_dict(self) -> dict[str, Any]:
        """Where the task stands, as data (the env keeps its own: `VecEnv.get_state`)."""
        stats = None if self.stats is None else dataclasses.asdict(self.stats)
        return {
            "learner": self.learner.full_state(), "replay": self.replay.state_dict(), "obs": self.obs,
            "episode_return": self.episode_return, "finished": list(self.finished), "rows": list(self.rows),
            "stats": stats, "last_actor_loss": self.last_actor_loss,
            **{name: getattr(self, name) for name in self.COUNTERS},
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict` (this trainer built for the same task, method and critic)."""
        self.learner.load_full_state(state["learner"])
        self.replay.load_state_dict(state["replay"])
        self.obs, self.episode_return = state["obs"].to(self.device), state["episode_return"].to(self.device)
        self.finished = [t.to(self.device) for t in state["finished"]]
        self.rows = list(state["rows"])
        self.stats = None if state["stats"] is None else UpdateStats(**state["stats"])
        self.last_actor_loss = state["last_actor_loss"]
        for name in self.COUNTERS:
            setattr(self, name, state[name])

    def collect(self, n_steps: int) -> None:
        cfg, env, replay, generator = self.spec.sac, self.env, self.replay, self.generator
        for _ in range(n_steps):
            if self.calls <= cfg.start_steps:
                action = torch.rand(env.n_envs, env.action_dim, generator=generator, device=self.device) * 2 - 1
            else:
                with torch.no_grad():
                    action = self.actor.sample(self.obs, generator)[0]
            self.calls += 1
            behaviour = self.method.behaviour()  # what this action was conditioned on, before on_env_step redraws it
            res = env.step(action)
            self.method.on_env_step(res.done)
            if self.spec.quirks.truncation_as_terminal:
                # Faithful: a time-limit end is terminal, and the stored next state is the auto-reset state.
                replay.put(self.obs, action, res.reward, 1.0 - res.done, res.obs, behaviour, ended=res.done)
            else:
                cut = res.truncated.unsqueeze(-1) > 0
                next_obs = torch.where(cut, res.final_obs, res.obs)
                not_done = 1.0 - res.done * (1 - res.truncated)
                replay.put(self.obs, action, res.reward, not_done, next_obs, behaviour, ended=res.done)
            self.episode_return += res.reward
            # No host sync per step: finished returns are kept in place (NaN elsewhere) and filtered at the next
            # curve point, in the same order as before.
            ended = res.done > 0
            self.finished.append(torch.where(ended, self.episode_return, torch.nan))
            self.episode_return = torch.where(ended, torch.zeros_like(self.episode_return), self.episode_return)
            self.obs = res.obs

    def run(
        self, progress: Progress | None = None, after_epoch: Callable[[], None] | None = None,
        run_log: RunLog | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Train to the end of the budget (from wherever a resumed trainer stood); `after_epoch` is called between
        collection epochs (the checkpoint point); `run_log` gets the curve points (steps counted over the run).
        Returns the task's training rows."""
        cfg, n_envs, k = self.spec.sac, self.env.n_envs, self.task_index
        start = time.monotonic() - self.elapsed_s
        if not self.warmed_up:
            self.collect(self.new_steps)
            self.interactions = cfg.n_timesteps * n_envs
            while len(self.replay) < cfg.initial_buffer_size:
                self.collect(self.new_steps)
                self.interactions += self.new_steps * n_envs
            self.warmed_up = True
            if progress is not None:
                progress.update(self.interactions, task=k)
        while self.interactions <= self.budget:
            self.collect(self.new_steps)
            self.interactions += self.new_steps * n_envs
            with self.method.learning_mode():
                for _ in range(self.updates_per_epoch):
                    batch = self.method.prepare_batch(self.replay.sample(cfg.batch_size, self.generator), self.generator)
                    self.stats = self.learner.update(batch, self.method.extra_loss)
                    if self.stats.actor_loss is not None:
                        self.last_actor_loss = self.stats.actor_loss
            self.updates += self.updates_per_epoch
            info = {}
            if self.interactions >= self.next_curve:  # the loop's only host syncs, once per curve point
                self.next_curve += self.curve_every
                returns = torch.cat(self.finished) if self.finished else torch.empty(0)
                returns = returns[~returns.isnan()]
                mean_return = returns.mean() if returns.numel() > 0 else None
                if mean_return is not None:
                    self.rows.append(_row(k, k, "train_return", mean_return, self.interactions))
                self.finished.clear()
                info = {"alpha": float(self.stats.alpha)} if self.stats is not None else {}
                if run_log is not None:
                    stats = self.stats
                    run_log.scalars(k * self.spec.scenario.steps_per_task + self.interactions, {
                        "train/return": mean_return,
                        "train/alpha": info.get("alpha"),
                        "train/critic_loss": stats.critic_loss if stats is not None else None,
                        "train/actor_loss": self.last_actor_loss,
                    })  # fmt: skip
            if progress is not None:
                progress.update(self.new_steps * n_envs, task=k, **info)
            self.elapsed_s = time.monotonic() - start
            faults.reached("epoch")
            if after_epoch is not None and self.interactions <= self.budget:
                after_epoch()
        if not self.done:
            self.done = True
            self.rows += [
                _row(k, k, "train_env_steps", self.interactions),
                _row(k, k, "train_updates", self.updates),
                _row(k, k, "train_time_s", time.monotonic() - start),
            ]
        return self.rows


class TrainEnvEvaluator:
    """Deterministic mean return on the task's env (Rewire's mode selection): `selection_rollouts` rollouts seeded
    `seed·13 + task·100` for every candidate, as the original's selection reuses its stage evaluation (stage counter
    not yet incremented during training; found beyond the audit, README "Fidelity"). Counts the env steps it spends."""

    def __init__(self, env: VecEnv, spec: TrainSpec, task_index: int, steps: int = 0) -> None:
        eval_cfg = EvalConfig()
        self.env, self.seed = env, spec.seed * eval_cfg.seed_stride_run + task_index * eval_cfg.seed_stride_stage
        self.rollouts = int(spec.method_hp.get("selection_rollouts", 10))
        self.steps = steps

    def __call__(self, actor: GaussianActor) -> float:
        was_training = actor.training
        actor.eval()
        try:
            episodes = run_episodes(actor, self.env, self.rollouts, self.seed)
        finally:
            actor.train(was_training)
        self.steps += int(episodes["env_steps"].sum())
        return float(episodes["return"].mean())


def _extra_steps(context: TaskContext) -> int:
    return int(getattr(context.evaluate, "steps", 0)) + context.extra_env_steps


@dataclass
class TrainResult:
    """Per-stage method states (enough to rebuild the policy for every task), and tidy training rows."""

    method: str
    method_hp: dict[str, Any]
    network: dict[str, Any]
    obs_dim: int
    action_dim: int
    stages: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    resumed_from: dict[str, Any] | None = None
    """Where a resumed run picked up: task index, phase (`start`, `train`, `end`), the task's env steps, and the
    training time of the processes before (None: the checkpoint did not record it, and `train_wall_time_s` is this
    process's alone)."""
    train_wall_time_s: float = 0.0
    """Training time over every process that ran this job: the earlier ones' up to their last checkpoint (the work
    after it is redone and counted once) plus this one's."""

    def policies(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("rows", "resumed_from", "train_wall_time_s")}


def train(
    spec: TrainSpec,
    *,
    env_factory: EnvFactory = make_env,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_interval_s: float | None = None,
    run_log: RunLog | None = None,
    compiled_check: CompiledCheck | None = None,
) -> TrainResult:
    """Train `spec.method` on every task of the scenario in order.

    With `checkpoint_dir`, the whole training state is saved between collection epochs every
    `checkpoint_interval_s` (default `rlrepro.checkpoint.checkpoint_interval()`), before each task's end phase
    (selection, pruning and fine-tuning, Fisher, AlphaSearch) and after each stage; a rerun of the same job spec
    continues from the last one bit for bit, and a checkpoint of any other spec is ignored (rlrepro.checkpoint).
    `compiled_check` checks the compiled updates of every learner of the job (rlrepro.engine.compiled_check).
    """
    start = time.monotonic()
    device = torch.device(spec.device)
    seed_everything(spec.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed)
    scenario = spec.scenario
    store = CheckpointStore(checkpoint_dir, dataclasses.asdict(spec), interval_s=checkpoint_interval_s)

    env_cfg = {**spec.env, "cw_spurious_reset_transition": spec.quirks.cw_spurious_reset_transition}

    def env_maker(task: TaskSpec) -> Callable[[int], VecEnv]:
        return lambda n_envs: env_factory(scenario, task, n_envs=n_envs, env_cfg=env_cfg, device=device)

    def env_for(task: TaskSpec) -> VecEnv:
        return env_maker(task)(scenario.n_train_envs)

    env = env_for(scenario.tasks[0])
    method = build_method(spec.method, env.obs_dim, env.action_dim, spec.network, spec.method_hp).to(device)
    critic_network = spec.critic_network or spec.network
    critic = TwinCritic(env.obs_dim, env.action_dim, critic_network).to(device)
    result = TrainResult(spec.method, spec.method_hp, dataclasses.asdict(spec.network), env.obs_dim, env.action_dim, [], [])
    first, phase, trainer, saved = 0, "start", None, store.load(map_location=device)
    earlier_wall_time_s = 0.0  # the processes before this one, up to their last checkpoint
    if saved is not None:
        earlier = saved.get("wall_time_s")  # absent from checkpoints written before it was recorded
        if earlier is None:
            log.warning("this checkpoint does not record its training time: train_wall_time_s counts this process only")
        earlier_wall_time_s = float(earlier or 0.0)
        method = restore_method(saved["method"], spec.method, env.obs_dim, env.action_dim, spec.network, spec.method_hp,
                                device)  # fmt: skip
        critic = TwinCritic(saved["critic"]["obs_dim"], env.action_dim, critic_network).to(device)
        critic.load_state_dict(saved["critic"]["state"])
        generator.set_state(saved["generator"].cpu())
        result.stages, result.rows = saved["stages"], saved["rows"]
        first, phase = saved["task"], saved["phase"]
        if phase == "start":  # else once the task's trainer and env are rebuilt (building them may draw numbers)
            restore_rng(saved["rng"])
        done_steps = saved["trainer"]["interactions"] if saved["trainer"] is not None else 0
        result.resumed_from = {"task": first, "phase": phase, "task_env_steps": done_steps,
                               "earlier_wall_time_s": earlier}  # fmt: skip
        log.info("resuming %s at task %d, phase %s, %d env steps into the task", spec.method, first, phase, done_steps)
        if progress is not None:
            progress.update(first * scenario.steps_per_task + done_steps)
        if run_log is not None:
            run_log.resumed_at(first * scenario.steps_per_task + done_steps)

    def save(task: int, phase: str, context: TaskContext | None = None) -> None:
        if not store.enabled:
            return
        payload = {
            "task": task, "phase": phase, "method": method_checkpoint(method),
            "critic": {"obs_dim": critic.net.sizes[0] - env.action_dim, "state": critic.state_dict()},
            "generator": generator.get_state(), "trainer": trainer.state_dict() if phase != "start" else None,
            "rng": capture_rng(device), "env": env.get_state() if phase != "start" else None,
            "stages": result.stages, "rows": result.rows,
            "evaluator_steps": int(getattr(context.evaluate, "steps", 0)) if context else 0,
            "extra_env_steps": context.extra_env_steps if context else 0,
            "wall_time_s": earlier_wall_time_s + time.monotonic() - start,
        }  # fmt: skip
        store.save(payload)

    for k in range(first, scenario.n_tasks):
        task = scenario.tasks[k]
        if k > 0 or saved is not None:
            env = env_for(task)
        fresh = phase == "start"
        if fresh and k > 0 and not spec.quirks.keep_critic_across_tasks:
            critic = TwinCritic(env.obs_dim, env.action_dim, critic_network).to(device)
        # Resumed inside this task: its trainer, env position and spent env steps come from the checkpoint.
        evaluator = TrainEnvEvaluator(env, spec, k, steps=0 if fresh else saved["evaluator_steps"])
        context = TaskContext(None, generator, critic, spec.sac, evaluate=evaluator, env=env, quirks=spec.quirks,
                              make_env=env_maker(task), seed=spec.seed, engine=spec.engine, compiled_check=compiled_check,
                              extra_env_steps=0 if fresh else saved["extra_env_steps"])  # fmt: skip
        if fresh:
            method.on_task_start(k, context)
            critic = context.critic = method.critic_for_task(critic).to(device)
            trainer, phase = TaskTrainer(method, critic, env, spec, k, generator, compiled_check), "train"
        else:
            trainer = TaskTrainer(method, critic, env, spec, k, generator, compiled_check)
            trainer.load_state_dict(saved["trainer"])
            env.set_state(saved["env"])
            restore_rng(saved["rng"])
        if phase == "train":
            checkpoint_if_due = lambda: save(k, "train", context) if store.due() else None  # noqa: B023, E731
            rows = trainer.run(progress, after_epoch=checkpoint_if_due, run_log=run_log)
            phase = "end"
            save(k, "end", context)  # the end phases can be long (PackNet's fine-tune): resume at their start
        rows = list(trainer.rows)
        context.replay = trainer.replay
        method.on_task_end(k, context)
        context.replay, trainer, phase = None, None, "start"
        rows.append(_row(k, k, "extra_env_steps", _extra_steps(context)))
        memory = method.memory_report()
        rows += [_row(k, None, name, value) for name, value in memory.items()]
        result.rows += rows
        result.stages.append(
            {"structure": method.structure(), "state": {n: t.detach().cpu().clone() for n, t in method.state_dict().items()}}
        )
        if k + 1 < scenario.n_tasks:
            save(k + 1, "start")
    result.train_wall_time_s = earlier_wall_time_s + time.monotonic() - start
    return result


def method_checkpoint(method: Method) -> dict[str, Any]:
    """A method mid-task as data: its layout (`structure`), state dict and per-task attributes (`runtime_state`)."""
    return {"structure": method.structure(), "state": method.state_dict(), "runtime": method.runtime_state()}


def restore_method(saved: dict[str, Any], name: str, obs_dim: int, action_dim: int, network: NetworkConfig,
                   hp: dict[str, Any], device: torch.device) -> Method:  # fmt: skip
    """The method `method_checkpoint` (or a stage of a policies file, without `runtime`) saved, rebuilt from its name
    and config: its layout first, then its tensors."""
    method = build_method(name, obs_dim, action_dim, network, hp)
    method.rebuild(saved["structure"])
    if "runtime" not in saved:  # a policies file: engine 0.2.0's runs load too
        method.to(device).load_state_dict(upgrade_legacy_state_dict(dict(saved["state"])))
        return method
    method.to(device).load_state_dict(saved["state"])
    method.load_runtime_state(saved["runtime"])
    return method


def read_policies(path: Path | str) -> dict[str, Any]:
    """A train job's policies file, read as data (`rlrepro.io.read_torch_data`: a file holding pickled objects is
    refused before any of it runs) and checked to be one: the method's name, config and each stage's tensors."""
    from rlrepro.errors import ConfigError
    from rlrepro.io import read_torch_data

    policies = read_torch_data(path)
    keys = {"method", "method_hp", "network", "obs_dim", "action_dim", "stages"}
    stages = policies.get("stages") if isinstance(policies, dict) else None
    if (not isinstance(policies, dict) or not keys <= policies.keys() or not isinstance(stages, list)
            or not all(isinstance(s, dict) and isinstance(s.get("structure"), dict) and isinstance(s.get("state"), dict)
                       and all(isinstance(t, torch.Tensor) for t in s["state"].values()) for s in stages)):  # fmt: skip
        raise ConfigError(f"{path}: not a policies file: expected keys {', '.join(sorted(keys))}, each stage a "
                          "structure and a state dict of tensors")  # fmt: skip
    return policies


def load_stage_methods(policies: dict[str, Any], device: torch.device) -> list[Method]:
    """Rebuild the method as it stood after each stage from a train job's policies file (`read_policies`)."""
    network = NetworkConfig(**policies["network"])
    return [restore_method(stage, policies["method"], policies["obs_dim"], policies["action_dim"], network,
                           policies["method_hp"], device).eval() for stage in policies["stages"]]  # fmt: skip


@torch.no_grad()
def run_episodes(policy: GaussianActor, env: VecEnv, n_rollouts: int, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic episodes, one per env per rollout (each rollout resets to new initial states).

    Returns per-episode `return`, `env_steps` per rollout; with a success flag also `success_last` (the flag at
    the episode's last step, as Rewire counts it) and `success_any` (at any step, as Continual World counts it).
    """
    out: dict[str, list[torch.Tensor]] = {"return": [], "success_last": [], "success_any": [], "env_steps": []}
    for rollout in range(n_rollouts):
        obs = env.reset(seed * 1000 + rollout)
        total = torch.zeros(env.n_envs, device=obs.device)
        alive = torch.ones(env.n_envs, device=obs.device)
        last = torch.zeros(env.n_envs, device=obs.device)
        anyt = torch.zeros(env.n_envs, device=obs.device)
        steps = 0
        for t in range(env.episode_length):
            res = env.step(policy.deterministic(obs))
            steps += 1
            total += res.reward * alive
            if res.success is not None:
                last = torch.where(alive > 0, res.success, last)
                anyt = torch.maximum(anyt, res.success * alive)
            alive = alive * (1 - res.done)
            obs = res.obs
            if t % 50 == 49 and not bool(alive.any()):
                break
        out["return"].append(total)
        out["env_steps"].append(torch.tensor([steps * env.n_envs]))
        if res.success is not None:
            out["success_last"].append(last)
            out["success_any"].append(anyt)
    return {k: torch.cat(v) for k, v in out.items() if v}


def evaluate(
    spec: EvalSpec,
    policies: dict[str, Any],
    *,
    env_factory: EnvFactory = make_env,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """The T×T matrix: every stage's policy for task j, evaluated on task j (past, current and future tasks)."""
    device = torch.device(spec.device)
    methods = load_stage_methods(policies, device)
    scenario, ev = spec.scenario, spec.evaluation
    rows = []
    for j, task in enumerate(scenario.tasks):
        env = env_factory(scenario, task, n_envs=scenario.n_eval_envs, env_cfg=spec.env, device=device)
        for s, method in enumerate(methods):
            # The original increments its stage counter before evaluating: stage s is evaluated with s + 1 (audit D10).
            seed = spec.seed * ev.seed_stride_run + (s + 1) * ev.seed_stride_stage
            episodes = run_episodes(method.policy_for_task(j), env, ev.n_rollouts, seed)
            rows.append(_row(s, j, "avg_return", episodes["return"].mean()))
            rows.append(_row(s, j, "std_return", episodes["return"].std(unbiased=False)))
            for name in ("success_last", "success_any"):
                if name in episodes:
                    rows.append(_row(s, j, name, episodes[name].mean()))
            if progress is not None:
                progress.update(ev.n_rollouts * env.n_envs * env.episode_length)
    return rows


class UniformRandomPolicy:
    """The random reference: uniform actions in [−1, 1] from its own generator (the `deterministic` interface of
    `run_episodes`, so it is evaluated exactly like a trained policy)."""

    def __init__(self, action_dim: int, generator: torch.Generator) -> None:
        self.action_dim, self.generator = action_dim, generator

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.rand(obs.shape[0], self.action_dim, generator=self.generator, device=obs.device) * 2 - 1


def evaluate_random(spec: EvalSpec, *, env_factory: EnvFactory = make_env) -> list[dict[str, Any]]:
    """A uniform-random policy on every task of the scenario, with the evaluation's envs, rollouts and seeds (stage 0's):
    the per-task reference that shows whether a method learned anything."""
    device = torch.device(spec.device)
    scenario, ev = spec.scenario, spec.evaluation
    rows = []
    for j, task in enumerate(scenario.tasks):
        env = env_factory(scenario, task, n_envs=scenario.n_eval_envs, env_cfg=spec.env, device=device)
        seed = spec.seed * ev.seed_stride_run + ev.seed_stride_stage
        policy = UniformRandomPolicy(env.action_dim, torch.Generator(device=device).manual_seed(seed))
        episodes = run_episodes(policy, env, ev.n_rollouts, seed)
        rows.append({"task": j, "metric": "avg_return", "value": float(episodes["return"].mean())})
        for name in ("success_last", "success_any"):
            if name in episodes:
                rows.append({"task": j, "metric": name, "value": float(episodes[name].mean())})
    return rows


def configure_threads() -> None:
    """One intra-op thread per job (two threads on two busy cores collapse throughput, platform.md §6.2)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
