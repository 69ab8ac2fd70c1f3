"""The documentation site's generated references and worked example, and the README's numbers, checked against the
code and the committed results (the site itself is built with `mkdocs build --strict` by `make docs` in CI)."""

import ast
import copy
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import fake_env_factory

from rlrepro.config import Resolved, validate
from rlrepro.continual import TrainSpec, train
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods import registry
from rlrepro.engine.config import NetworkConfig

ROOT = Path(__file__).resolve().parents[1]


def docs_hook():
    spec = importlib.util.spec_from_file_location("rlrepro_docs", ROOT / "docs/hooks/rlrepro_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_keys(node: dict, path: str = "") -> set[str]:
    """Every key path of the schema with its own `properties` entry."""
    keys = set()
    for key, sub in node.get("properties", {}).items():
        keys.add(f"{path}{key}")
        keys |= schema_keys(sub, f"{path}{key}.")
    return keys


def test_the_config_reference_lists_every_schema_key_with_its_default_and_bounds():
    hook = docs_hook()
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    page = hook.config_reference(schema, yaml.safe_load((ROOT / "config.yaml").read_text()))
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", page, re.MULTILINE)}
    top = schema_keys(schema)
    assert top <= set(rows), sorted(top - set(rows))
    # $defs expanded where first used: the SAC block's keys, the preset budget's, the sparse SAC's.
    for key in ("sac.lr_q", "sac.discount", "presets.<preset>.budget.steps_per_task", "sparse.sac.seed_steps",
                "presets.<preset>.sparse.budget.ips_threshold_from_dense", "aggregate.bootstrap.confidence"):
        assert key in rows, key
    assert "`0.0003`" in rows["sac.lr_q"] and "> 0" in rows["sac.lr_q"]
    assert "≥ 0" in rows["sac.discount"] and "≤ 1" in rows["sac.discount"]
    assert "The keys of `sac`" in rows["sac_overrides.<scenario>"]


def test_the_methods_and_scenarios_references_cover_the_registries():
    from rlrepro.scenarios import scenario_names
    from rlrepro.sparse.config import SPARSE_METHODS

    hook = docs_hook()
    pages = hook.generated_pages()
    methods = pages["reference/methods.md"]
    for name, keys in registry.HYPERPARAMETERS.items():
        assert f"### `{name}`" in methods
        assert all(f"| `{key}` |" in methods for key in keys), name
    assert all(f"### `{name}`" in methods for name in SPARSE_METHODS)
    assert "| `ips_threshold` |" in methods and "| `delay_nstep` |" in methods
    scenarios = pages["reference/scenarios.md"]
    assert all(f"| `{name}` |" in scenarios for name in scenario_names())
    assert "| `halfcheetah/robustness` | brax | 8: normal, inverted_actions," in scenarios
    assert "| `validate` |" in scenarios and "| `paper` |" in scenarios


def code_blocks(page: str) -> dict[str, str]:
    """The page's fenced blocks by their title (```lang title="path")."""
    fence = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.DOTALL | re.MULTILINE)
    return {m.group(1): m.group(2) for m in fence.finditer(page)}


