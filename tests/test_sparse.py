"""The sparse suite (dapd.md): masks, DAPD's pathways, the RiGL scheduler, RLx2's n-step target and buffer,
and short real runs of every method on gymnasium HalfCheetah-v5."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import MLPStack
from rlrepro.engine.replay import ReplayBuffer, nstep_soft_target
from rlrepro.sparse.config import SparseSACConfig, SparseSpec
from rlrepro.sparse.dapd import snip_scores
from rlrepro.sparse.masks import PathwayMasks, enable_dst, erk_densities
from rlrepro.sparse.train import build_learner, train_sparse

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT = 17, 6  # HalfCheetah's shapes


def make_agent(seed: int = 0) -> SACLearner:
    torch.manual_seed(seed)
    return build_learner(OBS, ACT, SparseSACConfig(), torch.device("cpu"), torch.Generator().manual_seed(seed))


def filled_replay(n: int = 512, seed: int = 0) -> ReplayBuffer:
    g = torch.Generator().manual_seed(seed)
    replay = ReplayBuffer(n, OBS, ACT, torch.device("cpu"), action_means=True)
    for t in range(n):
        obs, nxt = torch.randn(OBS, generator=g), torch.randn(OBS, generator=g)
        action = torch.rand(ACT, generator=g) * 2 - 1
        replay.add(obs, action, float(torch.randn(1, generator=g)), nxt, 1.0, float(t % 100 == 99))
    return replay


def layer_densities(net: MLPStack) -> list[float]:
    return [float(v.mask.mean()) for v in net.layers()]


def test_erk_densities_match_the_spec_table():
    """dapd.md §3.1: densities at 95% sparsity, hidden 256 (critic output layers become dense)."""
    cheetah_actor = erk_densities([(17, 256), (256, 256), (256, 12)], 0.05)
    assert [round(d, 3) for d in cheetah_actor] == [0.217, 0.027, 0.302]
    hopper_critic = erk_densities([(14, 256), (256, 256), (256, 1)] * 2, 0.05)
    assert [round(d, 3) for d in hopper_critic[:3]] == [0.310, 0.032, 1.0]
    ant_v2_actor = erk_densities([(111, 256), (256, 256), (256, 16)], 0.05)
    assert [round(d, 3) for d in ant_v2_actor] == [0.055, 0.033, 0.283]


def test_dst_masks_are_erk_per_layer_with_pruned_weights_exactly_zero():
    agent = make_agent()
    enable_dst(agent, 0.95, 0.95, delta=10, zeta=0.5, t_end=1000, random_grow=False)
    nets = ((agent.actor.net, agent.actor_topology.densities), (agent.critic.net, agent.critic_topology.densities))
    for net, expected in nets:
        assert layer_densities(net) == pytest.approx(expected, abs=1e-3)
        assert net.n_active_weights() / net.n_weights() == pytest.approx(0.05, abs=1e-3)
        for view in net.layers():
            assert torch.all(view.weight[view.mask == 0] == 0)
    assert layer_densities(agent.critic.net)[4:] == [1.0, 1.0]  # both Q output layers dense under ERK


def test_dapd_mask_is_global_per_network_at_the_keep_ratio():
    agent = make_agent()
    actor_scores, critic_scores = snip_scores(agent, filled_replay().sample_windows(256, agent.generator),
                                              fixed_alpha=0.1, critic_includes_actor_loss=True)  # fmt: skip
    for scores, n in ((actor_scores, agent.actor.net.n_weights()), (critic_scores, agent.critic.net.n_weights())):
        masks = PathwayMasks(0.05, 1).update(scores)
        kept = sum(int(m.sum()) for m in masks)
        assert kept == int(n * 0.05)  # continuous scores: no ties, exactly k kept over all layers jointly
        per_layer = [float(m.mean()) for m in masks]
        assert max(per_layer) - min(per_layer) > 0.01  # one global budget, not a per-layer one


def test_masked_weights_get_zero_gradient():
    agent = make_agent()
    masks = [torch.rand_like(w) < 0.1 for w in agent.actor.net.weights]
    agent.actor.net.set_masks([m.float() for m in masks])
    obs = torch.randn(32, OBS)
    loss, _ = agent.actor.sample(obs, agent.generator)
    loss.sum().backward()
    for w, m in zip(agent.actor.net.weights, masks, strict=True):
        assert torch.all(w.grad[~m] == 0) and torch.any(w.grad[m] != 0)


def test_dapd_keeps_pruned_raw_weights_and_lets_connections_regrow():
    agent = make_agent()
    replay = filled_replay()
    pathways = PathwayMasks(0.05, 1)

    def rescore():
        _, critic_scores = snip_scores(agent, replay.sample_windows(256, agent.generator), fixed_alpha=0.1,
                                       critic_includes_actor_loss=True)  # fmt: skip
        return [m.clone() for m in pathways.update(critic_scores)]

    first = rescore()
    agent.set_masks(None, first)
    raw_before = [w.detach().clone() for w in agent.critic.net.weights]
    for _ in range(30):
        agent.update(replay.sample_windows(256, agent.generator, 1))
    for w, before, m in zip(agent.critic.net.weights, raw_before, first, strict=True):
        pruned = m == 0
        assert torch.count_nonzero(w.detach()[pruned]) == pruned.sum()  # raw values kept (not zeroed)
        assert torch.allclose(w.detach()[pruned], before[pruned], atol=1e-2)  # and barely moved (only Adam drift)
    second = rescore()
    regrown = sum(int(((s > 0) & (f == 0)).sum()) for s, f in zip(second, first, strict=True))
    assert regrown > 0, "no pruned connection came back after training"


def test_rigl_step_keeps_the_active_count_and_zero_initialises_grown_weights():
    agent = make_agent()
    enable_dst(agent, 0.9, 0.9, delta=3, zeta=0.5, t_end=100, random_grow=False)
    replay = filled_replay()
    before = [m.clone() for m in agent.critic.net.masks]
    counts = [int(v.mask.sum()) for v in agent.critic.net.layers()]
    for _ in range(3):
        agent.update(replay.sample_windows(64, agent.generator, 1))
    assert agent.critic_topology.topology_updates == 1
    assert [int(v.mask.sum()) for v in agent.critic.net.layers()] == counts
    after = agent.critic.net.masks
    grown = [(a > 0) & (b == 0) for a, b in zip(after, before, strict=True)]
    assert sum(int(g.sum()) for g in grown) > 0
    for w, g in zip(agent.critic.net.weights, grown, strict=True):
        assert torch.all(w.detach()[g] == 0)  # the skipped optimizer step leaves grown weights at zero
    assert agent.critic_topology.drop_fraction() == pytest.approx(0.25 * (1 + math.cos(math.pi * 3 / 100)))


def test_nstep_target_equals_the_hand_computed_sum():
    g, h = 0.9, torch.tensor([[0.5, 0.25, 0.125]])  # h_k = −α log π(a'_k|s'_k)
    r, q = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 30.0]])
    ones, zeros = torch.ones(1, 3), torch.zeros(1, 3)
    full = nstep_soft_target(r, ones, zeros, ones, h, q, g)
    hand = 1 + g * 2 + g**2 * 3 + g * 0.5 + g**2 * 0.25 + g**3 * 0.125 + g**3 * 30
    assert full.item() == pytest.approx(hand)
    # The episode ends (time limit) after the second transition: bootstrap from s'_1, nothing after it.
    ended = torch.tensor([[0.0, 1.0, 0.0]])
    cut = nstep_soft_target(r, ones, ended, ones, h, q, g)
    assert cut.item() == pytest.approx(1 + g * 2 + g * 0.5 + g**2 * 0.25 + g**2 * 20)
    # A true terminal at the second transition: no entropy or bootstrap term from s'_1.
    terminal = nstep_soft_target(r, torch.tensor([[1.0, 0.0, 1.0]]), ended, ones, h, q, g)
    assert terminal.item() == pytest.approx(1 + g * 2 + g * 0.5)
    # n = 1 is the ordinary SAC target r + γ·not_done·(Q − α log π).
    one = nstep_soft_target(r[:, :1], ones[:, :1], zeros[:, :1], ones[:, :1], h[:, :1], q[:, :1], g)
    assert one.item() == pytest.approx(1 + g * (10 + 0.5))


def test_replay_windows_stop_at_the_newest_transition_and_the_buffer_drops_its_oldest():
    replay = ReplayBuffer(10, 1, 1, torch.device("cpu"), action_means=True)
    for t in range(12):  # wraps: holds transitions 2..11
        replay.add(torch.tensor([float(t)]), torch.zeros(1), float(t), torch.tensor([t + 1.0]), 1.0, 0.0)
    window = replay.sample_windows(200, torch.Generator().manual_seed(0), n=3)
    starts = window.reward[:, 0]
    assert starts.min() >= 2 and starts.max() <= 11
    assert torch.all(window.valid[starts == 11] == torch.tensor([1.0, 0.0, 0.0]))
    ok = starts <= 9
    assert torch.equal(window.reward[ok, 1], starts[ok] + 1) and torch.all(window.valid[ok] == 1)
    replay.drop_oldest(int(0.1 * len(replay)))
    obs, _ = replay.oldest_states(3)
    assert len(replay) == 9 and obs.flatten().tolist() == [3.0, 4.0, 5.0]


def smoke_spec(method: str, **hp) -> SparseSpec:
    defaults = {
        "dapd": {"initial_mask_steps": 100, "ips_threshold": 1e9},
        "rigl": {"delta": 50},
        "rlx2": {"delta": 50, "nstep": 3, "delay_nstep": 50, "dynamic_buffer": True, "buffer_min_size": 50,
                 "buffer_adjustment_interval": 100, "buffer_threshold": 0.0},
    }.get(method, {})  # fmt: skip
    return SparseSpec.from_dict(
        {
            "method": method, "env": "halfcheetah", "env_id": "HalfCheetah-v5", "seed": 3,
            "keep_ratio": 1.0 if method == "dense" else 0.05,
            "sac": {"total_steps": 300, "seed_steps": 100, "batch_size": 64},
            "evaluation": {"every_steps": 100, "episodes": 1},
            "method_hp": {**defaults, **hp}, "max_episode_steps": 50,
        }
    )  # fmt: skip


def metric(result, name: str) -> list[float]:
    return [v for _, m, layer, v in result.rows if m == name and layer is None]


@pytest.mark.parametrize("method", ["dense", "dapd", "rigl", "rlx2"])
def test_each_method_trains_a_few_hundred_steps_on_halfcheetah(method):
    result = train_sparse(smoke_spec(method))
    assert len(metric(result, "eval_return")) == 3 and len(metric(result, "episode_return")) == 6
    density = metric(result, "actor_density")[-1]
    assert density == (1.0 if method == "dense" else pytest.approx(0.05, abs=1e-3))
    assert metric(result, "updates")[-1] == 200
    if method == "dapd":
        assert metric(result, "mask_updates")[-1] >= 4  # initial mask + one per episode end after step 0
    if method in ("rigl", "rlx2"):
        assert metric(result, "topology_updates")[-1] == 3
    if method == "rlx2":
        assert metric(result, "replay_size")[-1] < 300  # threshold 0: the oldest 10% dropped at each check


def test_dapd_freezes_its_pathway_once_the_threshold_is_passed():
    result = train_sparse(smoke_spec("dapd", ips_threshold=-1e9))
    assert metric(result, "mask_frozen_at") == [100.0]
    assert metric(result, "mask_updates") == [2.0, 2.0, 2.0]  # initial + the episode end at 50; frozen at 100


def numbers(result) -> list:
    return [row for row in result.rows if row[1] != "wall_time_s"]


def test_same_seed_same_numbers_and_a_killed_run_resumes_to_them(tmp_path):
    spec = smoke_spec("rlx2")
    reference = numbers(train_sparse(spec))
    assert numbers(train_sparse(spec)) == reference

    class Killed(Exception):
        pass

    class KillAt:
        """Raises in the middle of training, as a SIGKILL would stop it (after the step-150 checkpoint)."""

        def update(self, steps):
            self.done = getattr(self, "done", 0) + steps
            if self.done >= 200:
                raise Killed

    with pytest.raises(Killed):
        train_sparse(spec, progress=KillAt(), checkpoint_dir=tmp_path, checkpoint_interval_s=0)
    resumed = train_sparse(spec, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
    assert resumed.resumed_from_step == 150
    assert numbers(resumed) == reference


def dense_results(env: str, seed: int, returns: list[float]):
    import pandas as pd

    rows = [{"suite": "sparse", "env": env, "method": "dense", "keep_ratio": 1.0, "seed": seed, "step": 1000 * (i + 1),
             "metric": "eval_return", "layer": None, "value": r, "train_wall_time_s": 1.0} for i, r in enumerate(returns)]
    return pd.DataFrame(rows)


def test_dapd_threshold_from_dense_is_the_fraction_of_that_seeds_final_return(tmp_path):
    """Budget `ips_threshold_from_dense`: a dapd job's freeze threshold is fraction × the mean of the same env and
    seed's last k dense evaluations (the sparse table's final return), and the spec records both numbers."""
    from rlrepro.config import load_config
    from rlrepro.errors import ConfigError
    from rlrepro.sparse.config import resolve_threshold_from_dense

    overrides = {"preset": "validate"}
    grid = load_config(ROOT / "config.yaml", overrides).sparse
    assert grid.threshold_from_dense and grid.threshold_rule("dense") is None
    raw = grid.spec("dapd", "halfcheetah", 0.05, 1)
    fraction, last_k = raw["ips_threshold_from_dense"]["fraction"], raw["ips_threshold_from_dense"]["last_k"]
    assert grid.dense_reference("dapd", "halfcheetah", 1).seed == 1 and grid.dense_reference("rigl", "halfcheetah", 1) is None

    returns = [float(x) for x in range(-5, 40, 3)]
    path = tmp_path / "dense.parquet"
    dense_results("halfcheetah", 1, returns).to_parquet(path)
    resolved = resolve_threshold_from_dense(raw, str(path))
    expected = fraction * sum(returns[-last_k:]) / last_k
    assert math.isclose(resolved["method_hp"]["ips_threshold"], expected)
    assert math.isclose(resolved["ips_threshold_from_dense"]["dense_final_return"], expected / fraction)
    assert math.isclose(SparseSpec.from_dict(resolved).dapd().ips_threshold, expected)
    rigl = grid.spec("rigl", "halfcheetah", 0.05, 1)
    assert resolve_threshold_from_dense(rigl, None)["method_hp"] == grid.method_hp("rigl", "halfcheetah")

    with pytest.raises(ConfigError, match=r"pass its results\.parquet with --dense-results"):
        resolve_threshold_from_dense(raw, None)
    dense_results("halfcheetah", 0, returns).to_parquet(path)  # another seed's run
    with pytest.raises(ConfigError, match="no evaluated dense run of env 'halfcheetah', seed 1"):
        resolve_threshold_from_dense(raw, str(path))

    validate = yaml.safe_load((ROOT / "config.yaml").read_text())["presets"]["validate"]
    validate["sparse"]["methods"] = ["dapd", "rigl"]
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["presets"]["validate"] = validate
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="add `dense` to the preset's sparse methods"):
        load_config(tmp_path / "c.yaml", overrides)
