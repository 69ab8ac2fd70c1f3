"""Per scenario: compile time and raw env steps/s of the training and evaluation env shapes, random actions.

Ratios are reported against the first task of the same scenario, so the task-switch cost (no recompilation
when only parameters change) is visible: `switch_s` is the time to build and first-step the second task's env.

    python benchmarks/scenario_throughput.py --budget smoke_scenarios  # the budgets of a preset
    python benchmarks/scenario_throughput.py --scenarios ant/forgetting --steps 200
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import torch
import yaml

from rlrepro.envs import make_env
from rlrepro.scenarios import get_scenario, scale_scenario, scenario_names


def measure(scenario, task, n_envs: int, steps: int, backend: str) -> tuple[float, float]:
    start = time.perf_counter()
    env = make_env(scenario, task, n_envs=n_envs, env_cfg={"backend": backend}, device=torch.device("cpu"))
    env.reset(0)
    env.step(torch.zeros(n_envs, env.action_dim))
    first = time.perf_counter() - start
    actions = torch.rand(steps, n_envs, env.action_dim) * 2 - 1
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return first, steps * n_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="*", default=scenario_names())
    parser.add_argument("--budget", default=None, help="scale env counts like this preset of config.yaml")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per env shape")
    parser.add_argument("--backend", default="positional")
    args = parser.parse_args()
    torch.set_num_threads(1)
    budget = {}
    if args.budget:
        budget = yaml.safe_load(open("config.yaml"))["presets"][args.budget].get("budget", {})
    print(
        f"{'scenario':32} {'train envs':>10} {'compile s':>9} {'train st/s':>10} {'switch s':>8} "
        f"{'eval envs':>9} {'eval st/s':>9}"
    )
    for name in args.scenarios:
        sc = scale_scenario(get_scenario(name), budget)
        compile_s, train_rate = measure(sc, sc.tasks[0], sc.n_train_envs, args.steps, args.backend)
        switch_s, _ = measure(sc, sc.tasks[1], sc.n_train_envs, 1, args.backend)
        _, eval_rate = measure(sc, sc.tasks[0], sc.n_eval_envs, args.steps, args.backend)
        print(
            f"{name:32} {sc.n_train_envs:10d} {compile_s:9.1f} {train_rate:10.0f} {switch_s:8.2f} "
            f"{sc.n_eval_envs:9d} {eval_rate:9.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