def test_the_extending_page_worked_example_runs(tmp_path, monkeypatch, fake_scenario):
    """The page's method file and config blocks, registered and trained on the fake env (a test double,
    conftest.FakeVecEnv): the page's code runs as written."""
    blocks = code_blocks((ROOT / "docs/extending.md").read_text())
    # 1. The method file, importable from where the page says it lives (here: a copy under a temporary root).
    module_file = tmp_path / "weight_decay_example.py"
    module_file.write_text(blocks["src/rlrepro/continual/methods/weight_decay.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    # 2. The registry lines, executed against the real registry's tables (the module path points at the copy).
    lines = blocks["src/rlrepro/continual/methods/registry.py"].replace(
        "rlrepro.continual.methods.weight_decay", "weight_decay_example")
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    monkeypatch.setattr(registry, "HYPERPARAMETERS", dict(registry.HYPERPARAMETERS))
    exec(compile(ast.parse(lines), "registry-lines", "exec"), {"METHODS": registry.METHODS,
                                                                 "HYPERPARAMETERS": registry.HYPERPARAMETERS})  # fmt: skip
    monkeypatch.setattr("rlrepro.config.HYPERPARAMETERS", registry.HYPERPARAMETERS)
    assert "ft_wd" in registry.method_names()
    # 4. The scenario, added to the catalog.
    import rlrepro.scenarios as scenarios

    catalog = copy.deepcopy(scenarios.catalog())
    catalog["scenarios"].update(yaml.safe_load(blocks["src/rlrepro/scenarios/catalog.yaml"])["scenarios"])
    monkeypatch.setattr(scenarios, "catalog", lambda: catalog)
    ladder = scenarios.get_scenario("halfcheetah/gravity_ladder")
    assert [t.name for t in ladder.tasks] == ["moon", "normal", "carry_stuff_hugegravity"]
    # 3 and 5. The config block and the preset validate, and the grid holds the new method on the new scenario.
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["methods"].update(yaml.safe_load(blocks["config.yaml"])["methods"])
    config["presets"].update(yaml.safe_load(blocks["my_overlay.yaml"])["presets"])
    config["preset"] = "ladder"
    resolved = Resolved(validate(config))
    spec = resolved.train_spec("ft_wd", "halfcheetah/gravity_ladder", 0)
    assert spec["method_hp"]["decay_coeff"] == 1.0e-3
    bad = copy.deepcopy(config)
    bad["methods"]["ft_wd"]["decay_cooef"] = 1.0
    with pytest.raises(Exception, match="decay_cooef"):
        Resolved(validate(bad))

    # The method trains on the fake env through the ladder's tasks (gravity is the fake env's gain), and its penalty
    # shrinks the policy's weights against FT-1 with the same seed.
    small = scenarios.ScenarioSpec(**{**fake_scenario.__dict__, "tasks": ladder.tasks, "name": ladder.name})

    def final_norm(method: str, hp: dict) -> float:
        run = TrainSpec(method=method, scenario=small, seed=3, method_hp=hp, network=NetworkConfig(hidden_sizes=(8, 8)),
                        sac=SACConfig(batch_size=16, initial_buffer_size=32, policy_update_delay=1))  # fmt: skip
        result = train(run, env_factory=fake_env_factory)
        assert len(result.stages) == 3
        state = result.stages[-1]["state"]
        return float(sum((v.float() ** 2).sum() for k, v in state.items() if "weight" in k))

    assert final_norm("ft_wd", {"decay_coeff": 1.0}) < 0.9 * final_norm("ft_1", {})
    assert sys.modules["weight_decay_example"].FineTuneWeightDecay(3, 2, NetworkConfig(hidden_sizes=(8,)), {
        "decay_coeff": 0.5}).extra_loss() > torch.tensor(0.0)  # fmt: skip


NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def test_the_readme_quotes_only_committed_numbers():
    """Every number in the README's results table appears in the committed table it names."""
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- numbers from: (\S+) -->\n(.*?)\n\n", readme, re.DOTALL)
    assert table, "the README's results table is marked with the committed file it comes from"
    sources = " ".join((ROOT / path).read_text() for path in table.group(1).split(","))
    cells = [c for line in table.group(2).splitlines()[2:] for c in line.split("|")[2:]]
    numbers = [n for c in cells for n in NUMBER.findall(c)]
    assert len(numbers) >= 10
    missing = [n for n in numbers if n not in sources]
    assert missing == [], f"numbers not in {table.group(1)}: {missing}"


def test_the_hooks_the_extending_page_names_exist():
    from rlrepro.continual.methods.base import Method

    page = (ROOT / "docs/extending.md").read_text()
    bullet = page[page.index("**A method with its own architecture**"):page.index("- **A sparse method**")]
    named = set(re.findall(r"`([a-z_]+)`", bullet)) - {"net"}
    assert len(named) >= 10
    assert [n for n in sorted(named) if not callable(getattr(Method, n, None))] == []
