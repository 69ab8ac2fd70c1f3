"""Opt-in live training curves: TensorBoard event files, written while a job runs.

Jobs write under `$RLREPRO_TENSORBOARD_DIR/<run>/` (the Snakefile sets it to `results/tensorboard` when config.yaml's
`tensorboard: true`; an environment variable, not a job parameter, so switching it reruns nothing). Scalars are
written only where the training loop already reads values back (curve points, evaluations), so logging adds no
host sync to the hot loop. `tensorboard --logdir results/tensorboard` watches a multi-hour run while it runs.
"""

from __future__ import annotations

import os
from pathlib import Path


class RunLog:
    """A run's scalar log; without `RLREPRO_TENSORBOARD_DIR` every call is a no-op (nothing imported, nothing written)."""

    def __init__(self, run_name: str) -> None:
        root = os.environ.get("RLREPRO_TENSORBOARD_DIR")
        self.path = Path(root) / run_name if root else None
        self.writer = None
        self._open(None)

    def _open(self, purge_step: int | None) -> None:
        if self.path is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.path), purge_step=purge_step, flush_secs=30)

    def resumed_at(self, step: int) -> None:
        """A resumed job: events the killed process wrote at and after `step` are hidden by TensorBoard."""
        if self.writer is not None:
            self.writer.close()
            self._open(int(step))

    def scalars(self, step: int, values: dict[str, object]) -> None:
        """One point per tag (tensors are read back here: call it where the loop syncs anyway)."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), int(step))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
