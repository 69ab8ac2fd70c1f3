"""Atomic writes: every declared output appears whole or not at all (write to a temp file, then rename). And the one
reader of the torch files the pipeline reads back (policies.pt, model.pt, state.pt): as data only, never as code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlrepro import faults
from rlrepro.errors import ConfigError


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary sibling of `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        faults.reached(f"write:{path.name}")
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: Path | str, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: Path | str) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


CONVERT_COMMAND = "python -m rlrepro convert-legacy"


class RefusedFile(ConfigError):
    """A torch file that holds more than tensors and plain data (pickled classes or calls): it is never loaded."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(
            f"{path}: refused: it holds pickled Python objects, not only tensors and plain data ({reason}); loading it "
            f"could run code. If an older rlrepro wrote it and you trust where it came from, convert it with "
            f"`{CONVERT_COMMAND} {path}`; otherwise delete it and rerun the job that makes it."
        )


def read_torch_data(path: Path | str, map_location: Any = "cpu") -> Any:
    """The contents of a torch file written by `atomic_torch_save`, loaded as data: tensors, numbers, strings, None,
    lists, tuples and dicts (`torch.load(weights_only=True)`). A file that names any other Python object (a class to
    rebuild, a function to call: an older rlrepro's pickled objects, or a hostile file) is refused before anything
    in it runs, with a `RefusedFile` naming the file and the command that converts a file the user trusts."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "a pickled Python object")
        raise RefusedFile(path, reason) from None


def atomic_write_parquet(df, path: Path | str) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))
