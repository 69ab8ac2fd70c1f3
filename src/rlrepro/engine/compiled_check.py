"""Checking the compiled update against the eager one, inside a real job.

`tests/test_compiled_update.py` shows that the compiled `sac_update` follows the eager one on this project's CPUs
and torch. A job on other hardware (a GPU, another CPU's kernels) or another torch can be checked where it runs:
with `compiled_check_every: N` in config.yaml (the Snakefile exports it as `$RLREPRO_COMPILED_CHECK_EVERY`; like
the checkpoint interval it never enters a job's params, so turning it on reruns nothing), the first call of every
compiled graph and every N-th compiled update of the job are computed a second time, eagerly, from the same state:
the parameters, the Adam moments and step counts, log α, the target critic and every random stream (the job's
generator; torch's default ones, which Rewire's Gumbel noise draws from). The job then goes on from the compiled
result, so a checked job gives the unchecked job's outputs; it costs one eager update and copies of the state per
check.

A check's departure is the share of the update on which the two disagree: for each part the update writes (the
critic's parameters, its Adam moments, the same for the actor, log α with its moments, the target critic),
‖compiled − eager‖ / ‖eager − before‖ over all the part's tensors, and the largest over the parts. A wrong or missing
term counts about 1 whatever the tensors' scale; float32 rounding counts far less. Parts, not single tensors: one
tensor's own step can be near zero by chance (log α's Adam moment when its gradient nears the moment's value), which
would blow up the rounding of that tensor alone; so log α and its two moments, one number each, form one part. Adam's
step counts must agree, and a part the eager update leaves as it was must be left so by the compiled one. Above
`compiled_check_tolerance` (default 0.1) the job stops with `CompiledUpdateMismatch`, naming the update, the part and
its tensor that disagrees most: a run from a defective compiled update must not become a result. The job's meta.json
records the checks (`compiled_check`: how many, the largest and median departure, the worst update and tensor); a job
resumed from a checkpoint records those of its last process.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from rlrepro.checkpoint import capture_rng, restore_rng
from rlrepro.errors import ConfigError

ENV_EVERY = "RLREPRO_COMPILED_CHECK_EVERY"
ENV_TOLERANCE = "RLREPRO_COMPILED_CHECK_TOLERANCE"
DEFAULT_TOLERANCE = 0.1


class CompiledUpdateMismatch(RuntimeError):
    """The compiled update departed from the eager one by more than the tolerance."""


@dataclass
class CompiledCheck:
    """One job's check: its settings, and the record of every learner's checks (a continual job has one learner per
    task, and PackNet's fine-tune one more). `compiled` counts the job's compiled updates; a check names its update
    by that count."""

    every: int
    tolerance: float = DEFAULT_TOLERANCE
    compiled: int = 0
    departures: list[float] = field(default_factory=list)
    worst: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"compiled_check_every must be a positive number of updates, got {self.every}")
        if not self.tolerance > 0:
            raise ConfigError(f"compiled_check_tolerance must be > 0, got {self.tolerance}")

    @classmethod
    def from_environment(cls) -> CompiledCheck | None:
        """The job's check from $RLREPRO_COMPILED_CHECK_EVERY (unset or 0: none) and $..._TOLERANCE."""
        every, tolerance = os.environ.get(ENV_EVERY, "").strip(), os.environ.get(ENV_TOLERANCE, "").strip()
        try:
            n = int(every or 0)
            tol = float(tolerance) if tolerance else DEFAULT_TOLERANCE
        except ValueError as err:
            raise ConfigError(f"{ENV_EVERY}={every!r} / {ENV_TOLERANCE}={tolerance!r}: {err}") from None
        return cls(n, tol) if n else None

    def due(self, first_call: bool) -> bool:
        """Whether the compiled update about to run is checked (it is counted either way): the first call of each
        graph, so that every graph is checked, and every `every`-th compiled update of the job."""
        self.compiled += 1
        return first_call or (self.compiled - 1) % self.every == 0

    def run(self, compiled: Callable[[], Any], eager: Callable[[], Any], state: list[tuple[str, str, torch.Tensor]],
            generator: torch.Generator, device: torch.device) -> Any:  # fmt: skip
        """Run `compiled()`, then `eager()` from the state and random streams before it; keep the compiled result and
        return its output. `state`: every tensor the update writes, as (part, name, tensor)."""
        parts, names, tensors = [p for p, _, _ in state], [n for _, n, _ in state], [t for _, _, t in state]
        before, streams = _copies(tensors), (generator.get_state(), capture_rng(device))
        out = compiled()
        after, streams_after = _copies(tensors), (generator.get_state(), capture_rng(device))
        _put(tensors, before)
        generator.set_state(streams[0])
        restore_rng(streams[1])
        eager()
        terms = torch.stack([_terms(b, c, e) for b, c, e in zip(before, after, tensors, strict=True)])
        _put(tensors, after)
        generator.set_state(streams_after[0])
        restore_rng(streams_after[1])
        by_part = {p: [i for i, q in enumerate(parts) if q == p] for p in dict.fromkeys(parts)}
        departures = torch.stack([_departure(terms[idx]) for idx in by_part.values()])
        worst_part = int(departures.argmax())
        members = list(by_part.values())[worst_part]
        worst_tensor = members[int(terms[members, 0].argmax())]
        departure = float(departures[worst_part])  # the host reads of a check
        where = f"{list(by_part)[worst_part]}: {names[worst_tensor]}"
        update = self.compiled - 1
        self.departures.append(departure)
        if self.worst is None or departure > self.worst["departure"]:
            self.worst = {"departure": departure, "update": update, "tensor": where}
        if not departure <= self.tolerance:
            raise CompiledUpdateMismatch(
                f"the compiled SAC update departs from the eager one by {departure:.3g} of its step ({where!r}, the "
                f"job's compiled update {update}), over compiled_check_tolerance "
                f"{self.tolerance:g}: this torch and device do not compile the update faithfully. Run the job with "
                "`engine: {compile: false}` (the eager update: the same results up to rounding) and report it"
            )
        return out

    def summary(self) -> dict[str, Any]:
        """What meta.json records (`compiled_check`)."""
        return {
            "every": self.every,
            "tolerance": self.tolerance,
            "compiled_updates": self.compiled,
            "checks": len(self.departures),
            "max_departure": max(self.departures, default=None),
            "median_departure": statistics.median(self.departures) if self.departures else None,
            "worst_update": self.worst["update"] if self.worst else None,
            "worst_tensor": self.worst["tensor"] if self.worst else None,
        }


def _copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors]


