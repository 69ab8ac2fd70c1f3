"""MKL's vendor shim (rlrepro.blas): when it applies, that the CLI re-executes with it, and that results agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rlrepro import blas

AMD = blas.cpu_vendor() == "AuthenticAMD"


def test_vendor_and_switches(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: x\n")
    assert blas.cpu_vendor(info) == "GenuineIntel"
    assert blas.cpu_vendor(tmp_path / "missing") is None
    assert blas.cpu_model(info) == "x" and blas.cpu_model(tmp_path / "missing") is None
    facts = blas.cpu_facts(info)
    assert facts["vendor"] == "GenuineIntel" and facts["model"] == "x"
    assert facts["cores"] == len(os.sched_getaffinity(0)) and facts["torch_threads"] == torch.get_num_threads()
    assert not blas.wanted({blas.ENV_SWITCH: "off"})
    assert not blas.wanted({blas.ENV_ACTIVE: "/some/shim.so"})  # never twice
    assert blas.wanted({}) is AMD


def test_shim_builds_once_atomically(tmp_path):
    first = blas.build_shim(tmp_path)
    assert first.suffix == ".so" and first.stat().st_size > 0
    mtime = first.stat().st_mtime_ns
    assert blas.build_shim(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left behind


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in (blas.ENV_ACTIVE, "LD_PRELOAD")} | env
    return subprocess.run([sys.executable, "-m", "rlrepro", *args], capture_output=True, text=True, env=full,
                          check=True, timeout=120)  # fmt: skip


@pytest.mark.skipif(not AMD, reason="MKL's vendor check only matters on AMD CPUs")
def test_cli_reexecutes_with_the_shim_on_amd_and_not_when_switched_off():
    assert json.loads(_cli("sysinfo").stdout)["blas"] == "mkl-vendor-shim"
    assert json.loads(_cli("sysinfo", RLREPRO_MKL_SHIM="off").stdout)["blas"] == "default"


@pytest.mark.skipif(not AMD, reason="MKL's vendor check only matters on AMD CPUs")
def test_shim_changes_kernels_not_results(tmp_path):
    """The same float32 product with MKL's AVX-512 and AVX2 kernels: equal to float32 rounding, not bit-equal."""
    code = (
        "import torch, sys; g = torch.Generator().manual_seed(0); "
        "a, b = torch.randn(256, 256, generator=g), torch.randn(256, 256, generator=g); "
        "torch.save(a @ b, sys.argv[1])"
    )
    outs = []
    for mode in ("auto", "off"):
        path = tmp_path / f"{mode}.pt"
        env = {k: v for k, v in os.environ.items() if k not in (blas.ENV_ACTIVE, "LD_PRELOAD")}
        if mode == "auto":
            env["LD_PRELOAD"] = str(blas.build_shim())
        subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, timeout=120)
        outs.append(torch.load(path))
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not AMD or not blas.wanted({}), reason="MKL's vendor check only matters on AMD CPUs")
def test_the_test_process_runs_with_the_kernels_the_cli_runs_with():
    """conftest re-executes pytest with the shim, so the pinned end states (tests/snapshots) see the CLI's kernels."""
    assert blas.status() == "mkl-vendor-shim"
