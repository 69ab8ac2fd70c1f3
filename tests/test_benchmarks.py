"""The benchmark scripts still run and print their ratios (tiny settings; the numbers themselves are not tested)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_sac_update_prints_a_ratio_per_flavour_and_shape_and_the_gemm_floor():
    # eager only: the compiled variant would pay a compile per case (tests/test_compiled_update.py covers it)
    out = run("sac_update.py", "--hidden", "32,32", "32,32,32", "--updates", "4", "--rounds", "1",
              "--variants", "eager", "--gemm-floor")  # fmt: skip
    rows = re.findall(r"^\s+(sparse|continual)\s+(32×32(?:×32)?)\s+(eager|compiled)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
                      r"\s+([\d.]+)$", out, re.MULTILINE)  # fmt: skip
    cases = [(f, s) for f in ("sparse", "continual") for s in ("32×32", "32×32×32")]
    assert [r[:3] for r in rows] == [(f, s, "eager") for f, s in cases]
    for _, _, _, ours, bound, ratio, _ in rows:
        assert float(ratio) == pytest.approx(float(ours) / float(bound), abs=0.01)
    floor = re.findall(r"^\s+(sparse|continual)\s+(32×32(?:×32)?)" + r"\s+([\d.]+)" * 6 + "$",
                       out.split("GEMM floor", 1)[1], re.MULTILINE)  # fmt: skip
    assert [r[:2] for r in floor] == cases
    for _, _, update, gemm, share, jax_ms, if_free, _ in floor:
        # the GEMMs replayed alone are part of the update, so they take less time than it
        assert 0 < float(gemm) < float(update) and float(share) == pytest.approx(float(gemm) / float(update), abs=0.01)
        assert float(if_free) == pytest.approx(float(jax_ms) / float(gemm), rel=0.05)


def test_sac_update_variants_switch_the_engine_compile():
    """`eager` and `compiled` are the learner's engine.compile false / true (its update function rebuilt); an
    unknown name is refused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import sac_update
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import torch

    from rlrepro.continual.config import SACConfig, learner_config
    from rlrepro.engine.config import NetworkConfig
    from rlrepro.engine.learner import SACLearner
    from rlrepro.engine.networks import GaussianActor, TwinCritic

    net = NetworkConfig(hidden_sizes=(8,))
    learner = SACLearner(GaussianActor(3, 2, net), TwinCritic(3, 2, net), learner_config(SACConfig(), 2),
                         torch.Generator().manual_seed(0))  # fmt: skip
    sac_update.apply_variant(learner, "compiled")
    assert learner.compile and learner._update_fn is None
    sac_update.apply_variant(learner, "eager")
    assert not learner.compile
    with pytest.raises(ValueError, match="unknown variant"):
        sac_update.apply_variant(learner, "bogus")


@pytest.mark.slow
def test_brax_collection_prints_policy_and_raw_rates():
    out = run("brax_collection.py", "--envs", "4", "--steps", "3", "--rounds", "1")
    rates = dict(re.findall(r"^\s*(raw|wrapper|policy):\s+(\d+) env steps/s", out, re.MULTILINE))
    assert set(rates) == {"raw", "wrapper", "policy"} and all(int(v) > 0 for v in rates.values())
    assert re.search(r"policy-in-the-loop / raw: [\d.]+", out)
