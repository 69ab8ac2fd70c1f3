"""Training-time overhead of each continual method over ft_1, per gradient update and per collection step.

Every method runs its second task (where the penalties, alignments, masks and extra critics are active) with the
paper's networks (3×256) and SAC settings (batch 256, policy every 4th update, target every 2nd), Brax halfcheetah's
shapes (obs 18, act 6) and 8 envs. The env is a stand-in (`StandInEnv`: random linear dynamics, no physics), so the
numbers are the learner's and the method's own cost, not the simulator's. Rounds are interleaved across methods and
the medians reported, so a machine shared with other jobs slows every method alike; the ratio to ft_1 is the result.

    python benchmarks/method_overhead.py                       # every method, 3 rounds of 200 updates
    python benchmarks/method_overhead.py --methods ft_1 rewire --updates 400 --rounds 5
    python benchmarks/method_overhead.py --methods ft_1 rewire --rewire-gemm   # + Rewire with its wiring GEMMs
    python benchmarks/method_overhead.py --compiled            # + every method with the compiled update

`--rewire-gemm` adds the row `rewire/gemm`: Rewire with its learning route's permutation done by the GEMM
`out @ permᵀ` (engine 0.2.0 as first released) instead of `rewire.permute_columns`' gather (same numbers, bit for
bit: tests/test_rewire.py), measured in the same interleaved rounds. `--compiled` adds `<method>/compiled` rows:
the same second task with the compiled update (engine.compile: true; its compile is paid in the warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

from rlrepro.blas import reexec_with_shim

if __name__ == "__main__":
    reexec_with_shim([__file__, *sys.argv[1:]])

import torch

from rlrepro.continual import TaskTrainer, TrainSpec, build_method
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.base import TaskContext
from rlrepro.continual.methods.registry import method_names
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.networks import TwinCritic
from rlrepro.envs.base import StepResult
from rlrepro.scenarios import ScenarioSpec, TaskSpec

OBS, ACT, ENVS = 18, 6, 8
HP = {"packnet": {"finetune_updates": 0}, "csp": {"n_estimations": 2, "n_samples": 64, "n_rollouts": 2},
      "ewc": {"n_samples": 256}, "rewire": {"selection_rollouts": 1, "coeff": 1.0}}  # fmt: skip


class StandInEnv:
    """Stand-in for a VecEnv (not physics): s' = 0.9·s + 0.1·[a, a, a], reward −|s|², fixed-length episodes."""

    obs_dim, action_dim = OBS, ACT

    def __init__(self, task: TaskSpec, n_envs: int, episode_length: int = 1000) -> None:
        self.n_envs, self.episode_length, self.device = n_envs, episode_length, torch.device("cpu")
        self.sign = -1.0 if task.variant.get("action_swap") else 1.0

    def reset(self, seed: int) -> torch.Tensor:
        self.state = torch.randn(self.n_envs, OBS, generator=torch.Generator().manual_seed(seed))
        self.t = torch.zeros(self.n_envs)
        return self.state.clone()

    def step(self, action: torch.Tensor) -> StepResult:
        self.state = 0.9 * self.state + 0.1 * self.sign * action.repeat(1, OBS // ACT)
        self.t += 1
        done = (self.t >= self.episode_length).float()
        self.t = self.t * (1 - done)
        return StepResult(self.state.clone(), -(self.state**2).sum(1), done, done.clone(), self.state.clone())


def setup(method_name: str, updates_task0: int, compiled: bool = False):
    """The method at its second task with a filled replay: returns (update(n), collect(n)) closures; `compiled`: its
    second task's learner runs the compiled update (engine.compile: true)."""
    tasks = (TaskSpec("normal", {}), TaskSpec("inverted_actions", {"action_swap": list(range(ACT))}))
    scenario = ScenarioSpec("standin/two", "standin", "standin", tasks, steps_per_task=updates_task0 * 2,
                            n_train_envs=ENVS, n_eval_envs=ENVS, episode_length=1000)  # fmt: skip
    network = NetworkConfig(hidden_sizes=(256, 256, 256))
    sac = SACConfig(batch_size=256, initial_buffer_size=2048, policy_update_delay=4, target_update_delay=2,
                    lr_policy=1e-3, lr_q=1e-3)  # fmt: skip
    spec = TrainSpec(method_name, scenario, seed=0, method_hp=HP.get(method_name, {}), sac=sac, network=network)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    method = build_method(method_name, OBS, ACT, network, spec.method_hp)
    critic = TwinCritic(OBS, ACT, network)
    trainer = None
    for k in range(2):
        env = StandInEnv(tasks[k], ENVS)
        context = TaskContext(None, generator, critic, sac, env=env, make_env=lambda n, k=k: StandInEnv(tasks[k], n))
        method.on_task_start(k, context)
        critic = context.critic = method.critic_for_task(critic)
        trainer = TaskTrainer(method, critic, env, spec, k, generator)
        if k == 0:
            trainer.run()
            context.replay = trainer.replay
            method.on_task_end(k, context)
    while len(trainer.replay) < 4096:
        trainer.collect(trainer.new_steps)
    trainer.learner.compile = compiled

    def update(n: int) -> None:
        with method.learning_mode():
            for _ in range(n):
                batch = method.prepare_batch(trainer.replay.sample(sac.batch_size, generator), generator)
                trainer.learner.update(batch, method.extra_loss)

    def collect(n: int) -> None:
        trainer.collect(n)

    return update, collect


def with_wiring_gemm(runner):
    """The runner's closures with Rewire's permutation by the GEMM instead of the gather (module docstring)."""
    from rlrepro.continual.methods import rewire

    @contextlib.contextmanager
    def gemm():
        gather, rewire.permute_columns = rewire.permute_columns, rewire.permute_columns_by_gemm
        try:
            yield
        finally:
            rewire.permute_columns = gather

    def wrap(fn):
        def run(n: int) -> None:
            with gemm():
                fn(n)

        return run

    return tuple(wrap(fn) for fn in runner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(method_names()))
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rewire-gemm", action="store_true", help="add Rewire with its wiring GEMMs (docstring)")
    parser.add_argument("--compiled", action="store_true", help="add each method with the compiled update (docstring)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runners = {m: setup(m, 2048) for m in args.methods}
    if args.compiled:
        runners.update({f"{m}/compiled": setup(m, 2048, compiled=True) for m in args.methods})
    if args.rewire_gemm:
        runners["rewire/gemm"] = with_wiring_gemm(setup("rewire", 2048))
    per_update: dict[str, list[float]] = {m: [] for m in runners}
    per_step: dict[str, list[float]] = {m: [] for m in runners}
    for update, collect in runners.values():  # warm-up (and the compiled rows' compile)
        update(8)
        collect(8)
    for _ in range(args.rounds):
        for m, (update, collect) in runners.items():
            start = time.perf_counter()
            update(args.updates)
            per_update[m].append((time.perf_counter() - start) / args.updates)
            start = time.perf_counter()
            collect(args.updates)
            per_step[m].append((time.perf_counter() - start) / args.updates)
    base_u, base_c = statistics.median(per_update["ft_1"]), statistics.median(per_step["ft_1"])
    print(f"torch {torch.__version__} (1 thread), 3×256, batch 256, {ENVS} stand-in envs, second task; "
          f"medians of {args.rounds} interleaved rounds")  # fmt: skip
    print(f"{'method':>16} {'ms/update':>10} {'× ft_1':>7} {'ms/step':>8} {'× ft_1':>7}")
    for m in runners:
        u, c = statistics.median(per_update[m]), statistics.median(per_step[m])
        print(f"{m:>16} {1e3 * u:10.2f} {u / base_u:7.2f} {1e3 * c:8.3f} {c / base_c:7.2f}")


if __name__ == "__main__":
    if "ft_1" not in sys.argv and "--methods" in sys.argv:
        sys.exit("--methods must include ft_1 (the reference)")
    main()
