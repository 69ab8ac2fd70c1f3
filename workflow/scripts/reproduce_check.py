"""Does a re-run reproduce a published run? Compare every row of the runs in a results directory with the rows of
published tables (the `results.parquet` / `sparse_results.parquet` that `snakemake tables` wrote, read from a git
revision so the tables may since have been rebuilt), run by run, exact float equality.

    python workflow/scripts/reproduce_check.py --results-dir results/validation --rev 676a17d \\
        --out results/validation/reproduction_check.md

Compared: every (stage, task, metric, step) row of a continual run's results.parquet and every (step, metric, layer)
row of a sparse run's, except the wall-clock metrics (`train_time_s`, `wall_time_s`), which no rerun repeats; and
the run's `config_hash` (its job spec). A run of the tables that has no re-run yet is listed as such; a re-run that
the tables do not have is not listed.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rlrepro.config import RUN_DIR, SPARSE_DIR
from rlrepro.io import atomic_write_text

WALL_CLOCK = {"train_time_s", "wall_time_s"}
SUITES = {
    "continual": ("results.parquet", ["scenario"], ["stage", "task", "metric", "step"]),
    "sparse": ("sparse_results.parquet", ["env", "keep_ratio"], ["step", "metric", "layer"]),
}


def published(rev: str, tables: Path, name: str) -> pd.DataFrame | None:
    """A table Parquet as it was at git revision `rev` (None if it did not exist there)."""
    proc = subprocess.run(["git", "show", f"{rev}:{tables / name}"], capture_output=True)
    return pd.read_parquet(io.BytesIO(proc.stdout)) if proc.returncode == 0 else None


def run_path(results_dir: Path, suite: str, run: dict) -> Path:
    """The run's results.parquet, by the path templates the Snakefile uses."""
    if suite == "continual":
        return results_dir / RUN_DIR.format(**run) / "results.parquet"
    return results_dir / SPARSE_DIR.format(**run, keep=f"{run['keep_ratio']:g}") / "results.parquet"


def comparable(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    df = df[~df["metric"].astype(str).isin(WALL_CLOCK)].copy()
    for key in keys:
        df[key] = df[key].astype(str)  # categories, nullable ints and NaN layers compare as their text
    df["occurrence"] = df.groupby(keys, sort=False).cumcount()  # a key logged twice (e.g. a step's two episodes)
    return df.set_index([*keys, "occurrence"])["value"].astype("float64").sort_index()


def compare(old: pd.DataFrame, new: pd.DataFrame, keys: list[str]) -> dict:
    a, b = comparable(old, keys), comparable(new, keys)
    both = a.index.intersection(b.index)
    x, y = a.loc[both].to_numpy(), b.loc[both].to_numpy()
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    diff = np.abs(x - y)
    return {
        "rows": len(both),
        "only_published": len(a.index.difference(b.index)),
        "only_rerun": len(b.index.difference(a.index)),
        "identical": int(same.sum()),
        "max_abs_diff": f"{np.nanmax(diff):.3g}" if len(diff) and not same.all() else "0",
        "same_spec": set(old["config_hash"].astype(str)) == set(new["config_hash"].astype(str)),
    }


def check(results_dir: Path, rev: str) -> pd.DataFrame:
    rows = []
    for suite, (name, where, keys) in SUITES.items():
        table = published(rev, results_dir / "tables", name)
        if table is None:
            continue
        for run_key, old in table.groupby(["method", *where, "seed"], observed=True, sort=True):
            run = dict(zip(["method", *where, "seed"], run_key, strict=True))
            path = run_path(results_dir, suite, run)
            entry = {"suite": suite, **run}
            if not path.exists():
                rows.append({**entry, "verdict": "not re-run yet"})
                continue
            result = compare(old, pd.read_parquet(path), keys)
            exact = result["rows"] and result["identical"] == result["rows"] and not result["only_published"]
            verdict = "identical" if exact and result["same_spec"] else "DIFFERS"
            rows.append({**entry, **result, "verdict": verdict})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", type=Path, default=Path("results/validation"))
    parser.add_argument("--rev", default="HEAD", help="the git revision whose tables are the published ones")
    parser.add_argument("--out", type=Path, help="write the report here (Markdown) as well as to stdout")
    args = parser.parse_args(argv)
    report = check(args.results_dir, args.rev)
    if report.empty:
        print(f"no published tables under {args.results_dir / 'tables'} at {args.rev}", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short=12", args.rev], capture_output=True, text=True).stdout.strip()
    counts = report["verdict"].value_counts().to_dict()
    text = (
        f"# Re-runs against the published tables\n\nTables of commit {commit} ({args.results_dir / 'tables'}), runs in "
        f"{args.results_dir}: {', '.join(f'{n} {v}' for v, n in counts.items())}. `identical`: every compared row "
        "(all but wall-clock metrics) has the same float value and the run has the same job spec (`config_hash`).\n"
    )
    for suite, (_, where, _) in SUITES.items():
        part = report[report["suite"] == suite]
        if not part.empty:
            cols = ["method", *where, "seed", "verdict", "rows", "identical", "max_abs_diff", "only_published",
                    "only_rerun", "same_spec"]  # fmt: skip
            part = part.reindex(columns=cols).astype(object)
            part["same_spec"] = part["same_spec"].map({True: "yes", False: "no"})
            part = part.where(part.notna(), "")  # a run not re-run yet has no comparison
            text += f"\n## {suite}\n\n" + part.to_markdown(index=False) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 1 if (report["verdict"] == "DIFFERS").any() else 0


if __name__ == "__main__":
    sys.exit(main())
