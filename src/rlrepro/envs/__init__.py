"""Environment backends behind one vectorised, torch-facing interface (`VecEnv`)."""

from rlrepro.envs.base import StepResult, VecEnv, make_env

__all__ = ["StepResult", "VecEnv", "make_env"]
