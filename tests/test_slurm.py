"""The smoke DAG through a real one-node SLURM cluster (slurmctld + slurmd, started and stopped by this test) with
`--executor slurm` and workflow/profiles/slurm; the resources SLURM received are checked with scontrol.

Marked `slurm` (`make test-slurm`): needs root and the slurm-wlm packages (platform.md §3). Authentication is
`auth/none`, accounting off (the profile's squeue status command is what such clusters need), MinJobAge
3600 so every finished job of the run is still there for `scontrol show job`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ETC_CONF = Path("/etc/slurm/slurm.conf")

SLURM_CONF = """ClusterName=rlreprotest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/run/slurmctld.pid
SlurmdPidFile={dir}/run/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MinJobAge=3600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} CoresPerSocket={cpus} ThreadsPerCore=1 RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def stop(pids: list[int]) -> None:
    """SIGTERM exactly the daemons this test started (checked by their command name), then SIGKILL after 15 s."""
    for pid in pids:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm in ("slurmctld", "slurmd"):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for pid in pids:
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("slurmctld") is None or shutil.which("slurmd") is None:
        pytest.skip("needs root and slurm-wlm (apt-get install slurmctld slurmd slurm-client munge)")
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("etc", "state", "spool", "run", "log"):
        (state / sub).mkdir()
    mem_total = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
    conf = state / "etc/slurm.conf"
    conf.write_text(SLURM_CONF.format(dir=state, cpus=os.cpu_count(), mem=int(mem_total * 0.8)))
    # The jobstep plugin drops SLURM_CONF inside jobs, so the config must be at /etc/slurm (platform.md §2.3).
    ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
    backup = ETC_CONF.with_suffix(".conf.rlrepro-backup")
    had_conf = ETC_CONF.exists() or ETC_CONF.is_symlink()
    if had_conf:
        ETC_CONF.rename(backup)
    ETC_CONF.symlink_to(conf)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [
        subprocess.Popen(["slurmctld", "-D", "-i"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["slurmd", "-D", "-N", "localhost"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    pids = [d.pid for d in daemons]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if out.strip() in ("idle", "mixed"):
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"SLURM node never became idle: {(state / 'log/slurmctld.log').read_text()[-2000:]}")
        yield {"env": env, "state": state}
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        stop(pids)
        ETC_CONF.unlink(missing_ok=True)
        if had_conf:
            backup.rename(ETC_CONF)


@pytest.mark.slurm
def test_smoke_dag_runs_on_slurm_with_the_profile(cluster, tmp_path):
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    env = {**cluster["env"], "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RLREPRO_JAX_CACHE": os.environ.get("RLREPRO_JAX_CACHE", str(Path.home() / ".cache/rlrepro/jax"))}  # fmt: skip
    # workflow/profiles/slurm as shipped, with its partitions renamed to this cluster's only one ("debug").
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.v8+.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    for resources in profile["set-resources"].values():
        resources.pop("slurm_partition", None)
    profile.update({"jobs": 4, "slurm-init-seconds-before-status-checks": 1})
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile/config.v8+.yaml").write_text(yaml.safe_dump(profile))
    start = time.monotonic()
    cmd = [sys.executable, "-m", "snakemake", "--profile", str(tmp_path / "profile"), "--config", "preset=smoke"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"\nSLURM smoke DAG: {wall:.0f} s wall")
    assert pd.read_parquet(tmp_path / "results/tables/continual_runs.parquet").shape[0] == 9
    assert pd.read_parquet(tmp_path / "results/tables/sparse_runs.parquet").shape[0] == 4
    # What SLURM received: the profile's attempt-scaled memory and runtime of the training jobs (attempt 1).
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], env=env, capture_output=True, text=True).stdout
    lines = jobs.strip().splitlines()
    # Only training and evaluation jobs reached the scheduler; tables and figures ran locally (localrules).
    rules = sorted({re.search(r"Comment=rule_(\w+?)(_wildcards_\S*)?(\s|$)", j).group(1) for j in lines})
    assert rules == ["evaluate_run", "random_reference", "train_run", "train_sparse"], jobs[-2000:]
    assert len(lines) == 9 + 9 + 1 + 4, jobs[-2000:]
    train = [j for j in lines if "Comment=rule_train_run" in j]
    sparse = [j for j in lines if "Comment=rule_train_sparse" in j]
    assert len(train) == 9 and len(sparse) == 4
    assert all("MinMemoryNode=8000M" in j and "TimeLimit=1-00:00:00" in j and "NumCPUs=1" in j for j in train)
    assert all("MinMemoryNode=6000M" in j and "Partition=debug" in j for j in sparse)
    assert all("JobState=COMPLETED" in j for j in lines)
