rule continual_tables:
    input:
        run_paths(f"{RUN_DIR}/results.parquet"),
    output:
        results="results/tables/results.parquet",
        runs="results/tables/continual_runs.parquet",
        summary="results/tables/continual_summary.parquet",
        markdown="results/tables/continual_summary.md",
    params:
        spec=aggregate_spec,
        out_dir=parent_dir,
    log:
        "results/logs/aggregate/continual_tables.log",
    threads: 1
    shell:
        "python -m rlrepro aggregate --spec {params.spec:q} --out-dir {params.out_dir} {input} 2> {log}"


rule sparse_tables:
    input:
        sparse_run_paths(f"{SPARSE_DIR}/results.parquet"),
    output:
        results="results/tables/sparse_results.parquet",
        runs="results/tables/sparse_runs.parquet",
        summary="results/tables/sparse_summary.parquet",
        markdown="results/tables/sparse_summary.md",
    params:
        spec=sparse_aggregate_spec,
        out_dir=parent_dir,
    log:
        "results/logs/aggregate/sparse_tables.log",
    threads: 1
    shell:
        "python -m rlrepro aggregate-sparse --spec {params.spec:q} --out-dir {params.out_dir} {input} 2> {log}"


rule tables:
    input:
        continual_table_targets(),
        sparse_table_targets(),
