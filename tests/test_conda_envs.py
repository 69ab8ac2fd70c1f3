"""The conda environments of `snakemake --sdm conda` (envs/*.yaml and their post-deploy scripts).

No conda channel is reachable on this platform, so no environment is created here (README, "Conda"). What can be
checked is what breaks them: Snakemake creates each env from a copy of its file under `.snakemake/conda/`, so a
relative path inside it resolves against the wrong directory; a new requirements.lock must make a new env (Snakemake
hashes the env file and its post-deploy script only); and every shell rule must name the env.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_env_files_exist():
    assert {p.name for p in ENV_FILES} == {"rlrepro.yaml", "rlrepro-cuda.yaml"}


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_file_names_the_current_lock(env_file: Path):
    """A lock change must change the env file, or Snakemake reuses the env built from the old lock."""
    digest = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()
    recorded = re.search(r"requirements\.lock sha256: ([0-9a-f]{64})", env_file.read_text())
    assert recorded, f"{env_file.name} names no lock digest"
    assert recorded.group(1) == digest, (
        f"{env_file.name} was written for another requirements.lock: set its digest to {digest}"
    )


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_file_has_no_path_that_breaks_in_snakemakes_copy(env_file: Path):
    spec = yaml.safe_load(env_file.read_text())
    flat = []
    for dep in spec["dependencies"]:
        flat.extend(dep["pip"] if isinstance(dep, dict) else [dep])
    assert not [d for d in flat if ".." in d or d.startswith((".", "-e", "-r", "-c"))], flat
    assert (env_file.parent / (env_file.stem + ".post-deploy.sh")).is_file()


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_post_deploy_installs_the_lock_and_checkout_from_snakemakes_copy(env_file: Path, tmp_path: Path):
    """Run the post-deploy script the way Snakemake does: from its copy under .snakemake/conda/, inside the env.

    `python` is a recording stand-in (no conda env can be created here): the test checks the pip arguments name
    the checkout's lock and the checkout itself by absolute paths that exist, whatever the working directory.
    """
    copy_dir = tmp_path / "work" / ".snakemake" / "conda"
    copy_dir.mkdir(parents=True)
    script = copy_dir / "0123abcd.post-deploy.sh"
    shutil.copy(env_file.parent / (env_file.stem + ".post-deploy.sh"), script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "pip_args"
    fake = bin_dir / "python"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RLREPRO_CHECKOUT": str(ROOT)}
    subprocess.run(["bash", str(script)], cwd=copy_dir, env=env, check=True)
    args = record.read_text().split("\n")
    assert args[:3] == ["-m", "pip", "install"]
    lock = args[args.index("-c") + 1]
    editable = args[args.index("-e") + 1]
    assert Path(lock) == ROOT / "requirements.lock" and Path(lock).is_file()
    assert Path(editable) == ROOT and (Path(editable) / "pyproject.toml").is_file()
    if "cuda" in env_file.name:
        assert "torch==2.13.0" in args and "jax[cuda13]==0.10.2" in args

    # Outside the Snakefile (RLREPRO_CHECKOUT unset) the script stops with a message instead of guessing.
    env.pop("RLREPRO_CHECKOUT")
    proc = subprocess.run(["bash", str(script)], cwd=copy_dir, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "RLREPRO_CHECKOUT is unset" in proc.stderr


def test_every_shell_rule_runs_in_the_configured_env():
    """Each rule with a shell command names CONDA_ENV (config's `conda_env`); a rule without it would run on the host."""
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule in re.split(r"^rule ", smk.read_text(), flags=re.MULTILINE)[1:]:
            name = rule.split(":", 1)[0]
            if "\n    shell:" in rule:
                assert "\n    conda:\n        CONDA_ENV\n" in rule, f"{smk.name}: rule {name} has no conda env"
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'str(Path(workflow.basedir) / config["conda_env"])' in common
    assert 'os.environ.setdefault("RLREPRO_CHECKOUT"' in common
