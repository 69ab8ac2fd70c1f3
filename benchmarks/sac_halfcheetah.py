"""End-to-end SAC on gymnasium HalfCheetah-v5: rlrepro's dense sparse-suite run vs Stable-Baselines3's SAC.

Same hyperparameters on both sides (2×256 ReLU actor and twin critic, batch 256, Adam 1e-3 for actor, critic and
α, α₀ = 0.1 learned towards −|A|, γ 0.99, τ 0.005 every 2nd update, one update per env step after `--seed-steps`
uniform-random steps, replay = the whole run, time-limit ends bootstrapped), same env, same number of steps, one
thread pinned to one core, each run in its own process (rlrepro's through `train_sparse`, exactly what a pipeline
job runs). Measured: env steps per second of training (no evaluation inside the timed loop), and the return of
the final policy over `--eval-episodes` deterministic episodes on an evaluation env seeded identically for both.
Issue 8's target: ≥ 1.5× SB3's steps/s with a return that is not worse. `rlrepro` runs the compiled update
(engine.compile: true, its compile inside the timed run), `rlrepro-eager` the same function uncompiled.

Differences that remain (each side's own conventions, not tuned): rlrepro's networks start xavier-normal and
squash log σ with tanh into [−10, 2] (DAPD's pytorch_sac, dapd.md §4); SB3 uses PyTorch's default init and clips
log σ to [−20, 2].

    pip install -e ".[bench]"
    python benchmarks/sac_halfcheetah.py                      # 3 seeds × 20k steps each (about 35 min)
    python benchmarks/sac_halfcheetah.py --seeds 0 --steps 8000 --seed-steps 2000   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from rlrepro import blas
from rlrepro.blas import reexec_with_shim

if __name__ == "__main__":
    reexec_with_shim([__file__, *sys.argv[1:]])

ENV_ID = "HalfCheetah-v5"
# rlrepro: the compiled update (engine.compile: true, what a job of >= 20k updates runs); rlrepro-eager: the same
# function uncompiled (compile time is inside rlrepro's wall time: one compile per run, as a job pays it)
NAMES = ("rlrepro", "rlrepro-eager", "sb3", "sb3-default-blas")
EVAL_SEED = 10_000


def evaluate(policy, episodes: int) -> float:
    """Mean return of `policy(obs) -> action` over deterministic episodes of a separately seeded env."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return statistics.fmean(returns)


def run_rlrepro(seed: int, steps: int, seed_steps: int, episodes: int, overrides: dict | None = None,
                compile: bool = True) -> dict:  # fmt: skip
    import torch

    from rlrepro.continual import configure_threads
    from rlrepro.engine.networks import GaussianActor
    from rlrepro.sparse.config import SparseSpec, network_config
    from rlrepro.sparse.train import train_sparse

    configure_threads()
    spec = SparseSpec.from_dict({
        "method": "dense", "env": "halfcheetah", "env_id": ENV_ID, "seed": seed, "keep_ratio": 1.0,
        "sac": {"total_steps": steps, "seed_steps": seed_steps, "buffer_size": steps, **(overrides or {})},
        "evaluation": {"every_steps": 10**12, "episodes": 1, "last_k": 1},  # no evaluation inside the timed run
        "engine": {"compile": compile},
    })  # fmt: skip
    result = train_sparse(spec)
    model = result.model
    actor = GaussianActor(model["obs_dim"], model["action_dim"], network_config(spec.sac))
    actor.load_state_dict(model["actor"])

    @torch.no_grad()
    def policy(obs):
        return actor.deterministic(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

    return {"steps_per_s": steps / result.train_wall_time_s, "return": evaluate(policy, episodes)}


def run_sb3(seed: int, steps: int, seed_steps: int, episodes: int, overrides: dict | None = None) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(1)
    env = gym.make(ENV_ID)
    model = SAC(
        "MlpPolicy", env, learning_rate=1e-3, buffer_size=steps, learning_starts=seed_steps, batch_size=256,
        tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, ent_coef="auto_0.1", target_update_interval=2,
        target_entropy="auto", policy_kwargs={"net_arch": [256, 256]}, seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    start = time.monotonic()
    model.learn(total_timesteps=steps)
    wall = time.monotonic() - start
    return {"steps_per_s": steps / wall, "return": evaluate(lambda o: model.predict(o, deterministic=True)[0], episodes)}


def _override(text: str) -> tuple[str, float]:
    key, _, value = text.partition("=")
    return key, float(value)


def worker(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.cpu})
    run_args = (args.seed, args.steps, args.seed_steps, args.eval_episodes, dict(args.rlrepro_sac))
    if args.worker.startswith("rlrepro"):
        print(json.dumps(run_rlrepro(*run_args, compile=args.worker == "rlrepro")))
    else:
        print(json.dumps(run_sb3(*run_args)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed-steps", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument(
        "--rlrepro-sac",
        type=_override,
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override rlrepro's sparse.sac settings (e.g. log_std_min=-5) to study a difference",
    )
    parser.add_argument("--only", choices=NAMES, nargs="*", help="run only these")
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="core every run is pinned to")
    parser.add_argument("--worker", choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(f"{ENV_ID}, {args.steps} steps ({args.seed_steps} random), seeds {args.seeds}, one thread on CPU {args.cpu}, "
          f"BLAS {blas.status()}")  # fmt: skip
    print(f"{'framework':>10} {'seed':>4} {'steps/s':>8} {'return':>8}")
    # sb3: with the same BLAS as rlrepro (like for like); sb3-default-blas: SB3 as `pip install` gives it (on AMD,
    # MKL's AVX2 path: what a user of SB3 gets without rlrepro's launcher).
    names = args.only or list(NAMES)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for seed in args.seeds:
        for name in results:  # interleaved, so load changes hit all alike
            cmd = [sys.executable, __file__, "--worker", name, "--seed", str(seed), "--steps", str(args.steps),
                   "--seed-steps", str(args.seed_steps), "--eval-episodes", str(args.eval_episodes),
                   "--cpu", str(args.cpu), "--rlrepro-sac", *(f"{k}={v}" for k, v in args.rlrepro_sac)]  # fmt: skip
            env = dict(os.environ)
            if name == "sb3-default-blas":
                env.pop("LD_PRELOAD", None)
                env[blas.ENV_SWITCH] = "off"
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            results[name].append(row)
            print(f"{name:>10} {seed:>4} {row['steps_per_s']:8.1f} {row['return']:8.1f}", flush=True)
    if "rlrepro" not in results:
        return
    ours = results["rlrepro"]
    rate = statistics.fmean(r["steps_per_s"] for r in ours)
    ret_ours = [r["return"] for r in ours]
    for name in [n for n in ("sb3-default-blas", "sb3") if n in results]:
        other = results[name]
        ret_other = [r["return"] for r in other]
        spread = statistics.stdev(ret_ours + ret_other) if len(ret_ours + ret_other) > 2 else 0.0
        print(f"vs {name}: steps/s ratio {rate / statistics.fmean(r['steps_per_s'] for r in other):.2f} (target ≥ 1.5); "
              f"return {statistics.fmean(ret_ours):.1f} vs {statistics.fmean(ret_other):.1f} (pooled σ {spread:.1f}), "
              f"not worse: {statistics.fmean(ret_ours) >= statistics.fmean(ret_other)}")  # fmt: skip


if __name__ == "__main__":
    main()
