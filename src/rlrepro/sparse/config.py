"""Typed configuration of the sparse suite; each field documents one key of config.yaml's `sparse` block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlrepro.engine.config import EngineConfig, LearnerConfig, NetworkConfig, from_dict
from rlrepro.errors import ConfigError, unknown_name

SPARSE_METHODS = ("dense", "dapd", "rigl", "rlx2")


@dataclass(frozen=True)
class SparseSACConfig:
    """SAC of the DAPD code (pytorch_sac lineage, dapd.md §4); every sparse method shares it."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """ReLU hidden widths of the actor and of each Q network."""
    lr: float = 1e-3
    """Adam learning rate of actor, critic and log α."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    """Polyak coefficient of the target critic."""
    init_temperature: float = 0.1
    """Initial α (learnable; target entropy −|A|)."""
    actor_update_frequency: int = 1
    critic_target_update_frequency: int = 2
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    buffer_size: int = 1_000_000
    """Replay capacity (capped at the run's step budget: a smaller run never needs more)."""
    init: str = "xavier_normal"
    """Weight init of every layer: xavier_normal (pytorch_sac, DAPD; biases U(±1/√fan_in)) or orthogonal (RLx2's own
    SAC; zero biases)."""
    separate_eval_env: bool = False
    """Evaluate on a second env instance seeded seed + 100 (RLx2's own loop) instead of the training env (DAPD's)."""
    seed_steps: int = 5000
    """Uniform-random actions (and no updates) for the first steps."""
    total_steps: int = 1_000_000
    """Counted env steps of a run (one update per step after seed_steps)."""


@dataclass(frozen=True)
class SparseEvalConfig:
    every_steps: int = 5000
    """An evaluation is flagged every this many steps and runs at the next episode end (pytorch_sac)."""
    episodes: int = 10
    """Deterministic episodes (tanh μ) per evaluation, on the training env object."""
    last_k: int = 10
    """The run's score: mean return over its last k evaluations (the paper's table metric)."""


@dataclass(frozen=True)
class DAPDConfig:
    """Data-adaptive pathway discovery (dapd.md §2)."""

    keep_ratio: float = 0.05
    """Fraction of each network's weights kept (global over its layers; the critic's Q1 and Q2 pooled)."""
    iterative_pruning: bool = True
    """Warm-up: recompute the masks at every episode end until frozen."""
    continual_pruning: bool = False
    """Never freeze: keep updating masks to the end of training."""
    ips_threshold: float = 2000.0
    """Freeze the masks once an evaluation's mean return exceeds this (per env in config.yaml)."""
    mask_update_mavg: int = 1
    """K: masks come from the mean of the last K normalised score vectors."""
    initial_mask_steps: int = 5000
    """Uncounted steps of the randomly initialised policy used for the first mask, then discarded."""
    score_batch_size: int = 256
    """Transitions (sampled with replacement from the recent FIFO) per score computation."""
    snip_fixed_alpha: bool = True
    """Quirk: the scoring copy never receives log α, so scores use α = init_temperature (faithful: true)."""
    critic_scores_include_actor_loss: bool = True
    """Quirk: the actor loss's backward also accumulates into the critic's scores (faithful: true)."""
    score_time_limit_as_terminal: bool = True
    """The scoring loss treats time-limit ends as terminal (the original scores with `not_done`, fidelity audit S1)."""


@dataclass(frozen=True)
class DSTConfig:
    """RiGL dynamic sparse training and RLx2's extras, as in the RLx2 code (dapd.md §3)."""

    keep_ratio: float = 0.05
    """Global density of each network (ERK-distributed over its layers) unless actor/critic sparsity are set."""
    actor_sparsity: float | None = None
    critic_sparsity: float | None = None
    delta: int = 10000
    """Topology update every delta optimizer steps (that step's optimizer update is skipped)."""
    zeta: float = 0.5
    """Initial drop fraction, cosine-annealed to 0 at T_end = total_steps − seed_steps."""
    random_grow: bool = False
    """SET-style random growth instead of the largest dense gradient."""
    nstep: int = 1
    """Multi-step TD target length (RLx2: 3)."""
    delay_nstep: int = 0
    """Updates before the n-step target switches on (RLx2 README 300000; the DAPD repo used 30000)."""
    dynamic_buffer: bool = False
    """RLx2's policy-distance buffer: drop the oldest 10% when the oldest data is too off-policy."""
    buffer_max_size: int = 1_000_000
    buffer_min_size: int = 200_000
    buffer_threshold: float = 0.2
    buffer_adjustment_interval: int = 10_000
    buffer_check_batches: int = 8
    """The distance is measured on the oldest buffer_check_batches × batch_size states."""
    critic_grow_includes_actor_grad: bool = True
    """The critic's grow score is |∇L_critic(t) + ∇L_actor(t−1)|: the actor loss's backward passes through the
    critic's gradient hooks one step before a topology update in RLx2's code (fidelity audit R1); false: ∇L_critic."""
    mean_action_collection: bool = True
    """After the random phase, act with the policy's mean action, as RLx2's `select_action` does by default (audit R2);
    false: sample."""


@dataclass(frozen=True)
class SparseSpec:
    """Everything one sparse-suite training job depends on (the params slice Snakemake passes to it)."""

    method: str
    env: str
    env_id: str
    seed: int
    keep_ratio: float
    sac: SparseSACConfig
    evaluation: SparseEvalConfig
    method_hp: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None
    """Episode cap (None: the env's own 1000); smoke presets shorten it."""
    device: str = "cpu"
    engine: EngineConfig = field(default_factory=EngineConfig)
    engine_version: str = ""
    variant: str | None = None
    """The variant's name when this run is a named variant of `method` (config `variants`/`sweeps`)."""
    ips_threshold_from_dense: dict[str, Any] | None = None
    """DAPD's freeze threshold scaled to the budget: {fraction, last_k} of the same env and seed's dense run, which
    the job reads at start (`train-sparse --dense-results`, `resolve_threshold_from_dense`); None: method_hp's."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparseSpec:
        data = dict(data)
        method = data["method"]
        if method not in SPARSE_METHODS:
            raise unknown_name("sparse method", method, list(SPARSE_METHODS))
        data["sac"] = from_dict(SparseSACConfig, data.get("sac"), "sparse.sac")
        data["evaluation"] = from_dict(SparseEvalConfig, data.get("evaluation"), "sparse.evaluation")
        data["engine"] = from_dict(EngineConfig, data.get("engine"), "engine")
        try:
            return cls(**data)
        except TypeError as err:
            raise ConfigError(f"bad sparse job spec: {err}") from None

    @property
    def label(self) -> str:
        """The method name the run's outputs carry."""
        return self.variant or self.method

    def dapd(self) -> DAPDConfig:
        return from_dict(DAPDConfig, {**self.method_hp, "keep_ratio": self.keep_ratio}, "sparse.methods.dapd")

    def dst(self) -> DSTConfig:
        return from_dict(DSTConfig, {**self.method_hp, "keep_ratio": self.keep_ratio}, f"sparse.methods.{self.method}")


def method_hyperparameters(method: str) -> list[str]:
    """The keys a method's block may set (keep_ratio comes from the grid)."""
    cls = {"dapd": DAPDConfig, "rigl": DSTConfig, "rlx2": DSTConfig}.get(method)
    own = [f for f in cls.__dataclass_fields__ if f != "keep_ratio"] if cls is not None else []
    return [*own, "sac"]  # `sac`: the method's own SAC settings over the shared block (fidelity audit R3)


def resolve_threshold_from_dense(raw: dict[str, Any], dense_results: Any) -> dict[str, Any]:
    """The job spec with DAPD's ips_threshold = fraction × the dense run's final return (the sparse table's score:
    the mean of its last k evaluations), both recorded in the spec; specs without `ips_threshold_from_dense` pass
    through unchanged. `dense_results` is that run's results.parquet (a frame or a path)."""
    import pandas as pd

    from rlrepro.tables.sparse import sparse_run_metrics

    rule = raw.get("ips_threshold_from_dense")
    if not rule:
        return raw
    if dense_results is None:
        raise ConfigError(
            f"this {raw['method']} job's freeze threshold comes from the dense run of env {raw['env']!r}, seed "
            f"{raw['seed']} (budget ips_threshold_from_dense): pass its results.parquet with --dense-results"
        )
    frame = dense_results if isinstance(dense_results, pd.DataFrame) else pd.read_parquet(dense_results)
    runs = sparse_run_metrics(frame, int(rule["last_k"]))
    runs = runs[(runs["method"] == "dense") & (runs["env"] == raw["env"]) & (runs["seed"] == raw["seed"])]
    if len(runs) != 1 or not np.isfinite(runs["final_return"].iloc[0]):
        raise ConfigError(f"{dense_results} holds no evaluated dense run of env {raw['env']!r}, seed {raw['seed']}")
    dense_return = float(runs["final_return"].iloc[0])
    threshold = float(rule["fraction"]) * dense_return
    return {
        **raw,
        "method_hp": {**raw["method_hp"], "ips_threshold": threshold},
        "ips_threshold_from_dense": {**rule, "dense_final_return": dense_return},
    }


def network_config(cfg: SparseSACConfig) -> NetworkConfig:
    """The engine's networks in the DAPD/pytorch_sac flavour: ReLU, tanh-rescaled log σ, log π from the noise, the
    critic's output layer batched with the hidden layers."""
    return NetworkConfig(hidden_sizes=tuple(cfg.hidden_sizes), activation="relu", init=cfg.init, log_std_mode="tanh",
                         log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max, log_prob_mode="noise",
                         critic_head="batched")  # fmt: skip


def learner_config(cfg: SparseSACConfig, action_dim: int) -> LearnerConfig:
    """The engine's update rule in the DAPD/pytorch_sac flavour: one learning rate and Adam's betas for all three
    optimisers, target entropy −|A|, the policy loss on the batch's states, per-sample entropy in the TD target."""
    return LearnerConfig(
        lr_actor=cfg.lr, lr_critic=cfg.lr, lr_alpha=cfg.lr, init_temperature=cfg.init_temperature,
        target_entropy=-float(action_dim), discount=cfg.discount, tau=cfg.tau, policy_delay=cfg.actor_update_frequency,
        target_delay=cfg.critic_target_update_frequency, adam_betas=tuple(cfg.adam_betas), policy_states="first",
        entropy_target="per_sample", arithmetic="pytorch_sac",
    )  # fmt: skip
