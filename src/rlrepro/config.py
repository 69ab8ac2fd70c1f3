"""Resolve config.yaml into the job grid and the per-job spec slices Snakemake passes as params.

Pure Python with no torch/jax import: the Snakefile imports it while parsing. Every job's spec holds exactly the
config it depends on (and the engine version), so editing one method's block reruns only that method's jobs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlrepro import ENGINE_VERSION
from rlrepro.continual.config import SACConfig
from rlrepro.continual.methods.registry import HYPERPARAMETERS, method_names
from rlrepro.engine.config import NetworkConfig
from rlrepro.errors import ConfigError, unknown_name
from rlrepro.scenarios import get_scenario, scale_scenario, scenario_names

RESERVED_METHOD_KEYS = {"sac", "network", "scenario_overrides"}
BUDGET_SCENARIO_KEYS = ("max_tasks", "steps_per_task", "n_train_envs", "n_eval_envs", "episode_length")
SCHEMA_PATH = Path(__file__).resolve().parent / "config.schema.yaml"
"""Shipped with the package (check-config works in a non-editable install, e.g. the image); the workflow's
`workflow/schemas/config.schema.yaml` is a link to it."""


def _deref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


_YAML11_EXPONENT = re.compile(r"^[+-]?(\d+|\d*\.\d+|\d+\.)[eE][+-]?\d+$")


def config_leaves(data: Any, where: str = "config") -> Iterator[tuple[str, Any]]:
    """Every value of a nested config that is not a dict or a list, with the key path that names it, depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from config_leaves(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from config_leaves(value, f"{where}[{i}]")
    else:
        yield where, data


def reject_exponent_strings(data: Any, where: str = "config") -> None:
    """YAML 1.1 (PyYAML, Snakemake's loader) reads `3e-4` as a string: name the key and say how to write it, instead
    of a type error at job time."""
    for path, value in config_leaves(data, where):
        if isinstance(value, str) and _YAML11_EXPONENT.match(value.strip()):
            mantissa, exponent = value.strip().lower().split("e")
            fixed = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"
            raise ConfigError(f"{path}: {value!r} is read as a string, not a number (YAML 1.1 needs a dot in the "
                              f"mantissa): write {fixed}")  # fmt: skip


def reject_non_finite(data: Any, where: str = "config") -> None:
    """YAML reads `.nan`, `.inf` and `-.inf` as floats, and JSON schema bounds never fail on NaN (every comparison with
    it is false): refuse them in any value, naming the key, before a job is scheduled with them."""
    for path, value in config_leaves(data, where):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: {value} is not a finite number; NaN and infinity are refused in every config "
                              f"value")  # fmt: skip


def check_keys(data: Any, schema: dict[str, Any], where: str = "config", root: dict[str, Any] | None = None) -> None:
    """Reject keys the schema does not allow, naming the key and listing the valid ones (before jsonschema runs)."""
    if root is None:
        reject_exponent_strings(data, where)
        reject_non_finite(data, where)
    root = root or schema
    schema = _deref(schema, root)
    if not isinstance(data, dict) or schema.get("type") != "object":
        return
    props = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        unknown = sorted(set(data) - set(props))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(props)}")
    extra = schema.get("additionalProperties")
    for key, value in data.items():
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is not None:
            check_keys(value, sub, f"{where}.{key}", root)


def load_schema(path: Path | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or SCHEMA_PATH).read_text())


def validate(config: dict[str, Any], schema_path: Path | None = None) -> dict[str, Any]:
    """Unknown keys first (clear message), then the full JSON schema (which also fills defaults)."""
    import jsonschema

    schema = load_schema(schema_path)
    check_keys(config, schema)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as err:
        where = "config." + ".".join(str(p) for p in err.absolute_path) if err.absolute_path else "config"
        raise ConfigError(f"{where}: {err.message}") from None
    return config


