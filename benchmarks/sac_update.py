"""SAC update throughput of both flavours: rlrepro's learners vs minimal jitted JAX updates of the same flavour
(the bound), same shapes, one thread.

Sparse (DAPD/pytorch_sac) flavour: a batch of 256 from a 100k-transition buffer, the full update (twin-critic TD
step, actor step, α step through log α, Polyak every 2nd update), ReLU nets, log σ by tanh rescaling.
Continual (Rewire/SaLinA) flavour: windows of two (batch 256), the TD step, then every `policy_update_delay` (2)
the policy loss over both steps of every window (2·256 states) and the α step through exp(log α), the batch-mean
entropy target, Polyak every `target_update_delay` (2); LeakyReLU(0.2) nets, clipped log σ. HalfCheetah's shapes
(obs 17, act 6). Reported: updates per second, medians of interleaved rounds, and the ratio rlrepro / JAX (issue
31's target: ≥ 0.95 for both flavours, compiled).

    python benchmarks/sac_update.py                    # both flavours, 2×256 and 3×256, eager and compiled
    python benchmarks/sac_update.py --flavour continual --hidden 256,256,256 --updates 500 --rounds 5
    python benchmarks/sac_update.py --gemm-floor      # how much of the eager update is GEMM

`--variants`: `eager` and `compiled` are the engine's `engine.compile: false / true`, the same update function run
eagerly or compiled whole (one inductor graph per update branch; the warm-up updates pay the compile, printed, and
are not timed).

`--gemm-floor` answers "could any eager layout reach the target?": the GEMMs (mm, addmm, bmm, baddbmm) of two eager
updates (one continual policy cycle) are recorded by torch.profiler with their shapes and replayed alone on
contiguous random operands, timed like the updates. Printed per flavour and shape: the update's time, its GEMMs'
time and share, the JAX update's time, the ratio the update would reach if everything but its GEMMs cost nothing
(JAX time / GEMM time), and the time left for everything else at a 0.85 ratio. The replay drops the operands'
strides (the engine multiplies by transposed weights; MKL takes a transposed operand without a copy), so it is an
estimate of the floor, not a bound.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

from rlrepro.blas import reexec_with_shim

if __name__ == "__main__":
    reexec_with_shim([__file__, *sys.argv[1:]])  # MKL's AVX-512 kernels on AMD, as every rlrepro job gets
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from rlrepro import blas
from rlrepro.engine.replay import ReplayBuffer
from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.train import build_learner

OBS, ACT, BATCH, BUFFER = 17, 6, 256, 100_000


VARIANTS = ("eager", "compiled")


def apply_variant(learner, variant: str) -> None:
    """`eager` / `compiled`: the learner's `engine.compile: false / true`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose from {VARIANTS}")
    learner.compile, learner._update_fn = variant == "compiled", None


def rlrepro_runner(hidden: list[int], variant: str = "eager"):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    agent = build_learner(OBS, ACT, SparseSACConfig(hidden_sizes=hidden), torch.device("cpu"), gen)
    apply_variant(agent, variant)
    replay = ReplayBuffer(BUFFER, OBS, ACT, torch.device("cpu"))
    replay.obs.normal_(generator=gen)
    replay.next_obs.normal_(generator=gen)
    replay.action.uniform_(-1, 1, generator=gen)
    replay.reward.normal_(generator=gen)
    replay.not_done.fill_(1.0)
    replay.size = BUFFER

    def run(n: int) -> None:
        for _ in range(n):
            agent.update(replay.sample_windows(BATCH, gen, 1))

    return run


def continual_runner(hidden: list[int], variant: str = "eager"):
    """The engine's learner in the continual flavour as its training loop drives it, on a filled replay."""
    from rlrepro.continual.config import SACConfig, learner_config
    from rlrepro.engine.config import NetworkConfig
    from rlrepro.engine.learner import SACLearner
    from rlrepro.engine.networks import GaussianActor, TwinCritic
    from rlrepro.engine.replay import ReplayBuffer

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = NetworkConfig(hidden_sizes=tuple(hidden))
    cfg = SACConfig(batch_size=BATCH, policy_update_delay=2, target_update_delay=2)
    actor, critic = GaussianActor(OBS, ACT, net), TwinCritic(OBS, ACT, net)
    learner = SACLearner(actor, critic, learner_config(cfg, ACT), gen)
    apply_variant(learner, variant)
    n_envs = 128
    replay = ReplayBuffer(BUFFER, OBS, ACT, torch.device("cpu"))
    obs = torch.randn(n_envs, OBS, generator=gen)
    for _ in range(BUFFER // n_envs):
        nxt = torch.randn(n_envs, OBS, generator=gen)
        replay.put(obs, torch.rand(n_envs, ACT, generator=gen) * 2 - 1, torch.randn(n_envs, generator=gen),
                   torch.ones(n_envs), nxt)  # fmt: skip
        obs = nxt

    def run(n: int) -> None:
        for _ in range(n):
            learner.update(replay.sample(BATCH, gen))

    return run


def mlp_init(key, sizes: list[int]):
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (fan_in, fan_out)) * np.sqrt(2 / (fan_in + fan_out)), jnp.zeros(fan_out)))
    return params


