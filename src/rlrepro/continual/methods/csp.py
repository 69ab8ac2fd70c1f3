"""csp: Continual Subspace of Policies (Gaya et al., ICLR 2023; rewire.md §3.9).

The policy is a subspace: every layer holds n anchors and computes Σ_i α_i (W_i x + b_i) for a point α of the
simplex. Each new task freezes the anchors, adds one at their midpoint and a new α-conditioned critic; SAC
trains with α drawn per environment (half from the new subspace, half from the old one), redrawn at episode ends
and every `repeat_alpha` steps of the original's step counter. After SAC,
AlphaSearch ranks α candidates by the critic, rolls the best out on a separate instance of the task's env with
`n_rollouts` envs, one episode each (steps taken from the task's budget), and keeps the new anchor only if it beats
the old subspace by `improvement_threshold`.

As in the original (fidelity audit D5, D7, D9): the online critic is trained on the behaviour α stored with each
transition (`stored_behaviour_alpha`, default true; false draws a fresh α), the TD target and the policy step
draw their own fresh α, and AlphaSearch's critic estimate averages Q over both steps of each replay window.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from rlrepro import faults
from rlrepro.continual.methods.base import Method, TaskContext
from rlrepro.engine.networks import GaussianActor, TwinCritic, activation, count_parameters
from rlrepro.engine.replay import Batch


class SubspaceLinear(nn.Module):
    def __init__(self, in_f: int, out_f: int) -> None:
        super().__init__()
        self.anchors = nn.ModuleList([nn.Linear(in_f, out_f)])

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([a(x) for a in self.anchors], dim=-1)  # [..., out, n]
        return (outs * alpha[..., : len(self.anchors)].unsqueeze(-2)).sum(-1)

    @torch.no_grad()
    def add_anchor(self) -> None:
        for a in self.anchors:
            a.requires_grad_(False)
        new = nn.Linear(self.anchors[0].in_features, self.anchors[0].out_features)
        new.weight.copy_(torch.stack([a.weight for a in self.anchors]).mean(0))
        new.bias.copy_(torch.stack([a.bias for a in self.anchors]).mean(0))
        self.anchors.append(new.to(self.anchors[0].weight.device))


class SubspaceActor(GaussianActor):
    """A view: with `alpha` fixed (inference), or taking α from the state (training: obs ⊕ α, or the per-env α)."""

    def __init__(self, owner: CSP, alpha: torch.Tensor | None) -> None:
        nn.Module.__init__(self)
        self.cfg, self.action_dim = owner.network, owner.action_dim
        self.owner, self.alpha = [owner], alpha

    def parameters(self, recurse: bool = True):
        return self.owner[0].parameters(recurse)

    def net(self, obs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        owner = self.owner[0]
        if obs.shape[-1] > owner.obs_dim:  # a replay batch with α appended by prepare_batch
            obs, alpha = obs[..., : owner.obs_dim], obs[..., owner.obs_dim :]
        elif self.alpha is not None:
            alpha = self.alpha.to(obs.device).expand(obs.shape[0], -1)
        else:
            alpha = owner.env_alpha.to(obs.device)
        h = obs
        for i, layer in enumerate(owner.layers):
            h = layer(h, alpha)
            if i < len(owner.layers) - 1:
                h = owner.act(h)
        return h


class CSP(Method):
    name = "csp"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        sizes = [self.obs_dim, *self.network.hidden_sizes, 2 * self.action_dim]
        self.layers = nn.ModuleList(SubspaceLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = activation(self.network)
        self.best_alphas: list[list[float]] = []
        self.env_alpha = torch.ones(1, 1)
        self.env_t = torch.zeros(1)

    @property
    def n_anchors(self) -> int:
        return len(self.layers[0].anchors)

    # --- α distributions ------------------------------------------------------------------------------------
    def sample_alpha(self, shape: tuple[int, ...], n: int, dist: str | None = None,
                     device: torch.device | None = None) -> torch.Tensor:  # fmt: skip
        """α over the first n anchors (zero-padded to n_anchors): flat Dirichlet, or peaked (last weight n²).

        Drawn from torch's CPU generator, as the original; with `device`, from that device's generator and without
        the distribution's argument check (which reads the sample back)."""
        conc = torch.ones(n, device=device)
        if (dist or self.hp.get("dist_type", "flat")) == "peaked" and n > 1:
            conc[-1] = n**2
        if device is not None:
            alpha = torch.distributions.Dirichlet(conc, validate_args=False).sample(shape) if n > 1 else (
                torch.ones(*shape, 1, device=device))  # fmt: skip
        else:
            alpha = torch.distributions.Dirichlet(conc).sample(shape) if n > 1 else torch.ones(*shape, 1)
        return torch.nn.functional.pad(alpha, (0, self.n_anchors - n))

    def _fresh_env_alpha(self, device: torch.device | None = None) -> torch.Tensor:
        """One α per env: the first B//2 envs explore the new subspace, the others the old one."""
        n, b = self.n_anchors, self.env_alpha.shape[0]
        half = b // 2
        new = self.sample_alpha((b,), n, device=device)
        old = self.sample_alpha((b,), max(n - 1, 1), "flat", device=device) if n > 1 else new
        return torch.cat([new[:half], old[half:]]) if n > 1 else new

    def _draw_env_alpha(self, idx: torch.Tensor) -> None:
        self.env_alpha[idx] = self._fresh_env_alpha()[idx]

    # --- hooks -------------------------------------------------------------------------------------------------
    def on_task_start(self, task_index: int, context: TaskContext) -> None:
        if task_index > 0:
            for layer in self.layers:
                layer.add_anchor()
        n_envs = context.env.n_envs if context.env is not None else 1
        self.env_alpha = torch.zeros(n_envs, self.n_anchors)
        # The original's step counter (agents/brax_agents.py) is incremented in place after being written, so in the
        # first episode it reads one step ahead: it starts here at 1, and at 0 after each episode end.
        self.env_t = torch.ones(n_envs)
        self.env_prev_done = torch.zeros(n_envs, dtype=torch.bool)
        self._draw_env_alpha(torch.ones(n_envs, dtype=torch.bool))

    def replay_columns(self) -> dict[str, Any]:
        return {"behaviour_dim": self.n_anchors, "next_actions": True}

    def behaviour(self) -> torch.Tensor | None:
        return self.env_alpha.clone()

    def critic_for_task(self, critic: TwinCritic) -> TwinCritic:
        """A new critic on (s ⊕ α, a) every task, as `add_anchor` re-initialises it in the original."""
        return TwinCritic(self.obs_dim + self.n_anchors, self.action_dim, critic.cfg)

    def on_env_step(self, done: torch.Tensor) -> None:
        """Redraw α where the episode ended, or where the original's step counter is a multiple of `repeat_alpha`.

        The counter counts the transitions of the current episode (the first after an auto-reset reads 1), plus one
        in the first episode of a task. The audit's D8 expected it to read 0 right after a reset (a second draw one
        step after each end); it does not: the original increments the tensor it has just written in place."""
        repeat = int(self.hp.get("repeat_alpha", 100))
        if self.hp.get("alpha_draws", "every_step") == "every_step":
            # No host sync: the counters stay on the env's device and fresh α is drawn there at every step, kept
            # only where a redraw is due. Same distribution; another random stream than the original's.
            device = done.device
            ended = done > 0
            self.env_t = self.env_t.to(device)
            self.env_prev_done = self.env_prev_done.to(device)
            self.env_t = torch.where(self.env_prev_done, torch.zeros_like(self.env_t), self.env_t) + 1
            self.env_prev_done = ended
            redraw = ended | (self.env_t % repeat == 0)
            fresh = self._fresh_env_alpha(device)
            self.env_alpha = torch.where(redraw[:, None], fresh, self.env_alpha.to(device))
            return
        ended = done.cpu() > 0
        self.env_t = torch.where(self.env_prev_done, torch.zeros_like(self.env_t), self.env_t) + 1
        self.env_prev_done = ended
        redraw = ended | (self.env_t % repeat == 0)
        if bool(redraw.any()):  # the original's draw: the CPU generator moves only at a redraw (a host sync)
            self._draw_env_alpha(redraw)

    def prepare_batch(self, batch: Batch, generator: torch.Generator) -> Batch:
        """States with α appended: the online critic's (the stored behaviour α), the TD target's and the policy
        step's (each its own fresh draw from `dist_type`, as the original's q_update and policy_update draws)."""
        n, k, device = batch.obs.shape[0], self.n_anchors, batch.obs.device
        if self.hp.get("stored_behaviour_alpha", True) and batch.behaviour is not None:
            online = batch.behaviour
        else:
            online = self.sample_alpha((n,), k).to(device)
        target = self.sample_alpha((n,), k).to(device)
        policy = self.sample_alpha((2, n), k).to(device)
        return Batch(
            torch.cat([batch.obs, online], -1), batch.action, batch.reward, batch.not_done,
            torch.cat([batch.next_obs, target], -1),
            policy_obs=torch.cat([torch.cat([batch.obs, policy[0]], -1), torch.cat([batch.next_obs, policy[1]], -1)]),
        )  # fmt: skip

    def train_actor(self) -> GaussianActor:
        return SubspaceActor(self, None)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in layer.anchors[-1].parameters()]

    def reserved_env_steps(self, env: Any) -> int:
        return self._n_rollouts() * self._validation_steps(env)  # every task, the first included

    def _n_rollouts(self) -> int:
        return int(self.hp.get("n_rollouts", 8))

    def _validation_steps(self, env: Any) -> int:
        return min(int(self.hp.get("n_validation_steps", 1000)), env.episode_length)

    def policy_for_task(self, task_index: int) -> GaussianActor:
        if task_index < len(self.best_alphas):
            alpha = torch.tensor(self.best_alphas[task_index])
            alpha = torch.nn.functional.pad(alpha, (0, self.n_anchors - alpha.numel()))
        else:
            alpha = torch.full((self.n_anchors,), 1.0 / self.n_anchors)
        return SubspaceActor(self, alpha.unsqueeze(0))

    # --- AlphaSearch -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _critic_ranked(self, context: TaskContext, n: int, keep: int) -> torch.Tensor:
        alphas = self.sample_alpha((int(self.hp.get("n_samples", 4096)),), n, "flat")
        return alphas[self._critic_values(context, alphas).topk(min(keep, len(alphas))).indices]

    @torch.no_grad()
    def _critic_values(self, context: TaskContext, alphas: torch.Tensor) -> torch.Tensor:
        """Q1(s, a, α) of each candidate α, averaged over `n_estimations` replay batches of len(alphas) windows."""
        values = torch.zeros(len(alphas))
        device = next(context.critic.parameters()).device
        estimations = int(self.hp.get("n_estimations", 1024))
        a = alphas.to(device)
        for _ in range(estimations):
            batch = context.replay.sample(len(alphas), context.generator)
            q1, _ = context.critic(torch.cat([batch.obs, a], -1), batch.action)
            if batch.next_action is not None:  # both steps of the window, as the original's mean over time (D9)
                q1 = (q1 + context.critic(torch.cat([batch.next_obs, a], -1), batch.next_action)[0]) / 2
            values += q1.cpu() / estimations
        return values

    @torch.no_grad()
    def _rollout_returns(self, context: TaskContext, alphas: torch.Tensor) -> torch.Tensor:
        """Deterministic returns of each α: `n_validation_steps` steps with auto-reset on a separate instance of the
        task's env with `n_rollouts` envs (one per candidate; the original's rollout env, audit D6), seeded with the
        run's seed; the current episode's cumulated reward at the last step. Without `make_env` (unit tests) the
        training env is used and envs beyond the candidates repeat them (their means are averaged)."""
        env = context.make_env(self._n_rollouts()) if context.make_env is not None else context.env
        steps = self._validation_steps(env)
        totals = torch.zeros(len(alphas))
        counts = torch.zeros(len(alphas))
        for start in range(0, len(alphas), env.n_envs):
            idx = (torch.arange(env.n_envs) + start) % len(alphas)
            actor = SubspaceActor(self, alphas[idx])
            obs = env.reset(context.seed)
            cum = torch.zeros(env.n_envs, device=obs.device)
            for _ in range(steps):
                res = env.step(actor.deterministic(obs))
                cum = cum + res.reward
                last = cum
                cum = cum * (1 - res.done)  # auto-reset: the next episode's sum starts from zero
                obs = res.obs
            context.extra_env_steps += steps * env.n_envs
            totals.index_add_(0, idx, last.cpu())
            counts.index_add_(0, idx, torch.ones(env.n_envs))
        return totals / counts.clamp(min=1)

    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        n = self.n_anchors
        if n == 1:
            self.best_alphas.append([1.0])
        else:
            rollouts = self._n_rollouts()
            faults.reached("phase:csp-alpha-search")
            new = self._critic_ranked(context, n, rollouts // 2)
            old = self._critic_ranked(context, n - 1, rollouts - rollouts // 2)
            returns = self._rollout_returns(context, torch.cat([new, old]))
            best_new, best_old = returns[: len(new)].max(), returns[len(new) :].max()
            threshold = float(self.hp.get("improvement_threshold", 0.1))
            if best_new <= (1 + threshold) * best_old:  # not worth an anchor: drop it, keep the best old α
                alpha = old[returns[len(new) :].argmax()][: n - 1]
                for layer in self.layers:
                    del layer.anchors[-1]
            else:
                alpha = new[returns[: len(new)].argmax()]
            self.best_alphas.append(alpha.tolist())
        super().on_task_end(task_index, context)

    def memory_report(self) -> dict[str, int]:
        n = count_parameters(self.layers)
        return {"inference_parameters": n + sum(map(len, self.best_alphas)), "stored_parameters": n + 1}

    def structure(self) -> dict[str, Any]:
        # a copy: a stage's record must not grow with the later tasks' α (it shared the method's list before)
        return {**super().structure(), "n_anchors": self.n_anchors, "best_alphas": [list(a) for a in self.best_alphas]}

    def rebuild(self, structure: dict[str, Any]) -> None:
        super().rebuild(structure)
        self.best_alphas = [list(a) for a in structure["best_alphas"]]
        while self.n_anchors < structure["n_anchors"]:
            for layer in self.layers:
                layer.add_anchor()

    ENV_ALPHA_STATE = ("env_alpha", "env_t", "env_prev_done")
    """The per-env α and the original's step counters (drawn at task start, redrawn during collection)."""

    def runtime_state(self) -> dict[str, Any]:
        own = {name: getattr(self, name) for name in self.ENV_ALPHA_STATE if hasattr(self, name)}
        return {**super().runtime_state(), **own}

    def load_runtime_state(self, state: dict[str, Any]) -> None:
        super().load_runtime_state(state)
        for name in self.ENV_ALPHA_STATE:
            if name in state:  # on the CPU, where collection keeps them (`every_step` moves them to the env's device)
                setattr(self, name, state[name].cpu())
