"""Train one sparse-suite run (dense, dapd, rigl or rlx2) on one gymnasium env: the loop of dapd.md §2.4.

`train_sparse` is functional: the env factory, progress and checkpoint directory are passed in. A checkpoint is
taken between episodes (after the evaluation, before the reset), so a rerun after a kill continues from there
with the same random streams and reaches the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
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
from rlrepro.engine.compiled_check import CompiledCheck
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import GaussianActor, MLPStack, TwinCritic, forward_flops
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.engine.update import compile_wanted
from rlrepro.envs.gym_backend import make_gym_env, rng_state, set_rng_state
from rlrepro.progress import Progress
from rlrepro.runlog import RunLog
from rlrepro.sparse.config import DAPDConfig, DSTConfig, SparseSpec, learner_config, network_config
from rlrepro.sparse.dapd import snip_scores
from rlrepro.sparse.masks import PathwayMasks, enable_dst

log = logging.getLogger("rlrepro")
Row = tuple[int, str, str | None, float]
"""(step, metric, layer, value) — one long-format row of a sparse run."""


@dataclass
class SparseResult:
    rows: list[Row]
    model: dict[str, Any]
    resumed_from_step: int | None
    train_wall_time_s: float


@dataclass
class LoopState:
    """What the loop carries between episodes; all of it goes into the checkpoint."""

    step: int = 0
    episode: int = 0
    eval_pending: bool = False
    warmup: bool = True
    wall_time_s: float = 0.0
    rows: list[Row] = field(default_factory=list)


def default_env_factory(spec: SparseSpec):
    return make_gym_env(spec.env_id, spec.env_kwargs, spec.max_episode_steps)


def build_learner(obs_dim: int, action_dim: int, cfg, device: torch.device, generator: torch.Generator,
                  compile: bool = False, compiled_check: CompiledCheck | None = None) -> SACLearner:  # fmt: skip
    """The engine's learner in the DAPD/pytorch_sac flavour, networks drawn actor first (as the original)."""
    net = network_config(cfg)
    actor = GaussianActor(obs_dim, action_dim, net).to(device)
    critic = TwinCritic(obs_dim, action_dim, net).to(device)
    return SACLearner(actor, critic, learner_config(cfg, action_dim), generator, count_flops=True, compile=compile,
                      compiled_check=compiled_check)  # fmt: skip


