"""Config validation and per-job spec slicing (pure Python, as the Snakefile uses it)."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from rlrepro.config import Resolved, validate
from rlrepro.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def resolved(**changes) -> Resolved:
    config = copy.deepcopy(BASE)
    config.update(changes)
    return Resolved(validate(config))


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub or "$ref" in sub, f"{where}.{key} has no description"
            walk(sub, f"{where}.{key}")
        for name, sub in node.get("$defs", {}).items():
            walk(sub, f"$defs.{name}")

    walk(schema, "config")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown key(s) ['bogus'] in config; valid keys: preset"),
        ({"sac": {**BASE["sac"], "lr_polcy": 1.0}}, "unknown key(s) ['lr_polcy'] in config.sac; valid keys: lr_policy"),
        (
            {"preset": "nope"},
            "unknown preset 'nope'; valid presets: demo, demo_methods, demo_sparse, paper, smoke, smoke_scenarios",
        ),
        ({"device": "gpu"}, "config.device"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(change, message):
    with pytest.raises(ConfigError) as err:
        resolved(**change)
    assert message in str(err.value)


def test_unknown_method_and_scenario_name_valid_choices():
    presets = copy.deepcopy(BASE["presets"])
    presets["demo"]["methods"] = ["ft_1", "rewirex"]
    expected = (r"unknown method 'rewirex'; valid methods: csp, ewc, ft_1, ft_l2, ft_n, packnet, pnn, rewire, "
                r"rewire-coeff100, sac_n")  # config.yaml's variants are method names too
    with pytest.raises(ConfigError, match=expected):
        resolved(presets=presets)
    presets = copy.deepcopy(BASE["presets"])
    presets["demo"]["scenarios"] = ["halfcheetah/forgeting"]
    expected = r"unknown scenario 'halfcheetah/forgeting'; valid scenarios: .*halfcheetah/forgetting"
    with pytest.raises(ConfigError, match=expected):
        resolved(presets=presets)


def test_paper_preset_is_the_full_implemented_grid_at_spec_budgets():
    r = resolved(preset="paper")
    assert len(r.runs) == len(r.methods) * len(r.scenarios) * 10
    spec = r.train_spec("ft_1", "halfcheetah/forgetting", 0)
    assert spec["scenario"]["steps_per_task"] == 1_000_000 and len(spec["scenario"]["tasks"]) == 8
    assert spec["scenario"]["n_train_envs"] == 128 and spec["scenario"]["n_eval_envs"] == 512
    assert spec["sac"]["initial_buffer_size"] == 12_800
    assert r.eval_spec("halfcheetah/forgetting", 0)["evaluation"]["n_rollouts"] == 10


def test_scenario_overrides_and_method_blocks_reach_only_their_jobs():
    methods = copy.deepcopy(BASE["methods"])
    methods["ft_n"] = {"sac": {"lr_policy": 0.123}}
    r = resolved(methods=methods)
    assert r.train_spec("ft_n", "halfcheetah/forgetting", 0)["sac"]["lr_policy"] == 0.123
    assert r.train_spec("ft_1", "halfcheetah/forgetting", 0) == resolved().train_spec("ft_1", "halfcheetah/forgetting", 0)
    # rewire.md §2.3: halfcheetah/transfer uses policy_update_delay 4 and target_multiplier 1
    transfer = r.train_spec("ft_1", "halfcheetah/transfer", 0)["sac"]
    assert transfer["policy_update_delay"] == 4 and transfer["target_multiplier"] == 1
    assert r.train_spec("ft_1", "halfcheetah/transfer", 0)["engine_version"]


def sparse_config(**methods) -> dict:
    config = copy.deepcopy(BASE)
    config["sparse"]["methods"].update(methods)
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"snip": {}}, "unknown sparse method 'snip'; valid sparse methods: dapd, dense, rigl, rlx2"),
        ({"rigl": {"delat": 5}}, "unknown key(s) ['delat'] in sparse.methods.rigl; valid keys: actor_sparsity"),
        ({"dapd": {**BASE["sparse"]["methods"]["dapd"], "ips_threshold": {"hopper": 1}}},
         "sparse.methods.dapd.ips_threshold has no value for env 'halfcheetah' (has: hopper)"),
    ],
)  # fmt: skip
def test_bad_sparse_config_is_rejected_before_any_job(change, message):
    with pytest.raises(ConfigError) as err:
        Resolved(validate({**sparse_config(**change), "preset": "paper"}))
    assert message in str(err.value)


def test_unknown_sparse_env_lists_the_valid_ones():
    config = copy.deepcopy(BASE)
    config["presets"]["smoke"]["sparse"]["envs"] = ["humanoid"]
    with pytest.raises(
        ConfigError, match="unknown sparse env 'humanoid'; valid sparse envs: ant, halfcheetah, hopper, walker2d"
    ):
        Resolved(validate({**config, "preset": "smoke"}))


def test_sparse_grid_and_specs_follow_the_preset():
    paper = resolved(preset="paper").sparse
    assert len(paper.runs) == 3 * 4 * 4 * 5 + 4 * 5  # dense runs once per env and seed, at keep 1
    spec = paper.spec("dapd", "hopper", 0.05, 0)
    assert spec["sac"]["total_steps"] == 1_000_000 and spec["sac"]["seed_steps"] == 5000 and spec["sac"]["lr"] == 1e-3
    assert spec["method_hp"]["ips_threshold"] == BASE["sparse"]["methods"]["dapd"]["ips_threshold"]["hopper"]
    assert spec["env_id"] == "Hopper-v5" and spec["keep_ratio"] == 0.05
    smoke = resolved(preset="smoke").sparse
    assert smoke.spec("rigl", "halfcheetah", 0.05, 0)["method_hp"]["delta"] == 100  # budget override
    assert smoke.spec("dense", "halfcheetah", 1.0, 0)["method_hp"] == {}
    assert resolved(preset="demo").sparse.runs == [] and resolved(preset="demo_sparse").runs == []


def test_citation_and_license_match_the_package():
    import yaml

    from rlrepro import ENGINE_VERSION

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == ENGINE_VERSION and citation["license"] == "MIT"
    assert {r["year"] for r in citation["references"]} == {2023, 2024}
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_cli_lists_and_counts_both_suites():
    import subprocess
    import sys

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "rlrepro", *args], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "sparse 4 methods × 1 envs × 1 keep ratios × 1 seeds = 4 runs" in cli("check-config", "--set", "preset=demo_sparse")
    assert "continual 3 methods × 1 scenarios × 1 seeds = 3 runs; sparse 0" in cli("check-config")
    methods = cli("methods")
    assert "  rewire: " in methods and "  dapd: keys " in methods and "mean_action_collection" in methods
    assert "  halfcheetah: HalfCheetah-v5" in cli("scenarios")


def test_one_job_spec_printed_saved_as_yaml_and_read_back(tmp_path):
    import json
    import subprocess
    import sys

    import yaml

    from rlrepro.cli import _spec
    from rlrepro.config import load_config

    proc = subprocess.run([sys.executable, "-m", "rlrepro", "spec", "train", "--method", "ewc", "--scenario",
                           "halfcheetah/robustness", "--seed", "2", "--preset", "smoke"], capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == load_config(ROOT / "config.yaml", {"preset": "smoke"}).train_spec("ewc", "halfcheetah/robustness", 2)
    saved = tmp_path / "config.resolved.yaml"  # what `rlrepro train` saves next to a run's results
    saved.write_text(yaml.safe_dump(printed, sort_keys=False))
    assert _spec(f"@{saved}") == printed


def test_yaml_exponent_without_a_dot_is_rejected_with_the_fix(tmp_path):
    from rlrepro.cli import _spec

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["methods"]["ft_n"] = {"sac": yaml.safe_load("lr_policy: 3e-4")}
    assert config["methods"]["ft_n"]["sac"]["lr_policy"] == "3e-4"  # YAML 1.1: a string
    with pytest.raises(ConfigError, match=r"config.methods.ft_n.sac.lr_policy: '3e-4' is read as a string.*write 3.0e-4"):
        Resolved(validate(config))
    spec = tmp_path / "spec.yaml"
    spec.write_text("sac:\n  lr_q: 1E-3\n")
    with pytest.raises(ConfigError, match=r"write 1\.0e-3"):
        _spec(f"@{spec}")


@pytest.mark.parametrize(("name", "text"), [("spec.yaml", "sac:\n  tau: .nan\n"), ("spec.json", '{"sac": {"tau": NaN}}'),
                                            ("spec.json", '{"sac": {"tau": -Infinity}}'), (None, '{"sac": {"tau": NaN}}')])
def test_a_job_spec_with_a_non_finite_number_is_refused_naming_the_key(tmp_path, name, text):
    from rlrepro.cli import _spec

    if name:
        (tmp_path / name).write_text(text)
    arg = f"@{tmp_path / name}" if name else text
    where = str(tmp_path / name) if name else "--spec"
    with pytest.raises(ConfigError, match=rf"^{re.escape(where)}\.sac\.tau: -?(nan|inf) is not a finite number"):
        _spec(arg)


def test_check_config_works_from_a_non_editable_install(tmp_path):
    """As in the image: the package installed from a wheel, no checkout around it (the schema is package data)."""
    import os
    import subprocess
    import sys

    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("rlrepro-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "rlrepro/config.schema.yaml").is_file()
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "config.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", "import rlrepro.cli as c, sys; print(c.__file__); sys.exit(c.main())",
                           "check-config", "--config", str(config), "--set", "preset=smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(str(target)) and "= 9 runs" in proc.stdout


def test_sweeps_expand_into_named_variants_and_bad_variants_fail_before_any_job(tmp_path):
    """A sweep is a grid of variants named base-key=value...; a preset naming the sweep runs them all, each with its
    values (dotted keys reach the sac block) and the variant's value winning over the base's scenario override."""
    from rlrepro.config import load_config

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["sweeps"] = {"ewc_grid": {"base": "ewc", "grid": {"fisher_coeff": [0.01, 100], "sac.lr_q": [1.0e-3]}}}
    config["variants"] = {"rigl-fast": {"base": "rigl", "delta": 50}}
    config["presets"]["smoke"]["methods"] = ["ft_1", "ewc_grid"]
    config["presets"]["smoke"]["sparse"]["methods"] = ["rigl", "rigl-fast"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    resolved = load_config(path, {"preset": "smoke"})
    assert resolved.methods == ["ft_1", "ewc-fisher_coeff=0.01-sac.lr_q=0.001", "ewc-fisher_coeff=100-sac.lr_q=0.001"]
    spec = resolved.train_spec("ewc-fisher_coeff=100-sac.lr_q=0.001", "halfcheetah/forgetting", 0)
    assert (spec["method"], spec["method_hp"]["fisher_coeff"], spec["sac"]["lr_q"]) == ("ewc", 100, 1.0e-3)
    assert "variant" not in resolved.train_spec("ft_1", "halfcheetah/forgetting", 0)  # base specs unchanged
    sparse = resolved.sparse.spec("rigl-fast", "halfcheetah", 0.05, 0)
    assert (sparse["method"], sparse["variant"], sparse["method_hp"]["delta"]) == ("rigl", "rigl-fast", 50)
    assert [r.method for r in resolved.sparse.runs] == ["rigl", "rigl-fast"]

    for variants, message in [
        ({"strong": {"base": "ewc"}}, "variant name 'strong' must be its base method, a hyphen"),
        ({"ewc-x": {"base": "ewc", "fisher": 1}}, "unknown key(s) ['fisher'] in methods.ewc-x"),
        ({"ewc-x": {"base": "ewc", "sac": {"lr": 1}}}, "unknown key(s) ['lr'] in methods.ewc-x.sac"),
        ({"rigl-x": {"base": "rigl", "nstep": "three", "bogus": 1}}, "unknown key(s) ['bogus'] in variants.rigl-x"),
        ({"ewk-x": {"base": "ewk"}}, "variants.ewk-x: base 'ewk' is not an implemented method"),
    ]:
        config["variants"] = variants
        config["presets"]["smoke"]["methods"] = ["ft_1"]
        config["presets"]["smoke"]["sparse"]["methods"] = ["rigl"]
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(path, {"preset": "smoke"})


def test_validate_preset_lists_all_methods_and_the_rewire_diagnostic_without_changing_base_jobs():
    """`all` inside a list expands to every base method; the validation study's Rewire arm with coeff 100 is a
    variant whose value wins over Rewire's robustness override (1), while Rewire's own job spec keeps coeff 1."""
    from rlrepro.config import load_config
    from rlrepro.continual.methods.registry import method_names

    resolved = load_config(ROOT / "config.yaml", {"preset": "validate"})
    assert resolved.methods == [*method_names(), "rewire-coeff100"]
    base = resolved.train_spec("rewire", "halfcheetah/robustness", 0)
    arm = resolved.train_spec("rewire-coeff100", "halfcheetah/robustness", 0)
    assert (base["method_hp"]["coeff"], arm["method_hp"]["coeff"], arm["method"]) == (1, 100, "rewire")
    assert "variant" not in base and arm["variant"] == "rewire-coeff100"
    assert {k: v for k, v in arm["method_hp"].items() if k != "coeff"} == {
        k: v for k, v in base["method_hp"].items() if k != "coeff"}


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", ".NaN", "-.Inf"])
def test_nan_and_infinity_are_refused_with_the_key_named(text):
    """JSON schema bounds never fail on NaN (every comparison with it is false), and .inf passes `minimum`: both are
    refused before any job, in any numeric value."""
    config = copy.deepcopy(BASE)
    config["sac"] = {**BASE["sac"], "lr_q": yaml.safe_load(text)}
    with pytest.raises(ConfigError, match=r"^config\.sac\.lr_q: -?(nan|inf) is not a finite number"):
        validate(config)
    nested = copy.deepcopy(BASE)
    nested["methods"]["ewc"] = {**BASE["methods"]["ewc"], "scenario_overrides": {"halfcheetah/forgetting": {
        "fisher_coeff": yaml.safe_load(text)}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"config\.methods\.ewc\.scenario_overrides\.halfcheetah/forgetting\.fisher_coeff"):
        validate(nested)
    assert validate(copy.deepcopy(BASE))  # the shipped config's finite values pass


def test_snakemake_refuses_nan_before_scheduling_any_job(tmp_path):
    """The issue's case: `sac: {lr_q: .nan}` in an overlay used to pass validation and a dry run scheduled the jobs."""
    import os
    import shutil
    import subprocess
    import sys

    for item in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / item)
    (tmp_path / "overlay.yaml").write_text("sac:\n  lr_q: .nan\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "overlay.yaml",
                           "--config", "preset=smoke"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid configuration: config.sac.lr_q: nan is not a finite number" in out
    assert "Job stats" not in out and "rule train_run" not in out
