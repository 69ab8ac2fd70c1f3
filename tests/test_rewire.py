"""Rewire's pieces: SoftSort straight-through, the exact alignment re-mapping of cached wirings, growth counts."""

import pytest
import torch
from conftest import fake_env_factory

from rlrepro.continual import TrainSpec, build_method, load_stage_methods, train
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.base import TaskContext
from rlrepro.continual.methods.rewire import (
    mul_grad,
    permute_columns,
    permute_columns_by_gemm,
    softsort_st,
    spaced_scores,
)
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.networks import TwinCritic


def test_softsort_forward_is_a_hard_permutation_with_a_gradient():
    scores = torch.tensor([0.3, 0.1, 0.9, 0.5], requires_grad=True)
    perm = softsort_st(scores, tau=1.0, beta=0.0)
    assert torch.allclose(perm.detach(), torch.eye(4)[torch.argsort(scores.detach())], atol=1e-6)
    x = torch.tensor([10.0, 20.0, 30.0, 40.0])
    assert torch.allclose((x @ perm.T).detach(), x[torch.argsort(scores.detach())], atol=1e-5)
    (x @ perm.T * torch.arange(4.0)).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    noisy = softsort_st(scores.detach(), tau=1.0, beta=10.0)
    assert torch.allclose(noisy.sum(0), torch.ones(4)) and torch.allclose(noisy.sum(1), torch.ones(4))
    assert set(noisy.detach().round().unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(("rows", "width", "tie"), [(512, 256, False), (256, 256, False), (5, 16, False), (64, 16, True)])
def test_permuting_by_gather_is_the_gemm_bit_for_bit(rows, width, tie):
    """The learning route's `out @ permᵀ` is a gather (rewire.permute_columns): the same floats forward, for `out`'s
    gradient and for the scores' gradient through SoftSort, at the paper's width and the policy loss's 2·256 rows.
    With tied scores two rows pick one column (not a permutation): still the GEMM's numbers."""
    gen = torch.Generator().manual_seed(rows + width)
    results = []
    for permute in (permute_columns_by_gemm, permute_columns):
        gen.manual_seed(rows + width)
        scores = torch.linspace(0, 1, width) + 0.01 * torch.randn(width, generator=gen)
        if tie:
            scores[3] = scores[7]
        scores.requires_grad_(True)
        out = torch.randn(rows, width, generator=gen, requires_grad=True)
        grad = torch.randn(rows, width, generator=gen)
        perm = softsort_st(mul_grad(scores, 3), tau=0.1, beta=0.0)
        if tie:
            assert perm.detach().argmax(-1).unique().numel() == width - 1
        y = permute(out, perm)
        results.append((y.detach(), *torch.autograd.grad(y, [out, scores], grad)))
    for name, gemm, gather in zip(("value", "out grad", "score grad"), *results, strict=True):
        assert torch.equal(gemm, gather), f"{name}: max diff {(gemm - gather).abs().max().item()}"


def lifecycle(method, n_tasks):
    ctx = TaskContext(None, torch.Generator(), TwinCritic(3, 2, NetworkConfig(hidden_sizes=(4,))), SACConfig())
    for t in range(n_tasks):
        method.on_task_start(t, ctx)
        method.on_task_end(t, ctx)


@pytest.mark.parametrize(("obs", "act", "single", "inference", "stored"), [(18, 6, 139_532, 151_856, 294_972)])
def test_growth_matches_the_spec_for_halfcheetah_shapes(obs, act, single, inference, stored):
    """rewire.md §3.1.5: 8 tasks, cycle 4, K 3, hidden 256 — inference 1.09×, logged state 2.11× of one policy."""
    method = build_method("rewire", obs, act, NetworkConfig(), {"cycle": 4, "k": 3})
    lifecycle(method, 8)
    report = method.memory_report()
    assert report == {"inference_parameters": inference, "stored_parameters": stored}
    assert len(method.heads) == 4 and method.layers[0].cache.shape == (4, 256)


def test_aligned_weights_and_remapped_wirings_reproduce_the_old_task_exactly():
    torch.manual_seed(0)
    net = NetworkConfig(hidden_sizes=(6, 6, 6))
    method = build_method("rewire", 3, 2, net, {"cycle": -1, "k": 2, "beta": 0.1})
    method.eval()
    lifecycle(method, 1)  # task 0 cached, anchors = current weights
    obs = torch.randn(5, 3)
    before = method.policy_for_task(0).net(obs).detach()
    # Pretend task 1 learned weights that are exact permutations of the anchors, with matching alignment scores.
    layers = list(method.layers)
    perms_z = [torch.randperm(6) for _ in layers]
    perms_a = [None] + [torch.randperm(6) for _ in layers[1:]]
    with torch.no_grad():
        for layer, pz, pa in zip(layers, perms_z, perms_a, strict=True):
            layer.zv.copy_(spaced_scores(pz))
            z = torch.eye(6)[pz]
            w = z.T @ layer.weight_mean
            if pa is not None:
                layer.av.copy_(spaced_scores(pa))
                w = w @ torch.eye(6)[pa]
            layer.linear.weight.copy_(w)
            layer.linear.bias.copy_(z.T @ layer.bias_mean)
    assert not torch.allclose(method.policy_for_task(0).net(obs), before)  # the stale wiring no longer fits
    method.consolidate()
    assert torch.allclose(method.policy_for_task(0).net(obs), before, atol=1e-6)


def test_alignment_regulariser_is_zero_on_task_one_and_positive_later():
    method = build_method("rewire", 3, 2, NetworkConfig(hidden_sizes=(8, 8)), {"coeff": 1.0, "divergence": 0.0})
    assert method.extra_loss() is None
    lifecycle(method, 1)
    with torch.no_grad():
        for layer in method.layers:
            layer.linear.weight.add_(0.3)
    reg = method.extra_loss()
    assert reg is not None and reg.requires_grad
    reg.backward()
    assert method.layers[0].linear.weight.grad.abs().sum() > 0 and method.layers[1].zv.grad is not None


def test_rewire_trains_two_tasks_with_selection_and_keeps_task_one(fake_scenario):
    """On the fake env (a test double, conftest.FakeVecEnv); Rewire on real Brax: tests/test_resume_real_envs.py."""
    spec = TrainSpec(
        method="rewire",
        scenario=fake_scenario,
        seed=2,
        network=NetworkConfig(hidden_sizes=(16, 16)),
        sac=SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1),
        method_hp={"cycle": -1, "coeff": 1.0, "selection_rollouts": 2},
    )
    result = train(spec, env_factory=fake_env_factory)
    extra = [r["value"] for r in result.rows if r["metric"] == "extra_env_steps"]
    assert extra[0] == 0 and extra[1] == (1 + 3) * 2 * 4 * 16  # r0 + K modes, 2 rollouts × 4 envs × 16 steps
    stage0, stage1 = load_stage_methods(result.policies(), torch.device("cpu"))
    obs = torch.randn(7, 3)
    with torch.no_grad():
        a0 = stage0.policy_for_task(0).deterministic(obs)
        a1 = stage1.policy_for_task(0).deterministic(obs)
    assert (a0 - a1).abs().max() < 0.5  # anchored, not identical: the shared weights moved on task 2


