rule tables:
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
        "results/logs/aggregate/tables.log",
    threads: 1
    shell:
        "python -m rlrepro aggregate --spec {params.spec:q} --out-dir {params.out_dir} {input} 2> {log}"
