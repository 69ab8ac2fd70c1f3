"""The console of a plain `snakemake` run names each job and its log, not the job's whole JSON spec; the spec still
reaches every job as `params`, so reruns stay exactly as precise."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("quiet")
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    (dest / "profiles").symlink_to((ROOT / "profiles").readlink())  # the default profile, found as plain snakemake finds it
    return dest


def dry_run(workdir: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "preset=smoke", *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_plain_snakemake_prints_each_job_and_its_log_not_its_spec(checkout):
    out = dry_run(checkout)
    assert "Using workflow specific profile profiles/default" in out
    jobs = re.findall(r"^rule (train_run|train_sparse|evaluate_run):$", out, re.MULTILINE)
    assert len(jobs) >= 9, out[-2000:]
    # Each training job says where its log is ...
    assert "log: results/logs/train/halfcheetah/forgetting/ewc/seed0.log" in out
    # ... and no job's spec is echoed (it was several hundred characters of JSON per job).
    assert '"engine_version"' not in out and "--spec" not in out
    blocks = re.findall(r"^rule (?:train_run|train_sparse|evaluate_run):\n((?:    .*\n?)+)", out, re.MULTILINE)
    assert len(blocks) == len(jobs)
    assert max(len(b) for b in blocks) < 1200  # rule, output, log, wildcards, reason, resources


def test_the_spec_still_reaches_every_job_as_params(checkout):
    """Asked for (`-p`), the commands show the spec the job receives: the same slice as before, so a changed key still
    reruns exactly the jobs whose spec holds it (rerun triggers unchanged: `params` is one)."""
    out = dry_run(checkout, "-p")
    commands = [line for line in out.splitlines() if line.startswith("Shell command: python -m rlrepro train --spec")]
    assert len(commands) == 9
    assert all('"engine_version"' in c and '"method"' in c for c in commands)
    for profile in ("default", "slurm"):
        settings = yaml.safe_load((ROOT / "workflow/profiles" / profile / "config.v8+.yaml").read_text())
        assert "printshellcmds" not in settings
    default = yaml.safe_load((ROOT / "workflow/profiles/default/config.v8+.yaml").read_text())
    assert "params" in default["rerun-triggers"]
