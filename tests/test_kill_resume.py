"""Fault injection on real processes: `rlrepro train` (Brax) and `rlrepro train-sparse` (MuJoCo) are SIGKILLed at
random epochs, inside Rewire's selection and PackNet's fine-tune, in the middle of a checkpoint write, during
evaluation and at a random moment from outside; each rerun resumes, and the final outputs equal those of an
uninterrupted run (policies `torch.equal`, Parquet rows equal but for wall times), with nothing resumable left.

The kills are real SIGKILLs: `RLREPRO_FAULT_KILL_AT` makes the process send one to itself at a named point
(rlrepro.faults), or the test sends one at a random time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from rlrepro.config import load_config

pytestmark = pytest.mark.resume  # real processes killed and restarted: `make test-resume`, in CI

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "halfcheetah/forgetting"


def launch(args: list[str], fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "RLREPRO_CHECKPOINT_INTERVAL_S": "0"}  # a checkpoint at every epoch / episode end
    env.pop("RLREPRO_FAULT_KILL_AT", None)
    if fault:
        env["RLREPRO_FAULT_KILL_AT"] = fault
    return subprocess.Popen([sys.executable, "-m", "rlrepro", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def finish(proc: subprocess.Popen, expect_killed: bool) -> str:
    _, err = proc.communicate(timeout=600)
    if expect_killed:
        assert proc.returncode == -signal.SIGKILL, f"expected a SIGKILL, got rc {proc.returncode}: {err[-2000:]}"
    else:
        assert proc.returncode == 0, err[-3000:]
    return err


def kill_at_random_time(proc: subprocess.Popen, ckpt: Path, rng: random.Random) -> None:
    """From outside, as a scheduler would: after this process wrote its first checkpoint, at a random delay."""
    path = ckpt / "state.pt"
    before = path.stat().st_mtime_ns if path.exists() else 0
    deadline = time.monotonic() + 300
    while (not path.exists() or path.stat().st_mtime_ns == before) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.0))
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    finish(proc, expect_killed=True)


def without_wall_time(df: pd.DataFrame) -> pd.DataFrame:
    df = df[~df["metric"].isin(["train_time_s", "wall_time_s"])]
    return df.drop(columns=[c for c in df.columns if c.endswith("wall_time_s")]).reset_index(drop=True)


@pytest.mark.parametrize("method", ["rewire", "packnet"])
def test_continual_job_killed_anywhere_resumes_to_identical_outputs(method, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(load_config(ROOT / "config.yaml", {"preset": "smoke"}).train_spec(method, SCENARIO, 0)))
    phase = {"rewire": "phase:rewire-selection@1", "packnet": "phase:packnet-finetune@1"}[method]

    def args(run: str) -> list[str]:
        return [
            "train",
            "--spec",
            f"@{spec}",
            "--run-dir",
            str(tmp_path / run),
            "--checkpoint-dir",
            str(tmp_path / f"{run}_ckpt"),
        ]

    reference = launch(args("reference"))  # uninterrupted, alongside the killed job (two cores)
    rng = random.Random(method)
    ckpt, run = tmp_path / "killed_ckpt", tmp_path / "killed"
    finish(launch(args("killed"), f"epoch@{rng.randint(5, 40)}"), expect_killed=True)
    finish(launch(args("killed"), f"write:state.pt@{rng.randint(2, 6)}"), expect_killed=True)  # mid-write
    kill_at_random_time(launch(args("killed")), ckpt, rng)
    finish(launch(args("killed"), phase), expect_killed=True)  # inside the selection / the fine-tune
    assert (ckpt / "state.pt").exists() and not (run / "meta.json").exists()
    err = finish(launch(args("killed")), expect_killed=False)
    finish(reference, expect_killed=False)

    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumed_from"] is not None, err[-2000:]
    assert not ckpt.exists() and not (tmp_path / "reference_ckpt").exists()  # nothing resumable left behind
    ref = torch.load(tmp_path / "reference" / "policies.pt", weights_only=True)
    got = torch.load(run / "policies.pt", weights_only=True)
    for a, b in zip(ref["stages"], got["stages"], strict=True):
        assert a["structure"] == b["structure"]
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    pd.testing.assert_frame_equal(without_wall_time(pd.read_parquet(tmp_path / "reference" / "train.parquet")),
                                  without_wall_time(pd.read_parquet(run / "train.parquet")))  # fmt: skip

    if method == "packnet":  # the evaluation job killed while writing its output, then rerun
        eval_spec = json.dumps(load_config(ROOT / "config.yaml", {"preset": "smoke"}).eval_spec(SCENARIO, 0))
        for name, fault in (("killed", "write:results.parquet"), ("killed", None), ("reference", None)):
            out = str(tmp_path / name / "results.parquet")
            proc = launch(["evaluate", "--spec", eval_spec, "--run-dir", str(tmp_path / name), "--out", out], fault)
            finish(proc, expect_killed=fault is not None)
            assert (tmp_path / name / "results.parquet").exists() == (fault is None)
        pd.testing.assert_frame_equal(
            without_wall_time(pd.read_parquet(tmp_path / "reference" / "results.parquet"))[
                ["stage", "task", "metric", "value"]
            ],
            without_wall_time(pd.read_parquet(run / "results.parquet"))[["stage", "task", "metric", "value"]],
        )


def test_sparse_job_killed_anywhere_resumes_to_identical_outputs(tmp_path):
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec("rlx2", "halfcheetah", 0.05, 0)
    spec["sac"].update(total_steps=1500, seed_steps=200)
    spec["evaluation"].update(every_steps=300, episodes=1)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))

    def args(run: str) -> list[str]:
        return ["train-sparse", "--spec", f"@{path}", "--run-dir", str(tmp_path / run), "--checkpoint-dir",
                str(tmp_path / f"{run}_ckpt")]  # fmt: skip

    reference = launch(args("reference"))
    rng = random.Random(7)
    ckpt, run = tmp_path / "killed_ckpt", tmp_path / "killed"
    for fault in (f"phase:evaluation@{rng.randint(2, 3)}", f"write:state.pt@{rng.randint(3, 6)}"):
        finish(launch(args("killed"), fault), expect_killed=True)
        assert (ckpt / "state.pt").exists() and not (run / "meta.json").exists()
    kill_at_random_time(launch(args("killed")), ckpt, rng)
    finish(launch(args("killed")), expect_killed=False)
    finish(reference, expect_killed=False)
    assert json.loads((run / "meta.json").read_text())["resumed_from_step"] > 0
    assert not ckpt.exists()
    keep = ["step", "metric", "layer", "value"]
    pd.testing.assert_frame_equal(without_wall_time(pd.read_parquet(tmp_path / "reference" / "results.parquet"))[keep],
                                  without_wall_time(pd.read_parquet(run / "results.parquet"))[keep])  # fmt: skip
    ref, got = (torch.load(tmp_path / r / "model.pt", weights_only=True) for r in ("reference", "killed"))
    assert all(torch.equal(ref["actor"][k], got["actor"][k]) for k in ref["actor"])
    assert all(torch.equal(ref["critic"][k], got["critic"][k]) for k in ref["critic"])
