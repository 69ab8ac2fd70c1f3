"""Resume on the real environments, judged by outputs only (policies, model, result rows), never by a checkpoint's
internals:

- every continual method, interrupted at random epochs and inside its end phase, resumes bit for bit on real Brax
  HalfCheetah (its env state restored mid-episode);
- a Continual World job (real MetaWorld v3) and DAPD and RiGL jobs (real MuJoCo) are SIGKILLed as real processes at
  random points and rerun, and their outputs equal those of an uninterrupted run: Continual World restores
  MetaWorld's own state (object and goal RNG, MjData), DAPD its pathway masks and whether they are frozen, RiGL its
  grown and pruned topology.

Budgets are tiny on purpose (a few hundred steps, small networks): what is tested is the restore, not learning."""

from __future__ import annotations

import json
import logging
import pickle
import random
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_kill_resume import finish, kill_at_random_time, launch, without_wall_time

from rlrepro import faults
from rlrepro.config import load_config
from rlrepro.continual import TrainResult, TrainSpec, train
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.registry import method_names
from rlrepro.engine.config import NetworkConfig
from rlrepro.envs.metaworld_backend import MetaWorldVecEnv
from rlrepro.scenarios import TaskSpec, get_scenario, scale_scenario

ROOT = Path(__file__).resolve().parents[1]
BRAX = scale_scenario(
    get_scenario("halfcheetah/forgetting"),
    {"max_tasks": 2, "steps_per_task": 128, "n_train_envs": 4, "n_eval_envs": 4, "episode_length": 20},
)
FAST_HP = {"packnet": {"finetune_updates": 20}, "csp": {"n_estimations": 2, "n_samples": 64, "n_rollouts": 2},
           "rewire": {"selection_rollouts": 2}}  # fmt: skip
END_PHASE = {"rewire": "phase:rewire-selection", "packnet": "phase:packnet-finetune", "ewc": "phase:ewc-fisher",
             "csp": "phase:csp-alpha-search"}  # fmt: skip


class Interrupted(Exception):
    """Raised in place of the SIGKILL that `RLREPRO_FAULT_KILL_AT` would send (in-process, so nine methods stay cheap;
    the real SIGKILLs are below and in tests/test_kill_resume.py)."""


def assert_same(a, b, where: str = "") -> None:
    """Equal nested outputs: tensors bit for bit, everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def comparable(result: TrainResult) -> tuple[list, list]:
    return result.stages, [r for r in result.rows if r["metric"] != "train_time_s"]  # wall time may differ


@pytest.mark.parametrize("method", method_names())
def test_every_method_resumes_bit_identically_on_real_brax(method, tmp_path, monkeypatch, caplog):
    spec = TrainSpec(method, BRAX, seed=2, method_hp=FAST_HP.get(method, {}), network=NetworkConfig(hidden_sizes=(8, 8)),
                     sac=SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1))  # fmt: skip
    reference = train(spec)
    rng = random.Random(method)
    # Two interruptions at random epochs (a task has 14-24; 20-step episodes of 4 envs: the Brax state is mid-episode),
    # then one inside the method's end phase or right after a checkpoint write.
    last = (END_PHASE[method], 1) if method in END_PHASE else ("checkpoint-saved", rng.randint(1, 5))
    with caplog.at_level(logging.INFO, logger="rlrepro"):
        for point, nth in [("epoch", rng.randint(3, 10)), ("epoch", rng.randint(3, 10)), last]:
            seen = {"n": 0}

            def reached(name: str, point=point, nth=nth, seen=seen) -> None:
                if name == point:
                    seen["n"] += 1
                    if seen["n"] == nth:
                        raise Interrupted(f"{point}@{nth}")

            monkeypatch.setattr(faults, "reached", reached)
            with pytest.raises(Interrupted):
                train(spec, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
            monkeypatch.undo()
        final = train(spec, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
    assert final.resumed_from is not None
    # a rerun resumed mid-task, its Brax envs mid-episode (not only from a task boundary)
    assert re.search(rf"resuming {method} at task \d, phase train, [1-9]\d* env steps into the task", caplog.text)
    assert_same(comparable(reference), comparable(final))


def test_metaworld_state_restored_into_a_fresh_env_continues_identically():
    """`MetaWorldVecEnv.get_state` → pickle → `set_state` on a newly built env (what a resumed job does), mid-episode
    and across episode ends (new object and goal from the env's RNG; window-close moves its window and goal in the
    model): the next steps are the same as the original env's."""
    scenario = scale_scenario(get_scenario("continual_world/t1"), {"episode_length": 15})
    actions = torch.rand(50, 1, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for name in ("window-close", "push"):
        task = TaskSpec(name, {"env": f"{name}-v3"})
        env = MetaWorldVecEnv(scenario, task, n_envs=1, device=torch.device("cpu"))
        env.reset(4)
        for a in actions[:20]:
            env.step(a)
        saved = pickle.dumps(env.get_state())
        fresh = MetaWorldVecEnv(scenario, task, n_envs=1, device=torch.device("cpu"))
        fresh.set_state(pickle.loads(saved))
        for a in actions[20:]:
            want, got = env.step(a), fresh.step(a)
            for field in ("obs", "reward", "done", "truncated", "final_obs", "success"):
                assert torch.equal(getattr(want, field), getattr(got, field)), (name, field)


def continual_world_spec(method: str) -> dict:
    """Two Continual World tasks (push, window-close) on real MetaWorld v3, shrunk: 30-step episodes so object and
    goal are redrawn from the env's RNG several times per task, policy actions after 5 random ones."""
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).train_spec(method, "continual_world/t1", 0)
    spec["scenario"].update(steps_per_task=180, episode_length=30)
    spec["sac"].update(n_timesteps=10, inner_epochs=4, batch_size=16, initial_buffer_size=32, start_steps=5)
    spec["network"]["hidden_sizes"] = spec["critic_network"]["hidden_sizes"] = [16, 16]
    return spec


