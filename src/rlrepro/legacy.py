"""`python -m rlrepro convert-legacy <paths>`: rewrite a run's policies.pt or model.pt that an older rlrepro wrote with
pickled Python objects (dataclasses, numpy arrays, modules) as data, so that the pipeline's loader
(`rlrepro.io.read_torch_data`, `torch.load(weights_only=True)`) accepts it.

This is the one place that loads a torch file with pickle, and only on the user's explicit word: loading a pickle runs
whatever it names, so run it only on files whose origin you trust. Each file is rewritten in place (atomically) once
its converted contents read back as data; a file that already is data is left as it is. Resume checkpoints (state.pt)
are not converted: a job that finds an old one starts clean and loses only its progress.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlrepro.errors import ConfigError
from rlrepro.io import RefusedFile, atomic_torch_save, read_torch_data


def to_data(obj: Any, where: str) -> Any:
    """`obj` as tensors, numbers, strings, None, lists, tuples and dicts: modules as their state dicts, dataclasses as
    dicts, numpy arrays as tensors, numpy scalars and enums as their values."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, enum.Enum):
        return to_data(obj.value, where)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, nn.Module):
        return to_data(dict(obj.state_dict()), where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_data({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where)
    if isinstance(obj, dict):
        return {to_data(k, f"{where} key"): to_data(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_data(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise ConfigError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} has no data form: not converted")


def convert(path: Path) -> str:
    """Convert one trusted file in place; returns what was done."""
    if path.name.startswith("state.pt"):
        raise ConfigError(f"{path}: resume checkpoints are not converted; delete it: the job starts clean")
    try:
        read_torch_data(path)
        return "already data, left as it is"
    except RefusedFile:
        pass
    legacy = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    atomic_torch_save(to_data(legacy, path.name), path)
    read_torch_data(path)  # what was written is data
    return "converted to data"