def test_growth_of_pnn_packnet_and_csp_for_halfcheetah_shapes():
    """rewire.md §3.7–3.9 at HalfCheetah shapes (obs 18, A 6, 8 tasks; one policy = 139,532 parameters)."""
    pnn = build_method("pnn", 18, 6, NetworkConfig(hidden_sizes=(96, 96, 96)), {})
    lifecycle(pnn, 8)
    column = (18 * 96 + 96) + 2 * (96 * 96 + 96) + (96 * 12 + 12)
    laterals = sum(2 * (96 * 96 + 96) + (96 * 12 + 12) + 3 * 96 * 96 * c + 3 for c in range(1, 8))
    assert pnn.memory_report()["inference_parameters"] == 8 * column + laterals == 1_085_577  # ≈ 7.8× one policy

    packnet = build_method("packnet", 18, 6, NetworkConfig(), {"finetune_updates": 0})
    lifecycle(packnet, 8)
    report = packnet.memory_report()
    assert report["stored_parameters"] == 9 * 139_532  # T snapshots + the ownership mask, as the original logs it
    assert report["inference_parameters"] == 2 * 139_532  # one network + its mask

    csp = build_method("csp", 18, 6, NetworkConfig(), {})
    ctx = TaskContext(None, torch.Generator(), TwinCritic(3, 2, NetworkConfig(hidden_sizes=(4,))), SACConfig())
    for t in range(3):
        csp.on_task_start(t, ctx)
    assert csp.n_anchors == 3 and csp.memory_report()["stored_parameters"] == 3 * 139_532 + 1


def test_rewire_anchor_diagnostic_reads_a_runs_policies(fake_scenario, tmp_path):
    """workflow/scripts/rewire_anchor.py (the README's Rewire reading) on a two-task run's policies file (trained on the
    fake env, a test double: conftest.FakeVecEnv)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "workflow/scripts/rewire_anchor.py"
    module_spec = importlib.util.spec_from_file_location("rewire_anchor", path)
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)
    spec = TrainSpec(method="rewire", scenario=fake_scenario, seed=1, network=NetworkConfig(hidden_sizes=(16, 16)),
                     sac=SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1),
                     method_hp={"cycle": -1, "coeff": 1.0, "selection_rollouts": 1})  # fmt: skip
    torch.save(train(spec, env_factory=fake_env_factory).policies(), tmp_path / "policies.pt")
    lines = script.report(tmp_path, n_obs=64)
    assert len(lines) == 1 + 2 + 1 and "rows to nearest anchor row" in lines[1]
    moved = float(lines[1].split("weights moved ")[1].split()[0])
    features = float(lines[3].split("trunk features changed ")[1].split()[0])
    assert 0 < moved < 10 and 0 < features  # the shared weights trained on task 2, so task 1's features moved
