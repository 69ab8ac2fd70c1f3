"""Method invariants on the fake env: regularisers, Fisher, growth formulas, no-forgetting."""

import pytest
import torch
from conftest import fake_env_factory

from rlrepro.continual import TrainSpec, build_method, load_stage_methods, train
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.base import TaskContext
from rlrepro.continual.methods.registry import method_names
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.networks import TwinCritic
from rlrepro.engine.replay import ReplayBuffer

NET = NetworkConfig(hidden_sizes=(8, 8))
OBS = torch.linspace(-1, 1, 30).reshape(10, 3)


def trained(method, scenario, **hp):
    spec = TrainSpec(
        method=method,
        scenario=scenario,
        seed=1,
        method_hp=hp,
        network=NET,
        sac=SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1),
    )
    return train(spec, env_factory=fake_env_factory)


def filled_replay(n=64, action_dim=2):
    buf = ReplayBuffer(n, 3, action_dim, torch.device("cpu"))
    buf.put(torch.randn(n, 3), torch.rand(n, action_dim), torch.randn(n), torch.ones(n), torch.randn(n, 3))
    return buf


def context(replay=None, seed=0, action_dim=2):
    replay = replay or filled_replay(action_dim=action_dim)
    critic = TwinCritic(3, action_dim, NET)
    return TaskContext(replay, torch.Generator().manual_seed(seed), critic, SACConfig(batch_size=16))


@pytest.mark.parametrize("method", ["ft_l2", "ewc"])
def test_regulariser_is_zero_on_task_one_then_positive_and_differentiable(method):
    m = build_method(method, 3, 2, NET, {"l2_coeff": 2.0, "fisher_coeff": 3.0, "n_samples": 32})
    m.on_task_start(0, context())
    assert m.extra_loss() is None
    m.on_task_end(0, context())
    m.on_task_start(1, context())
    assert m.extra_loss().item() == 0.0  # right after consolidation θ = θ*
    with torch.no_grad():
        for p in m.policy.parameters():
            p.add_(0.1)
    loss = m.extra_loss()
    assert loss.item() > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.policy.parameters())


def test_l2_penalty_value():
    m = build_method("ft_l2", 3, 2, NET, {"l2_coeff": 2.0})
    m.on_task_end(0, context())
    with torch.no_grad():
        for p in m.policy.parameters():
            p.add_(0.5)
    n = sum(p.numel() for p in m.policy.parameters())
    assert m.extra_loss().item() == pytest.approx(2.0 * 0.25 * n, rel=1e-5)


def test_ewc_fisher_is_positive_accumulates_and_the_index_bug_flag_matters():
    replay, gen = filled_replay(), torch.Generator().manual_seed(0)
    buggy = build_method("ewc", 3, 4, NET, {"n_samples": 32})
    fixed = build_method("ewc", 3, 4, NET, {"n_samples": 32, "fisher_index_bug": False})
    fixed.load_state_dict(buggy.state_dict())
    obs = replay.sample_obs(32, gen)
    f_bug, f_fix = buggy.fisher(obs), fixed.fisher(obs)
    assert all((f >= 1e-5).all() for f in f_bug.values())
    assert any(not torch.allclose(f_bug[n], f_fix[n]) for n in f_bug)
    # the buggy version never looks at the real log-σ outputs (rows 4..7 of the last layer get no signal)
    last_w = [n for n in f_bug if ".weights." in n][-1]
    floor = torch.full_like(f_bug[last_w][0, 4:], 1e-5)
    assert torch.allclose(f_bug[last_w][0, 4:], floor) and torch.all(f_fix[last_w][0, 4:] > 1.01e-5)
    buggy.on_task_end(0, context(replay, action_dim=4))
    first = {n: buggy.weight(n).clone() for n, _ in buggy.policy.named_parameters()}
    buggy.on_task_end(1, context(replay, action_dim=4))
    assert all(torch.allclose(buggy.weight(n), 2 * first[n]) for n in first)  # F ← F + F_new


def original_fisher(policy, obs, half: int) -> dict[str, torch.Tensor]:
    """The original's procedure re-done with autograd, sample by sample and output by output: backward of μ_i and of
    σ_i = exp(clip(out_{half+i}, −20, 2)), then Σ_i (g_μ² + 2 g_σ²)/(σ_i² + 1e-6), clamp 1e-5, mean over samples."""
    params = list(policy.parameters())
    total = [torch.zeros_like(p) for p in params]
    for x in obs:
        fisher = [torch.zeros_like(p) for p in params]
        for i in range(half):
            g_mu = torch.autograd.grad(policy.net(x)[i], params)
            std = torch.exp(torch.clip(policy.net(x)[half + i], min=-20.0, max=2.0))
            g_std = torch.autograd.grad(std, params)
            for f, gm, gs in zip(fisher, g_mu, g_std, strict=True):
                f += (gm**2 + 2 * gs**2) / (std.detach() ** 2 + 1e-6)
        for t, f in zip(total, fisher, strict=True):
            t += f.clamp(min=1e-5) / obs.shape[0]
    return {n: t for (n, _), t in zip(policy.named_parameters(), total, strict=True)}