def check_variant_bases(config: dict[str, Any]) -> None:
    """Every variant and sweep names an implemented method of either suite as its base (else it would be dropped
    silently: each suite expands only the variants of its own methods)."""
    from rlrepro.sparse.config import SPARSE_METHODS

    bases = [*method_names(), *SPARSE_METHODS]
    for kind in ("variants", "sweeps"):
        for name, block in (config.get(kind) or {}).items():
            base = (block or {}).get("base")
            if base not in bases:
                raise ConfigError(f"{kind}.{name}: base {base!r} is not an implemented method; valid: {', '.join(bases)}")


def variant_base(variants: dict[str, dict[str, Any]], method: str) -> str:
    """The implemented method a name runs (itself, or a variant's base)."""
    return variants[method]["base"] if method in variants else method


def stable_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


VARIANT_NAME = re.compile(r"^[a-z0-9_]+-[A-Za-z0-9_.=+-]+$")
"""A variant's name: its base method, a hyphen, then anything path-safe (a sweep writes key=value pairs there)."""


def format_value(value: Any) -> str:
    """A hyperparameter value as a sweep writes it into a method name: 0.01, 100, 1e-05, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand_variants(config: dict[str, Any], bases: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The config's named `variants` and the variants its `sweeps` expand to, for the given base methods:
    (variant name -> {base, overridden keys}, sweep name -> its variant names in grid order). A sweep's variant is
    named base-key=value[-key=value...]; a dotted key (sac.lr_q, network.hidden_sizes) overrides that block's key."""
    import itertools

    variants: dict[str, dict[str, Any]] = {}
    sweeps: dict[str, list[str]] = {}
    for name, block in (config.get("variants") or {}).items():
        if block.get("base") in bases:
            variants[name] = dict(block)
    for sweep, block in (config.get("sweeps") or {}).items():
        if block.get("base") not in bases:
            continue
        keys = list(block["grid"])
        sweeps[sweep] = []
        for values in itertools.product(*(block["grid"][k] for k in keys)):
            name = "-".join([block["base"], *(f"{k}={format_value(v)}" for k, v in zip(keys, values, strict=True))])
            overrides: dict[str, Any] = {"base": block["base"]}
            for key, value in zip(keys, values, strict=True):
                outer, _, inner = key.partition(".")
                if inner:
                    overrides.setdefault(outer, {})[inner] = value
                else:
                    overrides[key] = value
            if name in variants:
                raise ConfigError(f"variant {name!r} is defined twice (sweep {sweep!r} and `variants` or another sweep)")
            variants[name] = overrides
            sweeps[sweep].append(name)
    for name, block in variants.items():
        if not VARIANT_NAME.match(name) or not name.startswith(block["base"] + "-"):
            raise ConfigError(f"variant name {name!r} must be its base method, a hyphen, then letters, digits or "
                              f"_.=+- (e.g. {block['base']}-strong)")  # fmt: skip
    clash = sorted(set(sweeps) & (set(variants) | set(bases)))
    if clash:
        raise ConfigError(f"sweep name(s) {clash} are also method or variant names")
    return variants, sweeps


