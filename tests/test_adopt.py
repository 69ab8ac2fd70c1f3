"""`rlrepro adopt` on committed study runs: DAPD is adopted only with the threshold its dense run gives.

The runs are the `validate_sparse` study's Hopper dense and DAPD seed 0. The engine version is part of every job spec,
so a committed run goes stale whenever the engine changes (a study is re-run on a new engine by `make validate`). The
fixture copies them and restamps each copy's recorded spec hash with the one today's config gives its job (DAPD's with
the threshold its dense copy gives, as `adopt` derives it): the tests then change one thing and check what `adopt`
makes of it."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rlrepro.adopt import move_aside, plan
from rlrepro.config import load_config, stable_hash
from rlrepro.sparse.config import resolve_threshold_from_dense

ROOT = Path(__file__).resolve().parents[1]
PRESET, STUDY, ENV = "validate_sparse", "results/validation_sparse", "hopper"
SPARSE = f"{STUDY}/sparse/{ENV}"
DENSE, DAPD = f"{SPARSE}/dense/keep1/seed0", f"{SPARSE}/dapd/keep0.05/seed0"


@pytest.fixture
def study(tmp_path, monkeypatch) -> Path:
    """The committed dense and DAPD seed-0 runs of the validate_sparse preset, in a scratch directory."""
    assert (ROOT / DAPD / "meta.json").exists(), f"the committed runs {DENSE} and {DAPD} are missing"
    for run in (DENSE, DAPD):
        shutil.copytree(ROOT / run, tmp_path / run)
    monkeypatch.chdir(tmp_path)
    grid = load_config(ROOT / "config.yaml", {"preset": PRESET}).sparse
    for run, method, keep in ((DENSE, "dense", 1.0), (DAPD, "dapd", 0.05)):
        spec = grid.spec(method, ENV, keep, 0)
        if method == "dapd":
            spec = resolve_threshold_from_dense(spec, Path(DENSE) / "results.parquet")
        meta = json.loads((Path(run) / "meta.json").read_text())
        (Path(run) / "meta.json").write_text(json.dumps({**meta, "config_hash": stable_hash(spec)}))
    return tmp_path


def adoption():
    return plan(load_config(ROOT / "config.yaml", {"preset": PRESET}))


def test_a_dapd_run_is_adopted_with_the_threshold_its_dense_run_gives(study):
    out = adoption()
    assert out.adopted == [Path(DENSE) / "results.parquet", Path(DAPD) / "results.parquet"] and not out.stale
    # The dense run's results change (as a retrained dense run's would): DAPD's recorded threshold no longer follows.
    frame = pd.read_parquet(Path(DENSE) / "results.parquet")
    frame.loc[frame["metric"] == "eval_return", "value"] *= 1.01
    frame.to_parquet(Path(DENSE) / "results.parquet", index=False)
    out = adoption()
    assert [path for path, _ in out.stale] == [Path(DAPD)]
    assert "trained with spec" in out.stale[0][1]


def test_a_stale_dense_run_is_moved_aside_and_its_dapd_run_waits_for_the_rerun(study):
    meta = json.loads((Path(DENSE) / "meta.json").read_text())
    (Path(DENSE) / "meta.json").write_text(json.dumps({**meta, "config_hash": "0" * 16}))
    out = adoption()
    assert [path for path, _ in out.stale] == [Path(DENSE)] and out.adopted == []
    assert [path for path, _ in out.waiting] == [Path(DAPD)]
    dest = move_aside(out, Path(STUDY))
    assert (dest / f"sparse/{ENV}/dense/keep1/seed0/model.pt").is_file() and not Path(DENSE).exists()
    assert Path(DAPD, "model.pt").is_file()  # left in place: Snakemake reruns it after the dense run
    # The same run made stale again at once (within the same second): its own directory, nothing overwritten.
    shutil.copytree(ROOT / DENSE, DENSE)
    (Path(DENSE) / "meta.json").write_text(json.dumps({**meta, "config_hash": "1" * 16}))
    again = move_aside(adoption(), Path(STUDY))
    assert again != dest and (again / f"sparse/{ENV}/dense/keep1/seed0/model.pt").is_file()
    assert json.loads((dest / f"sparse/{ENV}/dense/keep1/seed0/meta.json").read_text())["config_hash"] == "0" * 16


def test_study_status_counts_done_stale_waiting_and_missing_jobs(study):
    from rlrepro.adopt import study_status

    resolved = load_config(ROOT / "config.yaml", {"preset": PRESET})
    total = len(resolved.runs) + len(resolved.sparse.runs)
    line = study_status(PRESET, resolved)
    assert line.startswith(f"{PRESET}: 2 of {total} jobs done on the current engine and config, 0 from an older")
    assert line.endswith(f"{total - 2} not run or not evaluated")
    hours = {f"{ENV} · SAC (dense)": 0.25, f"{ENV} · DAPD": 0.5}  # what the study's tables measured per job
    line = study_status(PRESET, resolved, hours)
    seeds = len(resolved.sparse.seeds)  # per method; seed 0 of dense and DAPD done, every RiGL and RLx2 job to run
    assert line.endswith(f"; the {total - 2} to run: about {0.25 * (seeds - 1) + 0.5 * (seeds - 1):.1f} core-hours at "
                         f"its jobs' measured times ({2 * seeds} of a method and scenario it has not measured yet, "
                         "not counted)")  # fmt: skip
    meta = json.loads((Path(DENSE) / "meta.json").read_text())
    (Path(DENSE) / "meta.json").write_text(json.dumps({**meta, "config_hash": "0" * 16}))  # dense from another spec
    line = study_status(PRESET, resolved)
    assert f"0 of {total} jobs done" in line and "1 from an older engine or config, 1 waiting for a rerun" in line
