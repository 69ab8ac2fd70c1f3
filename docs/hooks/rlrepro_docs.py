"""MkDocs hook: the reference pages generated from the code at build time, and the committed results the pages show.

- `reference/config.md` from workflow/schemas/config.schema.yaml (every key: type, default, bounds, description) and
  the value config.yaml sets;
- `reference/methods.md` from the method registries (continual: rlrepro.continual.methods.registry; sparse:
  rlrepro.sparse.config) with each method's hyperparameters as config.yaml sets them;
- `reference/scenarios.md` from the scenario catalog (ordered tasks, paper budgets) and the presets' budgets;
- the committed figures under results/ served as they are (no copy in docs/ that could go stale), and
  `<!-- include: results/... -->` lines replaced by the committed file (tables the pipeline wrote).

Reads files only: no torch, no JAX (docstrings come from the source text), so the site builds in seconds.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
CONFIG = ROOT / "config.yaml"
FIGURE_DIRS = ("results/demo/figures", "results/validation*/figures")  # globs: every study's committed figures
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.MULTILINE)


def _src_path() -> None:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


# --- config reference -------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    if "|" in text:  # a pipe inside a code span would still split the table row
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "&#124;")
        return f"<code>{escaped}</code>"
    return f"`{text}`"


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(_cell(v) for v in node["enum"])
    if "const" in node:
        return _cell(node["const"])
    if "oneOf" in node:
        return " or ".join(_type(n) for n in node["oneOf"])
    kind = node.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "array" in kinds and "items" in node:
        text += f" of {_type(node['items'])}"
    return text or "any"


def _bounds(node: dict[str, Any]) -> str:
    parts = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{sign} {node[key]}")
    for key, word in (("minItems", "items ≥"), ("maxItems", "items ≤"), ("minProperties", "entries ≥")):
        if key in node:
            parts.append(f"{word} {node[key]}")
    if "pattern" in node:
        parts.append(f"matches {_cell(node['pattern'])}")
    items = node.get("items")
    if isinstance(items, dict) and any(k in items for k in ("minimum", "exclusiveMinimum", "maximum")):
        parts.append("each " + _bounds(items))
    if "required" in node:
        parts.append("requires " + ", ".join(f"`{k}`" for k in node["required"]))
    return "; ".join(parts)


def _lookup(config: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


def schema_rows(schema: dict[str, Any], config: dict[str, Any]) -> list[dict[str, str]]:
    """One row per key of the schema, depth first, `<name>` standing for a key the user chooses. A `$defs` block
    is listed in full where it is first used; later uses point there."""
    defs = schema.get("$defs", {})
    first_use: dict[str, str] = {}
    rows: list[dict[str, str]] = []

    def visit(node: dict[str, Any], path: list[str]) -> None:
        description = node.get("description", "")
        ref = node.get("$ref")
        if ref:
            name = ref.rsplit("/", 1)[-1]
            target = defs[name]
            while "$ref" in target:  # sac_partial -> sac
                name = target["$ref"].rsplit("/", 1)[-1]
                target = defs[name]
            description = description or target.get("description", "")
            dotted = ".".join(path)
            if name in first_use:
                rows.append({"key": dotted, "type": "object", "default": "", "bounds": "",
                             "description": f"{description} The keys of `{first_use[name]}`.", "config": ""})  # fmt: skip
                return
            first_use[name] = dotted
            node = {**target, "description": description}
        concrete = "<" not in ".".join(path)
        value = _lookup(config, path) if concrete else None
        is_leaf = "properties" not in node and not isinstance(node.get("additionalProperties"), dict)
        rows.append({
            "key": ".".join(path),
            "type": _type(node),
            "default": _cell(node["default"]) if "default" in node and is_leaf else "",
            "bounds": _bounds(node),
            "description": node.get("description", ""),
            "config": _cell(value) if is_leaf and value is not None and concrete else "",
        })  # fmt: skip
        for key, sub in node.get("properties", {}).items():
            visit(sub, [*path, key])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and (extra.get("properties") or "$ref" in extra or extra.get("additionalProperties")):
            placeholder = {"presets": "<preset>", "methods": "<method>", "sac_overrides": "<scenario>",
                           "envs": "<env>", "variants": "<variant>", "sweeps": "<sweep>",
                           "scenario_overrides": "<scenario>"}.get(path[-1], "<name>")  # fmt: skip
            visit(extra, [*path, placeholder])

    for key, sub in schema["properties"].items():
        visit(sub, [key])
    return rows


def config_reference(schema: dict[str, Any], config: dict[str, Any]) -> str:
    rows = schema_rows(schema, config)
    out = [
        "# Configuration reference",
        "",
        "Generated when the site is built from `workflow/schemas/config.schema.yaml` (the schema every run is",
        "validated against) and `config.yaml` (its value, where it differs from the schema's default). `<preset>`, `<method>`",
        "and the like stand for names you choose. Unknown keys are refused, as are NaN and infinity in any value;",
        "see the [configuration guide](../configuration.md) for how the keys fit together.",
        "",
        f"Required at the top level: {', '.join(f'`{k}`' for k in schema.get('required', []))}.",
        "",
    ]
    sections: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        sections.setdefault(row["key"].split(".")[0], []).append(row)
    general = [section[0] for section in sections.values() if len(section) == 1]
    grouped = {"top-level settings": general, **{f"`{k}`": v for k, v in sections.items() if len(v) > 1}}
    for title, section in grouped.items():
        out += [f"## {title}", "", "| key | type, bounds | default | description |", "|---|---|---|---|"]
        for r in section:
            description = r["description"].replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
            kind = f"{r['type']}; {r['bounds']}" if r["bounds"] else r["type"]
            default = r["default"]
            if r["config"] and r["config"] != r["default"]:
                default = f"{default}<br>config.yaml: {r['config']}" if default else f"config.yaml: {r['config']}"
            out.append(f"| `{r['key']}` | {kind} | {default} | {description} |")
        out.append("")
    return "\n".join(out)


# --- methods and scenarios ----------------------------------------------------------------------------------------
def _class_docs(module_file: Path) -> dict[str, str]:
    tree = ast.parse(module_file.read_text())
    return {n.name: ast.get_docstring(n) or "" for n in tree.body if isinstance(n, ast.ClassDef)}


def _field_docs(module_file: Path, class_name: str) -> list[tuple[str, str, str]]:
    """(field, default as written, attribute docstring) of a dataclass, from its source."""
    tree = ast.parse(module_file.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    fields: list[tuple[str, str, str]] = []
    for i, stmt in enumerate(cls.body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            default = ast.unparse(stmt.value) if stmt.value is not None else ""
            doc = ""
            nxt = cls.body[i + 1] if i + 1 < len(cls.body) else None
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                doc = " ".join(nxt.value.value.split())
            fields.append((stmt.target.id, default, doc))
    return fields


def methods_reference(config: dict[str, Any]) -> str:
    _src_path()
    from rlrepro.continual.methods.registry import HYPERPARAMETERS, METHODS
    from rlrepro.naming import DISPLAY_NAMES
    from rlrepro.sparse.config import SPARSE_METHODS

    out = [
        "# Methods reference",
        "",
        "Generated when the site is built from the method registries (`src/rlrepro/continual/methods/registry.py`,",
        "`rlrepro.sparse.config`) and `config.yaml`. What each method does, and why its defaults are what they are,",
        "is on [Methods and scenarios](../methods.md).",
        "",
        "## Continual suite (Rewire paper)",
        "",
    ]
    for name, target in METHODS.items():
        module, cls = target.split(":")
        doc = _class_docs(ROOT / "src" / (module.replace(".", "/") + ".py")).get(cls, "")
        block = (config.get("methods") or {}).get(name) or {}
        out += [f"### `{name}` — {DISPLAY_NAMES.get(name, name)}", "", f"`{target}`", ""]
        if doc:
            out += [" ".join(doc.split()), ""]
        keys = HYPERPARAMETERS[name]
        if keys:
            out += ["| hyperparameter | config.yaml | per scenario (config.yaml) |", "|---|---|---|"]
            overrides = block.get("scenario_overrides") or {}
            for key in keys:
                per = "; ".join(f"{sc}: {_cell(hp[key])}" for sc, hp in overrides.items() if key in hp)
                value = _cell(block[key]) if key in block else "(the class default)"
                out.append(f"| `{key}` | {value} | {per} |")
            out.append("")
        else:
            out += ["No hyperparameters of its own: the SAC learner's (`sac`, `network`) only.", ""]
        for own in ("sac", "network"):
            if block.get(own):
                out += [f"Own `{own}` block over the global one: {_cell(block[own])}.", ""]

    sparse_config = ROOT / "src/rlrepro/sparse/config.py"
    sparse_methods = (config.get("sparse") or {}).get("methods") or {}
    out += ["## Sparse suite (DAPD paper)", "", "Every sparse method runs on the shared SAC of `sparse.sac` ",
            "(see the [configuration reference](config.md#sparse)).", ""]  # fmt: skip
    classes = {"dapd": "DAPDConfig", "rigl": "DSTConfig", "rlx2": "DSTConfig"}
    docs = _class_docs(sparse_config)
    for name in SPARSE_METHODS:
        out += [f"### `{name}` — {DISPLAY_NAMES.get(name, name)}", ""]
        if name not in classes:
            out += ["Dense SAC: the reference of every “× dense” column (keep ratio 1).", ""]
            continue
        cls = classes[name]
        out += [f"`rlrepro.sparse.config:{cls}` — {' '.join(docs.get(cls, '').split())}", ""]
        block = sparse_methods.get(name) or {}
        out += ["| hyperparameter | class default | config.yaml | description |", "|---|---|---|---|"]
        for key, default, doc in _field_docs(sparse_config, cls):
            value = _cell(block[key]) if key in block else ""
            doc = doc.replace("|", "\\|")
            out.append(f"| `{key}` | `{default}` | {value} | {doc} |")
        out.append("")
    return "\n".join(out)


def scenarios_reference(config: dict[str, Any]) -> str:
    _src_path()
    from rlrepro.scenarios import catalog, get_scenario, scenario_names

    domains = catalog()["domains"]
    out = [
        "# Scenarios reference",
        "",
        "Generated when the site is built from the scenario catalog (`src/rlrepro/scenarios/catalog.yaml`) and the",
        "presets of `config.yaml`. Budgets here are the papers'; a preset's `budget` caps them (table at the end).",
        "",
        "## Continual scenarios",
        "",
        "| scenario | backend | tasks | steps per task | train / eval envs | episode length |",
        "|---|---|---|---|---|---|",
    ]
    for name in scenario_names():
        s = get_scenario(name)
        tasks = ", ".join(t.name for t in s.tasks)
        out.append(f"| `{name}` | {s.backend} | {len(s.tasks)}: {tasks} | {s.steps_per_task:,} | "
                   f"{s.n_train_envs} / {s.n_eval_envs} | {s.episode_length} |")  # fmt: skip
    out += ["", "## Task variants per domain", ""]
    for domain, dom in domains.items():
        out += [f"### `{domain}` ({dom['backend']})", "", "| variant | edits |", "|---|---|"]
        for vname, variant in dom["variants"].items():
            out.append(f"| `{vname}` | {_cell(variant) if variant else 'none (the unmodified model)'} |")
        out.append("")
    sparse_envs = (config.get("sparse") or {}).get("envs") or {}
    out += ["## Sparse suite environments", "", "| env | gymnasium id | make() arguments |", "|---|---|---|"]
    for env, block in sparse_envs.items():
        out.append(f"| `{env}` | `{block['id']}` | {_cell(block.get('kwargs', {})) if block.get('kwargs') else ''} |")
    out += ["", "## Preset budgets", "",
            "Each value caps the paper's (blank: the paper's value). Continual budget and sparse grid of every preset:", "",
            "| preset | methods | scenarios | seeds | steps per task | train / eval envs | eval rollouts | sparse |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for preset, block in (config.get("presets") or {}).items():
        budget = block.get("budget") or {}
        sparse = block.get("sparse")
        sparse_text = ""
        if sparse:
            sb = sparse.get("budget") or {}
            sparse_text = (f"{_cell(sparse['methods'])} on {_cell(sparse['envs'])} at {_cell(sparse['keep_ratios'])}, "
                           f"{sparse['seeds']} seeds, {sb.get('total_steps') or 'config'} steps")  # fmt: skip
        envs = f"{budget.get('n_train_envs') or ''} / {budget.get('n_eval_envs') or ''}".strip(" /")
        steps = budget.get("steps_per_task")
        out.append(f"| `{preset}` | {_cell(block['methods']) if 'methods' in block else ''} | "
                   f"{_cell(block['scenarios']) if 'scenarios' in block else ''} | {block.get('seeds', '')} | "
                   f"{f'{steps:,}' if steps else ''} | {envs} | {budget.get('eval_rollouts') or ''} | {sparse_text} |")  # fmt: skip
    out.append("")
    return "\n".join(out)


def generated_pages() -> dict[str, str]:
    schema = yaml.safe_load(SCHEMA.read_text())
    config = yaml.safe_load(CONFIG.read_text())
    return {
        "reference/config.md": config_reference(schema, config),
        "reference/methods.md": methods_reference(config),
        "reference/scenarios.md": scenarios_reference(config),
    }


def include_committed(markdown: str) -> str:
    """Replace `<!-- include: results/... -->` with that committed file, its headings moved two levels down."""

    def body(match: re.Match[str]) -> str:
        text = (ROOT / match.group(1)).read_text()
        # The file's title line is its caption: a paragraph here, with the file it comes from.
        text = re.sub(r"\A# (.*)$", lambda m: f"*{m.group(1).strip()}* (`{match.group(1)}`)", text, flags=re.MULTILINE)
        return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", text, flags=re.MULTILINE).strip()

    return INCLUDE.sub(body, markdown)


# --- MkDocs hooks -------------------------------------------------------------------------------------------------
def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, content in generated_pages().items():
        files.append(File.generated(config, uri, content=content))
    for folder in sorted({f for pattern in FIGURE_DIRS for f in ROOT.glob(pattern)}):
        for png in sorted(folder.rglob("*.png")):
            uri = "results/" + png.relative_to(ROOT / "results").as_posix()
            files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    return include_committed(markdown)
