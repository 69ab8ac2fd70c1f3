"""`compiled_check_every`: a job checks its compiled update against the eager one without changing its trajectory,
and stops when they part.

The default suite replaces torch.compile by doubles (a cold compile costs 30-60 s per graph on one core): a faithful
one, which returns `sac_update` itself, and a defective one, which moves a weight after the true update, standing in
for a compiler bug that cannot be produced on demand. The real compiled update under the check, through the CLI, is
in tests/test_compiled_update.py (`make test-compile`).
"""

from __future__ import annotations

import pytest
import torch
from test_bitwise import ACT, OBS
from test_compiled_update import SCENARIO, tensors
from test_continual_reference import SAC, trained_state

from rlrepro.engine import learner as learner_module
from rlrepro.engine.compiled_check import ENV_EVERY, ENV_TOLERANCE, CompiledCheck, CompiledUpdateMismatch, _departure, _terms
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.update import sac_update
from rlrepro.errors import ConfigError
from rlrepro.sparse.config import SparseSACConfig
from rlrepro.sparse.train import build_learner


def faithful_compiler_double(f, *args):
    """Test double for torch.compile's output (no compile in the default suite): the eager function itself."""
    return sac_update(f, *args)


def defective_compiler_double(f, *args):
    """Test double for a compiler bug: the true update, then the critic's first weight moved by 1%."""
    out = sac_update(f, *args)
    with torch.no_grad():
        args[1].params[0].mul_(1.01)
    return out


def rewire_learner(monkeypatch, compiled_double, check: CompiledCheck | None):
    """Rewire's first task (its update draws Gumbel noise from torch's default stream inside the function), with the
    learner's compiled function replaced by `compiled_double`."""
    monkeypatch.setattr(learner_module, "compile_update", lambda f, device: setattr(f, "compiled", compiled_double))
    _, method, _critic, trainer, generator = trained_state("rewire", SCENARIO, 0)
    learner = trainer.learner
    learner.compile, learner._update_fn, learner.compiled_check = True, None, check
    return learner, method, trainer, generator


def train(learner, method, trainer, generator, updates: int) -> None:
    for _ in range(updates):
        with method.learning_mode():
            batch = method.prepare_batch(trainer.replay.sample(SAC.batch_size, generator), generator)
            learner.update(batch, method.extra_loss)


def test_a_checked_job_follows_the_unchecked_trajectory_bit_for_bit(monkeypatch):
    runs = {}
    for every in (None, 3):
        check = CompiledCheck(every) if every else None
        learner, method, trainer, generator = rewire_learner(monkeypatch, faithful_compiler_double, check)
        train(learner, method, trainer, generator, 20)
        runs[every] = (tensors(method, learner.critic, learner.target_critic, learner), generator.get_state(),
                       torch.get_rng_state(), check)  # fmt: skip
        assert learner.compiled_check is check
    (plain, plain_gen, plain_rng, _), (checked, checked_gen, checked_rng, check) = runs[None], runs[3]
    # the state, the job's generator and torch's default stream (Rewire's Gumbel noise) all as if never checked
    assert all(torch.equal(a, b) for a, b in zip(plain, checked, strict=True))
    assert torch.equal(plain_gen, checked_gen) and torch.equal(plain_rng, checked_rng)
    # updates 0, 3, ..., 18 were checked, and 1 (the first call of the other graph: policy and target delay 2); the
    # double is the eager function, drawing the same noise: no departure
    summary = check.summary()
    assert summary["compiled_updates"] == 20 and summary["checks"] == 8 and summary["max_departure"] == 0.0, summary


def test_a_compiled_update_that_departs_from_the_eager_one_stops_the_job(monkeypatch):
    learner, method, trainer, generator = rewire_learner(monkeypatch, defective_compiler_double, CompiledCheck(5))
    with pytest.raises(CompiledUpdateMismatch, match=r"departs from the eager one by [\d.e+]+ of its step \('critic: "):
        train(learner, method, trainer, generator, 1)


def test_a_looser_tolerance_records_the_departure_instead(monkeypatch):
    check = CompiledCheck(2, tolerance=1e9)
    learner, method, trainer, generator = rewire_learner(monkeypatch, defective_compiler_double, check)
    train(learner, method, trainer, generator, 5)
    summary = check.summary()
    # updates 0, 2, 4 and 1 (the other graph's first call); moving a weight by 1% is many times its Adam step
    assert summary["checks"] == 4 and summary["worst_tensor"].startswith("critic: ") and summary["max_departure"] > 1


def departure(*tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """The departure of one part made of (before, compiled, eager) tensors."""
    return float(_departure(torch.stack([_terms(*t) for t in tensors])))


def test_a_departure_is_the_share_of_the_parts_step_the_two_updates_disagree_on():
    before = torch.tensor([1.0, 2.0, 3.0])
    eager = before + torch.tensor([1e-3, -1e-3, 0.0])
    assert departure((before, eager, eager)) == 0
    assert departure((before, eager + torch.tensor([0.0, 0.0, 1e-4]), eager)) == pytest.approx(0.1 / 2**0.5, rel=1e-2)
    assert departure((before, before + 1e-6, before)) == float("inf")  # moved what the eager update left alone
    nan = torch.tensor([float("nan"), 1.0, 1.0])
    assert departure((before, nan, nan)) == 0  # diverged alike
    assert departure((before, nan, eager)) == float("inf")  # one side alone
    # a tensor whose own step is ~0 by chance (log alpha's moment as its gradient nears it), rounded differently:
    # alone it would depart by 100% of its step; with its part's other tensor (log alpha itself, stepping ~lr) not
    moment, moment_eager = torch.tensor([0.5]), torch.tensor([0.5]) + 1e-7
    step_alone = departure((moment, moment_eager + 1e-7, moment_eager))
    alpha, alpha_eager = torch.tensor([0.0]), torch.tensor([-3e-4])
    with_part = departure((moment, moment_eager + 1e-7, moment_eager), (alpha, alpha_eager, alpha_eager))
    assert step_alone > 0.5 and with_part < 1e-3


def test_learners_take_the_jobs_check_only_when_they_compile():
    check = CompiledCheck(10)
    cfg = SparseSACConfig(hidden_sizes=[8, 8], batch_size=4)
    compiled = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator(), True, check)
    eager = build_learner(OBS, ACT, cfg, torch.device("cpu"), torch.Generator(), False, check)
    assert isinstance(compiled, SACLearner) and compiled.compiled_check is check and eager.compiled_check is None


@pytest.mark.parametrize(("every", "tolerance", "expected"), [
    ("", "", None), ("0", "", None), ("25", "", (25, 0.1)), ("25", "1e-2", (25, 1e-2)),
    ("x", "", "must be|invalid literal"), ("-3", "", "positive number of updates"), ("25", "0", "must be > 0"),
])  # fmt: skip
def test_the_environment_sets_the_check_and_refuses_bad_values(monkeypatch, every, tolerance, expected):
    monkeypatch.setenv(ENV_EVERY, every)
    monkeypatch.setenv(ENV_TOLERANCE, tolerance)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            CompiledCheck.from_environment()
        return
    check = CompiledCheck.from_environment()
    if expected is None:
        assert check is None
    else:
        assert (check.every, check.tolerance) == expected
