"""Full-speed matrix multiplies for torch on AMD CPUs (MKL's vendor check), applied by re-executing the process.

torch's CPU wheels link Intel MKL, whose SGEMM asks `mkl_serv_intel_cpu_true()` whether the CPU is Intel and, on
any other vendor, uses its AVX2 kernels even when the CPU has AVX-512. On this project's AMD EPYC machine that
halves every Linear layer's speed (a 256×256×256 matmul: 358 µs vs 159 µs; jitted JAX, whose XLA kernels have no
vendor check: 177 µs). A one-function shared library that answers "yes" and is loaded before MKL (LD_PRELOAD)
lets MKL pick its kernels by the CPU's actual features, the same choice it makes on an Intel CPU with AVX-512.

Only the loader can interpose the symbol, so the `rlrepro` command re-executes itself once with LD_PRELOAD set
(`python -m rlrepro` and the console script alike), before torch is imported. Nothing happens on Intel CPUs, on
GPUs' host code paths that do not use MKL, when `RLREPRO_MKL_SHIM=off`, or when no C compiler is available (a
one-line warning; the run proceeds on MKL's AVX2 path). Results are as deterministic as before; like any change
of BLAS kernels (CPU model, GPU), they differ from the AVX2 path in the last bits.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_SWITCH = "RLREPRO_MKL_SHIM"
ENV_ACTIVE = "RLREPRO_MKL_SHIM_ACTIVE"
SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"


def _cpuinfo(cpuinfo: Path) -> dict[str, str]:
    """The first processor's `name : value` fields of /proc/cpuinfo (empty where the file is absent)."""
    fields: dict[str, str] = {}
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    return _cpuinfo(cpuinfo).get("vendor_id")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    return _cpuinfo(cpuinfo).get("model name")


def cpu_facts(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str | int | None]:
    """The CPU a job ran on: wall times from different machines (or days on a shared VM) are read next to these.

    `cores` counts the cores this process may run on (its affinity, e.g. a SLURM allocation), `torch_threads` the
    intra-op threads torch uses (None where torch was not imported: the process ran no network).
    """
    affinity = getattr(os, "sched_getaffinity", None)
    torch = sys.modules.get("torch")
    fields = _cpuinfo(cpuinfo)  # read once
    return {
        "vendor": fields.get("vendor_id"),
        "model": fields.get("model name"),
        "cores": len(affinity(0)) if affinity else os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rlrepro"


def build_shim(directory: Path | None = None) -> Path:
    """The compiled shim (built once per source version with the system C compiler, written atomically).

    It lives in `directory`, else $RLREPRO_MKL_SHIM_DIR (the container image ships it prebuilt there), else
    ~/.cache/rlrepro.
    """
    directory = directory or Path(os.environ.get("RLREPRO_MKL_SHIM_DIR") or cache_dir())
    digest = hashlib.sha256(SOURCE.encode()).hexdigest()[:12]
    target = directory / f"mkl_vendor_shim-{digest}.so"
    if target.exists():
        return target
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        src, out = Path(tmp) / "shim.c", Path(tmp) / "shim.so"
        src.write_text(SOURCE)
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(src)], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        os.replace(out, target)
    return target


def wanted(environ: os._Environ | dict = os.environ) -> bool:
    """Is the shim wanted in this process (AMD CPU, not switched off, not already active)?"""
    if environ.get(ENV_SWITCH, "auto").lower() in {"0", "off", "false", "no"}:
        return False
    if environ.get(ENV_ACTIVE):
        return False
    return cpu_vendor() == "AuthenticAMD"


def reexec_with_shim(argv: list[str] | None = None) -> None:
    """Replace this process by `python <argv>` (default `-m rlrepro <same args>`) with the shim preloaded, if wanted.

    Returns (doing nothing) when the shim is not wanted or cannot be built.
    """
    if not wanted():
        return
    try:
        shim = build_shim()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        print(f"rlrepro: MKL vendor shim unavailable ({err}); torch matmuls use MKL's AVX2 path", file=sys.stderr)
        os.environ[ENV_ACTIVE] = "unavailable"
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(shim), env.get("LD_PRELOAD", "")) if p)
    env[ENV_ACTIVE] = str(shim)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = argv if argv is not None else ["-m", "rlrepro", *sys.argv[1:]]
    os.execve(sys.executable, [sys.executable, *argv], env)


def status() -> str:
    """What this process runs with, for provenance: `mkl-vendor-shim`, `unavailable`, or `default`."""
    active = os.environ.get(ENV_ACTIVE)
    if active and active != "unavailable" and active in os.environ.get("LD_PRELOAD", ""):
        return "mkl-vendor-shim"
    return "unavailable" if active == "unavailable" else "default"
