"""One entry point for every pipeline stage: `python -m rlrepro <stage> ...` (each Snakemake rule calls it).

Job specs arrive as JSON (Snakemake params), so a job depends on exactly the config slice it receives.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("rlrepro")


def _set_runtime_env() -> None:
    """Before jax is imported: single-threaded XLA on CPU, and no JAX GPU pre-allocation (torch shares the GPU)."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()


def _setup_runtime() -> None:
    """One torch thread per job and a persistent XLA compile cache shared by jobs of the same env shapes."""
    import jax

    cache = os.environ.get("RLREPRO_JAX_CACHE", str(Path.home() / ".cache" / "rlrepro" / "jax"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    from rlrepro.continual import configure_threads

    configure_threads()


def _spec(text: str) -> dict[str, Any]:
    """A job spec: inline JSON, or @file with JSON or YAML (a run's saved `config.resolved.yaml` is a spec). Strings
    that YAML 1.1 misreads and non-finite numbers (JSON's NaN/Infinity, YAML's .nan/.inf) are refused, naming the key,
    before the job starts."""
    import yaml

    from rlrepro.config import reject_exponent_strings, reject_non_finite

    if text.startswith("@"):
        path = Path(text[1:])
        where = str(path)
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    else:
        where, data = "--spec", json.loads(text)
    reject_exponent_strings(data, where)
    reject_non_finite(data, where)
    return data


def cmd_adopt(args: argparse.Namespace) -> int:
    """Check every finished run of the preset against its job spec; touch the matching ones, move the others aside.
    Exit status 1 when a run's policies or model file is refused (not data: left in place, neither adopted nor
    moved)."""
    from rlrepro.adopt import move_aside, plan, touch
    from rlrepro.config import load_config

    resolved = load_config(args.config, {"preset": args.preset} if args.preset else {}, args.configfile)
    adoption = plan(resolved)
    for path, why in adoption.waiting:
        print(f"left for Snakemake: {path}: {why}")
    for path, why in adoption.stale:
        print(f"stale: {path}: {why}")
    for why in adoption.refused:
        print(f"refused: {why}")
    print(f"{len(adoption.adopted)} outputs match their job specs, {len(adoption.stale)} are stale, "
          f"{len(adoption.refused)} runs refused")  # fmt: skip
    if args.dry_run:
        return 1 if adoption.refused else 0
    if adoption.stale:
        print(f"stale outputs moved to {move_aside(adoption, Path(resolved.results_dir))}: Snakemake reruns them")
    extra = ["--configfile", args.config, *args.configfile, "--config", f"preset={resolved.preset_name}"]
    touch(adoption.adopted, extra)
    return 1 if adoption.refused else 0


def cmd_convert_legacy(args: argparse.Namespace) -> int:
    """Rewrite policies.pt / model.pt files of older rlrepro versions (pickled objects) as data, on the user's word."""
    from rlrepro.legacy import convert

    for path in args.paths:
        print(f"{path}: {convert(Path(path))}")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    """Print the job spec Snakemake would pass to one job of the preset (train, evaluate or train-sparse)."""
    from rlrepro.config import load_config

    overrides = {"preset": args.preset} if args.preset else {}
    resolved = load_config(args.config, overrides)
    if args.job == "train":
        spec = resolved.train_spec(args.method, args.scenario, args.seed)
    elif args.job == "evaluate":
        spec = resolved.eval_spec(args.scenario, args.seed)
    else:
        spec = resolved.sparse.spec(args.method, args.env, args.keep, args.seed)
    print(json.dumps(spec, indent=2, sort_keys=True))
    return 0


def _on_device(spec, *, check_jax: bool):
    """The spec with its device claimed (own GPU per local job) and checked (fail loudly if the GPU is missing), once
    the job is known to run the checkout's engine (rlrepro.identity): every job command passes here before work."""
    import dataclasses

    from rlrepro.gpu import claim_device, preflight
    from rlrepro.identity import check_job_matches_checkout

    check_job_matches_checkout()

    # Check before claiming: on a host without a GPU the reason is the preflight's, not "all 0 GPUs are held".
    preflight(spec.device, check_jax=check_jax)
    device = claim_device(spec.device)
    if device != spec.device:
        preflight(device, check_jax=False)
    return dataclasses.replace(spec, device=device)


def _check_record(check: Any) -> dict[str, Any]:
    """meta.json's `compiled_check` entry (none when the job asked for no check), also told in the job's log."""
    if check is None:
        return {}
    summary = check.summary()
    if summary["checks"]:
        log.info("checked %d of %d compiled updates against the eager update: largest departure %.3g of a step "
                 "(compiled update %d, %s)", summary["checks"], summary["compiled_updates"], summary["max_departure"],
                 summary["worst_update"], summary["worst_tensor"])  # fmt: skip
    else:
        log.warning("compiled_check_every is set, but this job compiled no update to check (engine.compile)")
    return {"compiled_check": summary}


def cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd
    import yaml

    from rlrepro.checkpoint import CheckpointStore
    from rlrepro.config import stable_hash
    from rlrepro.continual import TrainSpec, train
    from rlrepro.engine.compiled_check import CompiledCheck
    from rlrepro.identity import job_identity
    from rlrepro.io import atomic_torch_save, atomic_write_json, atomic_write_parquet, atomic_write_text
    from rlrepro.progress import Progress
    from rlrepro.results import provenance
    from rlrepro.runlog import RunLog

    identity = job_identity()  # the code this process runs, before a commit can move the checkout
    raw = _spec(args.spec)
    check = CompiledCheck.from_environment()
    spec = TrainSpec.from_dict(raw)
    spec = _on_device(spec, check_jax=spec.scenario.backend != "metaworld")
    _setup_runtime()
    out = Path(args.run_dir)
    sc = spec.scenario
    progress = Progress(
        sc.steps_per_task * sc.n_tasks, f"train {spec.label} {sc.name} seed{spec.seed}", spec.log.log_interval_s
    )
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    run_log = RunLog(f"{sc.name}/{spec.label}/seed{spec.seed}")
    result = train(spec, progress=progress, checkpoint_dir=checkpoint_dir, run_log=run_log, compiled_check=check)
    run_log.close()
    progress.close()
    meta = provenance(stable_hash(raw), spec.device, identity)
    meta.update(
        method=spec.label,
        **({"base_method": spec.method} if spec.variant else {}),
        scenario=sc.name,
        seed=spec.seed,
        train_wall_time_s=result.train_wall_time_s,
        resumed_from=result.resumed_from,
        **_check_record(check),
    )
    atomic_write_text(out / "config.resolved.yaml", yaml.safe_dump(raw, sort_keys=False))
    atomic_torch_save(result.policies(), out / "policies.pt")
    rows = pd.DataFrame(result.rows, columns=["stage", "task", "metric", "value", "step"])
    rows = rows.astype({"task": "Int64", "step": "Int64"})
    atomic_write_parquet(rows, out / "train.parquet")
    atomic_write_json(out / "meta.json", meta)  # written last: its presence marks a complete train job
    CheckpointStore(checkpoint_dir, raw).clear()  # complete: nothing resumable is left behind
    return 0


def cmd_train_sparse(args: argparse.Namespace) -> int:
    import yaml

    from rlrepro.checkpoint import CheckpointStore
    from rlrepro.config import stable_hash
    from rlrepro.continual import configure_threads
    from rlrepro.engine.compiled_check import CompiledCheck
    from rlrepro.identity import job_identity
    from rlrepro.io import atomic_torch_save, atomic_write_json, atomic_write_parquet, atomic_write_text
    from rlrepro.progress import Progress
    from rlrepro.results import provenance, sparse_run_frame
    from rlrepro.runlog import RunLog
    from rlrepro.sparse.config import SparseSpec, resolve_threshold_from_dense
    from rlrepro.sparse.train import train_sparse

    identity = job_identity()  # the code this process runs, before a commit can move the checkout
    raw = resolve_threshold_from_dense(_spec(args.spec), args.dense_results)
    check = CompiledCheck.from_environment()
    spec = _on_device(SparseSpec.from_dict(raw), check_jax=False)
    configure_threads()
    out = Path(args.run_dir)
    desc = f"train {spec.label} {spec.env_id} keep {spec.keep_ratio:g} seed{spec.seed}"
    progress = Progress(spec.sac.total_steps, desc)
    checkpoint_dir = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    run_log = RunLog(f"sparse/{spec.env}/{spec.label}/keep{spec.keep_ratio:g}/seed{spec.seed}")
    result = train_sparse(spec, progress=progress, checkpoint_dir=checkpoint_dir, run_log=run_log, compiled_check=check)
    run_log.close()
    progress.close()
    meta = provenance(stable_hash(raw), spec.device, identity)
    meta.update(
        suite="sparse",
        method=spec.label,
        **({"base_method": spec.method} if spec.variant else {}),
        env=spec.env,
        env_id=spec.env_id,
        keep_ratio=spec.keep_ratio,
        seed=spec.seed,
        train_wall_time_s=result.train_wall_time_s,
        resumed_from_step=result.resumed_from_step,
        **_check_record(check),
    )
    if spec.method == "dapd":
        meta.update(ips_threshold=spec.dapd().ips_threshold, ips_threshold_from_dense=spec.ips_threshold_from_dense)
    frame = sparse_run_frame(
        result.rows,
        method=spec.label,
        env=spec.env,
        env_id=spec.env_id,
        keep_ratio=spec.keep_ratio,
        seed=spec.seed,
        meta=meta,
        train_wall_time_s=result.train_wall_time_s,
    )
    atomic_write_text(out / "config.resolved.yaml", yaml.safe_dump(raw, sort_keys=False))
    atomic_torch_save(result.model, out / "model.pt")
    atomic_write_parquet(frame, out / "results.parquet")
    atomic_write_json(out / "meta.json", meta)  # written last: its presence marks a complete run
    CheckpointStore(checkpoint_dir, raw).clear()  # complete: nothing resumable is left behind
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from rlrepro.config import stable_hash
    from rlrepro.continual import EvalSpec, evaluate, read_policies
    from rlrepro.io import atomic_write_parquet
    from rlrepro.progress import Progress
    from rlrepro.results import run_frame
    from rlrepro.runlog import RunLog

    raw = _spec(args.spec)
    spec = EvalSpec.from_dict(raw)
    spec = _on_device(spec, check_jax=spec.scenario.backend != "metaworld")
    _setup_runtime()
    run_dir = Path(args.run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    policies = read_policies(run_dir / "policies.pt")  # data only: a file holding pickled objects is refused
    train_rows = pd.read_parquet(run_dir / "train.parquet")
    sc = spec.scenario
    total = sc.n_tasks * len(policies["stages"]) * spec.evaluation.n_rollouts * sc.n_eval_envs * sc.episode_length
    progress = Progress(total, f"evaluate {meta['method']} {sc.name} seed{spec.seed}")
    start = time.monotonic()
    rows = evaluate(spec, policies, progress=progress)
    progress.close()
    run_log = RunLog(f"{sc.name}/{meta['method']}/seed{spec.seed}")
    for row in rows:  # x = the stage after which the policy was evaluated
        if row["metric"] in ("avg_return", "success_last"):
            run_log.scalars(row["stage"], {f"eval/{row['metric']}/task{row['task']}": row["value"]})
    run_log.close()
    frame = run_frame(
        train_rows.astype({"task": "object", "step": "object"}).to_dict("records") + rows,
        suite="continual",
        method=meta["method"],
        scenario=sc.name,
        seed=spec.seed,
        task_names=[t.name for t in sc.tasks],
        meta=meta,
        train_wall_time_s=meta["train_wall_time_s"],
        eval_wall_time_s=time.monotonic() - start,
    )
    frame.attrs["eval_config_hash"] = stable_hash(raw)  # the evaluation's own spec (`rlrepro adopt` checks it)
    atomic_write_parquet(frame, args.out)
    return 0


def cmd_random_reference(args: argparse.Namespace) -> int:
    import pandas as pd

    from rlrepro.config import stable_hash
    from rlrepro.continual import EvalSpec, evaluate_random
    from rlrepro.io import atomic_write_parquet

    raw = _spec(args.spec)
    spec = EvalSpec.from_dict(raw)
    spec = _on_device(spec, check_jax=spec.scenario.backend != "metaworld")
    _setup_runtime()
    rows = pd.DataFrame(evaluate_random(spec))
    names = [t.name for t in spec.scenario.tasks]
    rows = rows.assign(scenario=spec.scenario.name, seed=spec.seed, task_name=rows["task"].map(lambda j: names[j]))
    rows = rows[["scenario", "seed", "task", "task_name", "metric", "value"]]
    rows.attrs["eval_config_hash"] = stable_hash(raw)
    atomic_write_parquet(rows, Path(args.out))
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    import pandas as pd

    from rlrepro.io import atomic_write_parquet, atomic_write_text
    from rlrepro.metrics.stats import BootstrapConfig
    from rlrepro.naming import display_name
    from rlrepro.results import read_results
    from rlrepro.tables import (
        continual_run_metrics,
        continual_summary,
        continual_task_table,
        paper,
        render_markdown,
        render_task_markdown,
    )

    spec = _spec(args.spec)
    results = read_results(args.inputs)
    out = Path(args.out_dir)
    demo = spec.get("demo_overrides")
    # A preset with demo-only settings says so in every table it produces.
    demo_note = (f" DEMO-ONLY settings over the faithful ones (every method, policy and critic): {json.dumps(demo)}."
                 if demo else "")  # fmt: skip
    random_ref = pd.concat([pd.read_parquet(p) for p in args.random]) if args.random else None
    tasks = continual_task_table(results, random_ref)
    atomic_write_parquet(tasks, out / "continual_tasks.parquet")
    atomic_write_text(out / "continual_tasks.md", render_task_markdown(tasks, (
        "# Per task: performance right after training the task → after the last task (mean over seeds), and a "
        f"uniform-random policy's on the same task (same envs, rollouts and seeds).{demo_note}")))  # fmt: skip
    run_metrics = continual_run_metrics(results, spec["reference_method"])
    summary = continual_summary(run_metrics, spec.get("expected_seeds"))
    atomic_write_parquet(results, out / "results.parquet")
    atomic_write_parquet(run_metrics, out / "continual_runs.parquet")
    atomic_write_parquet(summary, out / "continual_summary.parquet")
    title = f"# Continual RL summary (mean ± std over seeds){demo_note}\n\n"
    atomic_write_text(out / "continual_summary.md", title + render_markdown(summary))

    boot = BootstrapConfig(**spec["bootstrap"])
    layout = paper.TableSpec("continual", "scenario", "method", {})
    metrics = list(dict.fromkeys([*paper.BRAX_COLUMNS, *paper.CW_COLUMNS]))
    cells = paper.estimate_cells(run_metrics, layout, metrics, boot, spec.get("expected_seeds"), spec.get("expected_rows"))
    cells = paper.attach_reference(cells, paper.read_reference(args.reference, "scenario", "method"))
    atomic_write_parquet(cells, out / "continual_tables.parquet")
    ref_name = display_name(spec["reference_method"])
    caption = (
        f"Mean [{boot.confidence:.0%} CI] over seeds (rliable stratified bootstrap, {boot.reps} resamples, "
        f"random state {boot.random_state}). Final (÷ {ref_name}) and forward transfer use "
        f"{ref_name}'s per-task performance; model size = the method's whole state dict as the "
        "original logged it, inference size = what inference needs, both relative to one policy. Continual World: "
        f"performance = success rate.{demo_note}"
    )
    by_domain = [(d, cells[cells["section"].str.split("/").str[0] == d]) for d in dict.fromkeys(
        cells["section"].str.split("/").str[0])]  # fmt: skip
    brax = paper.brax_columns(spec["reference_method"])
    columns = {d: paper.CW_COLUMNS if d == "continual_world" else brax for d, _ in by_domain}
    md = [paper.render_markdown(c, columns[d], f"Continual RL — {d}", caption) for d, c in by_domain]
    atomic_write_text(out / "continual_tables.md", "\n".join(md))
    atomic_write_text(
        out / "continual_tables.tex", "\n".join(paper.render_latex(c, columns[d], caption) for d, c in by_domain)
    )
    atomic_write_text(out / "continual_tables.html", _join_html(
        [paper.render_html(c, columns[d], f"Continual RL — {d}", caption) for d, c in by_domain]))  # fmt: skip

    agg, _ = paper.aggregate_table(run_metrics, "final_normalised", boot, reference=spec["reference_method"])
    ref = ref_name
    atomic_write_parquet(agg, out / "continual_aggregate.parquet")
    agg_cols = {"iqm": "IQM", "mean": "mean", "median": "median", "optimality_gap": "optimality gap",
                "p_improvement": f"P(X > {ref})"}  # fmt: skip
    agg_caption = (
        f"Final performance normalised by {ref}, aggregated over all scenarios of each method: "
        f"point estimate [{boot.confidence:.0%} CI], stratified bootstrap over seeds (seeds present in every scenario). "
        f"P(X > {ref}): rliable's probability that a run of the method beats a run of {ref} on a scenario, averaged "
        f"over the scenarios both ran.{demo_note}"
    )
    atomic_write_text(out / "continual_aggregate.md", paper.render_markdown(agg, agg_cols, "Aggregate", agg_caption))
    atomic_write_text(out / "continual_aggregate.tex", paper.render_latex(agg, agg_cols, agg_caption))
    atomic_write_text(out / "continual_aggregate.html", paper.render_html(agg, agg_cols, "Aggregate", agg_caption))
    return 0


def _join_html(pages: list[str]) -> str:
    """Several rendered HTML pages as one (bodies concatenated)."""
    head, bodies = pages[0].split("<body>")[0], [p.split("<body>", 1)[1].rsplit("</body>", 1)[0] for p in pages]
    return f"{head}<body>{''.join(bodies)}</body></html>\n"


def cmd_aggregate_sparse(args: argparse.Namespace) -> int:
    from rlrepro.io import atomic_write_parquet, atomic_write_text
    from rlrepro.metrics.stats import BootstrapConfig
    from rlrepro.results import SPARSE_SCHEMA, read_frames
    from rlrepro.tables import paper
    from rlrepro.tables.sparse import render_sparse_markdown, sparse_run_metrics, sparse_summary

    spec = _spec(args.spec)
    results = read_frames(args.inputs, SPARSE_SCHEMA)
    out = Path(args.out_dir)
    run_metrics = sparse_run_metrics(results, spec["last_k"])
    summary = sparse_summary(run_metrics, spec.get("expected_seeds"))
    atomic_write_parquet(results, out / "sparse_results.parquet")
    atomic_write_parquet(run_metrics, out / "sparse_runs.parquet")
    atomic_write_parquet(summary, out / "sparse_summary.parquet")
    title = (
        f"# Sparse suite (mean ± std over seeds; return = mean of the last {spec['last_k']} evaluations; "
        "× dense = ratio to the env's dense runs)\n\n"
    )
    markdown = render_sparse_markdown(summary, spec.get("ips_threshold_fraction"), spec.get("ips_threshold_from_dense", False))
    atomic_write_text(out / "sparse_summary.md", title + markdown)

    boot = BootstrapConfig(**spec["bootstrap"])
    layout = paper.TableSpec("sparse", "env", "label", paper.SPARSE_COLUMNS)
    cells = paper.estimate_cells(
        run_metrics, layout, list(paper.SPARSE_COLUMNS), boot, spec.get("expected_seeds"), spec.get("expected_rows")
    )
    cells = paper.attach_reference(cells, paper.read_reference(args.reference, "env", "method"))
    atomic_write_parquet(cells, out / "sparse_tables.parquet")
    keeps = sorted({float(k) for k in run_metrics["keep_ratio"] if float(k) < 1.0}, reverse=True)
    sparsity = ", ".join(f"{k:g} = {1 - k:.0%} sparse" for k in keeps)
    caption = (
        f"Return = mean of each run's last {spec['last_k']} evaluations; mean [{boot.confidence:.0%} CI] over seeds "
        f"(stratified bootstrap, {boot.reps} resamples); @ k = the fraction k of weights kept"
        f"{f' ({sparsity})' if sparsity else ''}, dense at 1; × dense = per-seed ratio to the mean of the env's dense "
        "runs; params = active weights + biases (actor + critic); train FLOPs = the documented proxy (README)."
    )
    atomic_write_text(out / "sparse_tables.md", paper.render_markdown(cells, paper.SPARSE_COLUMNS, "Sparse suite", caption))
    atomic_write_text(out / "sparse_tables.tex", paper.render_latex(cells, paper.SPARSE_COLUMNS, caption))
    atomic_write_text(out / "sparse_tables.html", paper.render_html(cells, paper.SPARSE_COLUMNS, "Sparse suite", caption))
    return 0


def cmd_figure(args: argparse.Namespace) -> int:
    import pandas as pd

    from rlrepro import figures
    from rlrepro.metrics.stats import BootstrapConfig
    from rlrepro.results import SPARSE_SCHEMA, read_frames, read_results

    boot = BootstrapConfig(**_spec(args.spec)) if args.spec else BootstrapConfig()
    if args.kind in ("sparse-curves", "sparse-layer-density"):
        frame = read_frames(args.inputs, SPARSE_SCHEMA)
        if args.kind == "sparse-curves":
            figures.sparse_curves(frame, args.out, boot)
        else:
            figures.sparse_layer_density(frame, args.out)
    elif args.kind == "tradeoff":
        figures.tradeoff(pd.read_parquet(args.inputs[0]), args.domain, args.out, boot)
    elif args.kind == "aggregate":
        figures.aggregate(pd.read_parquet(args.inputs[0]), args.out, boot)
    elif args.kind == "transfer-matrix":
        figures.transfer_matrix(read_results(args.inputs), args.out)
    elif args.kind == "continual-curves":
        figures.continual_curves(read_results(args.inputs), args.out, boot)
    elif args.kind == "task-performance":
        random = pd.concat([pd.read_parquet(p) for p in args.random]) if args.random else None
        figures.task_performance(read_results(args.inputs), args.out, random)
    else:
        figures.stage_performance(read_results(args.inputs), args.out)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from rlrepro.adopt import study_status
    from rlrepro.config import load_config
    from rlrepro.io import atomic_write_parquet, atomic_write_text
    from rlrepro.metrics.stats import BootstrapConfig
    from rlrepro.scenarios import get_scenario
    from rlrepro.tables.claims import (
        claims_table,
        compare_studies,
        engine_versions,
        hours_per_job,
        render_claims_markdown,
        render_comparison_markdown,
        render_cost_comparison,
        render_cost_markdown,
        stale_tables,
        study_cost,
    )

    paper = load_config(args.config, {"preset": "paper"})
    full = {}
    for name in paper.scenarios:
        sc = get_scenario(name)
        full[name] = f"{sc.n_tasks} tasks × {sc.steps_per_task / 1e6:g}M steps, {len(paper.seeds)} seeds"
    sparse_steps = int(paper.config["sparse"]["sac"]["total_steps"])
    sparse_full = f"{sparse_steps / 1e6:g}M steps, {len(paper.sparse.seeds)} seeds"
    studies, presets = {}, {}
    for preset in args.preset:
        presets[preset] = load_config(args.config, {"preset": preset})
        studies[preset] = Path(presets[preset].results_dir)
    for item in args.study:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise SystemExit(f"rlrepro claims: --study takes NAME=DIR (a folder holding tables/), not {item!r}")
        studies[name] = Path(directory)
    logging.getLogger("absl").setLevel(logging.WARNING)  # rliable's per-estimate INFO lines
    names = args.compare.split(",") if args.compare else []
    if names and (len(names) != 2 or not all(n in studies for n in names)):
        raise SystemExit(f"rlrepro claims: --compare takes two of the studies A,B (studies: {', '.join(studies)})")
    built = {name: d for name, d in studies.items() if (d / "tables").is_dir()}
    out_of_date = {name: stale for name in presets if name in built and (stale := stale_tables(built[name]))}
    built = {name: d for name, d in built.items() if name not in out_of_date}
    costs = {name: study_cost(d) for name, d in built.items()}
    status = [study_status(preset, resolved, hours_per_job(costs[preset]) if preset in costs else None)
              for preset, resolved in presets.items()]  # fmt: skip
    boot = BootstrapConfig(**paper.config["aggregate"]["bootstrap"])
    table = claims_table(built, boot, full, sparse_full)
    atomic_write_parquet(table, Path(args.out).with_suffix(".parquet"))
    not_built = sorted(set(studies) - set(built) - set(out_of_date))
    text = render_claims_markdown(table, not_built, status, boot.confidence,
                                  {name: len(runs) for name, runs in out_of_date.items()})  # fmt: skip
    atomic_write_text(args.out, text)
    compared = bool(names) and all(n in built for n in names)
    side_by_side = render_cost_comparison(costs[names[0]], costs[names[1]], tuple(names)) if compared else ""
    costs = {f"{name} (engine {engine_versions(built[name])})": cost for name, cost in costs.items()}
    atomic_write_text(Path(args.out).with_name("cost.md"), render_cost_markdown(costs) + side_by_side)
    if names:
        out = Path(args.out).with_name(f"{names[0]}_vs_{names[1]}.md")
        if compared:
            atomic_write_text(out, render_comparison_markdown(compare_studies(built[names[0]], built[names[1]]), *names))
        else:  # never leave an earlier comparison standing for tables that are gone or out of date
            missing = ", ".join(f"{n} ({'out of date' if n in out_of_date else 'no tables'})" for n in names if n not in built)
            atomic_write_text(out, f"# {names[0]} against {names[1]}\n\nNot compared: {missing}. `make validate-tables "
                                   f"VALIDATE=<preset>` builds a preset's tables from the runs it holds.\n")  # fmt: skip
    return 0


def cmd_provenance(args: argparse.Namespace) -> int:
    from rlrepro.io import atomic_write_text
    from rlrepro.results import provenance_tables

    markdown, page = provenance_tables(args.inputs)
    atomic_write_text(args.out, markdown)
    atomic_write_text(args.html, page)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    import yaml

    from rlrepro.scenarios import get_scenario, scenario_names

    print("continual suite (Rewire):")
    for name in scenario_names():
        sc = get_scenario(name)
        tasks = ", ".join(t.name for t in sc.tasks)
        print(
            f"  {name}: {sc.n_tasks} tasks × {sc.steps_per_task:,} steps, {sc.n_train_envs} train / "
            f"{sc.n_eval_envs} eval envs, episodes of {sc.episode_length}\n      {tasks}"
        )
    envs = (yaml.safe_load(Path(args.config).read_text()).get("sparse") or {}).get("envs", {})
    print(f"sparse suite (DAPD), envs of {args.config}:")
    for name, block in envs.items():
        print(f"  {name}: {block['id']}" + (f" {block['kwargs']}" if block.get("kwargs") else ""))
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from rlrepro.continual.methods.registry import METHODS
    from rlrepro.sparse.config import SPARSE_METHODS, method_hyperparameters

    print("continual suite (Rewire):")
    for name, target in METHODS.items():
        print(f"  {name}: {target}")
    print("sparse suite (DAPD):")
    for name in SPARSE_METHODS:
        print(f"  {name}: keys {', '.join(method_hyperparameters(name))}")
    return 0


def cmd_sysinfo(args: argparse.Namespace) -> int:
    """The runtime a job gets here: torch threads, CPU, BLAS path, devices (CPU and BLAS are in every meta.json)."""
    import torch

    from rlrepro import blas

    _setup_runtime()
    info = {
        "torch": torch.__version__,
        "cpu": blas.cpu_facts(),  # vendor, model, cores this process may use, torch threads
        "blas": blas.status(),
        "cuda_devices": torch.cuda.device_count(),
    }
    print(json.dumps(info, indent=1))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from rlrepro.config import load_config

    overrides = dict(kv.split("=", 1) for kv in args.set)
    resolved = load_config(args.config, overrides)
    sparse = resolved.sparse
    print(
        f"preset {resolved.preset_name}: continual {len(resolved.methods)} methods × {len(resolved.scenarios)} "
        f"scenarios × {len(resolved.seeds)} seeds = {len(resolved.runs)} runs; sparse {len(sparse.methods)} methods × "
        f"{len(sparse.envs)} envs × {len(sparse.keep_ratios)} keep ratios × {len(sparse.seeds)} seeds = "
        f"{len(sparse.runs)} runs (dense once per env and seed)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlrepro", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("train", help="train one (method, scenario, seed) run task by task")
    p.add_argument("--spec", required=True, help="job spec as JSON, or @file (JSON or YAML: a run's config.resolved.yaml)")
    p.add_argument("--run-dir", required=True, help="run directory for policies.pt, train.parquet, meta.json")
    p.add_argument("--checkpoint-dir", help="resume checkpoints (kept outside the declared outputs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-sparse", help="train one sparse-suite run (method, env, keep ratio, seed)")
    p.add_argument("--spec", required=True, help="job spec as JSON, or @file")
    p.add_argument("--run-dir", required=True, help="run directory for model.pt, results.parquet, meta.json")
    p.add_argument("--checkpoint-dir", help="resume checkpoints (kept outside the declared outputs)")
    p.add_argument("--dense-results", help="the dense run's results.parquet a spec with ips_threshold_from_dense reads")
    p.set_defaults(func=cmd_train_sparse)

    p = sub.add_parser("evaluate", help="evaluate every stage's policy on every task into results.parquet")
    p.add_argument("--spec", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("spec", help="print the job spec of one (method, scenario, seed) of a preset, to run it by hand")
    p.add_argument("job", choices=["train", "evaluate", "train-sparse"])
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--preset", help="default: the config's preset (the scenario budget depends on it)")
    p.add_argument("--method")
    p.add_argument("--scenario")
    p.add_argument("--env", help="train-sparse: env name of sparse.envs")
    p.add_argument("--keep", type=float, default=0.05, help="train-sparse: keep ratio")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_spec)

    p = sub.add_parser("random-reference", help="a uniform-random policy evaluated on every task (tables' reference)")
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_random_reference)

    p = sub.add_parser("aggregate", help="tables from run Parquets")
    p.add_argument("--spec", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--reference", help="CSV of reference values (scenario, method, metric, value)")
    p.add_argument("--random", nargs="*", default=[], help="random-reference Parquets (rlrepro random-reference)")
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("aggregate-sparse", help="sparse-suite tables from run Parquets")
    p.add_argument("--spec", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--reference", help="CSV of reference values (env, method, keep_ratio, metric, value)")
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_aggregate_sparse)

    p = sub.add_parser("figure", help="one figure (PNG + PDF) from run Parquets")
    p.add_argument(
        "kind",
        choices=[
            "transfer-matrix",
            "stage-performance",
            "task-performance",
            "continual-curves",
            "tradeoff",
            "aggregate",
            "sparse-curves",
            "sparse-layer-density",
        ],
    )
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--spec", help="bootstrap settings as JSON (reps, confidence, random_state)")
    p.add_argument("--domain", help="tradeoff: the domain to plot")
    p.add_argument("--random", nargs="*", default=[], help="task-performance: random-reference Parquets of the scenario")
    p.add_argument("inputs", nargs="+")
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("claims", help="the papers' claims decided from studies' tables: holds / does not hold / undecided")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--preset", action="append", default=[], help="a study's preset (repeat); its results_dir's tables")
    p.add_argument("--study", action="append", default=[], help="NAME=DIR: a study kept elsewhere (e.g. an older "
                   "engine's tables); DIR holds tables/ and references/")  # fmt: skip
    p.add_argument("--compare", help="A,B: two of the studies side by side, method by method (written next to --out)")
    p.add_argument("--out", required=True, help="Markdown output (a .parquet of the same name is written beside it)")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("provenance", help="provenance of runs (meta.json files) as Markdown and HTML tables")
    p.add_argument("--out", required=True, help="Markdown output")
    p.add_argument("--html", required=True, help="HTML output")
    p.add_argument("inputs", nargs="*")
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("scenarios", help="list both suites' scenarios / envs with their tasks and budgets")
    p.add_argument("--config", default="config.yaml", help="where the sparse suite's envs are configured")
    p.set_defaults(func=cmd_scenarios)
    sub.add_parser("methods", help="list both suites' methods").set_defaults(func=cmd_methods)
    sub.add_parser("sysinfo", help="torch threads, BLAS path and devices this machine gives a job").set_defaults(
        func=cmd_sysinfo
    )
    p = sub.add_parser(
        "adopt",
        help="mark a preset's finished runs up to date after a fresh clone or a copy (each checked against its job "
        "spec; stale ones moved to <results_dir>/stale/)",
    )
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--configfile", action="append", default=[], help="overlay merged over --config, as Snakemake does")
    p.add_argument("--preset", help="default: the config's preset")
    p.add_argument("--dry-run", action="store_true", help="report only: move and touch nothing")
    p.set_defaults(func=cmd_adopt)

    p = sub.add_parser(
        "convert-legacy",
        help="rewrite policies.pt / model.pt files that an older rlrepro wrote with pickled objects as data (loads them "
        "with pickle: only for files you trust)",
    )
    p.add_argument("paths", nargs="+", type=Path)
    p.set_defaults(func=cmd_convert_legacy)

    p = sub.add_parser("check-config", help="validate a config file and print the grid size")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--set", nargs="*", default=[], help="overrides KEY=VALUE (top level)")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from rlrepro.errors import ConfigError

    if args.stage in ("train", "evaluate", "random-reference"):
        _set_runtime_env()
    try:
        return args.func(args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
