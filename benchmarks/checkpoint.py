"""Size and write/read time of a continual job's mid-task resume checkpoint at paper shapes.

The worst case: a full replay (the paper's 1.28M transitions) of HalfCheetah (18-d observations, 6-d actions) and of
Humanoid (244-d, 17-d), with the paper's 3x256 policy (ft_1) and critic, the learner's three optimisers and target
critic, in the continual loop's own layout (the method's structure, state dict and runtime state, the critic's state
dict, the trainer's learner `full_state()` and replay rows, generator and RNG states: tensors and plain values),
written through the same `CheckpointStore.save` (atomic: temporary file, fsync, rename) a job uses and read back
through `CheckpointStore.load` (`torch.load(weights_only=True)`). Each shape is also written with a half-full replay (a
checkpoint only carries the filled rows).

    python benchmarks/checkpoint.py                 # both shapes, full and half-full replay
    python benchmarks/checkpoint.py --capacity 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from rlrepro.checkpoint import CheckpointStore, capture_rng
from rlrepro.continual import build_method
from rlrepro.continual.config import SACConfig, learner_config
from rlrepro.continual.loop import method_checkpoint
from rlrepro.engine.config import NetworkConfig
from rlrepro.engine.learner import SACLearner
from rlrepro.engine.networks import TwinCritic
from rlrepro.engine.replay import ReplayBuffer

SHAPES = {"halfcheetah": (18, 6), "humanoid": (244, 17)}


def payload(obs_dim: int, action_dim: int, capacity: int, filled: int) -> dict:
    network = NetworkConfig(hidden_sizes=(256, 256, 256))
    method = build_method("ft_1", obs_dim, action_dim, network, {})
    critic = TwinCritic(obs_dim, action_dim, network)
    generator = torch.Generator().manual_seed(0)
    learner = SACLearner(method.train_actor(), critic, learner_config(SACConfig(), action_dim), generator,
                         actor_parameters=method.trainable_parameters())
    replay = ReplayBuffer(capacity, obs_dim, action_dim, torch.device("cpu"))
    chunk = 100_000
    for start in range(0, filled, chunk):
        n = min(chunk, filled - start)
        replay.put(torch.randn(n, obs_dim), torch.rand(n, action_dim), torch.randn(n), torch.ones(n), torch.randn(n, obs_dim))
    trainer = {"learner": learner.full_state(), "replay": replay.state_dict()}
    return {"method": method_checkpoint(method), "critic": {"obs_dim": obs_dim, "state": critic.state_dict()},
            "trainer": trainer, "generator": generator.get_state(), "rng": capture_rng()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_280_000)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/checkpoint.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, (obs_dim, action_dim) in SHAPES.items():
        for fill in (1.0, 0.5):
            data = payload(obs_dim, action_dim, args.capacity, int(args.capacity * fill))
            with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
                store = CheckpointStore(Path(tmp), {"benchmark": name})
                store.save(data)
                start = time.monotonic()
                CheckpointStore(Path(tmp), {"benchmark": name}).load()
                read_s = time.monotonic() - start
            row = {"shape": name, "obs_dim": obs_dim, "replay_rows": int(args.capacity * fill),
                   "size_mb": store.last_size_bytes / 1e6, "write_s": store.last_write_s, "read_s": read_s}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            del data
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| shape | replay rows | size (MB) | write (s) | read (s) |\n|---|---|---|---|---|")
    for r in rows:
        shape = f"{r['shape']} ({r['obs_dim']}-d obs)"
        print(f"| {shape} | {r['replay_rows']:,} | {r['size_mb']:,.0f} | {r['write_s']:.1f} | {r['read_s']:.1f} |")


if __name__ == "__main__":
    main()