def train_sparse(
    spec: SparseSpec,
    *,
    env_factory: Callable[[SparseSpec], Any] = default_env_factory,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_interval_s: float | None = None,
    run_log: RunLog | None = None,
    compiled_check: CompiledCheck | None = None,
) -> SparseResult:
    """Train one run; with `checkpoint_dir`, resume from its checkpoint and save one every
    `checkpoint_interval_s` (default: $RLREPRO_CHECKPOINT_INTERVAL_S or 300 s) at an episode boundary.
    `compiled_check`: the job's check of its compiled updates (rlrepro.engine.compiled_check)."""
    cfg = spec.sac
    device = torch.device(spec.device)
    random.seed(spec.seed)
    np.random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    env = env_factory(spec)
    eval_env = env  # DAPD's pytorch_sac evaluates on the training env; RLx2's loop on a second one seeded seed + 100
    if cfg.separate_eval_env:
        eval_env = env_factory(spec)
        eval_env.reset(seed=spec.seed + 100)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    max_action = float(env.action_space.high.max())
    compile = compile_wanted(spec.engine, cfg.total_steps - cfg.seed_steps)
    agent = build_learner(obs_dim, action_dim, cfg, device, generator, compile, compiled_check)
    dapd: DAPDConfig | None = spec.dapd() if spec.method == "dapd" else None
    dst: DSTConfig | None = spec.dst() if spec.method in ("rigl", "rlx2") else None
    if dst is not None:
        enable_dst(
            agent,
            dst.actor_sparsity if dst.actor_sparsity is not None else 1 - dst.keep_ratio,
            dst.critic_sparsity if dst.critic_sparsity is not None else 1 - dst.keep_ratio,
            delta=dst.delta, zeta=dst.zeta, t_end=cfg.total_steps - cfg.seed_steps, random_grow=dst.random_grow,
            critic_grow_includes_actor_grad=dst.critic_grow_includes_actor_grad,
        )  # fmt: skip
    capacity = min(dst.buffer_max_size if dst and dst.dynamic_buffer else cfg.buffer_size, cfg.total_steps)
    replay = ReplayBuffer(max(capacity, 1), obs_dim, action_dim, device, action_means=True)
    episode_cap = int(env.spec.max_episode_steps) if env.spec and env.spec.max_episode_steps else 1000
    recent = ReplayBuffer(max(episode_cap, cfg.batch_size), obs_dim, action_dim, device, action_means=True) if dapd else None
    pathways = None  # (actor, critic) DAPD masks
    if dapd is not None:
        pathways = tuple(PathwayMasks(dapd.keep_ratio, dapd.mask_update_mavg) for _ in range(2))
    state = LoopState(warmup=bool(dapd and dapd.iterative_pruning))

    def as_tensor(x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)

    store = CheckpointStore(checkpoint_dir, dataclasses.asdict(spec), interval_s=checkpoint_interval_s)
    resumed_from: int | None = None
    saved = store.load(map_location=device)
    if saved is not None:
        _restore(saved, agent, replay, recent, pathways, generator, env, state, eval_env)
        resumed_from = state.step
        log.info("resuming %s from step %d (%s)", spec.method, state.step, store.path)
        if run_log is not None:
            run_log.resumed_at(state.step)
    if resumed_from is None:
        env.reset(seed=spec.seed)
        env.action_space.seed(spec.seed)
        if dapd is not None:
            _initial_pathways(agent, env, replay, pathways, dapd, as_tensor, max_action, episode_cap)
            # the random-policy data is dropped
            replay = ReplayBuffer(max(capacity, 1), obs_dim, action_dim, device, action_means=True)

    def save_checkpoint() -> None:
        store.save(
            {
                "loop": dataclasses.asdict(state), "agent": agent.full_state(),
                "replay": replay.state_dict(), "recent": recent.state_dict() if recent else None,
                "pathways": [p.state_dict() for p in pathways] if pathways else None,
                "generator": generator.get_state(), "rng": capture_rng(device), "env_rng": rng_state(env),
                "eval_env_rng": rng_state(eval_env) if eval_env is not env else None,
            }
        )  # fmt: skip

    logged = len(state.rows)

    def log_new_rows() -> None:  # at evaluations: the values are host floats already
        nonlocal logged
        if run_log is not None:
            for step, metric, layer, value in state.rows[logged:]:
                if layer is None:
                    run_log.scalars(step, {f"sparse/{metric}": value})
        logged = len(state.rows)

    start = time.monotonic() - state.wall_time_s
    done, obs, ep_return, ep_len = True, None, 0.0, 0
    fresh_episode_start = resumed_from is not None
    while state.step < cfg.total_steps:
        if done:
            if state.step > 0 and not fresh_episode_start:
                state.rows += [
                    (state.step, "episode_return", None, ep_return),
                    (state.step, "episode_length", None, float(ep_len)),
                ]
                state.episode += 1
                if state.eval_pending:
                    eval_return = _evaluate(agent, eval_env, spec, state, max_action, as_tensor, start, replay, pathways)
                    state.eval_pending = False
                    log_new_rows()
                    if dapd and not dapd.continual_pruning and state.warmup and eval_return > dapd.ips_threshold:
                        state.warmup = False  # freeze: the pathway never changes again
                        state.rows.append((state.step, "mask_frozen_at", None, float(state.step)))
                        log.info(
                            "dapd: return %.1f > %.1f, masks frozen at step %d", eval_return, dapd.ips_threshold, state.step
                        )
                if store.due():
                    state.wall_time_s = time.monotonic() - start
                    save_checkpoint()
            fresh_episode_start = False
            obs = as_tensor(env.reset()[0])
            if dapd and state.warmup and state.step > 0 and len(recent) > 0:
                actor_change, critic_change = _update_pathways(agent, recent, pathways, dapd)
                state.rows += [(state.step, "actor_mask_change", None, actor_change),
                               (state.step, "critic_mask_change", None, critic_change)]  # fmt: skip
            done, ep_return, ep_len = False, 0.0, 0
        if state.step < cfg.seed_steps:
            action = as_tensor(env.action_space.sample())
            action_mean = action
        else:  # RLx2's own loop acts with the mean action (audit R2): no draw from the generator then
            action, action_mean = agent.act(obs, deterministic=bool(dst and dst.mean_action_collection))
        if state.step >= cfg.seed_steps and len(replay) > 0:
            n = dst.nstep if dst is not None and agent.updates >= dst.delay_nstep else 1
            agent.update(replay.sample_windows(cfg.batch_size, generator, n))
        next_obs, reward, terminated, truncated, _ = env.step((action * max_action).cpu().numpy())
        next_obs = as_tensor(next_obs)
        ended = bool(terminated or truncated)
        for buf in (replay, recent) if recent is not None else (replay,):
            buf.add(obs, action, float(reward), next_obs, 0.0 if terminated else 1.0, float(ended), action_mean)
        obs, done = next_obs, ended
        ep_return += float(reward)
        ep_len += 1
        state.step += 1
        if state.step % spec.evaluation.every_steps == 0:
            state.eval_pending = True
        if dst is not None and dst.dynamic_buffer and state.step % dst.buffer_adjustment_interval == 0:
            _adjust_buffer(agent, replay, dst, cfg.batch_size, max_action, state)
        if progress is not None and state.step % 100 == 0:
            progress.update(100)
    if done and state.step > 0:
        state.rows += [(state.step, "episode_return", None, ep_return), (state.step, "episode_length", None, float(ep_len))]
    if state.eval_pending:  # the flagged last evaluation (pytorch_sac would skip it: the loop ends first)
        _evaluate(agent, eval_env, spec, state, max_action, as_tensor, start, replay, pathways)
    log_new_rows()
    env.close()
    if eval_env is not env:
        eval_env.close()
    model = {
        "actor": agent.actor.state_dict(), "critic": agent.critic.state_dict(), "masks": agent.masks_state(),
        "log_alpha": agent.log_alpha.detach().cpu(), "obs_dim": obs_dim, "action_dim": action_dim,
    }  # fmt: skip
    return SparseResult(state.rows, model, resumed_from, time.monotonic() - start)


