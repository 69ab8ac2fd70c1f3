"""The continual suite (Rewire paper): the task loop, evaluation and checkpoints (`loop`), its configuration
(`config`) and its methods (`methods`: one file per method, registered in `methods/registry.py`). Every method trains
with the engine's `SACLearner` in the Rewire/SaLinA flavour (`config.learner_config`).

The loop's public names are importable from here; they load on first use, so that importing the method registry
(the Snakefile lists method names) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC = (
    "EvalSpec", "TaskTrainer", "TrainEnvEvaluator", "TrainResult", "TrainSpec", "build_method", "configure_threads",
    "evaluate", "evaluate_random", "load_stage_methods", "read_policies", "run_episodes", "seed_everything", "train",
)  # fmt: skip
__all__ = list(PUBLIC)


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        return getattr(importlib.import_module("rlrepro.continual.loop"), name)
    raise AttributeError(f"module 'rlrepro.continual' has no attribute {name!r}")
