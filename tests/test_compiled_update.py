"""The compiled update (`engine.compile: true`): one graph per update branch for every method, no graph break, no
recompilation after warm-up, and the same numbers as the same function run eagerly (which tests/test_bitwise.py and
tests/test_continual_reference.py pin to engine 0.2.0 bit for bit).

Tolerances, measured on this machine. After one update every tensor agrees to float32 rounding (≤ 6e-8 absolute):
the strong check, since a missing or wrong term moves an Adam step by ~lr (1e-3 here). After 200 updates most
continual methods stay within 3e-6 of each tensor's norm; Rewire's first task parts to 4e-4 and the sparse flavour's
ReLU networks to ≈1e-3. Those departures start as one discrete event (in the sparse case, traced: a single critic
weight jumps ≈1e-5 in one update, a ReLU unit whose pre-activation sits within rounding of zero for one sample; in
Rewire's, a hard sort over near-tied scores), which Adam's momentum then carries. Each compile costs 5-60 s on one
core: `make test-compile`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from test_bitwise import ACT, OBS, filled_replay, random_masks
from test_continual_reference import SAC, trained_state
from torch._dynamo.utils import counters

from rlrepro.engine.config import EngineConfig
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.update import AUTO_COMPILE_MIN_UPDATES, compile_wanted
from rlrepro.scenarios import ScenarioSpec, TaskSpec
from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.masks import enable_dst
from rlrepro.sparse.train import build_learner

ROOT = Path(__file__).resolve().parents[1]
UPDATES, WARMUP = 200, 8
CONTINUAL = [("ft_1", 1), ("ft_l2", 1), ("ewc", 1), ("pnn", 1), ("rewire", 0), ("rewire", 1), ("csp", 1),
             ("packnet", 1), ("sac_n", 1), ("ft_n", 1)]  # fmt: skip
SCENARIO = ScenarioSpec("fake/two", "fake", "fake", (TaskSpec("a", {}), TaskSpec("b", {"gravity": -1.0})),
                        steps_per_task=384, n_train_envs=4, n_eval_envs=4, episode_length=16)  # fmt: skip


def make_compiled(learner: SACLearner) -> None:
    learner.compile, learner._update_fn = True, None


def tensors(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for m in modules for t in m.state_dict().values() if t.is_floating_point()]


def departure(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[float, float]:
    """(largest absolute difference, largest difference relative to its tensor's norm)."""
    assert len(a) == len(b)
    absolute = max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))
    relative = max(((x - y).norm() / x.norm().clamp(min=1e-12)).item() for x, y in zip(a, b, strict=True))
    return absolute, relative


def run_twins(step, make_learner, *, watch) -> dict[str, object]:
    """Run `UPDATES` updates eagerly and compiled from the same state; count dynamo's graphs and breaks, refuse any
    recompilation after the warm-up, and return the departures after 1 and after all updates."""
    results = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        learner, context = make_learner()
        if compiled:
            make_compiled(learner)
        snapshots = []
        for i in range(UPDATES):
            if compiled and i == WARMUP:
                torch._dynamo.config.error_on_recompile = True
            try:
                step(learner, context)
            finally:
                torch._dynamo.config.error_on_recompile = False
            if i in (0, UPDATES - 1):
                snapshots.append(tensors(*watch(learner, context)))
        results[compiled] = snapshots
        if compiled:
            results["graphs"] = counters["stats"]["unique_graphs"]
            results["breaks"] = dict(counters["graph_break"])
            results["compile_s"] = learner.compile_s
    results["first"] = departure(results[False][0], results[True][0])
    results["last"] = departure(results[False][1], results[True][1])
    return results


@pytest.mark.compile
@pytest.mark.parametrize(("name", "task"), CONTINUAL, ids=[f"{n}-task{t}" for n, t in CONTINUAL])
def test_every_continual_method_runs_as_one_compiled_graph(name, task):
    def make():
        _, method, _critic, trainer, generator = trained_state(name, SCENARIO, task)
        return trainer.learner, (method, trainer, generator)

    def step(learner, context):
        method, trainer, generator = context
        with method.learning_mode():
            batch = method.prepare_batch(trainer.replay.sample(SAC.batch_size, generator), generator)
            learner.update(batch, method.extra_loss)

    out = run_twins(step, make, watch=lambda learner, c: (c[0], learner.critic, learner.target_critic, learner))
    assert out["breaks"] == {}
    # policy delay 2 and target delay 2: (policy + target) and (critic only) graphs
    assert out["graphs"] == 2
    assert out["compile_s"] > 0
    assert out["first"][0] <= 1e-6, out["first"]
    assert out["last"][1] <= 2e-3, out["last"]


