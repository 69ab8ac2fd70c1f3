"""Environment backends behind one vectorised, torch-facing interface (`VecEnv`).

Imports go one way: `base` (the interface) <- the backends <- `factory` (which picks one)."""

from rlrepro.envs.base import StepResult, VecEnv
from rlrepro.envs.factory import make_env

__all__ = ["StepResult", "VecEnv", "make_env"]
