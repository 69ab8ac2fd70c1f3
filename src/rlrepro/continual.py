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

from rlrepro.envs import VecEnv, make_env
from rlrepro.io import atomic_torch_save
from rlrepro.methods.base import Method, TaskContext
from rlrepro.methods.registry import method_class
from rlrepro.progress import Progress
from rlrepro.sac.config import EvalConfig, NetworkConfig, Quirks, SACConfig, TrainLogConfig, from_dict
from rlrepro.sac.learner import SACLearner
from rlrepro.sac.networks import GaussianActor, TwinCritic
from rlrepro.sac.replay import ReplayBuffer
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
    quirks: Quirks = field(default_factory=Quirks)
    env: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    log: TrainLogConfig = field(default_factory=TrainLogConfig)
    engine_version: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSpec:
        data = dict(data)
        return cls(
            method=data.pop("method"),
            scenario=ScenarioSpec.from_dict(data.pop("scenario")),
            seed=int(data.pop("seed")),
            method_hp=data.pop("method_hp", {}),
            sac=from_dict(SACConfig, data.pop("sac", {}), "sac"),
            network=from_dict(NetworkConfig, data.pop("network", {}), "network"),
            quirks=from_dict(Quirks, data.pop("quirks", {}), "quirks"),
            env=data.pop("env", {}),
            device=data.pop("device", "cpu"),
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


def train_task(
    method: Method,
    critic: TwinCritic,
    env: VecEnv,
    spec: TrainSpec,
    task_index: int,
    generator: torch.Generator,
    progress: Progress | None = None,
) -> tuple[ReplayBuffer, list[dict[str, Any]]]:
    """SAC on one task (rewire.md §2.2): new replay, α and optimisers; windows of n_timesteps; UTD from config."""
    cfg, n_envs = spec.sac, env.n_envs
    budget = spec.scenario.steps_per_task - method.reserved_env_steps(env)
    device = next(critic.parameters()).device
    new_steps = cfg.n_timesteps - 1
    capacity = min(cfg.buffer_size, budget + max(cfg.initial_buffer_size, 0) + cfg.n_timesteps * n_envs)
    replay = ReplayBuffer(capacity, env.obs_dim, env.action_dim, device)
    actor = method.train_actor()
    learner = SACLearner(
        actor, method.trainable_parameters(), critic, cfg, env.action_dim, generator, actor_grad_hook=method.mask_gradients
    )
    updates_per_epoch = int((cfg.inner_epochs or n_envs) * cfg.grad_updates_per_step)
    curve_every = max(budget // max(spec.log.curve_points, 1), 1)

    obs = env.reset(spec.seed * 1000 + task_index)
    calls = 0
    episode_return = torch.zeros(n_envs, device=device)
    finished: list[torch.Tensor] = []
    rows: list[dict[str, Any]] = []
    next_curve = curve_every

    def collect(n_steps: int) -> None:
        nonlocal obs, calls, episode_return
        for _ in range(n_steps):
            if calls <= cfg.start_steps:
                action = torch.rand(n_envs, env.action_dim, generator=generator, device=device) * 2 - 1
            else:
                with torch.no_grad():
                    action = actor.sample(obs, generator)[0]
            calls += 1
            res = env.step(action)
            method.on_env_step(res.done)
            if spec.quirks.truncation_as_terminal:
                # Faithful: a time-limit end is terminal, and the stored next state is the auto-reset state.
                replay.put(obs, action, res.reward, res.done, res.obs)
            else:
                cut = res.truncated.unsqueeze(-1) > 0
                replay.put(obs, action, res.reward, res.done * (1 - res.truncated), torch.where(cut, res.final_obs, res.obs))
            episode_return += res.reward
            # No host sync per step: finished returns are kept in place (NaN elsewhere) and filtered at the next
            # curve point, in the same order as before.
            ended = res.done > 0
            finished.append(torch.where(ended, episode_return, torch.nan))
            episode_return = torch.where(ended, torch.zeros_like(episode_return), episode_return)
            obs = res.obs

    start = time.monotonic()
    collect(new_steps)
    interactions = cfg.n_timesteps * n_envs
    while len(replay) < cfg.initial_buffer_size:
        collect(new_steps)
        interactions += new_steps * n_envs
    if progress is not None:
        progress.update(interactions, task=task_index)
    updates = 0
    stats = None
    while interactions <= budget:
        collect(new_steps)
        interactions += new_steps * n_envs
        with method.learning_mode():
            for _ in range(updates_per_epoch):
                batch = method.prepare_batch(replay.sample(cfg.batch_size, generator), generator)
                stats = learner.update(batch, method.extra_loss)
        updates += updates_per_epoch
        info = {}
        if interactions >= next_curve:  # the loop's only host syncs, once per curve point
            next_curve += curve_every
            returns = torch.cat(finished) if finished else torch.empty(0)
            returns = returns[~returns.isnan()]
            if returns.numel() > 0:
                rows.append(_row(task_index, task_index, "train_return", returns.mean(), interactions))
            finished.clear()
            info = {"alpha": float(stats.alpha)} if stats is not None else {}
        if progress is not None:
            progress.update(new_steps * n_envs, task=task_index, **info)
    rows += [
        _row(task_index, task_index, "train_env_steps", interactions),
        _row(task_index, task_index, "train_updates", updates),
        _row(task_index, task_index, "train_time_s", time.monotonic() - start),
    ]
    return replay, rows


def _train_env_evaluator(env: VecEnv, spec: TrainSpec, task_index: int) -> Callable[[GaussianActor], float]:
    """Deterministic mean return on the training env, `evaluation.n_rollouts`-free: one seed per task, as the
    original's selection rollouts used one seed for every candidate. Counts the env steps it spends."""
    rollouts = int(spec.method_hp.get("selection_rollouts", 10))

    def evaluate(actor: GaussianActor) -> float:
        was_training = actor.training
        actor.eval()
        try:
            episodes = run_episodes(actor, env, rollouts, spec.seed * 7919 + task_index)
        finally:
            actor.train(was_training)
        evaluate.steps += int(episodes["env_steps"].sum())
        return float(episodes["return"].mean())

    evaluate.steps = 0
    return evaluate


def _extra_steps(context: TaskContext) -> int:
    return int(getattr(context.evaluate, "steps", 0)) + context.extra_env_steps


def _stage_path(checkpoint_dir: Path, stage: int) -> Path:
    return checkpoint_dir / f"stage{stage:03d}.pt"


def _latest_checkpoint(checkpoint_dir: Path | None) -> dict[str, Any] | None:
    if checkpoint_dir is None or not checkpoint_dir.exists():
        return None
    paths = sorted(checkpoint_dir.glob("stage*.pt"))
    return torch.load(paths[-1], map_location="cpu", weights_only=False) if paths else None


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
    resumed_from_stage: int | None = None

    def policies(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("rows", "resumed_from_stage")}


def train(
    spec: TrainSpec,
    *,
    env_factory: EnvFactory = make_env,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train `spec.method` on every task of the scenario in order; resume from the last stage checkpoint if any."""
    device = torch.device(spec.device)
    seed_everything(spec.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed)
    scenario = spec.scenario

    env_cfg = {**spec.env, "cw_spurious_reset_transition": spec.quirks.cw_spurious_reset_transition}

    def env_for(task: TaskSpec) -> VecEnv:
        return env_factory(scenario, task, n_envs=scenario.n_train_envs, env_cfg=env_cfg, device=device)

    env = env_for(scenario.tasks[0])
    method = build_method(spec.method, env.obs_dim, env.action_dim, spec.network, spec.method_hp).to(device)
    critic = TwinCritic(env.obs_dim, env.action_dim, spec.network).to(device)
    result = TrainResult(spec.method, spec.method_hp, dataclasses.asdict(spec.network), env.obs_dim, env.action_dim, [], [])
    first = 0
    ckpt = _latest_checkpoint(checkpoint_dir)
    if ckpt is not None:
        method.rebuild(ckpt["structure"])
        method.load_state_dict(ckpt["method_state"])
        critic = ckpt["critic"].to(device)
        generator.set_state(ckpt["generator_state"])
        torch.set_rng_state(ckpt["torch_rng_state"])
        result.stages, result.rows = ckpt["stages"], ckpt["rows"]
        first = result.resumed_from_stage = ckpt["stage"] + 1
        log.info("resuming %s after stage %d from %s", spec.method, ckpt["stage"], checkpoint_dir)

    for k in range(first, scenario.n_tasks):
        task = scenario.tasks[k]
        if k > 0:
            env = env_for(task)
            if not spec.quirks.keep_critic_across_tasks:
                critic = TwinCritic(env.obs_dim, env.action_dim, spec.network).to(device)
        context = TaskContext(None, generator, critic, spec.sac, evaluate=_train_env_evaluator(env, spec, k), env=env)
        method.on_task_start(k, context)
        critic = context.critic = method.critic_for_task(critic).to(device)
        context.replay, rows = train_task(method, critic, env, spec, k, generator, progress)
        method.on_task_end(k, context)
        context.replay = None
        rows.append(_row(k, k, "extra_env_steps", _extra_steps(context)))
        memory = method.memory_report()
        rows += [_row(k, None, name, value) for name, value in memory.items()]
        result.rows += rows
        result.stages.append(
            {"structure": method.structure(), "state": {n: t.detach().cpu().clone() for n, t in method.state_dict().items()}}
        )
        if checkpoint_dir is not None:
            atomic_torch_save(
                {
                    "stage": k,
                    "structure": method.structure(),
                    "method_state": method.state_dict(),
                    "critic": critic,
                    "generator_state": generator.get_state(),
                    "torch_rng_state": torch.get_rng_state(),
                    "stages": result.stages,
                    "rows": result.rows,
                },
                _stage_path(checkpoint_dir, k),
            )
    return result


def load_stage_methods(policies: dict[str, Any], device: torch.device) -> list[Method]:
    """Rebuild the method as it stood after each stage from a train job's policies file."""
    methods = []
    network = NetworkConfig(**policies["network"])
    for stage in policies["stages"]:
        method = build_method(policies["method"], policies["obs_dim"], policies["action_dim"], network, policies["method_hp"])
        method.rebuild(stage["structure"])
        method.load_state_dict(stage["state"])
        methods.append(method.to(device).eval())
    return methods


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
            seed = spec.seed * ev.seed_stride_run + s * ev.seed_stride_stage
            episodes = run_episodes(method.policy_for_task(j), env, ev.n_rollouts, seed)
            rows.append(_row(s, j, "avg_return", episodes["return"].mean()))
            rows.append(_row(s, j, "std_return", episodes["return"].std(unbiased=False)))
            for name in ("success_last", "success_any"):
                if name in episodes:
                    rows.append(_row(s, j, name, episodes[name].mean()))
            if progress is not None:
                progress.update(ev.n_rollouts * env.n_envs * env.episode_length)
    return rows


def configure_threads() -> None:
    """One intra-op thread per job (two threads on two busy cores collapse throughput, platform.md §6.2)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