@pytest.mark.parametrize("index_bug", [True, False])
def test_ewc_fisher_is_the_originals_formula(index_bug):
    """Fidelity audit D3: the gradient of σ itself (factor σ, zero where the clip is active), over σ² + 1e-6."""
    m = build_method("ewc", 3, 4, NET, {"fisher_index_bug": index_bug})
    with torch.no_grad():  # push one log-σ output past the clip for some samples: its gradient must vanish there
        m.policy.net.biases[-1][0, 6] = 3.0
    obs = torch.randn(8, 3)
    fisher = m.fisher(obs)
    # with the index bug the "log σ" of pair i is output 2+i (a μ), else output 4+i (the real log σ)
    expected = original_fisher(m.policy, obs, 2 if index_bug else 4)
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], rtol=1e-4, atol=1e-7), n


def test_ewc_gaussian_fisher_flag():
    """With `fisher_original_formula: false`: g_μ²/σ² + 2·g_logσ², the Fisher of the Gaussian policy. The original's
    formula equals it up to its 1e-6 in the denominator: they part where σ² is not large against 1e-6."""
    m = build_method("ewc", 3, 2, NET, {"fisher_index_bug": False, "fisher_original_formula": False})
    with torch.no_grad():
        m.policy.net.biases[-1][0, 2:] = -8.0  # σ² ≈ 1e-7
    x = torch.randn(1, 3)
    fisher = m.fisher(x)
    params = list(m.policy.parameters())
    out = m.policy.net(x)[0]
    expected = [torch.zeros_like(p) for p in params]
    for i in range(2):
        sigma = torch.exp(out[2 + i].clamp(-20, 2)).detach()
        g_mu = torch.autograd.grad(out[i], params, retain_graph=True)
        g_ls = torch.autograd.grad(out[2 + i].clamp(-20, 2), params, retain_graph=True)
        for e, gm, gl in zip(expected, g_mu, g_ls, strict=True):
            e += gm**2 / sigma**2 + 2 * gl**2
    original = build_method("ewc", 3, 2, NET, {"fisher_index_bug": False})
    original.load_state_dict(m.state_dict())
    for (n, _), e in zip(m.policy.named_parameters(), expected, strict=True):
        assert torch.allclose(fisher[n], e.clamp(min=1e-5), rtol=1e-4, atol=1e-7), n
    assert any(not torch.allclose(fisher[n], f) for n, f in original.fisher(x).items())


