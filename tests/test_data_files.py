"""Runs and checkpoints are data, not code: every torch file the pipeline reads back (policies.pt, model.pt, state.pt)
is loaded with `torch.load(weights_only=True)`. A file whose pickle would run a command on load is refused by
evaluation (`rlrepro evaluate --run-dir`), by resume and by `rlrepro adopt`, with a message naming the file, and the
command never runs; a trusted file of an older rlrepro is converted by `rlrepro convert-legacy`. The files are made
by short training runs on the fake env (a test double, conftest.FakeVecEnv): what is checked is how they are read."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import fake_env_factory

from rlrepro.adopt import plan
from rlrepro.config import load_config, stable_hash
from rlrepro.continual import TrainSpec, read_policies, train
from rlrepro.continual.config import SACConfig
from rlrepro.engine.config import NetworkConfig
from rlrepro.io import RefusedFile, read_torch_data

ROOT = Path(__file__).resolve().parents[1]
# committed runs of two studies: a continual run (policies.pt) and a sparse one (model.pt)
REWIRE_RUN = "results/validation_revisit/runs/halfcheetah/robustness/rewire/seed0"
DENSE_RUN = "results/validation_sparse/sparse/hopper/dense/keep1/seed0"


class RunsACommand:
    """Pickles as a call of os.system: loading it with plain pickle runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile(path: Path, marker: Path, payload: dict | None = None) -> Path:
    """A torch file laid out like the real one, with the command hidden in it."""
    torch.save({**(payload or {}), "tag": RunsACommand(marker), "stages": [RunsACommand(marker)]}, path)
    return path


def test_the_hostile_file_does_run_its_command_under_plain_pickle(tmp_path):
    """The control: the file the other tests refuse is live (an unsafe load creates the marker)."""
    marker = tmp_path / "ran"
    torch.load(hostile(tmp_path / "policies.pt", marker), weights_only=False)
    assert marker.exists()


def test_evaluation_refuses_a_hostile_policies_file(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "ran"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"method": "pnn", "train_wall_time_s": 1.0}))
    hostile(run_dir / "policies.pt", marker)
    spec = load_config(ROOT / "config.yaml", {"preset": "smoke"}).eval_spec("halfcheetah/forgetting", 0)
    out = tmp_path / "results.parquet"
    cmd = [sys.executable, "-m", "rlrepro", "evaluate", "--spec", json.dumps(spec), "--run-dir", str(run_dir),
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{run_dir / 'policies.pt'}: refused: it holds pickled Python objects" in proc.stderr
    assert "python -m rlrepro convert-legacy" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not out.exists()


def test_resume_refuses_a_hostile_checkpoint_and_starts_clean(fake_scenario, tmp_path, caplog):
    spec = TrainSpec("ft_n", fake_scenario, seed=1, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                     network=NetworkConfig(hidden_sizes=(8, 8)))  # fmt: skip
    marker, ckpt = tmp_path / "ran", tmp_path / "ckpt"
    ckpt.mkdir()
    hostile(ckpt / "state.pt", marker, {"payload": {"task": 1, "phase": "train"}})
    with caplog.at_level(logging.INFO, logger="rlrepro"):
        result = train(spec, env_factory=fake_env_factory, checkpoint_dir=ckpt)
    assert not marker.exists()
    assert result.resumed_from is None
    assert f"checkpoint {ckpt / 'state.pt'} refused: it holds pickled Python objects" in caplog.text
    assert "posix.system" in caplog.text  # what it would have called
    assert (ckpt / "state.pt.refused").exists()  # kept for inspection, never loaded
    fresh = train(spec, env_factory=fake_env_factory)
    for a, b in zip(fresh.stages, result.stages, strict=True):
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])  # a clean start, nothing from the file


def test_a_checkpoint_reads_back_as_data_with_every_part_in_plain_form(fake_scenario, tmp_path):
    """Mid-task checkpoint of the method with the most per-task state (CSP: anchors, frozen flags, per-env α)."""
    spec = TrainSpec("csp", fake_scenario, seed=0, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                     network=NetworkConfig(hidden_sizes=(8, 8)),
                     method_hp={"n_estimations": 2, "n_samples": 64, "n_rollouts": 2})  # fmt: skip
    train(spec, env_factory=fake_env_factory, checkpoint_dir=tmp_path, checkpoint_interval_s=0)
    payload = read_torch_data(tmp_path / "state.pt")["payload"]
    allowed = (torch.Tensor, str, int, float, bool, type(None))

    def leaves(x, where=""):
        if isinstance(x, dict):
            assert all(isinstance(k, str | int) for k in x), where
            for k, v in x.items():
                yield from leaves(v, f"{where}/{k}")
        elif isinstance(x, list | tuple):
            for i, v in enumerate(x):
                yield from leaves(v, f"{where}[{i}]")
        else:
            yield where, x

    assert not [where for where, v in leaves(payload) if not isinstance(v, allowed)]
    assert payload["phase"] == "end" and payload["method"]["runtime"]["frozen"]  # task 1: the old anchors are frozen
    assert payload["trainer"]["replay"]["behaviour"].shape[1] == 2 and payload["env"] is not None


PRESETS = {REWIRE_RUN: "validate_revisit", DENSE_RUN: "validate_sparse"}