@pytest.mark.resume
def test_continual_world_job_killed_anywhere_resumes_to_identical_outputs(tmp_path):
    """Real MetaWorld env state (physics, the model fields resets move, the env's Python attributes: RNG, goal, object
    positions, path length) through real SIGKILLs: at a random moment, at a random epoch, in a checkpoint write."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(continual_world_spec("ft_1")))

    def args(run: str) -> list[str]:
        return ["train", "--spec", f"@{spec}", "--run-dir", str(tmp_path / run),
                "--checkpoint-dir", str(tmp_path / f"{run}_ckpt")]  # fmt: skip

    reference = launch(args("reference"))
    rng = random.Random(11)
    ckpt, run = tmp_path / "killed_ckpt", tmp_path / "killed"
    # The random moment first, while most of the job is still ahead (a task has about 17 epochs); then each rerun is
    # killed some epochs after it resumed.
    kill_at_random_time(launch(args("killed")), ckpt, rng)
    finish(launch(args("killed"), f"epoch@{rng.randint(3, 8)}"), expect_killed=True)
    finish(launch(args("killed"), f"write:state.pt@{rng.randint(3, 8)}"), expect_killed=True)
    assert (ckpt / "state.pt").exists() and not (run / "meta.json").exists()
    err = finish(launch(args("killed")), expect_killed=False)
    finish(reference, expect_killed=False)
    assert json.loads((run / "meta.json").read_text())["resumed_from"] is not None, err[-2000:]
    assert not ckpt.exists()
    assert_same(torch.load(tmp_path / "reference" / "policies.pt", weights_only=True),
                torch.load(run / "policies.pt", weights_only=True))  # fmt: skip
    pd.testing.assert_frame_equal(without_wall_time(pd.read_parquet(tmp_path / "reference" / "train.parquet")),
                                  without_wall_time(pd.read_parquet(run / "train.parquet")))  # fmt: skip


def sparse_spec(method: str) -> dict:
    """900 steps in 100-step episodes (a checkpoint at each episode end), evaluations every 300 steps, 64-wide
    networks. DAPD: masks from 200 random steps, rescored at every episode start with a two-score moving average
    until the first evaluation freezes them (threshold −1e9). RiGL: a topology update every 100 updates."""
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).sparse.spec(method, "halfcheetah", 0.05, 0)
    spec["sac"].update(total_steps=900, seed_steps=200, hidden_sizes=[64, 64], batch_size=64)
    spec["evaluation"].update(every_steps=300, episodes=1)
    if method == "dapd":
        spec["method_hp"].update(mask_update_mavg=2, initial_mask_steps=200, ips_threshold=-1.0e9)
    return spec


@pytest.mark.resume
@pytest.mark.parametrize("method", ["dapd", "rigl"])
def test_dapd_and_rigl_jobs_killed_mid_run_resume_to_identical_outputs(method, tmp_path):
    """DAPD: killed inside the first evaluation (the last checkpoint, at step 200, has the masks still moving), then
    mid-write at step 400 (the surviving checkpoint at step 300 has them frozen: resuming them as moving would rescore
    them at every episode). RiGL: killed in an evaluation, then mid-write; its drop/grow topology (masks, update
    counters) must continue exactly. (Kills at a random moment of the same loop: RLx2 in tests/test_kill_resume.py.)"""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(sparse_spec(method)))

    def args(run: str) -> list[str]:
        return ["train-sparse", "--spec", f"@{path}", "--run-dir", str(tmp_path / run), "--checkpoint-dir",
                str(tmp_path / f"{run}_ckpt")]  # fmt: skip

    reference = launch(args("reference"))
    rng = random.Random(method)
    ckpt, run = tmp_path / "killed_ckpt", tmp_path / "killed"
    faults_in_order = {"dapd": ["phase:evaluation@1", "write:state.pt@2"],
                       "rigl": [f"phase:evaluation@{rng.randint(1, 2)}", f"write:state.pt@{rng.randint(2, 3)}"]}  # fmt: skip
    for fault in faults_in_order[method]:
        finish(launch(args("killed"), fault), expect_killed=True)
        assert (ckpt / "state.pt").exists() and not (run / "meta.json").exists()
    finish(launch(args("killed")), expect_killed=False)
    finish(reference, expect_killed=False)
    assert json.loads((run / "meta.json").read_text())["resumed_from_step"] > 0
    assert not ckpt.exists()
    ref = without_wall_time(pd.read_parquet(tmp_path / "reference" / "results.parquet"))
    got = without_wall_time(pd.read_parquet(run / "results.parquet"))
    keep = ["step", "metric", "layer", "value"]
    pd.testing.assert_frame_equal(ref[keep], got[keep])
    assert_same(torch.load(tmp_path / "reference" / "model.pt", weights_only=True),
                torch.load(run / "model.pt", weights_only=True))  # fmt: skip
    # The runs did what the kills were aimed at: DAPD rescored its masks, then froze them at step 300; RiGL changed
    # its topology.
    metrics = set(ref["metric"])
    if method == "dapd":
        assert ref.loc[ref.metric == "mask_frozen_at", "value"].tolist() == [300.0]
        assert (ref.loc[ref.metric == "actor_mask_change", "step"] < 300).all() and "actor_mask_change" in metrics
    else:
        assert ref.loc[ref.metric == "topology_updates", "value"].max() > 0
