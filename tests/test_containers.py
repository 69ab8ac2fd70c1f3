"""The container path, for real where the platform allows it: hadolint on docker/Dockerfile; the image built with
podman from a locally bootstrapped Debian base (no registry is reachable here) and the smoke pipeline run inside
it; Snakemake's `--use-singularity` path through the podman-backed apptainer stand-in (tests/standins/apptainer).

The podman tests are marked `containers` (CI installs podman, buildah, runc and debootstrap from apt and runs them
in their own step); without podman they skip with the reason. The CUDA flavour's build (~4 GB of CUDA wheels from
PyPI, an 8 GB image) is marked `cuda_image` and runs with `make test-cuda-image`, not in CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rlrepro import ENGINE_VERSION
from rlrepro.blas import cpu_vendor

ROOT = Path(__file__).resolve().parents[1]
BASE = "localhost/debian-base:bookworm"
IMAGE = "localhost/rlrepro:test"
CONTAINERS_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(ROOT / "docker/Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (ROOT / "docker/Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE).group(1)
    assert re.search(r":\d+\.\d+\.\d+-", base) or "@sha256:" in base, f"base image not pinned: {base}"
    lock = (ROOT / "requirements.lock").read_text()
    torch_pin = re.search(r'^ARG TORCH_SPEC="(torch==[^"]+)"', text, re.MULTILINE).group(1)
    assert torch_pin in lock and "jax==0.10.2" in lock and '"jax[cuda13]==0.10.2"' in text


def run(cmd: list[str], timeout: int = 1800, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def debian_mirror() -> str:
    for path in [*sorted(Path("/etc/apt").glob("sources.list.d/*.sources")), Path("/etc/apt/sources.list")]:
        if path.exists():
            found = re.search(r"^(?:URIs:[ \t]*|deb[ \t]+(?:\[[^\]]*\][ \t]+)?)(\S+)", path.read_text(), re.MULTILINE)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        pytest.skip("podman/debootstrap not installed (apt-get install podman buildah runc debootstrap)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)  # runc instead of crun, ulimits the host allows (platform.md §4.2)
    os.environ["CONTAINERS_CONF"] = str(conf)
    return {"CONTAINERS_CONF": str(conf)}


@pytest.fixture(scope="module")
def base(podman, tmp_path_factory) -> dict[str, float]:
    """The Debian base image from debootstrap (once per machine: no registry is reachable here)."""
    timings = {}
    if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
        start = time.monotonic()
        rootfs = tmp_path_factory.mktemp("rootfs")
        run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
             "bookworm", str(rootfs), debian_mirror()])  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE], stdin=tar.stdout)
        tar.wait()
        timings["base_s"] = time.monotonic() - start
    return timings


@pytest.fixture(scope="module")
def image(base) -> dict[str, float]:
    """The rlrepro CPU image from docker/Dockerfile."""
    timings = dict(base)
    start = time.monotonic()
    cmd = ["podman", "build", "--format", "docker", "-f", "docker/Dockerfile", "-t", IMAGE,
           "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "JAX_SPEC=jax[cpu]==0.10.2",
           "--build-arg", "RLREPRO_GIT_COMMIT=test",
           "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]  # fmt: skip
    if Path("/opt/wheels").is_dir():  # this platform's local CPU torch wheel (PyPI's 2.13.0 is the CUDA build)
        cmd += ["-v", "/opt/wheels:/wheels:ro", "--build-arg", "PIP_EXTRA_ARGS=--find-links /wheels"]
    run([*cmd, "."], cwd=ROOT, timeout=3600)
    timings["build_s"] = time.monotonic() - start
    size = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"]).stdout.strip()
    timings["size_mb"] = int(size) / 1e6
    print(f"\nimage timings: {timings}")
    return timings


def workflow_copy(dest: Path) -> Path:
    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / item)
    return dest


@pytest.mark.containers
def test_smoke_pipeline_runs_inside_the_image(image, tmp_path):
    work = workflow_copy(tmp_path)
    proc = run(["podman", "run", "--rm", "-v", f"{work}:/work", "-w", "/work", "-e", "RLREPRO_JAX_CACHE=/work/.jax",
                IMAGE, "snakemake", "--cores", "2", "--config", "preset=smoke"], timeout=3600)  # fmt: skip
    assert "steps (100%) done" in proc.stderr
    runs = pd.read_parquet(work / "results/tables/continual_runs.parquet")
    assert len(runs) == 9 and runs["final_avg_return"].notna().all()
    sparse = pd.read_parquet(work / "results/tables/sparse_runs.parquet")
    assert sorted(sparse["method"]) == ["dapd", "dense", "rigl", "rlx2"]
    meta = (work / "results/runs/halfcheetah/forgetting/ft_1/seed0/meta.json").read_text()
    assert '"git_commit": "test"' in meta  # provenance comes from the image (RLREPRO_GIT_COMMIT)
    if cpu_vendor() == "AuthenticAMD":  # the image's prebuilt MKL vendor shim was used (no compiler in the image)
        assert '"blas": "mkl-vendor-shim"' in meta
    assert (work / "results/tables/continual_tables.md").stat().st_size > 0


@pytest.mark.containers
def test_use_singularity_runs_every_job_in_the_image_via_the_standin(image, tmp_path):
    """Snakemake's apptainer path (pull, exec with binds and env) through the podman-backed stand-in."""
    work = workflow_copy(tmp_path)
    log = tmp_path / "apptainer.log"
    env = {**os.environ, "PATH": f"{ROOT / 'tests/standins'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "APPTAINER_STANDIN_LOG": str(log), "SINGULARITYENV_RLREPRO_JAX_CACHE": f"{work}/.jax"}  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--use-singularity", '--apptainer-args= --nv',
           "sparse", "--config", "preset=smoke", f"container=docker://{IMAGE}"]  # fmt: skip
    run(cmd, cwd=work, env=env, timeout=3600)
    calls = log.read_text().splitlines()
    assert any(c.startswith("apptainer pull --name") and IMAGE in c for c in calls)
    execs = [c for c in calls if c.startswith("apptainer") and " exec " in f" {c} "]
    assert len(execs) == 4 + 3  # 4 train_sparse + sparse_tables + sparse_curves + sparse_layer_density
    assert all("--nv" in c and "--home" in c for c in execs)
    meta = (work / "results/sparse/halfcheetah/dapd/keep0.05/seed0/meta.json").read_text()
    assert '"git_commit": "test"' in meta  # the job ran inside the image, not on the host


