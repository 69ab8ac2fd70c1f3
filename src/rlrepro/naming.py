"""One name, one place, one look per method across every table and figure of both suites."""

from __future__ import annotations

METHOD_ORDER = ["ft_1", "ft_l2", "ewc", "pnn", "packnet", "sac_n", "ft_n", "csp", "rewire", "dense", "rigl", "rlx2", "dapd"]
"""Both papers' methods in the papers' order: table rows and legends follow it (each method's colour, marker and line
style in every figure: `rlrepro.figures.METHOD_LOOKS`)."""

DISPLAY_NAMES = {"ft_1": "FT-1", "ft_l2": "FT-L2", "ewc": "EWC", "pnn": "PNN", "packnet": "PackNet", "sac_n": "SAC-N",
                 "ft_n": "FT-N", "csp": "CSP", "rewire": "Rewire", "dense": "SAC (dense)", "rigl": "RiGL",
                 "rlx2": "RLx2", "dapd": "DAPD"}  # fmt: skip


def split_variant(method: str) -> tuple[str, str | None]:
    """(base, suffix) of a variant's name (config `variants`/`sweeps`: base-suffix); (method, None) otherwise."""
    base, sep, suffix = str(method).partition("-")
    return (base, suffix) if sep and base in METHOD_ORDER else (str(method), None)


def display_name(method: str) -> str:
    """The papers' name of a method (unknown ones, e.g. a user's new method, keep their config name); a variant is
    its base's name with the variant's suffix: EWC (fisher_coeff=100)."""
    base, suffix = split_variant(method)
    name = DISPLAY_NAMES.get(base, base)
    return f"{name} ({suffix})" if suffix else name


def job_label(where: str, method: str) -> str:
    """One kind of job of a study, as cost tables and study status name it: "scenario · Method" / "env · Method"."""
    return f"{where} · {display_name(method)}"


def method_rank(method: str) -> int:
    """A method's position in the papers' order (a variant's is its base's); unknown methods come after all."""
    base, _ = split_variant(method)
    return METHOD_ORDER.index(base) if base in METHOD_ORDER else len(METHOD_ORDER)


def display_label(row: str) -> str:
    """A table row's display text: a method's display name, keeping a sparse row's " @ keep" suffix."""
    method, sep, rest = str(row).partition(" @ ")
    return display_name(method) + sep + rest
