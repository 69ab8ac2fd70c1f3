"""ft_l2 and ewc (rewire.md §3.5–3.6): one policy fine-tuned with a quadratic pull towards the last task's weights."""

from __future__ import annotations

import torch
from torch.func import functional_call, jacrev, vmap

from rlrepro import faults
from rlrepro.continual.methods.base import TaskContext
from rlrepro.continual.methods.finetune import FineTuneOne
from rlrepro.engine.networks import count_parameters


class AnchoredPolicy(FineTuneOne):
    """One network plus anchor buffers θ* (overwritten after every task) and a per-parameter weight."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, param in self.policy.named_parameters():
            self.register_buffer(self._key("anchor", name), torch.zeros_like(param))

    @staticmethod
    def _key(kind: str, name: str) -> str:
        return f"{kind}__{name.replace('.', '_')}"

    def anchor(self, name: str) -> torch.Tensor:
        return getattr(self, self._key("anchor", name))

    def weight(self, name: str) -> torch.Tensor | float:
        return 1.0

    def coefficient(self) -> float:
        raise NotImplementedError

    def extra_loss(self) -> torch.Tensor | None:
        if self.tasks_seen == 0:
            return None  # no anchor before the first task ends
        penalty = sum(
            (self.weight(name) * (param - self.anchor(name)) ** 2).sum() for name, param in self.policy.named_parameters()
        )
        return self.coefficient() * penalty

    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        with torch.no_grad():
            for name, param in self.policy.named_parameters():
                self.anchor(name).copy_(param)
        super().on_task_end(task_index, context)

    def memory_report(self) -> dict[str, int]:
        n = count_parameters(self.policy)
        return {"inference_parameters": n, "stored_parameters": n + sum(b.numel() for b in self.buffers())}


class FineTuneL2(AnchoredPolicy):
    """ft_l2: policy loss + l2_coeff·Σ(θ − θ*)² from the second task on (sum over all parameters, no ½)."""

    name = "ft_l2"

    def coefficient(self) -> float:
        return float(self.hp.get("l2_coeff", 1.0))


class EWC(AnchoredPolicy):
    """ewc: policy loss + fisher_coeff·ΣF(θ − θ*)², F the diagonal Fisher of the Gaussian policy, accumulated.

    After each task, F_new = mean over `n_samples` replay observations of a per-sample diagonal Fisher (each value
    clamped at 1e-5), and F ← F + F_new. Per output pair i (μ_i, log σ_i):
    - `fisher_original_formula` true (default, the original, fidelity audit D3): (g_μi² + 2 g_σi²)/(σ_i² + 1e-6)
      with g_σi the gradient of σ_i = exp(clip(out, −20, 2)) itself, so it carries a factor σ_i and is zero where
      the clip is active;
    - false: the Gaussian policy's Fisher g_μi²/σ_i² + 2 g_logσi² (g_logσ the gradient of the clipped log σ).
    `fisher_index_bug` (default true, as the original) reads the first A outputs as A/2 means and A/2 log-σ,
    ignoring the real log-σ outputs; false uses outputs 0..A−1 as μ and A..2A−1 as log σ.
    """

    name = "ewc"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, param in self.policy.named_parameters():
            self.register_buffer(self._key("fisher", name), torch.zeros_like(param))

    def weight(self, name: str) -> torch.Tensor:
        return getattr(self, self._key("fisher", name))

    def coefficient(self) -> float:
        return float(self.hp.get("fisher_coeff", 1.0))

    def output_indices(self) -> tuple[list[int], list[int]]:
        a = self.action_dim
        if self.hp.get("fisher_index_bug", True):
            half = a // 2
            return list(range(half)), list(range(half, 2 * half))
        return list(range(a)), list(range(a, 2 * a))

    def fisher(self, obs: torch.Tensor, chunk: int = 64) -> dict[str, torch.Tensor]:
        """Mean per-sample diagonal Fisher over `obs` (per-sample Jacobians of the network outputs)."""
        mu_idx, ls_idx = self.output_indices()
        original = bool(self.hp.get("fisher_original_formula", True))
        params = {n: p.detach() for n, p in self.policy.net.named_parameters()}
        lo, hi = self.network.log_std_min, self.network.log_std_max

        def outputs(p, x):
            return functional_call(self.policy.net, p, (x.unsqueeze(0),)).squeeze(0)

        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for start in range(0, obs.shape[0], chunk):
            x = obs[start : start + chunk]
            with torch.no_grad():
                out = self.policy.net(x)
            raw = out[:, ls_idx]
            sigma = torch.exp(raw.clamp(lo, hi))  # [B, k]
            inside = ((raw >= lo) & (raw <= hi)).to(raw.dtype)  # where the clip passes gradients
            jac = vmap(jacrev(outputs), in_dims=(None, 0))(params, x)  # name -> [B, 2A, *shape]
            for n, j in jac.items():
                shape = (*sigma.shape, *(1,) * (j.dim() - 2))
                sig, mask = sigma.view(shape), inside.view(shape)
                g_mu, g_log_sigma = j[:, mu_idx], j[:, ls_idx] * mask
                if original:
                    per_pair = (g_mu**2 + 2 * (sig * g_log_sigma) ** 2) / (sig**2 + 1e-6)
                else:
                    per_pair = g_mu**2 / sig**2 + 2 * g_log_sigma**2
                total[n] += per_pair.sum(1).clamp(min=1e-5).sum(0)
        return {f"net.{n}": t / obs.shape[0] for n, t in total.items()}

    def on_task_end(self, task_index: int, context: TaskContext) -> None:
        faults.reached("phase:ewc-fisher")
        obs = context.replay.sample_obs(int(self.hp.get("n_samples", 1024)), context.generator)
        for name, value in self.fisher(obs).items():
            self.weight(name).add_(value)
        super().on_task_end(task_index, context)