SPARSE = ["dense", "dapd", "rigl", "rlx2"]


@pytest.mark.compile
@pytest.mark.parametrize("method", SPARSE)
def test_the_sparse_flavour_runs_as_one_compiled_graph(method):
    cfg = SparseSACConfig(hidden_sizes=[32, 32], batch_size=64)
    replay = filled_replay(600, seed=7)

    def make():
        torch.manual_seed(3)
        learner = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11))
        if method == "dapd":  # pathway masks, raw weights kept
            g = torch.Generator().manual_seed(5)
            learner.set_masks(random_masks(learner.actor.net, 0.3, g), random_masks(learner.critic.net, 0.3, g))
        elif method in ("rigl", "rlx2"):  # topology steps (dense gradients, the stateful route) every 50 updates
            enable_dst(learner, 0.9, 0.9, delta=50, zeta=0.5, t_end=10_000, random_grow=method == "rlx2",
                       critic_grow_includes_actor_grad=method == "rlx2")  # fmt: skip
        return learner, learner.generator

    def step(learner, generator):
        n = 3 if method == "rlx2" and learner.updates >= 100 else 1  # RLx2's n-step target after its delay
        learner.update(replay.sample_windows(cfg.batch_size, generator, n))

    out = run_twins(step, make, watch=lambda learner, _: (learner,))
    assert out["breaks"] == {}
    # target delay 2: two branches; RLx2's switch to 3-step windows (a new batch shape) traces both again
    assert out["graphs"] == (4 if method == "rlx2" else 2)
    assert out["first"][0] <= 1e-6, out["first"]
    assert out["last"][1] <= 2e-2, out["last"]


@pytest.mark.compile
def test_a_topology_step_leaves_the_graph_and_counts_once():
    """RiGL's topology step takes the stateful route (dense gradients) and the schedule counts every update once,
    compiled or not: the masks after 120 updates with a topology step every 50 are the eager run's."""
    cfg = SparseSACConfig(hidden_sizes=[32, 32], batch_size=64)
    replay = filled_replay(600, seed=7)
    masks = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(3)
        learner = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11), compiled)
        enable_dst(learner, 0.9, 0.9, delta=50, zeta=0.5, t_end=10_000, random_grow=False)
        for _ in range(120):
            learner.update(replay.sample_windows(cfg.batch_size, learner.generator, 1))
        assert learner.critic_topology.step == 120 and learner.actor_topology.step == 120
        masks[compiled] = copy.deepcopy(learner.masks_state())
    for part in ("actor", "critic"):
        before = [m.sum().item() for m in masks[False][part]]
        assert before == [m.sum().item() for m in masks[True][part]]  # swaps are 1:1
        changed = sum(int((a != b).sum()) for a, b in zip(masks[False][part], masks[True][part], strict=True))
        assert changed <= 0.01 * sum(m.numel() for m in masks[False][part])  # near-tied scores may pick another


@pytest.mark.parametrize(("setting", "updates", "expected"), [
    ("auto", AUTO_COMPILE_MIN_UPDATES - 1, False), ("auto", AUTO_COMPILE_MIN_UPDATES, True), (True, 10, True),
    (False, 10**7, False)])  # fmt: skip
def test_auto_compiles_only_jobs_that_outlast_their_compile(setting, updates, expected):
    assert compile_wanted(EngineConfig(compile=setting), updates) is expected