@pytest.mark.containers
def test_use_singularity_refuses_an_image_of_another_engine(image, tmp_path):
    """The DAG is built from a checkout whose engine differs from the image's: the job fails before work, naming both."""
    work = workflow_copy(tmp_path)
    init = work / "src/rlrepro/__init__.py"
    init.write_text(init.read_text().replace(f'ENGINE_VERSION = "{ENGINE_VERSION}"', 'ENGINE_VERSION = "0.0.0-checkout"'))
    env = {**os.environ, "PATH": f"{ROOT / 'tests/standins'}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "APPTAINER_STANDIN_LOG": str(tmp_path / "apptainer.log")}  # fmt: skip
    target = "results/sparse/halfcheetah/dense/keep1.0/seed0/meta.json"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--use-singularity", target, "--config", "preset=smoke",
           f"container=docker://{IMAGE}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (work / "results/logs").rglob("*.log"))
    assert f"this job runs engine {ENGINE_VERSION}" in logs and "checkout with engine 0.0.0-checkout" in logs
    assert not (work / target).exists()


CUDA_IMAGE = f"localhost/rlrepro:{ENGINE_VERSION}-cuda13"


@pytest.fixture(scope="module")
def cuda_image(base) -> dict[str, float]:
    """The default (CUDA) flavour of docker/Dockerfile: PyPI's torch 2.13.0 (CUDA 13) and jax[cuda13] — about 4 GB of
    nvidia-* wheels downloaded, so it has its own marker and make target (`make test-cuda-image`)."""
    start = time.monotonic()
    run(["podman", "build", "--format", "docker", "-f", "docker/Dockerfile", "-t", CUDA_IMAGE,
         "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "RLREPRO_GIT_COMMIT=test",
         "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro", "."],
        cwd=ROOT, timeout=3600)  # fmt: skip
    size = run(["podman", "image", "inspect", CUDA_IMAGE, "--format", "{{.Size}}"]).stdout.strip()
    timings = {"build_s": time.monotonic() - start, "size_mb": int(size) / 1e6}
    print(f"\nCUDA image {CUDA_IMAGE}: {timings}")
    return timings


@pytest.mark.cuda_image
def test_cuda_image_has_cuda_torch_and_jax_and_refuses_cuda_without_a_gpu(cuda_image, tmp_path):
    """No GPU here: the image's torch must be the CUDA 13 build, JAX's CUDA 13 plugin must import, and a job asking
    for `device: cuda` must stop before any work with the preflight's message (not fall back to the CPU)."""
    probe = (
        "import torch, jax, importlib.metadata as md\n"
        "import jax_plugins.xla_cuda13\n"
        "print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())\n"
        "print('jax', jax.__version__, 'plugin', md.version('jax-cuda13-plugin'), 'pjrt', md.version('jax-cuda13-pjrt'))\n"
    )
    proc = run(["podman", "run", "--rm", CUDA_IMAGE, "python", "-c", probe])
    print(proc.stdout)
    assert re.search(r"torch 2\.13\.0\S* cuda 13\.", proc.stdout), proc.stdout
    assert re.search(r"plugin 0\.10\.2 pjrt 0\.10\.2", proc.stdout), proc.stdout
    spec = json.loads(subprocess.run([sys.executable, "-m", "rlrepro", "spec", "train", "--method", "ft_1", "--scenario",
                                      "halfcheetah/robustness", "--seed", "0", "--preset", "smoke"],
                                     cwd=ROOT, capture_output=True, text=True, check=True).stdout)  # fmt: skip
    spec["device"] = "cuda"
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(["podman", "run", "--rm", "-v", f"{tmp_path}:/job", CUDA_IMAGE, "python", "-m", "rlrepro",
                           "train", "--spec", "@/job/spec.json", "--run-dir", "/job/run"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode != 0
    assert "device 'cuda' was requested but torch sees no CUDA GPU (torch 2.13.0" in proc.stderr, proc.stderr[-2000:]
    assert "built for CUDA 13." in proc.stderr and not (tmp_path / "run" / "policies.pt").exists()