def test_pnn_growth_matches_the_formula_and_old_columns_are_frozen(fake_scenario):
    result = trained("pnn", fake_scenario)
    sizes = [r["value"] for r in result.rows if r["metric"] == "inference_parameters"]
    h, o, a2 = 8, 3, 4
    column = (o * h + h) + (h * h + h) + (h * a2 + a2)
    laterals = (h * h + h) + (h * a2 + a2) + (h * h) + (h * h) + 2  # u_1,u_2 ; v_1,v_2 (c=1) ; α_1,α_2
    assert sizes == [column, 2 * column + laterals]
    stage0, stage1 = load_stage_methods(result.policies(), torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(stage0.policy_for_task(0).deterministic(OBS), stage1.policy_for_task(0).deterministic(OBS))
        assert not torch.equal(stage1.policy_for_task(1).deterministic(OBS), stage1.policy_for_task(0).deterministic(OBS))


@pytest.mark.parametrize("method", method_names())
def test_every_method_runs_a_two_task_scenario(method, fake_scenario):
    result = trained(method, fake_scenario, finetune_updates=50)
    assert len(result.stages) == 2
    report = [r for r in result.rows if r["metric"] == "stored_parameters"]
    assert len(report) == 2 and all(r["value"] > 0 for r in report)


def test_packnet_claims_an_eighth_per_task_and_never_moves_owned_weights(fake_scenario):
    result = trained("packnet", fake_scenario, finetune_updates=20)
    stage0, stage1 = load_stage_methods(result.policies(), torch.device("cpu"))
    for name, param in stage1.policy.named_parameters():
        owner = stage1.owner(name)
        n = owner.numel()
        for task in (0, 1):
            claimed = int((owner == task).sum())
            assert abs(claimed - (n - int(n * 0.875))) <= 1, (name, task, claimed)
        # weights owned by task 0 are identical in task 0's snapshot and after training task 1
        old = dict(stage1.snapshots[0].named_parameters())[name]
        assert torch.equal(param[owner == 0], old[owner == 0])
        # a snapshot holds only the weights of tasks up to its own; the rest are zero
        assert torch.all(old[(owner == -1) | (owner == 1)] == 0)
    with torch.no_grad():
        assert torch.equal(stage0.policy_for_task(0).deterministic(OBS), stage1.policy_for_task(0).deterministic(OBS))


@pytest.mark.parametrize("updates", [30, 0])
def test_packnet_finetune_trains_only_the_task_s_weights(updates):
    """With 30 fine-tune updates the task's surviving output-layer weights move and the pruned ones stay zero; with 0
    (a fine-tune that does nothing) the same check finds them unmoved, so it can fail."""
    m = build_method("packnet", 3, 2, NET, {"finetune_updates": updates})
    m.on_task_start(0, context())
    ctx = context()
    before = {n: p.detach().clone() for n, p in m.policy.named_parameters()}
    m.on_task_end(0, ctx)
    output = f"net.weights.{len(NET.hidden_sizes)}"  # always has a path (hidden ones may be cut off by pruning)
    names = [name for name, _ in m.policy.named_parameters()]
    assert output in names and f"net.weights.{len(NET.hidden_sizes) + 1}" not in names
    for name, param in m.policy.named_parameters():
        owned = m.owner(name) == 0
        assert owned.any() and torch.all(param[~owned] == 0)
        if name == output:
            assert torch.equal(param[owned], before[name][owned]) == (updates == 0)  # fine-tuned only with updates


def test_csp_adds_a_midpoint_anchor_and_a_fresh_alpha_critic():
    m = build_method("csp", 3, 2, NET, {"dist_type": "peaked"})
    ctx = context()
    m.on_task_start(0, ctx)
    assert m.critic_for_task(ctx.critic).net.sizes[0] == 3 + 1 + 2
    m.best_alphas.append([1.0])
    m.tasks_seen = 1
    anchors_before = [layer.anchors[0].weight.clone() for layer in m.layers]
    m.on_task_start(1, ctx)
    assert m.n_anchors == 2 and m.critic_for_task(ctx.critic).net.sizes[0] == 3 + 2 + 2
    for layer, w in zip(m.layers, anchors_before, strict=True):
        assert torch.equal(layer.anchors[1].weight, w)  # midpoint of one anchor = itself
        assert not layer.anchors[0].weight.requires_grad
    alphas = m.sample_alpha((2000,), 2)
    assert torch.allclose(alphas.sum(-1), torch.ones(2000)) and alphas[:, 1].mean() > 0.6  # peaked: last weight n²
    batch = m.prepare_batch(filled_replay().sample(8, torch.Generator()), torch.Generator())
    assert batch.obs.shape == (8, 5) and batch.next_obs.shape == (8, 5)
    with torch.no_grad():
        out = m.train_actor().net(batch.obs)
    assert out.shape == (8, 4)
    # inference for task 0 uses its stored α = [1, 0]: exactly the first anchor
    with torch.no_grad():
        for layer in m.layers:
            layer.anchors[1].weight.add_(1.0)
        x = torch.randn(4, 3)
        assert torch.allclose(m.policy_for_task(0).net(x), SubspaceOne(m).net(x), atol=1e-6)


def SubspaceOne(m):
    from rlrepro.continual.methods.csp import SubspaceActor

    return SubspaceActor(m, torch.tensor([[1.0, 0.0]]))


def test_csp_keeps_or_drops_the_new_anchor(fake_scenario):
    # The fake env's returns are negative, so (1 + threshold)·best_old is very negative for a huge threshold
    # (the new anchor always wins) and 0 for threshold −1 (it never does): the original's rule, signs included.
    result = trained("csp", fake_scenario, n_rollouts=2, n_estimations=2, n_samples=64, improvement_threshold=1e9)
    last = load_stage_methods(result.policies(), torch.device("cpu"))[-1]
    assert last.n_anchors == 2 and len(last.best_alphas) == 2
    result = trained("csp", fake_scenario, n_rollouts=2, n_estimations=2, n_samples=64, improvement_threshold=-1.0)
    last = load_stage_methods(result.policies(), torch.device("cpu"))[-1]
    assert last.n_anchors == 1 and len(last.best_alphas[1]) == 1  # dropped, the best old α kept
    steps = [r["value"] for r in result.rows if r["metric"] == "train_env_steps"]
    assert steps[0] < 256  # the AlphaSearch rollouts come out of the task's budget
