"""How a run's wall time grows with its budget: env steps (sparse suite) and number of tasks (continual suite).

Each run is one `rlrepro train` / `rlrepro train-sparse` process, exactly as a pipeline job runs it (start-up,
env compilation, training, saving), one thread on one core. Wall times are reported with their ratio to the
smallest run of the same series, so fixed costs and the per-step cost can be read apart.

    python benchmarks/scaling.py                          # ft_1 on halfcheetah/forgetting, dense SAC on HalfCheetah-v5
    python benchmarks/scaling.py --tasks 1 2 --steps-per-task 1000 --sparse-steps 2000 4000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rlrepro.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def resolved(preset: dict):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    return load_config(ROOT / "config.yaml", {"preset": "scaling", "presets": {**config["presets"], "scaling": preset}})


def run(command: str, spec: dict, cpu: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = ["taskset", "-c", str(cpu), sys.executable, "-m", "rlrepro", command, "--spec", f"@{spec_path}",
               "--run-dir", str(Path(tmp) / "run")]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "RLREPRO_CHECKPOINT_INTERVAL_S": "1e9"})  # fmt: skip
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ft_1")
    parser.add_argument("--scenario", default="halfcheetah/forgetting")
    parser.add_argument("--tasks", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--steps-per-task", type=int, nargs="*", default=[2000, 4000])
    parser.add_argument("--sparse-steps", type=int, nargs="*", default=[2000, 4000, 8000])
    parser.add_argument("--cpu", type=int, default=min(os.sched_getaffinity(0)))
    args = parser.parse_args()
    demo = yaml.safe_load((ROOT / "config.yaml").read_text())["presets"]["demo"]["budget"]

    print(f"continual: {args.method} on {args.scenario}, demo budget otherwise ({demo['n_train_envs']} envs, "
          f"episode length {demo['episode_length']}), one core")  # fmt: skip
    print(f"{'tasks':>5} {'steps/task':>10} {'wall s':>8} {'× smallest':>10} {'ms per env step':>16}")
    # One untimed run first: it fills the persistent JAX compilation cache every later job (and pipeline job) reuses.
    warm = resolved({"methods": [args.method], "scenarios": [args.scenario], "seeds": 1,
                     "budget": {**demo, "max_tasks": 1, "steps_per_task": min(args.steps_per_task)}})  # fmt: skip
    run("train", warm.train_spec(args.method, args.scenario, 0), args.cpu)
    base = None
    for steps in args.steps_per_task:
        for tasks in args.tasks:
            budget = {**demo, "max_tasks": tasks, "steps_per_task": steps}
            grid = resolved({"methods": [args.method], "scenarios": [args.scenario], "seeds": 1, "budget": budget})
            wall = run("train", grid.train_spec(args.method, args.scenario, 0), args.cpu)
            base = base or wall
            print(f"{tasks:>5} {steps:>10} {wall:8.1f} {wall / base:10.2f} {1e3 * wall / (tasks * steps):16.2f}", flush=True)

    print("sparse suite: dense SAC on HalfCheetah-v5 (one update per step after 1000 random steps, one evaluation)")
    print(f"{'steps':>6} {'wall s':>8} {'× smallest':>10} {'ms per step':>12}")
    base = None
    for steps in args.sparse_steps:
        budget = {"total_steps": steps, "seed_steps": 1000, "eval_every_steps": steps, "eval_episodes": 1}
        preset = {"sparse": {"methods": ["dense"], "envs": ["halfcheetah"], "keep_ratios": [0.05], "seeds": 1,
                             "budget": budget}}  # fmt: skip
        grid = resolved(preset)
        wall = run("train-sparse", grid.sparse.spec("dense", "halfcheetah", 1.0, 0), args.cpu)
        base = base or wall
        print(f"{steps:>6} {wall:8.1f} {wall / base:10.2f} {1e3 * wall / steps:12.2f}", flush=True)


if __name__ == "__main__":
    main()