def _initial_pathways(agent, env, replay, pathways, dapd: DAPDConfig, as_tensor, max_action, episode_cap: int) -> None:
    """Whole episodes of the random-init stochastic policy until initial_mask_steps, then the first masks.

    As the original's collection loop (fidelity audit S2): an episode also ends when its step counter + 1 reaches
    the time limit, and the first episode's counter starts at 1, so on a 1000-step env the first episode has 999
    steps and 5000 requested steps become 999 + 5 × 1000 = 5999."""
    t, step_counter = 0, 1
    while t < dapd.initial_mask_steps:
        obs, done = as_tensor(env.reset()[0]), False
        while not done:
            action, mean = agent.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, _ = env.step((action * max_action).cpu().numpy())
            cut = step_counter + 1 == episode_cap
            next_obs, done = as_tensor(next_obs), bool(terminated or truncated or cut)
            replay.add(obs, action, float(reward), next_obs, 0.0 if terminated else 1.0, float(done), mean)
            obs, t, step_counter = next_obs, t + 1, step_counter + 1
        step_counter = 0
    _update_pathways(agent, replay, pathways, dapd)


def _update_pathways(agent: SACLearner, source: ReplayBuffer, pathways, dapd: DAPDConfig) -> tuple[float, float]:
    """Rescore and install new DAPD masks; returns the fraction of each network's kept connections that are new."""
    batch = source.sample_windows(dapd.score_batch_size, agent.generator)
    if dapd.score_time_limit_as_terminal:  # the original scores with `not_done`: time-limit ends are terminal (S1)
        batch = dataclasses.replace(batch, not_done=1.0 - batch.ended)
    actor_scores, critic_scores = snip_scores(
        agent,
        batch,
        fixed_alpha=agent.cfg.init_temperature if dapd.snip_fixed_alpha else None,
        critic_includes_actor_loss=dapd.critic_scores_include_actor_loss,
    )
    old = (agent.actor.net.masks, agent.critic.net.masks)
    new = (pathways[0].update(actor_scores), pathways[1].update(critic_scores))
    agent.set_masks(*new)
    # Scoring costs about one dense SAC update on the score batch (both losses, forward and backward).
    dense_a, dense_c = forward_flops(agent.actor.net, dense=True), forward_flops(agent.critic.net, dense=True)
    agent.train_flops += dapd.score_batch_size * (4 * dense_a + 7 * dense_c)
    return tuple(_mask_change(o, n) for o, n in zip(old, new, strict=True))