def test_with_torch_compile_disabled_a_compiled_learner_runs_eagerly_with_the_eager_bits(monkeypatch):
    """TORCH_COMPILE_DISABLE=1 (dynamo's `disable`) turns `engine.compile: true` into the eager function, with
    engine 0.2.0's arithmetic (Adam's host-side bias corrections), instead of failing the fullgraph compile."""
    monkeypatch.setattr(torch._dynamo.config, "disable", True)
    cfg = SparseSACConfig(hidden_sizes=[16, 16], batch_size=32)
    replay = filled_replay(200, seed=2)
    ends = []
    for compiled in (False, True):
        torch.manual_seed(3)
        learner = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator().manual_seed(11), compiled)
        for _ in range(6):
            learner.update(replay.sample_windows(cfg.batch_size, learner.generator, 1))
        assert learner._update_fn.compiled is None and learner.compile_s == 0.0
        ends.append(tensors(learner))
    assert all(torch.equal(a, b) for a, b in zip(*ends, strict=True))


def test_gradient_clipping_in_the_pure_update_is_the_stateful_updates_bit_for_bit():
    """`clip_grad > 0` (a continual `sac:` key) runs `clip_by_total_norm` in the pure update and
    `nn.utils.clip_grad_norm_` on the stateful route: the same arithmetic, so the same bits after a few updates
    (eagerly; the clipping is active: the gradients' norm is far above the bound)."""
    from rlrepro.continual.config import SACConfig, learner_config
    from rlrepro.engine.config import NetworkConfig
    from rlrepro.engine.networks import GaussianActor, TwinCritic
    from rlrepro.engine.replay import Batch

    ends = []
    for stateful in (False, True):
        torch.manual_seed(0)
        net = NetworkConfig(hidden_sizes=(16, 16))
        learner = SACLearner(GaussianActor(OBS, ACT, net), TwinCritic(OBS, ACT, net),
                             learner_config(SACConfig(clip_grad=1e-3), ACT), torch.Generator().manual_seed(1))  # fmt: skip
        if stateful:
            learner._topology_step = lambda policy_step: True
        g = torch.Generator().manual_seed(2)
        for _ in range(6):
            obs, nxt = torch.randn(32, OBS, generator=g), torch.randn(32, OBS, generator=g)
            learner.update(Batch(obs, torch.rand(32, ACT, generator=g) * 2 - 1, 10 * torch.randn(32, generator=g),
                                 torch.ones(32), nxt))  # fmt: skip
        ends.append(tensors(learner))
    assert all(torch.equal(a, b) for a, b in zip(*ends, strict=True))


@pytest.mark.compile
def test_a_job_checked_against_the_eager_update_gives_the_unchecked_jobs_outputs(tmp_path, monkeypatch):
    """The real compiled update under `compiled_check_every` (through the CLI and the environment variable the
    Snakefile exports): a DAPD job (masks rescored every episode, so every check after a mask change too) records its
    checks in meta.json, every departure is float32 rounding, and its outputs are the unchecked job's. (Its masks are
    rescored at steps 100 and 200 and frozen by the first evaluation, at 300: the 700 updates run on fixed masks.)"""
    import json

    import pandas as pd
    from test_kill_resume import without_wall_time

    from rlrepro.cli import main
    from rlrepro.config import load_config
    from rlrepro.engine.compiled_check import ENV_EVERY

    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec("dapd", "halfcheetah", 0.05, 0)
    spec["sac"].update(total_steps=900, seed_steps=200, hidden_sizes=[64, 64], batch_size=64)
    spec["evaluation"].update(every_steps=300, episodes=1)
    spec["method_hp"].update(mask_update_mavg=2, initial_mask_steps=200, ips_threshold=-1.0e9)
    spec["engine"] = {"compile": True}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    for run, every in (("plain", "0"), ("checked", "25")):
        monkeypatch.setenv(ENV_EVERY, every)
        assert main(["train-sparse", "--spec", f"@{path}", "--run-dir", str(tmp_path / run)]) == 0
    meta = {run: json.loads((tmp_path / run / "meta.json").read_text()) for run in ("plain", "checked")}
    assert "compiled_check" not in meta["plain"]
    check = meta["checked"]["compiled_check"]
    # updates 0, 25, ..., 675 of 700, and 1 (the first call of the graph without a target step: target delay 2)
    assert check["compiled_updates"] == 700 and check["checks"] == 29, check
    assert check["max_departure"] <= 1e-2, check
    frames = [without_wall_time(pd.read_parquet(tmp_path / run / "results.parquet")) for run in ("plain", "checked")]
    pd.testing.assert_frame_equal(*frames)
