"""workflow/scripts/reproduce_check.py on a real committed run: a re-run equal to the published rows is `identical`,
one changed value or another job spec is `DIFFERS`, and a published run without a re-run is listed as missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results/validation_sparse/sparse/hopper/dense/keep1/seed0/results.parquet"  # a committed study run


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)  # fmt: skip


def check(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(ROOT / "workflow/scripts/reproduce_check.py"), "--results-dir", "res",
                           "--out", "report.md"], cwd=cwd, env=env, capture_output=True, text=True)  # fmt: skip


def test_reproduce_check_tells_identical_changed_and_missing_reruns(tmp_path):
    assert RUN.exists(), f"the committed run {RUN} is missing"
    published = pd.read_parquet(RUN)
    second = published.assign(seed=1)  # a published run that has no re-run here
    (tmp_path / "res/tables").mkdir(parents=True)
    pd.concat([published, second]).to_parquet(tmp_path / "res/tables/sparse_results.parquet")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "tables")
    rerun = tmp_path / "res/sparse/hopper/dense/keep1/seed0/results.parquet"
    rerun.parent.mkdir(parents=True)
    shutil.copy2(RUN, rerun)

    proc = check(tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "report.md").read_text()
    assert "1 identical, 1 not re-run yet" in report
    rows = len(published[~published["metric"].isin(["train_time_s", "wall_time_s"])])
    assert re.search(rf"\| dense +\| hopper +\| +1 \| +0 \| identical +\| +{rows} \|", report), report

    changed = published.copy()
    i = changed.index[changed["metric"] == "eval_return"][-1]
    changed.loc[i, "value"] += 1e-9  # one last-bit-sized change in one evaluation
    changed.to_parquet(rerun)
    proc = check(tmp_path)
    assert proc.returncode == 1 and "1 DIFFERS" in proc.stdout and "1e-09" in proc.stdout

    published.assign(config_hash="another-spec").to_parquet(rerun)  # same numbers, another job spec
    proc = check(tmp_path)
    assert proc.returncode == 1 and "| DIFFERS" in proc.stdout and "| no " in proc.stdout