def _put(tensors: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for t, v in zip(tensors, values, strict=True):
            t.copy_(v)


def _terms(before: torch.Tensor, compiled: torch.Tensor, eager: torch.Tensor) -> torch.Tensor:
    """(‖compiled − eager‖², ‖eager − before‖², whether a value is finite on one side only) of one tensor, on its
    device. Values that are not finite on both sides alike (a run diverged in both) are left out."""
    b, c, e = before.detach().double(), compiled.detach().double(), eager.detach().double()
    finite_c, finite_e = torch.isfinite(c), torch.isfinite(e)
    both = finite_c & finite_e
    diff = torch.where(both, c - e, 0.0).pow(2).sum()
    step = torch.where(both & torch.isfinite(b), e - b, 0.0).pow(2).sum()
    return torch.stack([diff, step, (finite_c != finite_e).any().double()])


def _departure(terms: torch.Tensor) -> torch.Tensor:
    """‖compiled − eager‖ / ‖eager − before‖ of a part from its tensors' `_terms` rows: 0 where the two agree, inf
    where the compiled update moved what the eager one left alone or only one side is finite."""
    diff, step, one_sided = terms[:, 0].sum(), terms[:, 1].sum(), terms[:, 2].sum()
    ratio = torch.where(diff == 0, 0.0, (diff / step).sqrt())
    return torch.where(one_sided > 0, math.inf, ratio)
