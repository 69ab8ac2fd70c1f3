"""The sparse suite (DAPD paper): the single-env loop with evaluation and checkpoints (`train`, entry point
`train_sparse`), its configuration (`config`: the `sparse:` block → the engine's DAPD/pytorch_sac flavour), DAPD's
connection scores (`dapd`) and the masks of DAPD, RiGL and RLx2 (`masks`). Every method trains with the engine's
`SACLearner`. `train_sparse` and `SparseSpec` load on first use (the Snakefile imports the config without torch)."""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC = {"train_sparse": "rlrepro.sparse.train", "SparseSpec": "rlrepro.sparse.config"}
__all__ = list(PUBLIC)


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'rlrepro.sparse' has no attribute {name!r}")
