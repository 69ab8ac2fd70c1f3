"""The envs package imports one way: the interface (base) <- the backends <- the factory. No circle, lazy imports
inside functions included (STYLE.md: "backends ... no circles between them")."""

import ast
from pathlib import Path

ENVS = Path(__file__).resolve().parents[1] / "src/rlrepro/envs"


def imported_envs_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("rlrepro.envs.")}
    return found


def test_envs_modules_import_each_other_without_a_circle():
    graph = {p.stem: imported_envs_modules(p) - {p.stem} for p in ENVS.glob("*.py") if p.stem != "__init__"}
    assert graph["base"] == set()  # the interface knows no backend
    assert "base" in graph["brax_backend"] and "base" in graph["metaworld_backend"]

    def reaches(start: str, target: str, seen: frozenset = frozenset()) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph.get(start, ()))

    circles = [m for m in graph if reaches(m, m)]
    assert circles == [], f"import circle through {circles}"
