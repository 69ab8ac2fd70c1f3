"""Resume checkpoints of the continual suite on the fake env, every method: a job interrupted at any epoch, inside
any end phase or right after a checkpoint resumes bit for bit; a checkpoint of another spec, a corrupt file and
the stage files of older engines are never resumed."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter

import pytest
import torch
from conftest import fake_env_factory

from rlrepro import ENGINE_VERSION, faults
from rlrepro.continual import TrainResult, TrainSpec, train
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.registry import method_names
from rlrepro.engine.config import NetworkConfig

NET = NetworkConfig(hidden_sizes=(8, 8))
SAC = SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1)
FAST_HP = {"packnet": {"finetune_updates": 20}, "csp": {"n_estimations": 2, "n_samples": 64, "n_rollouts": 2}}
END_PHASE = {"rewire": "phase:rewire-selection", "packnet": "phase:packnet-finetune", "ewc": "phase:ewc-fisher",
             "csp": "phase:csp-alpha-search"}  # fmt: skip


class Interrupted(Exception):
    """Raised in place of the SIGKILL that a real `RLREPRO_FAULT_KILL_AT` would send (in-process test)."""


def spec_for(method: str, scenario, **sac) -> TrainSpec:
    return TrainSpec(method, scenario, seed=5, method_hp=FAST_HP.get(method, {}), sac=dataclasses.replace(SAC, **sac),
                     network=NET)  # fmt: skip


def interrupt_at(monkeypatch, point: str, nth: int) -> None:
    seen: Counter[str] = Counter()

    def reached(name: str) -> None:
        if name == point:
            seen[name] += 1
            if seen[name] == nth:
                raise Interrupted(f"{point}@{nth}")

    monkeypatch.setattr(faults, "reached", reached)


def comparable_rows(result: TrainResult) -> list[dict]:
    return [r for r in result.rows if r["metric"] != "train_time_s"]  # wall time is the one thing allowed to differ


def assert_identical(a: TrainResult, b: TrainResult) -> None:
    assert len(a.stages) == len(b.stages)
    for sa, sb in zip(a.stages, b.stages, strict=True):
        assert sa["structure"] == sb["structure"]
        assert sa["state"].keys() == sb["state"].keys()
        for key in sa["state"]:
            assert torch.equal(sa["state"][key], sb["state"][key]), key
    assert comparable_rows(a) == comparable_rows(b)


@pytest.mark.parametrize("method", method_names())
def test_interrupted_anywhere_resumes_bit_identically(method, fake_scenario, tmp_path, monkeypatch):
    spec = spec_for(method, fake_scenario)
    reference = train(spec, env_factory=fake_env_factory)
    rng = random.Random(method)
    # Three interruptions in one job's life: two at random epochs, then inside the method's next end phase (Rewire's
    # selection runs from task 1 on) or right after a checkpoint write; each rerun resumes from the last checkpoint
    # (taken at every epoch with interval 0).
    last = (END_PHASE[method], 1) if method in END_PHASE else ("checkpoint-saved", rng.randint(1, 5))
    points = [("epoch", rng.randint(3, 50)), ("epoch", rng.randint(3, 40)), last]
    resumed = []
    for point, nth in points:
        interrupt_at(monkeypatch, point, nth)
        with pytest.raises(Interrupted):
            train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
        monkeypatch.undo()
        assert (tmp_path / "state.pt").exists()
        resumed.append(torch.load(tmp_path / "state.pt", weights_only=True)["payload"]["phase"])
    final = train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
    assert final.resumed_from is not None
    assert resumed[0] == "train"  # the first interruption came mid-task: a mid-task checkpoint was resumed
    assert_identical(reference, final)


def test_checkpoint_of_another_spec_is_ignored_and_removed(fake_scenario, tmp_path, caplog):
    old, new = spec_for("ft_1", fake_scenario), spec_for("ft_1", fake_scenario, lr_policy=1e-2)
    train(old, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    assert (tmp_path / "state.pt").exists()
    with caplog.at_level(logging.WARNING, logger="rlrepro"):
        rerun = train(new, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    assert rerun.resumed_from is None
    assert "ignored and removed: written by another job spec: spec_hash" in caplog.text
    assert_identical(rerun, train(new, env_factory=fake_env_factory))  # what a fresh job with the new spec gives
    stale, fresh = train(old, env_factory=fake_env_factory).stages[-1]["state"], rerun.stages[-1]["state"]
    assert any(not torch.equal(stale[k], fresh[k]) for k in fresh)  # the change matters: reusing it would be stale


def test_engine_version_change_invalidates_checkpoints(fake_scenario, tmp_path, monkeypatch, caplog):
    spec = spec_for("ft_1", fake_scenario)
    train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    monkeypatch.setattr("rlrepro.checkpoint.ENGINE_VERSION", "9.9.9")
    with caplog.at_level(logging.WARNING, logger="rlrepro"):
        assert train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path).resumed_from is None
    assert f"engine_version '{ENGINE_VERSION}' (checkpoint) != '9.9.9' (this job)" in caplog.text


def test_truncated_checkpoint_and_killed_write_debris_start_clean(fake_scenario, tmp_path, caplog):
    spec = spec_for("ft_n", fake_scenario)
    reference = train(spec, env_factory=fake_env_factory)
    train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    path = tmp_path / "state.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn file (e.g. a full disk)
    (tmp_path / ".state.pt.abc123.tmp").write_bytes(b"partial")  # what a kill during a write leaves
    (tmp_path / "stage000.pt").write_bytes(b"old format")  # an older engine's untagged stage checkpoint
    with caplog.at_level(logging.WARNING, logger="rlrepro"):
        result = train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path)
    assert result.resumed_from is None
    assert "is unreadable" in caplog.text and "starting clean" in caplog.text
    assert "left by a killed write" in caplog.text and "older engine" in caplog.text
    assert not (tmp_path / ".state.pt.abc123.tmp").exists() and not (tmp_path / "stage000.pt").exists()
    assert_identical(reference, result)
