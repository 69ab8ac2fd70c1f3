"""Pipeline overheads: the paper grid's dry run, the smoke DAG end to end, and peak memory per job.

1. `snakemake -n` on the paper preset vs a reference Snakefile with the same number of trivial jobs (Snakemake's
   own cost per job, measured in the same run); issue 8's target: ≤ 10 s.
2. The smoke preset end to end (`snakemake --cores 2`, both suites, tables and figures) in a fresh copy of the
   working tree; target ≤ 3 min on 2 cores. Reported with the summed job times (from the rules' `benchmark:`
   files), so wall / (job seconds / cores) shows what scheduling and job start-up cost.
3. Peak resident memory (max_rss) of every training job of that run, from the same `benchmark:` files; with
   `--memory-preset demo demo_sparse` also of every training job of those presets (long: ~25 min on 2 cores).

    python benchmarks/pipeline.py
    python benchmarks/pipeline.py --skip-smoke --memory-preset demo demo_sparse
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def job_count(preset: str) -> int:
    out = subprocess.run([*SNAKEMAKE, "-n", "--quiet", "rules", "--config", f"preset={preset}"], cwd=ROOT,
                         check=True, capture_output=True, text=True)  # fmt: skip
    match = re.search(r"^total\s+(\d+)", out.stdout + out.stderr, re.MULTILINE)
    if match is None:
        raise RuntimeError("no job count in snakemake's dry-run summary")
    return int(match.group(1))


def dry_run(reps: int) -> None:
    jobs = job_count("paper")
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp)
        (reference / "Snakefile").write_text(
            f"rule all:\n    input: expand('out/{{i}}.txt', i=range({jobs - 1}))\n\n"
            "rule job:\n    output: 'out/{i}.txt'\n    params: spec=lambda wc: {'i': wc.i}\n"
            "    threads: 1\n    resources: mem_mb=1000\n    shell: 'touch {output}'\n"
        )
        ours, ref = [], []
        for _ in range(reps):  # interleaved
            ours.append(timed([*SNAKEMAKE, "-n", "--quiet", "all", "--config", "preset=paper"], ROOT))
            ref.append(timed([*SNAKEMAKE, "-n", "--quiet", "all", "--cores", "1"], reference))
    a, b = statistics.median(ours), statistics.median(ref)
    print(f"dry run, paper grid ({jobs} jobs): {a:.1f} s (target ≤ 10 s: {'met' if a <= 10 else 'NOT met'}); "
          f"trivial Snakefile with as many jobs: {b:.1f} s; ratio {a / b:.2f}")  # fmt: skip


def working_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.split()  # fmt: skip
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def read_benchmarks(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "results" / "benchmarks").rglob("*.tsv")):
        with path.open() as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rows.append({"job": str(path.relative_to(root / "results" / "benchmarks").with_suffix("")),
                     "s": float(row["s"]), "max_rss_mb": float(row["max_rss"])})  # fmt: skip
    return rows


def memory_table(rows: list[dict], title: str) -> None:
    train = [r for r in rows if r["job"].startswith("train")]
    print(f"{title}: peak memory (max_rss) per training job")
    for r in train:
        print(f"  {r['job']:60} {r['max_rss_mb']:8.0f} MB {r['s']:8.1f} s")
    if train:
        rss = [r["max_rss_mb"] for r in train]
        print(f"  median {statistics.median(rss):.0f} MB, max {max(rss):.0f} MB over {len(train)} jobs")


def pipeline_run(preset: str, targets: list[str], cores: int) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        working_copy(copy)
        wall = timed([*SNAKEMAKE, "--cores", str(cores), *targets, "--config", f"preset={preset}"], copy)
        return wall, read_benchmarks(copy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--skip-smoke", action="store_true")
    parser.add_argument("--memory-preset", nargs="*", default=[], help="also train every job of these presets (e.g. demo)")
    args = parser.parse_args()
    dry_run(args.reps)
    if not args.skip_smoke:
        wall, rows = pipeline_run("smoke", [], args.cores)
        job_s = sum(r["s"] for r in rows)
        print(f"smoke DAG end to end on {args.cores} cores: {wall:.0f} s (target ≤ 180 s: "
              f"{'met' if wall <= 180 else 'NOT met'}); training/evaluation job seconds {job_s:.0f}, "
              f"wall / (job s / cores) = {wall / (job_s / args.cores):.2f}")  # fmt: skip
        memory_table(rows, "smoke preset")
    for preset in args.memory_preset:
        wall, rows = pipeline_run(preset, ["train"], args.cores)
        print(f"{preset}: every training job in {wall:.0f} s on {args.cores} cores")
        memory_table(rows, f"{preset} preset")


if __name__ == "__main__":
    main()
