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


def test_sac_update_prints_a_ratio_per_flavour_and_shape():
    out = run("sac_update.py", "--hidden", "32,32", "32,32,32", "--updates", "3", "--rounds", "1")
    rows = re.findall(r"^\s+(sparse|continual)\s+(32×32(?:×32)?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
    assert [r[:2] for r in rows] == [("sparse", "32×32"), ("sparse", "32×32×32"), ("continual", "32×32"),
                                     ("continual", "32×32×32")]  # fmt: skip
    for _, _, ours, bound, ratio in rows:
        assert float(ratio) == pytest.approx(float(ours) / float(bound), abs=0.01)


@pytest.mark.slow
def test_brax_collection_prints_policy_and_raw_rates():
    out = run("brax_collection.py", "--envs", "4", "--steps", "3", "--rounds", "1")
    rates = dict(re.findall(r"^\s*(raw|wrapper|policy):\s+(\d+) env steps/s", out, re.MULTILINE))
    assert set(rates) == {"raw", "wrapper", "policy"} and all(int(v) > 0 for v in rates.values())
    assert re.search(r"policy-in-the-loop / raw: [\d.]+", out)
