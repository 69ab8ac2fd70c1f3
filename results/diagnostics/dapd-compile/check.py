"""Run one engine CLI command (a compiled sparse job) and recompute selected updates eagerly from the same state.

Selected: the 3 updates after every `set_masks`, and every 1000th. Each is run compiled, the learner's state
(parameters, Adam moments and step counts, log α, generator, update count) is put back, the update is run again
with the compiled function switched off, and the two results are compared; the job then continues from the
compiled result, so it follows the compiled trajectory. The departures go to `<run-dir>/../check.json`.

    python results/diagnostics/dapd-compile/check.py train-sparse --spec @SPEC.json --run-dir DIR/run

The CLI runs in this process, so the MKL shim's re-exec does not happen: preload it by hand (see README.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from rlrepro.cli import main
from rlrepro.engine.learner import SACLearner

ORIGINAL_UPDATE, ORIGINAL_SET_MASKS = SACLearner.update, SACLearner.set_masks
CHECKS: list[dict] = []


def state(learner: SACLearner) -> list[torch.Tensor]:
    """Every tensor an update changes, in a fixed order."""
    modules = (learner.actor, learner.critic, learner.target_critic)
    tensors = [t for m in modules for t in m.state_dict().values() if t.is_floating_point()]
    for opt in (learner.opt_critic, learner.opt_actor, learner.opt_alpha):
        for s in opt.state.values():
            tensors += [s[k] for k in ("exp_avg", "exp_avg_sq", "step") if k in s]
    return [*tensors, learner.log_alpha]


def copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone() for t in tensors]


def put(tensors: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for t, v in zip(tensors, values, strict=True):
            t.copy_(v)


def relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """The largest per-tensor ‖a − b‖ / ‖a‖."""
    return max(((x - y).norm() / x.norm().clamp(min=1e-12)).item() for x, y in zip(a, b, strict=True))


def set_masks(self: SACLearner, actor_masks, critic_masks) -> None:
    ORIGINAL_SET_MASKS(self, actor_masks, critic_masks)
    self._checks_left = 3


def update(self: SACLearner, batch, extra_loss=None):
    left = getattr(self, "_checks_left", 0)
    fn = self._update_fn
    if not (left > 0 or self.updates % 1000 == 0) or fn is None or fn.compiled is None:
        return ORIGINAL_UPDATE(self, batch, extra_loss)
    self._checks_left = left - 1
    before, generator, updates = copies(state(self)), self.generator.get_state(), self.updates
    stats = ORIGINAL_UPDATE(self, batch, extra_loss)
    compiled_state, compiled_generator, compiled_updates = copies(state(self)), self.generator.get_state(), self.updates
    put(state(self), before)
    self.generator.set_state(generator)
    self.updates = updates
    compiled, fn.compiled = fn.compiled, None
    try:
        ORIGINAL_UPDATE(self, batch, extra_loss)
    finally:
        fn.compiled = compiled
    eager_state = copies(state(self))
    put(state(self), compiled_state)
    self.generator.set_state(compiled_generator)
    self.updates = compiled_updates
    CHECKS.append({"update": updates, "after_mask": left > 0, "rel_departure": relative(eager_state, compiled_state),
                   "rel_step": relative(eager_state, before)})  # fmt: skip
    return stats


if __name__ == "__main__":
    SACLearner.update, SACLearner.set_masks = update, set_masks
    try:
        main(sys.argv[1:])
    finally:
        (Path(sys.argv[-1]).parent / "check.json").write_text(json.dumps(CHECKS))