@pytest.fixture
def study(tmp_path, monkeypatch) -> Path:
    """Committed runs of two studies (validate_revisit's Rewire seed 0, validate_sparse's Hopper dense seed 0) in a
    scratch directory, their meta.json spec hashes set to what the current config gives (the engine's config may have
    moved since they were made: that is test_adopt's case)."""
    assert all((ROOT / r / "meta.json").exists() for r in PRESETS), f"committed runs missing: {list(PRESETS)}"
    revisit, sparse = (load_config(ROOT / "config.yaml", {"preset": p}) for p in ("validate_revisit", "validate_sparse"))
    specs = {REWIRE_RUN: revisit.train_spec("rewire", "halfcheetah/robustness", 0),
             DENSE_RUN: sparse.sparse.spec("dense", "hopper", 1.0, 0)}  # fmt: skip
    for run, spec in specs.items():
        shutil.copytree(ROOT / run, tmp_path / run)
        meta = json.loads((tmp_path / run / "meta.json").read_text())
        (tmp_path / run / "meta.json").write_text(json.dumps({**meta, "config_hash": stable_hash(spec)}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def adoption(run: str):
    return plan(load_config(ROOT / "config.yaml", {"preset": PRESETS[run]}))


def test_adopt_refuses_hostile_run_files_and_leaves_them_in_place(study):
    assert Path(REWIRE_RUN, "meta.json") in adoption(REWIRE_RUN).adopted
    assert Path(DENSE_RUN, "results.parquet") in adoption(DENSE_RUN).adopted
    assert not adoption(REWIRE_RUN).refused and not adoption(DENSE_RUN).refused  # the committed runs are data
    marker = study / "ran"
    hostile(Path(REWIRE_RUN, "policies.pt"), marker)
    hostile(Path(DENSE_RUN, "model.pt"), marker)
    for run, name in ((REWIRE_RUN, "policies.pt"), (DENSE_RUN, "model.pt")):
        out = adoption(run)
        assert not marker.exists()
        assert [why.split(": refused: ")[0] for why in out.refused] == [f"{run}/{name}"]
        assert not out.adopted and not out.stale  # neither adopted nor moved aside
    cmd = [sys.executable, "-m", "rlrepro", "adopt", "--config", str(ROOT / "config.yaml"), "--preset",
           "validate_revisit", "--dry-run"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=study)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"refused: {REWIRE_RUN}/policies.pt: refused: it holds pickled Python objects" in proc.stdout
    assert not marker.exists() and Path(REWIRE_RUN, "policies.pt").exists() and Path(DENSE_RUN, "model.pt").exists()


@dataclasses.dataclass
class OldNetworkConfig:
    """Stands in for a config dataclass an older rlrepro pickled into policies.pt (a test double of an old class)."""

    hidden_sizes: tuple = (8, 8)


def test_convert_legacy_rewrites_a_trusted_old_file_as_data(fake_scenario, tmp_path):
    spec = TrainSpec("ft_n", fake_scenario, seed=2, sac=SACConfig(batch_size=16, initial_buffer_size=32),
                     network=NetworkConfig(hidden_sizes=(8, 8)))  # fmt: skip
    policies = train(spec, env_factory=fake_env_factory).policies()
    path = tmp_path / "policies.pt"
    legacy = {**policies, "network": NetworkConfig(**policies["network"]), "obs_dim": __import__("numpy").int64(3)}
    torch.save(legacy, path)
    with pytest.raises(RefusedFile, match=f"{path}: refused: .*convert-legacy {path}"):
        read_policies(path)
    run = [sys.executable, "-m", "rlrepro", "convert-legacy", str(path)]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "converted to data" in proc.stdout, proc.stderr[-2000:]
    converted = read_policies(path)
    assert converted["network"] == policies["network"] and converted["obs_dim"] == 3
    for a, b in zip(policies["stages"], converted["stages"], strict=True):
        assert a["structure"] == b["structure"] and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    before = path.read_bytes()
    proc = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert "already data, left as it is" in proc.stdout and path.read_bytes() == before
    state = tmp_path / "state.pt"
    torch.save({"trainer": OldNetworkConfig()}, state)
    proc = subprocess.run([*run[:-1], str(state)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "resume checkpoints are not converted" in proc.stderr


def test_the_pipeline_has_one_loader_for_torch_files_and_no_other_unpickling():
    """Local jobs, `--use-singularity` and SLURM run the same `python -m rlrepro` commands (workflow/rules): one loader,
    `rlrepro.io.read_torch_data` (weights_only), and pickle only in `convert-legacy`, on the user's word."""
    import ast

    loaders = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("np", "load"), ("numpy", "load"),
               ("yaml", "load"), ("yaml", "unsafe_load"), ("pd", "read_pickle"), ("marshal", "loads")}  # fmt: skip
    calls = {}
    for path in [*ROOT.glob("src/rlrepro/**/*.py"), *ROOT.glob("workflow/**/*.py"), *ROOT.glob("benchmarks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                if (node.func.value.id, node.func.attr) in loaders:
                    safe = [k.value.value for k in node.keywords if k.arg == "weights_only"]
                    calls.setdefault(path.relative_to(ROOT).as_posix(), []).append((node.func.attr, *safe))
    assert calls == {"src/rlrepro/io.py": [("load", True)], "src/rlrepro/legacy.py": [("load", False)]}
    rules = "".join(p.read_text() for p in [*ROOT.glob("workflow/rules/*.smk"), ROOT / "Snakefile"])
    assert "python -m rlrepro evaluate" in rules and "python -m rlrepro train " in rules and "pickle" not in rules
