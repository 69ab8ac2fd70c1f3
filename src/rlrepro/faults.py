"""Fault injection for the kill-and-resume tests: real SIGKILLs at named points of a real training process.

`RLREPRO_FAULT_KILL_AT=<point>[@<n>]` makes this process SIGKILL itself the n-th time (default: the first) it
reaches `<point>`. Unset, as in every real run, `reached` is one environment lookup. Points:
- `write:<file name>`: inside an atomic write, after the temporary file is written and before it is renamed (a kill
  in the middle of writing a checkpoint or an output);
- `checkpoint-saved`: right after a resume checkpoint was written;
- `phase:<name>`: entering a phase of a job (`rewire-selection`, `packnet-finetune`, `ewc-fisher`,
  `csp-alpha-search`, `evaluation`);
- `epoch`: after each collection epoch of a continual task.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_seen: Counter[str] = Counter()


def reached(point: str) -> None:
    wanted = os.environ.get("RLREPRO_FAULT_KILL_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _seen[point] += 1
    if _seen[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
