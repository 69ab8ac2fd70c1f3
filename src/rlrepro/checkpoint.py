"""Resume checkpoints, one mechanism for both suites.

A job keeps one file, `<checkpoint dir>/state.pt`, replaced atomically at each save. It carries a tag: the hash of
the full job spec and the engine version. A checkpoint is only ever resumed by the job spec that wrote it: on a
mismatch it is ignored with a log line that says which part differs, and removed. An unreadable file (truncated,
corrupt) is reported and removed, and the job starts clean. Temporary files left by a kill during a write and the
stage files of earlier versions are removed too. A job that completes calls `clear()`: no resumable state is left
behind, so a later job with another spec can never pick it up.

The file is data, never code: tensors, numbers, strings, lists and dicts (module, optimiser, replay and method state
dicts; RNG states as tensors; the env's state as arrays), read with `torch.load(weights_only=True)`
(`rlrepro.io.read_torch_data`). A file that holds pickled objects (written before format 3, or planted in a shared
checkpoint folder) is refused before any of it runs: logged as an error naming it, kept aside as `state.pt.refused`,
and the job starts clean.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlrepro import ENGINE_VERSION, faults
from rlrepro.config import stable_hash
from rlrepro.io import RefusedFile, atomic_torch_save, read_torch_data

log = logging.getLogger("rlrepro")
FILE_NAME = "state.pt"
FORMAT = 3
"""Layout of the payload: 3 since checkpoints are data only (2: the one-engine merge, continual checkpoints pickled
the engine's objects)."""
LEGACY_PATTERNS = ("stage*.pt",)
"""Stage checkpoints of engine versions before the tagged format (no spec hash: never resumable)."""


def checkpoint_interval(default: float = 300.0) -> float:
    """Seconds between checkpoints: $RLREPRO_CHECKPOINT_INTERVAL_S (the Snakefile sets it from config.yaml
    `checkpoint_interval_s`; it never enters a job's params, so changing it reruns nothing)."""
    return float(os.environ.get("RLREPRO_CHECKPOINT_INTERVAL_S", default))


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """Every process-wide random stream as tensors and numbers: torch's (and CUDA's on a CUDA device), numpy's legacy
    global (MT19937 keys, position, cached Gaussian) and Python's (its 625 words)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "random": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": python_gauss},
    }  # fmt: skip
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every stream `capture_rng` saved (its tensors from wherever the checkpoint was mapped: RNG states live on
    the CPU)."""
    torch.set_rng_state(state["torch"].cpu())
    legacy = state["numpy"]
    keys = legacy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, legacy["pos"], legacy["has_gauss"], legacy["gauss"]))
    python = state["random"]
    random.setstate((python["version"], tuple(python["words"].tolist()), python["gauss"]))
    if "cuda" in state:
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


class CheckpointStore:
    """Save, validate and load the resume state of one job; `None` directory = checkpointing off."""

    def __init__(self, directory: Path | None, spec: dict[str, Any], *, interval_s: float | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        if isinstance(spec.get("device"), str):  # which GPU a job claims is not part of what it computes
            spec = {**spec, "device": spec["device"].split(":")[0]}
        self.tag = {"spec_hash": stable_hash(spec), "engine_version": ENGINE_VERSION, "format": FORMAT}
        self.interval_s = checkpoint_interval() if interval_s is None else float(interval_s)
        self._last_save = time.monotonic()
        self.last_size_bytes = 0
        self.last_write_s = 0.0

    @property
    def path(self) -> Path | None:
        return self.directory / FILE_NAME if self.directory is not None else None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def due(self) -> bool:
        """True when `interval_s` has passed since the last save (or the job start)."""
        return self.enabled and time.monotonic() - self._last_save >= self.interval_s

    def _debris(self) -> list[Path]:
        """Temporary files of killed writes and untagged stage files of older engines."""
        return sorted(p for pattern in (f".{FILE_NAME}.*.tmp", *LEGACY_PATTERNS) for p in self.directory.glob(pattern))

    def _remove_debris(self) -> None:
        for stale in self._debris():
            log.warning("checkpoint: removing %s (%s)", stale, "left by a killed write" if stale.name.startswith(".")
                        else "a stage checkpoint of an older engine, without a spec hash")  # fmt: skip
            stale.unlink(missing_ok=True)

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The saved payload if it was written by this exact job spec and engine, else None (and the file removed)."""
        if not self.enabled or not self.directory.exists():
            return None
        self._remove_debris()
        path = self.path
        if not path.exists():
            return None
        try:
            saved = read_torch_data(path, map_location)
            tag, payload = saved["tag"], saved["payload"]
        except RefusedFile as err:  # pickled objects: never run; kept aside for whoever wants to look at it
            refused = path.with_name(f"{path.name}.refused")
            path.replace(refused)
            log.error(
                "checkpoint %s refused: it holds pickled Python objects, not only tensors and plain data (%s); nothing "
                "in it was run. Kept as %s, not resumed: the job starts clean (a checkpoint written before format %d "
                "is not converted: only its progress is lost)", path, err.reason, refused.name, FORMAT,
            )  # fmt: skip
            return None
        except Exception as err:  # any unreadable file is discarded the same way
            log.warning("checkpoint %s is unreadable (%s: %s); removed, starting clean", path, type(err).__name__, err)
            path.unlink(missing_ok=True)
            return None
        differs = [f"{key} {tag.get(key)!r} (checkpoint) != {value!r} (this job)" for key, value in self.tag.items()
                   if tag.get(key) != value]  # fmt: skip
        if differs:
            log.warning("checkpoint %s ignored and removed: written by another job spec: %s", path, "; ".join(differs))
            path.unlink(missing_ok=True)
            return None
        log.info("checkpoint %s matches this job (spec %s, engine %s, format %s): resuming", path, *self.tag.values())
        return payload

    def save(self, payload: dict[str, Any]) -> None:
        start = time.monotonic()
        atomic_torch_save({"tag": self.tag, "payload": payload}, self.path)
        self._last_save = time.monotonic()
        self.last_write_s = self._last_save - start
        self.last_size_bytes = self.path.stat().st_size
        log.info("checkpoint saved: %s (%.1f MB in %.2f s)", self.path, self.last_size_bytes / 1e6, self.last_write_s)
        faults.reached("checkpoint-saved")

    def clear(self) -> None:
        """Remove every resumable file: called once the job's declared outputs are complete."""
        if not self.enabled or not self.directory.exists():
            return
        self.path.unlink(missing_ok=True)
        for stale in self._debris():
            stale.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass  # not empty: something else lives there, leave it
