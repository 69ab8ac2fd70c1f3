"""In-situ check: a real compiled DAPD job (train_sparse), where selected updates are also run eagerly from the
same state and compared; the job continues on the compiled trajectory. Selected: the 3 updates after every
set_masks, and every 1000th update."""
import json, sys, logging
import torch
from rlrepro.engine.learner import SACLearner

orig_update, orig_set = SACLearner.update, SACLearner.set_masks
log = []

def state(l):
    ts = [t for m in (l.actor, l.critic, l.target_critic) for t in m.state_dict().values() if t.is_floating_point()]
    for opt in (l.opt_critic, l.opt_actor, l.opt_alpha):
        for s in opt.state.values():
            ts += [s[k] for k in ("exp_avg", "exp_avg_sq", "step") if k in s]
    return ts + [l.log_alpha]

def clone(ts): return [t.detach().clone() for t in ts]
def put(ts, vals):
    with torch.no_grad():
        for t, v in zip(ts, vals, strict=True): t.copy_(v)

def set_masks(self, a, c):
    orig_set(self, a, c)
    self._chk = 3

def update(self, batch, extra_loss=None):
    chk = getattr(self, "_chk", 0)
    fn = self._update_fn
    if not (chk > 0 or self.updates % 1000 == 0) or fn is None or fn.compiled is None:
        return orig_update(self, batch, extra_loss)
    self._chk = chk - 1
    live = state(self)
    before, gen0, n0 = clone(live), self.generator.get_state(), self.updates
    out_c = orig_update(self, batch, extra_loss)
    after_c, gen_c, n_c = clone(state(self)), self.generator.get_state(), self.updates
    put(state(self), before); self.generator.set_state(gen0); self.updates = n0
    compiled, fn.compiled = fn.compiled, None
    try:
        orig_update(self, batch, extra_loss)
    finally:
        fn.compiled = compiled
    after_e = clone(state(self))
    put(state(self), after_c); self.generator.set_state(gen_c); self.updates = n_c
    rel = max(((x - y).norm() / x.norm().clamp(min=1e-12)).item() for x, y in zip(after_e, after_c))
    moved = max(((x - y).norm() / x.norm().clamp(min=1e-12)).item() for x, y in zip(after_e, before))
    log.append(dict(update=n0, after_mask=chk > 0, rel_departure=rel, rel_step=moved))
    return out_c

SACLearner.update, SACLearner.set_masks = update, set_masks
from rlrepro.cli import main
try:
    main(sys.argv[1:])
finally:
    json.dump(log, open(sys.argv[-1] + "/../check.json", "w"))
