"""Method name → implementing class. Kept as import paths so the Snakefile can list names without torch."""

from __future__ import annotations

import importlib

from rlrepro.errors import unknown_name

METHODS: dict[str, str] = {
    "ft_1": "rlrepro.continual.methods.finetune:FineTuneOne",
    "ft_n": "rlrepro.continual.methods.finetune:FineTuneN",
    "sac_n": "rlrepro.continual.methods.finetune:SACN",
    "ft_l2": "rlrepro.continual.methods.regularized:FineTuneL2",
    "ewc": "rlrepro.continual.methods.regularized:EWC",
    "pnn": "rlrepro.continual.methods.pnn:PNN",
    "packnet": "rlrepro.continual.methods.packnet:PackNet",
    "rewire": "rlrepro.continual.methods.rewire:Rewire",
    "csp": "rlrepro.continual.methods.csp:CSP",
}

# The method-specific keys each method accepts in config.yaml (checked before any job starts).
HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    "ft_1": (),
    "ft_n": (),
    "sac_n": (),
    "ft_l2": ("l2_coeff",),
    "ewc": ("fisher_coeff", "n_samples", "fisher_index_bug", "fisher_original_formula"),
    "pnn": ("first_column_output_activation",),
    "packnet": ("prune_coeff", "finetune_updates", "finetune_alpha_lr_from_policy"),
    "csp": (
        "dist_type",
        "repeat_alpha",
        "n_estimations",
        "n_samples",
        "n_rollouts",
        "n_validation_steps",
        "improvement_threshold",
        "stored_behaviour_alpha",
        "alpha_draws",
    ),
    "rewire": (
        "k",
        "tau",
        "beta",
        "tau2",
        "beta2",
        "cycle",
        "divergence",
        "coeff",
        "improvement_threshold",
        "selection_rollouts",
    ),
}


def method_names() -> list[str]:
    return list(METHODS)


def method_class(name: str):
    if name not in METHODS:
        raise unknown_name("method", name, list(METHODS))
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
