"""Device checks before a job starts: fail loudly when a GPU was requested but torch or JAX cannot see it, and
give each local GPU job its own device.

Snakemake counts `gpu` resources locally but never sets CUDA_VISIBLE_DEVICES (platform.md §1.4), so with
`device: cuda` and several GPUs on one machine every job would land on GPU 0. `claim_device` takes an exclusive
lock file per GPU (held until the process exits) and returns `cuda:<i>` of the first free one; under SLURM (or
whenever CUDA_VISIBLE_DEVICES is already set) the scheduler's choice is kept.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

from rlrepro.errors import ConfigError

log = logging.getLogger("rlrepro")
_LOCKS: list = []  # open lock files, kept for the life of the process


def wants_gpu(device: str) -> bool:
    return device.startswith("cuda")


def preflight(device: str, *, check_jax: bool = True) -> None:
    """Raise ConfigError naming what is missing when `device` asks for a GPU that torch or JAX cannot use."""
    if not wants_gpu(device):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was requested but torch sees no CUDA GPU (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). In a container, "
            'pass the driver in (apptainer --nv, i.e. --apptainer-args="--nv"); on a cluster, request a GPU; or set '
            "device: cpu."
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    if check_jax:
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if not gpus:
            raise ConfigError(
                f"device {device!r} was requested and torch sees the GPU but JAX does not (jax {jax.__version__}, "
                f"backends: {[d.platform for d in jax.devices()]}): install the jax CUDA plugin matching torch's CUDA "
                "(docker/Dockerfile pins both)."
            )


def claim_device(device: str, lock_dir: Path | None = None) -> str:
    """`cuda` → `cuda:<i>` of the first GPU no other local rlrepro job holds; anything else is returned unchanged."""
    if device != "cuda" or os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("SLURM_JOB_ID"):
        return device
    import torch

    count = torch.cuda.device_count()
    lock_dir = lock_dir or Path(tempfile.gettempdir())
    for i in range(count):
        handle = open(lock_dir / f"rlrepro-gpu{i}.lock", "w")  # held until the process exits
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _LOCKS.append(handle)
        log.info("claimed GPU %d of %d", i, count)
        return f"cuda:{i}"
    raise ConfigError(f"all {count} GPUs are held by other rlrepro jobs; limit GPU jobs with --resources gpu={count}")
