"""Same seed twice on CPU gives bit-identical training and evaluation on real Brax (SB3-style determinism test)."""

import torch

from rlrepro.continual import EvalSpec, TrainSpec, evaluate, train
from rlrepro.continual.config import EvalConfig, SACConfig
from rlrepro.engine.config import NetworkConfig
from rlrepro.scenarios import get_scenario, scale_scenario

SCENARIO = scale_scenario(
    get_scenario("halfcheetah/forgetting"),
    {"max_tasks": 2, "steps_per_task": 96, "n_train_envs": 4, "n_eval_envs": 4, "episode_length": 20},
)


def run(seed: int):
    spec = TrainSpec(
        method="ft_n",
        scenario=SCENARIO,
        seed=seed,
        sac=SACConfig(batch_size=32, initial_buffer_size=32),
        network=NetworkConfig(hidden_sizes=(32, 32)),
    )
    result = train(spec)
    rows = evaluate(EvalSpec(SCENARIO, seed=seed, evaluation=EvalConfig(n_rollouts=1)), result.policies())
    return result, [r["value"] for r in rows]


def test_same_seed_twice_is_bit_identical_and_another_seed_differs():
    a, eval_a = run(0)
    b, eval_b = run(0)
    _, eval_c = run(1)
    for sa, sb in zip(a.stages, b.stages, strict=True):
        assert all(torch.equal(sa["state"][k], sb["state"][k]) for k in sa["state"])
    assert eval_a == eval_b
    assert [r["value"] for r in a.rows if r["metric"] == "train_return"] == [
        r["value"] for r in b.rows if r["metric"] == "train_return"
    ]
    assert eval_a != eval_c