def variant_block(base_block: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A variant's method block: the base method's, with the variant's keys winning everywhere — in the `sac` and
    `network` blocks, and over the base's per-scenario values of the same key (else a base's scenario override of
    fisher_coeff would silently undo a variant's fisher_coeff)."""
    own = {k: v for k, v in overrides.items() if k not in ("base", *RESERVED_METHOD_KEYS)}
    block = {**base_block, **own}
    for key in ("sac", "network"):
        if key in base_block or key in overrides:
            block[key] = {**base_block.get(key, {}), **overrides.get(key, {})}
    scenario_overrides = {sc: {k: v for k, v in hp.items() if k not in own}
                          for sc, hp in base_block.get("scenario_overrides", {}).items()}  # fmt: skip
    for sc, hp in overrides.get("scenario_overrides", {}).items():
        scenario_overrides[sc] = {**scenario_overrides.get(sc, {}), **hp}
    if scenario_overrides:
        block["scenario_overrides"] = scenario_overrides
    return block


# Where each job writes, under the preset's results directory: the Snakefile's output paths and `rlrepro adopt` read
# these templates, so the two never disagree.
RUN_DIR = "runs/{scenario}/{method}/seed{seed}"
SPARSE_DIR = "sparse/{env}/{method}/keep{keep}/seed{seed}"
RANDOM_REFERENCE = "references/{scenario}/seed{seed}/random.parquet"


@dataclass(frozen=True)
class Run:
    """One (method, scenario, seed) cell of the grid."""

    method: str
    scenario: str
    seed: int


class Resolved:
    """The config with its preset applied: the grid to run and each job's spec."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        name = config["preset"]
        presets = config["presets"]
        if name not in presets:
            raise unknown_name("preset", name, list(presets))
        self.preset_name = name
        self._scenario_json: dict[str, str] = {}
        self.preset = presets[name]
        self.budget = dict(self.preset.get("budget") or {})
        self.demo_overrides = dict(self.preset.get("demo_overrides") or {})
        self.results_dir = str(self.preset.get("results_dir", "results")).rstrip("/")
        for block, cls in (("sac", SACConfig), ("network", NetworkConfig)):
            unknown = sorted(set(self.demo_overrides.get(block, {})) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError(f"unknown key(s) {unknown} in presets.{name}.demo_overrides.{block}; valid keys: "
                                  f"{', '.join(cls.__dataclass_fields__)}")  # fmt: skip
        check_variant_bases(config)  # here, not in `validate`: the Snakefile validates with Snakemake's own
        self.variants, self.sweeps = expand_variants(config, method_names())
        self.methods = self._names("method", self.preset.get("methods", []), method_names(), self.variants, self.sweeps)
        self.scenarios = self._names("scenario", self.preset.get("scenarios", []), scenario_names())
        self.seeds = list(range(int(self.preset.get("seeds", 0))))
        self.sparse = SparseGrid(config, self.preset.get("sparse"))
        for method in self.methods:
            if self.base(method) not in config.get("methods", {}):
                raise ConfigError(f"method {self.base(method)!r} has no block under `methods:` in the config")
        blocks = list(config.get("methods", {}).items())
        blocks += [(name, self.block(name)) for name in self.variants if self.base(name) in config.get("methods", {})]
        for method, block in blocks:
            if self.base(method) not in HYPERPARAMETERS:
                raise unknown_name("method", method, method_names())
            valid = HYPERPARAMETERS[self.base(method)]
            for where, keys in [(f"methods.{method}", set(block) - RESERVED_METHOD_KEYS)] + [
                (f"methods.{method}.scenario_overrides.{sc}", set(hp))
                for sc, hp in block.get("scenario_overrides", {}).items()
            ]:
                unknown = sorted(keys - set(valid))
                if unknown:
                    raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid) or '(none)'}")
            for key, cls in (("sac", SACConfig), ("network", NetworkConfig)):
                unknown = sorted(set(block.get(key, {})) - set(cls.__dataclass_fields__))
                if unknown:
                    raise ConfigError(f"unknown key(s) {unknown} in methods.{method}.{key}; valid keys: "
                                      f"{', '.join(cls.__dataclass_fields__)}")  # fmt: skip
            for scenario in block.get("scenario_overrides", {}):
                if scenario not in scenario_names():
                    raise unknown_name("scenario", scenario, scenario_names())
        for scenario in config.get("sac_overrides", {}):
            if scenario not in scenario_names():
                raise unknown_name("scenario", scenario, scenario_names())

    @staticmethod
    def _names(kind: str, chosen: Any, valid: list[str], variants: dict | None = None,
               sweeps: dict[str, list[str]] | None = None) -> list[str]:  # fmt: skip
        """The preset's names: "all" = every base name (alone or in a list, e.g. [all, ewc-strong]); a sweep's name
        stands for its variants."""
        if chosen == "all":
            return list(valid)
        variants, sweeps = variants or {}, sweeps or {}
        names = []
        for name in chosen:
            if name == "all":
                names += valid
            elif name in sweeps:
                names += sweeps[name]
            elif name in valid or name in variants:
                names.append(name)
            else:
                raise unknown_name(kind, name, [*valid, *variants, *sweeps])
        return list(dict.fromkeys(names))

    def base(self, method: str) -> str:
        return variant_base(self.variants, method)

    def block(self, method: str) -> dict[str, Any]:
        """The method's config block; a variant's is its base's with the variant's keys over it."""
        base_block = self.config["methods"][self.base(method)]
        return variant_block(base_block, self.variants[method]) if method in self.variants else base_block

    @property
    def runs(self) -> list[Run]:
        return [Run(m, s, seed) for s in self.scenarios for m in self.methods for seed in self.seeds]

    def scenario_spec(self, scenario: str) -> dict[str, Any]:
        """The scaled scenario as a job receives it (JSON types); built once per scenario, a fresh copy per call:
        a paper-grid DAG asks for it 3,240 times."""
        if scenario not in self._scenario_json:
            spec = scale_scenario(get_scenario(scenario), {k: self.budget.get(k) for k in BUDGET_SCENARIO_KEYS})
            self._scenario_json[scenario] = json.dumps(spec.to_dict())
        return json.loads(self._scenario_json[scenario])

    def sac(self, method: str, scenario: str) -> dict[str, Any]:
        sac = {**self.config["sac"], **self.config.get("sac_overrides", {}).get(scenario, {})}
        sac.update(self.block(method).get("sac", {}))
        sac.update(self.demo_overrides.get("sac", {}))
        if self.budget.get("initial_buffer_size") is not None:
            sac["initial_buffer_size"] = int(self.budget["initial_buffer_size"])
        return sac

    def method_hp(self, method: str, scenario: str) -> dict[str, Any]:
        block = self.block(method)
        hp = {k: v for k, v in block.items() if k not in RESERVED_METHOD_KEYS}
        hp.update(block.get("scenario_overrides", {}).get(scenario, {}))
        for key, cap in (self.budget.get("method_caps") or {}).items():
            if key in hp:
                hp[key] = min(int(hp[key]), int(cap))
        return hp

    def train_spec(self, method: str, scenario: str, seed: int) -> dict[str, Any]:
        block = self.block(method)
        return {
            "engine_version": ENGINE_VERSION,
            "method": self.base(method),
            **({"variant": method} if method in self.variants else {}),
            "method_hp": self.method_hp(method, scenario),
            "scenario": self.scenario_spec(scenario),
            "seed": seed,
            "sac": self.sac(method, scenario),
            "network": {**self.config["network"], **block.get("network", {}), **self.demo_overrides.get("network", {})},
            # A method's `network` block is its policy's: the critic keeps the shared block (fidelity audit D2).
            "critic_network": {**self.config["network"], **self.demo_overrides.get("network", {})},
            "quirks": self.config["quirks"],
            "env": self.config["env"],
            "device": self.config["device"],
            "engine": self.config["engine"],
            "log": self.config["log"],
        }

    def eval_spec(self, scenario: str, seed: int) -> dict[str, Any]:
        evaluation = dict(self.config["evaluation"])
        if self.budget.get("eval_rollouts") is not None:
            evaluation["n_rollouts"] = int(self.budget["eval_rollouts"])
        return {
            "engine_version": ENGINE_VERSION,
            "scenario": self.scenario_spec(scenario),
            "seed": seed,
            "evaluation": evaluation,
            "env": self.config["env"],
            "device": self.config["device"],
        }

    def aggregate_spec(self) -> dict[str, Any]:
        keys = ("reference_method", "bootstrap")
        spec = {"engine_version": ENGINE_VERSION, **{k: self.config["aggregate"][k] for k in keys}}
        return {**spec, "demo_overrides": self.demo_overrides} if self.demo_overrides else spec


def format_keep(keep_ratio: float) -> str:
    """The keep-ratio wildcard of run paths: 0.05 -> "0.05", 1.0 -> "1"."""
    return f"{float(keep_ratio):g}"


@dataclass(frozen=True)
class SparseRun:
    """One (method, env, keep ratio, seed) cell of the sparse grid."""

    method: str
    env: str
    keep_ratio: float
    seed: int

    @property
    def keep(self) -> str:
        return format_keep(self.keep_ratio)


class SparseGrid:
    """The preset's sparse grid and each sparse job's spec (dapd.md; config.yaml's `sparse` block)."""

    def __init__(self, config: dict[str, Any], preset: dict[str, Any] | None) -> None:
        from rlrepro.sparse.config import SPARSE_METHODS, method_hyperparameters

        self.block = config.get("sparse") or {}
        self.device = config["device"]
        self.engine = config["engine"]
        self.bootstrap = config["aggregate"]["bootstrap"]
        self.preset = preset or {}
        envs = list(self.block.get("envs", {}))
        self.budget = dict(self.preset.get("budget") or {})
        self.variants, self.sweeps = expand_variants(config, list(SPARSE_METHODS))
        if not preset:
            self.methods, self.envs, self.keep_ratios, self.seeds = [], [], [], []
        else:
            if not self.block:
                raise ConfigError("the preset has a `sparse` grid but the config has no top-level `sparse` block")
            self.methods = Resolved._names("sparse method", preset["methods"], list(SPARSE_METHODS), self.variants,
                                           self.sweeps)
            self.envs = Resolved._names("sparse env", preset["envs"], envs)
            self.keep_ratios = [float(k) for k in preset["keep_ratios"]]
            self.seeds = list(range(int(preset["seeds"])))
        blocks = [(f"sparse.methods.{m}", m, b) for m, b in self.block.get("methods", {}).items()]
        blocks += [(f"budget.method_overrides.{m}", m, b) for m, b in self.budget.get("method_overrides", {}).items()]
        blocks += [(f"variants.{m}", v["base"], {k: x for k, x in v.items() if k != "base"})
                   for m, v in self.variants.items()]  # fmt: skip
        for where, method, block in blocks:
            if method not in SPARSE_METHODS:
                raise unknown_name("sparse method", method, list(SPARSE_METHODS))
            valid = method_hyperparameters(method)
            unknown = sorted(set(block) - set(valid))
            if unknown:
                raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid) or '(none)'}")
        self.threshold_from_dense = bool(self.budget.get("ips_threshold_from_dense"))
        bases = {self.base(m) for m in self.methods}
        if self.threshold_from_dense and "dapd" in bases and "dense" not in self.methods:
            raise ConfigError(
                "the sparse budget's ips_threshold_from_dense scales DAPD's freeze threshold to the same seed's dense "
                "run: add `dense` to the preset's sparse methods"
            )
        for method in self.methods:
            if self.base(method) not in self.block.get("methods", {}):
                raise ConfigError(f"sparse method {self.base(method)!r} has no block under `sparse.methods:` in the config")
            for env in self.envs:
                self.method_hp(method, env)  # per-env values must exist before any job starts

    @property
    def runs(self) -> list[SparseRun]:
        runs = []
        for env in self.envs:
            for method in self.methods:
                keeps = [1.0] if self.base(method) == "dense" else self.keep_ratios
                runs += [SparseRun(method, env, keep, seed) for keep in keeps for seed in self.seeds]
        return runs

    def base(self, method: str) -> str:
        return variant_base(self.variants, method)

    def _method_block(self, method: str) -> dict[str, Any]:
        """The method's block of the config with the preset budget's overrides over it, then a variant's keys."""
        base = self.base(method)
        block = {**self.block["methods"].get(base, {}), **self.budget.get("method_overrides", {}).get(base, {})}
        return variant_block(block, self.variants[method]) if method in self.variants else block

    def method_hp(self, method: str, env: str) -> dict[str, Any]:
        """The method's block with budget overrides; a mapping value (env -> value) resolves to this env's."""
        hp = self._method_block(method)
        hp.pop("sac", None)  # the method's SAC settings go into the spec's `sac` (see `spec`)
        for key, value in list(hp.items()):
            if isinstance(value, dict):
                if env not in value:
                    raise ConfigError(f"sparse.methods.{method}.{key} has no value for env {env!r} (has: {', '.join(value)})")
                hp[key] = value[env]
        return hp

    def spec(self, method: str, env: str, keep_ratio: float, seed: int) -> dict[str, Any]:
        # The shared SAC block, the method's own `sac` over it (e.g. RLx2's own SAC, docs/fidelity.md), then the budget.
        sac = {**self.block["sac"], **self._method_block(method).get("sac", {})}
        evaluation = dict(self.block["evaluation"])
        for key, target, where in (("total_steps", "total_steps", sac), ("seed_steps", "seed_steps", sac),
                                   ("eval_every_steps", "every_steps", evaluation),
                                   ("eval_episodes", "episodes", evaluation)):  # fmt: skip
            if self.budget.get(key) is not None:
                where[target] = int(self.budget[key])
        env_block = self.block["envs"][env]
        return {
            "engine_version": ENGINE_VERSION,
            "method": self.base(method),
            **({"variant": method} if method in self.variants else {}),
            "env": env,
            "env_id": env_block["id"],
            "env_kwargs": env_block.get("kwargs", {}),
            "seed": seed,
            "keep_ratio": float(keep_ratio),
            "sac": sac,
            "evaluation": evaluation,
            "method_hp": self.method_hp(method, env),
            "max_episode_steps": self.budget.get("max_episode_steps"),
            "device": self.device,
            "engine": self.engine,
            # only when set: every other job keeps the spec (and so the results) it had
            **({"ips_threshold_from_dense": rule} if (rule := self.threshold_rule(method)) else {}),
        }

    def threshold_rule(self, method: str) -> dict[str, Any] | None:
        """DAPD's threshold rule under `ips_threshold_from_dense` (filled in by the job from the dense run)."""
        if self.base(method) != "dapd" or not self.threshold_from_dense:
            return None
        return {"fraction": float(self.block.get("ips_threshold_fraction", 0.75)),
                "last_k": int(self.block["evaluation"]["last_k"])}  # fmt: skip

    def dense_reference(self, method: str, env: str, seed: int) -> SparseRun | None:
        """The dense run a job's threshold is read from (None when the job has a fixed threshold)."""
        return SparseRun("dense", env, 1.0, seed) if self.threshold_rule(method) else None

    def aggregate_spec(self) -> dict[str, Any]:
        return {
            "engine_version": ENGINE_VERSION,
            "last_k": int(self.block["evaluation"]["last_k"]),
            "ips_threshold_fraction": float(self.block.get("ips_threshold_fraction", 0.75)),
            "ips_threshold_from_dense": self.threshold_from_dense,
            "bootstrap": self.bootstrap,
            "expected_seeds": len(self.seeds),
            "expected_rows": sorted({(r.env, f"{r.method} @ {r.keep_ratio:g}") for r in self.runs}),
        }


def load_config(path: Path | str, overrides: dict[str, Any] | None = None, overlays: list[Path | str] = ()) -> Resolved:
    """The config file, each overlay merged over it as Snakemake merges `--configfile`s, then top-level overrides."""
    config = yaml.safe_load(Path(path).read_text())
    if overlays:
        from snakemake.utils import update_config

        for overlay in overlays:
            update_config(config, yaml.safe_load(Path(overlay).read_text()) or {})
    config.update(overrides or {})
    return Resolved(validate(config))
