"""Method name → implementing class. Kept as import paths so the Snakefile can list names without torch."""

from __future__ import annotations

import importlib

from rlrepro.errors import unknown_name

METHODS: dict[str, str] = {
    "ft_1": "rlrepro.methods.finetune:FineTuneOne",
    "ft_n": "rlrepro.methods.finetune:FineTuneN",
    "sac_n": "rlrepro.methods.finetune:SACN",
}


def method_names() -> list[str]:
    return list(METHODS)


def method_class(name: str):
    if name not in METHODS:
        raise unknown_name("method", name, list(METHODS))
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
