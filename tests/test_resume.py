"""The GPU preflight fails loudly without a GPU, and local GPU jobs claim distinct devices (kill-and-resume of
training jobs: tests/test_kill_resume.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlrepro.config import load_config
from rlrepro.errors import ConfigError
from rlrepro.gpu import claim_device, preflight

ROOT = Path(__file__).resolve().parents[1]


def sparse_spec(tmp_path: Path) -> Path:
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec("rlx2", "halfcheetah", 0.05, 0)
    spec["sac"].update(total_steps=2000, seed_steps=200)
    spec["evaluation"].update(every_steps=500, episodes=1)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_gpu_preflight_fails_loudly_when_no_gpu_is_visible(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    preflight("cpu")
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        preflight("cuda")
    spec = json.loads(sparse_spec(tmp_path).read_text())
    spec["device"] = "cuda"
    cmd = [sys.executable, "-m", "rlrepro", "train-sparse", "--spec", json.dumps(spec), "--run-dir", str(tmp_path / "r")]
    # With CUDA_VISIBLE_DEVICES set (a scheduler's choice), and without it (a local job that would claim a GPU): both
    # get the preflight's reason, never the GPU claim's "all 0 GPUs are held by other rlrepro jobs".
    local = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    for env in ({**os.environ, "CUDA_VISIBLE_DEVICES": "0"}, local):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert proc.returncode == 2 and "torch sees no CUDA GPU" in proc.stderr, proc.stderr[-1000:]
        assert "GPUs are held" not in proc.stderr
        assert not (tmp_path / "r").exists()  # nothing written before the check


def test_local_gpu_jobs_claim_distinct_devices_with_fake_gpu_count(tmp_path, monkeypatch):
    """Test double: torch.cuda.device_count is faked to 2 (there is no GPU here); the lock logic is real."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert claim_device("cpu") == "cpu" and claim_device("cuda:1") == "cuda:1"
    script = (
        "import sys, torch; torch.cuda.device_count = lambda: 2\n"
        "from rlrepro.gpu import claim_device; from pathlib import Path\n"
        "print(claim_device('cuda', Path(sys.argv[1])), flush=True); sys.stdin.read()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    cmd = [sys.executable, "-c", script, str(tmp_path)]
    holders = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    devices = sorted(h.stdout.readline().strip() for h in holders)
    assert devices == ["cuda:0", "cuda:1"]
    with pytest.raises(ConfigError, match="all 2 GPUs are held"):
        claim_device("cuda", tmp_path)
    for h in holders:
        h.communicate("")
    assert claim_device("cuda", tmp_path) == "cuda:0"  # released when the jobs exit
