"""A job refuses to run code other than the checkout's the DAG was built from (rlrepro.identity), before any work,
with a message that names both; meta.json records both identities."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlrepro import ENGINE_VERSION
from rlrepro.config import load_config
from rlrepro.errors import ConfigError
from rlrepro.identity import SOURCE_DIR, check_job_matches_checkout, checkout_environment, job_identity

ROOT = Path(__file__).resolve().parents[1]


def run_job(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec("dense", "halfcheetah", 1.0, 0)
    cmd = [sys.executable, "-m", "rlrepro", "train-sparse", "--spec", json.dumps(spec), "--run-dir", str(tmp_path / "run")]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def test_other_engine_version_fails_before_work_naming_both(tmp_path):
    proc = run_job(tmp_path, RLREPRO_EXPECT_ENGINE="9.9.9")
    assert proc.returncode == 2
    assert f"this job runs engine {ENGINE_VERSION}" in proc.stderr and "checkout with engine 9.9.9" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_other_source_tree_fails_before_work_naming_both(tmp_path):
    """As a stale image would: the job's tree comes from RLREPRO_SOURCE_TREE, as the image's ENV sets it."""
    env = {"RLREPRO_EXPECT_ENGINE": ENGINE_VERSION, "RLREPRO_EXPECT_SOURCE_TREE": "a" * 40,
           "RLREPRO_SOURCE_TREE": "b" * 40, "RLREPRO_GIT_COMMIT": "c0ffee", "RLREPRO_EXPECT_COMMIT": "beef"}  # fmt: skip
    proc = run_job(tmp_path, **env)
    assert proc.returncode == 2
    assert "engine source bbbbbbbbbbbb (commit c0ffee)" in proc.stderr
    assert "checkout has source aaaaaaaaaaaa (commit beef)" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_the_checkout_itself_passes_and_unverifiable_images_warn(monkeypatch, caplog):
    for key, value in checkout_environment(SOURCE_DIR).items():
        monkeypatch.setenv(key, value)
    check_job_matches_checkout()  # the same code: nothing to say
    identity = job_identity()
    assert identity["source_tree"] == identity["checkout_source_tree"]
    if identity["source_tree"] == "unknown":
        pytest.skip("not a git checkout")
    monkeypatch.setattr("rlrepro.identity.source_tree", lambda: "unknown")  # an image built without the build arg
    check_job_matches_checkout()
    assert "cannot verify" in caplog.text
    monkeypatch.setenv("RLREPRO_EXPECT_ENGINE", "0.0.0")
    with pytest.raises(ConfigError, match="rebuild the image from this checkout"):
        check_job_matches_checkout()


def test_a_commit_to_src_while_a_local_workflow_runs_says_to_run_snakemake_again(monkeypatch):
    """No image: the job runs the checkout, whose src/ tree moved since Snakemake exported the expectation."""
    for key, value in checkout_environment(SOURCE_DIR).items():
        monkeypatch.setenv(key, value)
    if job_identity()["source_tree"] == "unknown":
        pytest.skip("not a git checkout")
    monkeypatch.delenv("RLREPRO_SOURCE_TREE", raising=False)
    monkeypatch.setenv("RLREPRO_EXPECT_SOURCE_TREE", "a" * 40)
    with pytest.raises(ConfigError, match="run snakemake again to go on with the new one"):
        check_job_matches_checkout()



def test_meta_records_the_code_a_job_started_with_not_the_commit_at_its_end(tmp_path, monkeypatch):
    """A commit made while a job runs (a finished run committed, src/ changed) moves the checkout; the job still runs
    the code it loaded, and its meta.json says so (the commit changes while this in-process job trains)."""
    import rlrepro.sparse.train as sparse_train
    from rlrepro.cli import main

    for key in checkout_environment(SOURCE_DIR):
        monkeypatch.delenv(key, raising=False)  # a job started by hand: nothing to compare
    monkeypatch.setenv("RLREPRO_GIT_COMMIT", "c0ffee")
    monkeypatch.setenv("RLREPRO_SOURCE_TREE", "a" * 40)
    real = sparse_train.train_sparse

    def train_while_someone_commits(*args, **kwargs):
        monkeypatch.setenv("RLREPRO_GIT_COMMIT", "beef")
        monkeypatch.setenv("RLREPRO_SOURCE_TREE", "b" * 40)
        return real(*args, **kwargs)

    monkeypatch.setattr(sparse_train, "train_sparse", train_while_someone_commits)
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec("dense", "halfcheetah", 1.0, 0)
    spec["sac"].update(total_steps=300, seed_steps=200, hidden_sizes=[16, 16], batch_size=16)
    spec["evaluation"].update(every_steps=300, episodes=1)
    assert main(["train-sparse", "--spec", json.dumps(spec), "--run-dir", str(tmp_path / "run")]) == 0
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert (meta["git_commit"], meta["source_tree"]) == ("c0ffee", "a" * 40)
    assert job_identity()["git_commit"] == "beef"  # what the end of the job would have recorded
