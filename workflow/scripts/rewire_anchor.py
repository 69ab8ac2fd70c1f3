"""How well Rewire's anchors held during a run's second task: reads a run's `policies.pt` and compares the method
after task 0 with the method after task 1 (docs/reproducing.md, "The validation study", Rewire reading).

Printed per shared layer: the relative weight change ‖W₁ − W₀‖/‖W₀‖; the share of task 0's cached wiring entries that
the learned alignment re-mapped at consolidation, and their mean displacement (positions out of the layer's width);
for the first layer, the median distance of each task-1 row to its nearest task-0 row (relative to the mean row norm;
0 = the rows are a permutation of the anchors). Then, on standard-normal observations: the relative change of task
0's trunk features and the mean absolute change of its deterministic action (actions lie in [−1, 1]).

    python workflow/scripts/rewire_anchor.py results/validation/runs/halfcheetah/robustness/rewire/seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rlrepro.continual import load_stage_methods, read_policies


def report(run_dir: Path, n_obs: int = 4096) -> list[str]:
    policies = read_policies(run_dir / "policies.pt")  # data only: a file holding pickled objects is refused
    stage0, stage1 = load_stage_methods(policies, torch.device("cpu"))[:2]
    lines = [f"{run_dir}"]
    for i, (a, b) in enumerate(zip(stage0.layers, stage1.layers, strict=True)):
        w0, w1 = a.linear.weight.detach(), b.linear.weight.detach()
        moved = (a.cache[0] != b.cache[0]).float().mean()
        shift = (a.cache[0].argsort() - b.cache[0].argsort()).abs().float().mean()
        line = (f"  layer {i}: weights moved {float((w1 - w0).norm() / w0.norm()):.2f} of their norm; wiring entries "
                f"re-mapped {float(moved):.2f}, mean displacement {float(shift):.1f} of {w0.shape[0]}")  # fmt: skip
        if i == 0:
            nearest = torch.cdist(w1, w0).min(1).values / w0.norm(dim=1).mean()
            line += f"; rows to nearest anchor row (median) {float(nearest.median()):.2f}"
        lines.append(line)
    obs = torch.randn(n_obs, stage0.obs_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h0, h1 = stage0.trunk(obs, ("cached", 0)), stage1.trunk(obs, ("cached", 0))
        a0 = stage0.policy_for_task(0).deterministic(obs)
        a1 = stage1.policy_for_task(0).deterministic(obs)
    features, actions = float((h1 - h0).norm() / h0.norm()), float((a1 - a0).abs().mean())
    lines.append(f"  task 0 after task 1: trunk features changed {features:.2f} (relative); actions changed "
                 f"{actions:.3f} on average (|a| {float(a0.abs().mean()):.3f})")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    for run_dir in parser.parse_args().run_dirs:
        print("\n".join(report(run_dir)))


if __name__ == "__main__":
    main()
