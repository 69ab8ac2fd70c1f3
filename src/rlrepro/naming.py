"""One name, one place, one look per method across every table and figure of both suites."""

from __future__ import annotations

METHOD_ORDER = ["ft_1", "ft_l2", "ewc", "pnn", "packnet", "sac_n", "ft_n", "csp", "rewire", "dense", "rigl", "rlx2", "dapd"]
"""Both papers' methods in the papers' order: table rows follow it, and a method's position fixes its colour, marker
and line style in every figure."""

DISPLAY_NAMES = {"ft_1": "FT-1", "ft_l2": "FT-L2", "ewc": "EWC", "pnn": "PNN", "packnet": "PackNet", "sac_n": "SAC-N",
                 "ft_n": "FT-N", "csp": "CSP", "rewire": "Rewire", "dense": "SAC (dense)", "rigl": "RiGL",
                 "rlx2": "RLx2", "dapd": "DAPD"}  # fmt: skip


def display_name(method: str) -> str:
    """The papers' name of a method (unknown ones, e.g. a user's new method, keep their config name)."""
    return DISPLAY_NAMES.get(str(method), str(method))


def method_rank(method: str) -> int:
    """A method's position in the papers' order; methods unknown to it come after every known one."""
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
