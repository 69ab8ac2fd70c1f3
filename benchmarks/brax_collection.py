"""Brax collection: policy in the loop (torch actor → DLPack → jitted brax step → DLPack → replay) vs the raw step.

Three rates on one core, same scenario task, same number of envs (128 as in the papers' Brax scenarios):
  raw       the jitted brax step alone, fed a fixed JAX action (the bound: no torch, no transfers)
  wrapper   rlrepro's BraxVecEnv.step with precomputed torch actions (adds DLPack both ways)
  policy    what a training job does per env step: sample actions from the SAC actor for the current
            observations, step, write the transitions into the replay buffer
Issue 8's target: policy ≥ 0.8 × raw.

    python benchmarks/brax_collection.py                       # halfcheetah/forgetting, 128 envs, 200 steps
    python benchmarks/brax_collection.py --scenario ant/forgetting --backend spring
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from rlrepro.blas import reexec_with_shim

if __name__ == "__main__":
    reexec_with_shim([__file__, *sys.argv[1:]])
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import torch

from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.networks import GaussianActor
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.envs import make_env
from rlrepro.scenarios import get_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="halfcheetah/forgetting")
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="positional")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    device = torch.device("cpu")
    scenario = get_scenario(args.scenario)
    env = make_env(scenario, scenario.tasks[0], n_envs=args.envs, env_cfg={"backend": args.backend}, device=device)
    obs = env.reset(0)
    actor = GaussianActor(env.obs_dim, env.action_dim, NetworkConfig())
    replay = ReplayBuffer(args.envs * args.steps * (args.rounds + 1), env.obs_dim, env.action_dim, device)
    gen = torch.Generator().manual_seed(0)
    inner = env  # the BraxVecEnv behind make_env (its jitted step and device-resident inputs)
    while not hasattr(inner, "_step"):
        inner = inner.env
    fixed = jax.device_put(jax.numpy.zeros((args.envs, env.action_dim)), inner._device)
    actions = torch.rand(args.steps, args.envs, env.action_dim, generator=gen) * 2 - 1

    def raw() -> None:
        carry = inner._carry
        for _ in range(args.steps):
            carry, *out = inner._step(inner.sys, carry, fixed, inner.action_scale, inner.obs_mask)
        jax.block_until_ready(out)

    def wrapper() -> None:
        for a in actions:
            env.step(a)

    def policy() -> None:
        nonlocal obs
        for _ in range(args.steps):
            with torch.no_grad():
                action = actor.sample(obs, gen)[0]
            res = env.step(action)
            cut = res.truncated.unsqueeze(-1) > 0
            replay.put(obs, action, res.reward, 1 - res.done * (1 - res.truncated), torch.where(cut, res.final_obs, res.obs))
            obs = res.obs

    runs = {"raw": raw, "wrapper": wrapper, "policy": policy}
    for fn in runs.values():
        fn()  # compile and warm up
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):  # interleaved
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            rates[name].append(args.steps * args.envs / (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"{args.scenario} task {scenario.tasks[0].name}, {args.envs} envs, backend {args.backend}, one core")
    for name in runs:
        print(f"{name:>8}: {med[name]:9.0f} env steps/s  ({med[name] / med['raw']:.2f} × raw)")
    print(f"policy-in-the-loop / raw: {med['policy'] / med['raw']:.2f} (target ≥ 0.8)")


if __name__ == "__main__":
    main()
