"""Progress reporting passed into training: a tqdm bar on a terminal, periodic one-line logs otherwise."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("rlrepro")


class Progress:
    """Counts env steps of a whole run; `update` is cheap enough to call every epoch."""

    def __init__(self, total_steps: int, desc: str, log_interval_s: float = 30.0, enabled: bool | None = None) -> None:
        tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = tqdm(total=total_steps, desc=desc, unit="step", dynamic_ncols=True) if tty else None
        self.total = total_steps
        self.desc = desc
        self.interval = log_interval_s
        self.start = self.last_log = time.monotonic()
        self.done = 0

    def update(self, steps: int, **info: float) -> None:
        self.done += steps
        if self.bar is not None:
            self.bar.update(steps)
            if info:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in info.items()}, refresh=False)
            return
        now = time.monotonic()
        if now - self.last_log >= self.interval:
            self.last_log = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            extra = " ".join(f"{k}={v:.3g}" for k, v in info.items())
            log.info("%s %d/%d steps (%.0f steps/s, eta %.0fs) %s", self.desc, self.done, self.total, rate, eta, extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        log.info("%s finished: %d steps in %.1fs", self.desc, self.done, time.monotonic() - self.start)