def _mask_change(old: list, new: list | None) -> float:
    if new is None or any(m is None for m in old):
        return 1.0
    kept = sum(float(n.sum()) for n in new)
    fresh = sum(float(((n > 0) & (o == 0)).sum()) for o, n in zip(old, new, strict=True))
    return fresh / max(kept, 1.0)


@torch.no_grad()
def _adjust_buffer(agent: SACLearner, replay: ReplayBuffer, dst: DSTConfig, batch: int, max_action: float, state) -> None:
    """RLx2: drop the oldest 10% when the policy moved away from the oldest data (½·MSE of mean actions)."""
    obs, stored = replay.oldest_states(dst.buffer_check_batches * batch)
    if obs.shape[0] == 0:
        return
    current = agent.actor.deterministic(obs)
    distance = 0.5 * torch.mean((current / max_action - stored / max_action) ** 2).item()
    state.rows.append((state.step, "policy_distance", None, distance))
    if distance > dst.buffer_threshold and len(replay) > dst.buffer_min_size:
        replay.drop_oldest(int(0.1 * len(replay)))
        state.rows.append((state.step, "replay_size", None, float(len(replay))))


def _evaluate(agent, env, spec: SparseSpec, state: LoopState, max_action, as_tensor, start, replay, pathways) -> float:
    faults.reached("phase:evaluation")
    returns, lengths = [], []
    for _ in range(spec.evaluation.episodes):
        obs, done, total, length = as_tensor(env.reset()[0]), False, 0.0, 0
        while not done:
            action, _ = agent.act(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step((action * max_action).cpu().numpy())
            obs, done = as_tensor(obs), bool(terminated or truncated)
            total += float(reward)
            length += 1
        returns.append(total)
        lengths.append(length)
    step = state.step
    mean_return = float(np.mean(returns))
    rows: list[Row] = [
        (step, "eval_return", None, mean_return),
        (step, "eval_length", None, float(np.mean(lengths))),
        (step, "train_flops", None, agent.train_flops),
        (step, "updates", None, float(agent.updates)),
        (step, "alpha", None, float(agent.alpha.item())),
        (step, "wall_time_s", None, time.monotonic() - start),
        (step, "replay_size", None, float(len(replay))),
    ]
    stats = agent.last_policy_stats
    if stats is not None:
        rows += [(step, "critic_loss", None, float(stats.critic_loss.item())),
                 (step, "actor_loss", None, float(stats.actor_loss.item())),
                 (step, "entropy", None, float(stats.entropy.item()))]  # fmt: skip
    for name, net in (("actor", agent.actor.net), ("critic", agent.critic.net)):
        rows += _density_rows(step, name, net)
    if pathways is not None:
        rows.append((step, "mask_updates", None, float(pathways[0].updates)))
    if agent.actor_topology is not None:
        rows.append((step, "topology_updates", None, float(agent.actor_topology.topology_updates)))
    state.rows += rows
    log.info("step %d: eval return %.1f (%s)", step, mean_return, spec.method)
    return mean_return


def _density_rows(step: int, name: str, net: MLPStack) -> list[Row]:
    """Network density (active/total weights), per-layer densities, and active parameters (weights + biases)."""
    rows: list[Row] = []
    for view in net.layers():
        active = view.weight.numel() if view.mask is None else float(view.mask.sum().item())
        rows.append((step, "layer_density", view.name, active / view.weight.numel()))
    active = net.n_active_weights()
    rows.append((step, f"{name}_density", None, active / net.n_weights()))
    rows.append((step, f"{name}_params", None, float(active + net.n_biases())))
    rows.append((step, f"{name}_inference_flops", None, float(forward_flops(net))))
    return rows


def _restore(saved, agent, replay, recent, pathways, generator, env, state: LoopState, eval_env=None) -> None:
    agent.load_full_state(saved["agent"])
    replay.load_state_dict(saved["replay"])
    if recent is not None:
        recent.load_state_dict(saved["recent"])
    if pathways is not None:
        for p, s in zip(pathways, saved["pathways"], strict=True):
            p.load_state_dict(s)
    generator.set_state(saved["generator"].cpu())
    restore_rng(saved["rng"])
    set_rng_state(env, saved["env_rng"])
    if saved.get("eval_env_rng") is not None:
        set_rng_state(eval_env, saved["eval_env_rng"])
    loop = saved["loop"]
    loop["rows"] = [tuple(r) for r in loop["rows"]]
    for key, value in loop.items():
        setattr(state, key, value)