def mlp(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x


def jax_setup(hidden: list[int], init_temperature: float, lr: float):
    """Actor, twin critic and its target, log α, Adam and a random 100k-transition buffer in JAX."""
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    actor = mlp_init(keys[0], [OBS, *hidden, 2 * ACT])
    critic = [mlp_init(keys[1], [OBS + ACT, *hidden, 1]), mlp_init(keys[2], [OBS + ACT, *hidden, 1])]
    params = {"actor": actor, "critic": critic, "target": critic, "log_alpha": jnp.log(init_temperature)}
    opt = optax.adam(lr)
    opt_state = {k: opt.init(params[k]) for k in ("actor", "critic", "log_alpha")}
    data = {
        "obs": jax.random.normal(keys[3], (BUFFER, OBS)), "next_obs": jax.random.normal(keys[4], (BUFFER, OBS)),
        "action": jax.random.uniform(keys[5], (BUFFER, ACT), minval=-1, maxval=1),
        "reward": jax.random.normal(keys[6], (BUFFER,)), "done": jnp.zeros(BUFFER),
    }  # fmt: skip
    return params, opt, opt_state, data, keys[7]


def jitted_runner(update, params, opt_state, key):
    """`run(n)`: n jitted updates, a fresh key each, blocking on the result; compiled before it is returned."""
    state = {"params": params, "opt": opt_state, "step": 0, "key": key}

    def run(n: int) -> None:
        p, o, key = state["params"], state["opt"], state["key"]
        for _ in range(n):
            key, sub = jax.random.split(key)
            p, o = update(p, o, state["step"], sub)
            state["step"] += 1
        jax.block_until_ready(p)
        state.update(params=p, opt=o, key=key)

    run(3)  # compile (uncommitted first inputs, then committed ones)
    return run


def jax_runner(hidden: list[int]):
    """A minimal SAC update in JAX (the bound): tanh-Gaussian actor, twin critic, learnable α, Adam, Polyak."""
    params, opt, opt_state, data, key = jax_setup(hidden, init_temperature=0.1, lr=1e-3)
    data["not_done"] = 1.0 - data.pop("done")

    def sample(p, obs, k):
        mu, raw = jnp.split(mlp(p, obs), 2, axis=-1)
        log_std = -10 + 6 * (jnp.tanh(raw) + 1)
        eps = jax.random.normal(k, mu.shape)
        u = mu + jnp.exp(log_std) * eps
        logp = (-0.5 * eps**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
        logp -= (2 * (jnp.log(2.0) - u - jax.nn.softplus(-2 * u))).sum(-1)
        return jnp.tanh(u), logp

    def q(cs, obs, a):
        x = jnp.concatenate([obs, a], -1)
        return jnp.stack([mlp(c, x)[:, 0] for c in cs])

    @jax.jit
    def update(params, opt_state, step, k):
        opt_state = dict(opt_state)  # a copy: assigning into the caller's dict while tracing would leak tracers
        k1, k2, k3 = jax.random.split(k, 3)
        idx = jax.random.randint(k1, (BATCH,), 0, BUFFER)
        b = {name: v[idx] for name, v in data.items()}
        alpha = jnp.exp(params["log_alpha"])
        na, nlogp = sample(params["actor"], b["next_obs"], k2)
        target = b["reward"] + 0.99 * b["not_done"] * (q(params["target"], b["next_obs"], na).min(0) - alpha * nlogp)
        target = jax.lax.stop_gradient(target)

        def critic_loss(c):
            qs = q(c, b["obs"], b["action"])
            return ((qs - target) ** 2).mean(-1).sum()

        gc = jax.grad(critic_loss)(params["critic"])
        upd, opt_state["critic"] = opt.update(gc, opt_state["critic"])
        critic = optax.apply_updates(params["critic"], upd)

        def actor_loss(a):
            act, logp = sample(a, b["obs"], k3)
            return (alpha * logp - q(critic, b["obs"], act).min(0)).mean(), logp

        ga, logp = jax.grad(actor_loss, has_aux=True)(params["actor"])
        upd, opt_state["actor"] = opt.update(ga, opt_state["actor"])
        actor = optax.apply_updates(params["actor"], upd)
        gl = jax.grad(lambda la: (jnp.exp(la) * jax.lax.stop_gradient(-logp + ACT)).mean())(params["log_alpha"])
        upd, opt_state["log_alpha"] = opt.update(gl, opt_state["log_alpha"])
        log_alpha = optax.apply_updates(params["log_alpha"], upd)
        polyak = jax.tree_util.tree_map(lambda t, c: 0.995 * t + 0.005 * c, params["target"], critic)
        tgt = jax.lax.cond(step % 2 == 0, lambda: polyak, lambda: params["target"])
        return {"actor": actor, "critic": critic, "target": tgt, "log_alpha": log_alpha}, opt_state

    return jitted_runner(update, params, opt_state, key)


def leaky_mlp(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.leaky_relu(x, 0.2)
    return x


def jax_continual_runner(hidden: list[int]):
    """The continual flavour in JAX: policy loss over 2·batch states every 2nd update, α through exp(log α) with the
    target entropy −2·|A|, the batch-mean entropy in the TD target, clipped log σ, LeakyReLU, Polyak every 2nd."""
    params, opt, opt_state, data, key = jax_setup(hidden, init_temperature=2.0, lr=3e-4)

    def sample(p, obs, k):
        mu, raw = jnp.split(leaky_mlp(p, obs), 2, axis=-1)
        log_std = jnp.clip(raw, -20.0, 2.0)
        eps = jax.random.normal(k, mu.shape)
        u = mu + jnp.exp(log_std) * eps
        logp = (-0.5 * ((u - mu) / (jnp.exp(log_std) + 1e-8)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
        logp -= (2 * (jnp.log(2.0) - u - jax.nn.softplus(-2 * u))).sum(-1)
        return jnp.tanh(u), logp

    def q(cs, obs, a):
        x = jnp.concatenate([obs, a], -1)
        return jnp.stack([leaky_mlp(c, x)[:, 0] for c in cs])

    def critic_step(params, opt_state, b, k):
        alpha = jnp.exp(params["log_alpha"])
        na, nlogp = sample(params["actor"], b["next_obs"], k)
        soft = q(params["target"], b["next_obs"], na).min(0) - alpha * nlogp.mean()
        target = jax.lax.stop_gradient(b["reward"] + 0.99 * (1 - b["done"]) * soft)
        gc = jax.grad(lambda c: ((q(c, b["obs"], b["action"]) - target) ** 2).mean(-1).sum())(params["critic"])
        upd, critic_opt = opt.update(gc, opt_state["critic"])
        return optax.apply_updates(params["critic"], upd), critic_opt

    def policy_step(params, opt_state, critic, b, k):
        alpha = jnp.exp(params["log_alpha"])
        obs = jnp.concatenate([b["obs"], b["next_obs"]], 0)

        def actor_loss(a):
            act, logp = sample(a, obs, k)
            return (alpha * logp - q(critic, obs, act).min(0)).mean(), logp

        ga, logp = jax.grad(actor_loss, has_aux=True)(params["actor"])
        upd, actor_opt = opt.update(ga, opt_state["actor"])
        actor = optax.apply_updates(params["actor"], upd)
        gl = jax.grad(lambda la: -(jnp.exp(la) * jax.lax.stop_gradient(logp - 2 * ACT)).mean())(params["log_alpha"])
        upd, alpha_opt = opt.update(gl, opt_state["log_alpha"])
        return actor, optax.apply_updates(params["log_alpha"], upd), actor_opt, alpha_opt

    @jax.jit
    def update(params, opt_state, step, k):
        k1, k2, k3 = jax.random.split(k, 3)
        idx = jax.random.randint(k1, (BATCH,), 0, BUFFER)
        b = {name: v[idx] for name, v in data.items()}
        critic, critic_opt = critic_step(params, opt_state, b, k2)

        def with_policy():
            return policy_step(params, opt_state, critic, b, k3)

        def without():
            return params["actor"], params["log_alpha"], opt_state["actor"], opt_state["log_alpha"]

        actor, log_alpha, actor_opt, alpha_opt = jax.lax.cond(step % 2 == 0, with_policy, without)
        polyak = jax.tree_util.tree_map(lambda t, c: 0.995 * t + 0.005 * c, params["target"], critic)
        tgt = jax.lax.cond(step % 2 == 0, lambda: polyak, lambda: params["target"])
        new = {"actor": actor, "critic": critic, "target": tgt, "log_alpha": log_alpha}
        return new, {"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt}

    return jitted_runner(update, params, opt_state, key)


RUNNERS = {"sparse": (rlrepro_runner, jax_runner), "continual": (continual_runner, jax_continual_runner)}


GEMM_OPS = {"aten::mm": torch.mm, "aten::addmm": torch.addmm, "aten::bmm": torch.bmm, "aten::baddbmm": torch.baddbmm}


def gemm_replay(run, updates: int = 2):
    """`replay(n)`: the GEMMs of `updates` eager updates of `run`, in their order and shapes, n times over (module
    docstring, `--gemm-floor`)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        run(updates)
    gen = torch.Generator().manual_seed(0)
    calls = [
        (GEMM_OPS[e.name], [torch.randn(*shape, generator=gen) for shape in e.input_shapes if shape])
        for e in prof.events() if e.name in GEMM_OPS
    ]  # fmt: skip
    if not calls:
        raise RuntimeError("the profiler recorded no GEMM in the update: --gemm-floor has nothing to replay")

    def replay(n: int) -> None:
        for _ in range(n):
            for op, operands in calls:
                op(*operands)

    return replay, updates


def rate(run, n: int) -> float:
    start = time.perf_counter()
    run(n)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flavour", nargs="*", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--hidden", nargs="*", default=["256,256", "256,256,256"])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=["eager", "compiled"], choices=VARIANTS)
    parser.add_argument("--gemm-floor", action="store_true", help="also time the eager update's GEMMs alone")
    args = parser.parse_args()
    if args.gemm_floor and "eager" not in args.variants:
        args.variants.insert(0, "eager")  # the floor is the eager update's
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core for both: XLA ignores thread settings
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} thread, BLAS: {blas.status()}), jax {jax.__version__}, "
        f"batch {BATCH}, pinned to CPU {min(os.sched_getaffinity(0))}"
    )
    print(f"{'flavour':>10} {'shape':>12} {'variant':>15} {'rlrepro upd/s':>14} {'jax upd/s':>10} {'ratio':>6} "
          f"{'warm-up s':>10}")  # fmt: skip
    floors = []
    for flavour, spec in itertools.product(args.flavour, args.hidden):
        hidden = [int(h) for h in spec.split(",")]
        ours = {v: RUNNERS[flavour][0](hidden, v) for v in args.variants}
        bound = RUNNERS[flavour][1](hidden)
        compile_s = {}
        for v, run in ours.items():
            start = time.perf_counter()
            run(20)  # warm-up (the compiled variant compiles here: one graph per update branch)
            compile_s[v] = time.perf_counter() - start
        r_ours: dict[str, list[float]] = {v: [] for v in ours}
        r_jax = []
        if args.gemm_floor:
            replay, per = gemm_replay(ours["eager"])
            replay(2)
        r_gemm = []
        for _ in range(args.rounds):  # interleaved, so load changes hit every runner alike
            for v, run in ours.items():
                r_ours[v].append(rate(run, args.updates))
            r_jax.append(rate(bound, args.updates))
            if args.gemm_floor:
                r_gemm.append(rate(replay, max(1, args.updates // per)) * per)  # updates' GEMMs per second
        b = statistics.median(r_jax)
        shape = "×".join(map(str, hidden))
        for v, rates in r_ours.items():
            a = statistics.median(rates)
            print(f"{flavour:>10} {shape:>12} {v:>15} {a:14.1f} {b:10.1f} {a / b:6.2f} {compile_s[v]:10.1f}")
        if args.gemm_floor:
            floors.append((flavour, shape, 1e3 / statistics.median(r_ours["eager"]), 1e3 / statistics.median(r_gemm),
                           1e3 / b))  # fmt: skip
    if floors:
        print("\nGEMM floor (eager update; ms per update; 'if free': the ratio with every non-GEMM op at zero cost)")
        print(f"{'flavour':>10} {'shape':>12} {'update':>8} {'GEMMs':>7} {'share':>6} {'jax':>7} {'if free':>8} "
              f"{'rest @0.85':>10}")  # fmt: skip
        for flavour, shape, update, gemm, jax_ms in floors:
            print(f"{flavour:>10} {shape:>12} {update:8.3f} {gemm:7.3f} {gemm / update:6.2f} {jax_ms:7.3f} "
                  f"{jax_ms / gemm:8.2f} {jax_ms / 0.85 - gemm:10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
