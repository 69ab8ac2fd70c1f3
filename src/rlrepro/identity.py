"""Which code a job runs, and the check that it is the code the workflow was built from.

The Snakefile exports the checkout's identity to every job (`RLREPRO_EXPECT_ENGINE`, `RLREPRO_EXPECT_SOURCE_TREE`,
`RLREPRO_EXPECT_COMMIT`, `RLREPRO_EXPECT_SOURCE_DIRTY`: environment variables, so they never enter a job's params and
change no rerun decision); a job compares them with its own before any work. The source tree is git's hash of
`src/`: an image built from another commit that touched only docs or config still runs, one built from other engine
source does not. Cheap to import (no torch, no pandas): the Snakefile uses it while parsing.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from rlrepro import ENGINE_VERSION
from rlrepro.errors import ConfigError

log = logging.getLogger("rlrepro")
UNKNOWN = "unknown"
SOURCE_DIR = Path(__file__).resolve().parents[1]
"""`src/` of the code that runs (in a checkout or an editable install; site-packages in an image)."""


def _git(directory: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(source_dir: Path = SOURCE_DIR) -> tuple[str, bool | None]:
    """The commit of the code that runs, and whether its tree is dirty (RLREPRO_GIT_COMMIT wins, e.g. in images)."""
    if os.environ.get("RLREPRO_GIT_COMMIT"):
        return os.environ["RLREPRO_GIT_COMMIT"], None
    commit = _git(source_dir, "rev-parse", "HEAD")
    if commit is None:
        return UNKNOWN, None
    return commit, bool(_git(source_dir, "status", "--porcelain", "--untracked-files=no"))


def _tree(source_dir: Path) -> str:
    """git's tree hash of `source_dir` at HEAD."""
    return _git(source_dir, "rev-parse", "HEAD:./") or UNKNOWN


def source_tree(source_dir: Path = SOURCE_DIR) -> str:
    """git's tree hash of `src/` at HEAD (RLREPRO_SOURCE_TREE wins: an image records the tree it was built from)."""
    return os.environ.get("RLREPRO_SOURCE_TREE") or _tree(source_dir)


def source_dirty(source_dir: Path = SOURCE_DIR) -> bool:
    return bool(_git(source_dir, "status", "--porcelain", "--untracked-files=no", "--", "."))


def checkout_environment(source_dir: Path) -> dict[str, str]:
    """What the Snakefile exports to every job: the identity of the checkout it was parsed from."""
    return {
        "RLREPRO_EXPECT_ENGINE": ENGINE_VERSION,
        "RLREPRO_EXPECT_COMMIT": _git(source_dir, "rev-parse", "HEAD") or UNKNOWN,
        "RLREPRO_EXPECT_SOURCE_TREE": _tree(source_dir),  # the checkout's own, never an image's override
        "RLREPRO_EXPECT_SOURCE_DIRTY": "1" if source_dirty(source_dir) else "0",
    }


def job_identity() -> dict[str, str | bool | None]:
    """This job's code (engine, commit, dirty tree, source tree) and the checkout's, as meta.json records them."""
    commit, dirty = git_state()
    return {
        "engine_version": ENGINE_VERSION,
        "git_commit": commit,
        "git_dirty": dirty,
        "source_tree": source_tree(),
        "checkout_engine_version": os.environ.get("RLREPRO_EXPECT_ENGINE"),
        "checkout_git_commit": os.environ.get("RLREPRO_EXPECT_COMMIT"),
        "checkout_source_tree": os.environ.get("RLREPRO_EXPECT_SOURCE_TREE"),
    }


def check_job_matches_checkout() -> None:
    """Fail before work when the job's engine is not the checkout's (e.g. a stale image under --use-singularity).

    - engine versions differ: error, always (results would be filed under the wrong engine's params);
    - source trees known on both sides and different: error, naming both commits;
    - the job's tree unknown (an image built without RLREPRO_SOURCE_TREE): warning, it cannot be verified;
    - uncommitted changes under the checkout's src/ while the job runs in a container: warning (an image built from
      a commit cannot contain them; outside a container the job runs the working tree itself).
    Without the expectation variables (a job started by hand) there is nothing to compare.
    """
    expected_engine = os.environ.get("RLREPRO_EXPECT_ENGINE")
    if not expected_engine:
        return
    me = job_identity()
    where = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    runs_in = f"the image {where}" if where else f"the rlrepro installed at {SOURCE_DIR}"
    fix = ("rebuild the image from this checkout (docker/Dockerfile with --build-arg RLREPRO_GIT_COMMIT=$(git rev-parse "
           "HEAD) --build-arg RLREPRO_SOURCE_TREE=$(git rev-parse HEAD:src)) and point `container:` at it, or check out "
           "the commit the image was built from")  # fmt: skip
    if expected_engine != me["engine_version"]:
        raise ConfigError(
            f"this job runs engine {me['engine_version']} (commit {me['git_commit']}) from {runs_in}, but the workflow "
            f"was built from a checkout with engine {expected_engine} (commit {me['checkout_git_commit']}): {fix}"
        )
    expected_tree = me["checkout_source_tree"] or UNKNOWN
    if expected_tree != UNKNOWN and me["source_tree"] != UNKNOWN and expected_tree != me["source_tree"]:
        if not where and not os.environ.get("RLREPRO_SOURCE_TREE"):
            # the job runs the checkout itself (no image): src/ was committed to after Snakemake read the workflow
            fix = ("src/ changed (a commit) after this Snakemake run started, so its jobs would mix two versions of "
                   "the code; run snakemake again to go on with the new one (finished jobs are kept, interrupted ones "
                   "resume)")  # fmt: skip
        raise ConfigError(
            f"this job runs engine source {me['source_tree'][:12]} (commit {me['git_commit']}) from {runs_in}, but the "
            f"workflow's checkout has source {expected_tree[:12]} (commit {me['checkout_git_commit']}): {fix}"
        )
    if expected_tree != UNKNOWN and me["source_tree"] == UNKNOWN:
        log.warning("cannot verify that %s runs the checkout's engine source (it records no source tree): %s", runs_in, fix)
    if where and os.environ.get("RLREPRO_EXPECT_SOURCE_DIRTY") == "1":
        log.warning("the checkout has uncommitted changes under src/ that the image %s cannot contain", where)
