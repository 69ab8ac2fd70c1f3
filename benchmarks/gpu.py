"""The compiled SAC update on a GPU, in one prepared run (under 8 minutes on one GPU): what `device: cuda` buys.

1. Update rate of both flavours (sparse 2×256 and continual 3×256, HalfCheetah shapes, batch 256, replay on the
   device) for the engine's three ways of running one update: `eager` (engine.compile: false), `compiled` (one
   inductor graph per update branch, no CUDA graphs) and `graphs` (the same graphs replayed as CUDA graphs, what
   `engine.compile: true` does on a GPU). Medians of interleaved rounds; warm-up (compile) seconds printed.
2. A short continual Brax run (halfcheetah/forgetting, ft_1, the smoke preset's tasks at a larger budget) with
   `device: cuda` and the compiled update, end to end through `rlrepro.continual.train`: env steps/s and updates/s.
3. The projected GPU-hours of one paper run of the continual suite (8 tasks × 1M env steps at 0.5 updates per
   step: 4M updates, plus the env steps at the measured rate).

    python benchmarks/gpu.py                 # everything, on cuda
    python benchmarks/gpu.py --device cpu --hidden-scale 0.125 --updates 20 --brax-steps 2048   # a dry run on CPU

Run it when a GPU is lent (README, "Benchmarks"); on a CPU the `graphs` rows are skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from rlrepro.continual.config import SACConfig, learner_config
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import GaussianActor, TwinCritic
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.train import build_learner

OBS, ACT, BATCH, BUFFER = 17, 6, 256, 100_000
PAPER_UPDATES, PAPER_ENV_STEPS = 4_000_000, 8_000_000
MODES = {"eager": None, "compiled": "default", "graphs": "reduce-overhead"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def filled_replay(device: torch.device, gen: torch.Generator) -> ReplayBuffer:
    replay = ReplayBuffer(BUFFER, OBS, ACT, device)
    for column in (replay.obs, replay.next_obs, replay.reward):
        column.normal_(generator=gen)
    replay.action.uniform_(-1, 1, generator=gen)
    replay.not_done.fill_(1.0)
    replay.size = BUFFER
    return replay


def runner(flavour: str, hidden: list[int], mode: str, device: torch.device):
    """`run(n)`: n updates of a fresh learner of this flavour, run the named way (the compile mode set for its
    first call, which compiles)."""
    torch.manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    if flavour == "sparse":
        learner = build_learner(OBS, ACT, SparseSACConfig(hidden_sizes=hidden), device, gen, MODES[mode] is not None)
    else:
        net = NetworkConfig(hidden_sizes=tuple(hidden))
        cfg = SACConfig(batch_size=BATCH, policy_update_delay=2, target_update_delay=2)
        actor, critic = GaussianActor(OBS, ACT, net).to(device), TwinCritic(OBS, ACT, net).to(device)
        learner = SACLearner(actor, critic, learner_config(cfg, ACT), gen, compile=MODES[mode] is not None)
    replay = filled_replay(device, gen)

    def run(n: int) -> None:
        if MODES[mode] is not None:
            os.environ["RLREPRO_COMPILE_MODE"] = MODES[mode]  # read when the learner compiles (its first update)
        for _ in range(n):
            batch = replay.sample(BATCH, gen) if flavour == "continual" else replay.sample_windows(BATCH, gen, 1)
            learner.update(batch)
        sync(device)

    return run


def update_rates(device: torch.device, scale: float, updates: int, rounds: int) -> dict[tuple[str, str], float]:
    modes = [m for m in MODES if m != "graphs" or device.type == "cuda"]
    rates: dict[tuple[str, str], float] = {}
    print(f"{'flavour':>10} {'shape':>10} {'mode':>9} {'updates/s':>10} {'vs eager':>9} {'warm-up s':>10}")
    for flavour, layers in (("sparse", 2), ("continual", 3)):
        hidden = [max(int(256 * scale), 8)] * layers
        runs, warm = {}, {}
        for mode in modes:
            runs[mode] = runner(flavour, hidden, mode, device)
            start = time.perf_counter()
            runs[mode](20)
            warm[mode] = time.perf_counter() - start
        samples: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(rounds):
            for mode, run in runs.items():
                start = time.perf_counter()
                run(updates)
                samples[mode].append(updates / (time.perf_counter() - start))
        shape = "×".join(map(str, hidden))
        for mode in modes:
            rate = rates[flavour, mode] = statistics.median(samples[mode])
            print(f"{flavour:>10} {shape:>10} {mode:>9} {rate:10.1f} {rate / rates[flavour, 'eager']:9.2f} "
                  f"{warm[mode]:10.1f}")  # fmt: skip
    os.environ.pop("RLREPRO_COMPILE_MODE", None)
    return rates


def brax_run(device: torch.device, steps_per_task: int) -> tuple[float, float]:
    """(env steps/s, updates/s) of a two-task continual ft_1 run on Brax with the compiled update."""
    from rlrepro.config import load_config
    from rlrepro.continual import TrainSpec, train

    resolved = load_config("config.yaml", {"preset": "smoke", "device": str(device), "engine": {"compile": True}})
    raw = resolved.train_spec("ft_1", "halfcheetah/forgetting", 0)
    raw["scenario"]["steps_per_task"] = steps_per_task
    spec = TrainSpec.from_dict(raw)
    start = time.perf_counter()
    result = train(spec)
    seconds = time.perf_counter() - start
    updates = sum(row["value"] for row in result.rows if row["metric"] == "train_updates")
    env_steps = spec.scenario.steps_per_task * len(spec.scenario.tasks)
    print(f"brax ft_1 halfcheetah/forgetting, {len(spec.scenario.tasks)} tasks × {steps_per_task} steps on {device}: "
          f"{seconds:.1f} s (compile included), {env_steps / seconds:.0f} env steps/s, {updates / seconds:.0f} updates/s")
    return env_steps / seconds, updates / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--hidden-scale", type=float, default=1.0, help="widths × this (a quick dry run on CPU)")
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brax-steps", type=int, default=20_000, help="env steps per task of the Brax run")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {device} ({name})")
    rates = update_rates(device, args.hidden_scale, args.updates, args.rounds)
    env_rate, _ = brax_run(device, args.brax_steps)
    best = "graphs" if device.type == "cuda" else "compiled"
    update_h = PAPER_UPDATES / rates["continual", best] / 3600
    eager_h = PAPER_UPDATES / rates["continual", "eager"] / 3600
    env_h = PAPER_ENV_STEPS / env_rate / 3600
    print(f"projected paper continual run (8 tasks × 1M steps, 4M updates): {update_h:.1f} h of updates ({best}) + "
          f"{env_h:.1f} h of collection at the Brax run's rate (an upper bound: its rate includes its updates) "
          f"= {update_h + env_h:.1f} GPU-hours; eager updates alone: {eager_h:.1f} h")


if __name__ == "__main__":
    main()
