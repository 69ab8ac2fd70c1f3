rule continual_tables:
    input:
        runs=continual_run_results,
        random=random_reference_results,
        reference=reference_csv("continual"),
    output:
        results=res("tables/results.parquet"),
        tasks=res("tables/continual_tasks.parquet"),
        tasks_md=res("tables/continual_tasks.md"),
        runs=res("tables/continual_runs.parquet"),
        summary=res("tables/continual_summary.parquet"),
        summary_md=res("tables/continual_summary.md"),
        cells=res("tables/continual_tables.parquet"),
        markdown=res("tables/continual_tables.md"),
        latex=res("tables/continual_tables.tex"),
        html=report(
            res("tables/continual_tables.html"),
            caption="../report/continual_tables.rst",
            category="1. Tables",
            labels={"table": "continual, per scenario"},
        ),
        aggregate=res("tables/continual_aggregate.parquet"),
        aggregate_md=res("tables/continual_aggregate.md"),
        aggregate_tex=res("tables/continual_aggregate.tex"),
        aggregate_html=report(
            res("tables/continual_aggregate.html"),
            caption="../report/continual_aggregate.rst",
            category="1. Tables",
            labels={"table": "continual, across scenarios"},
        ),
    params:
        spec=aggregate_spec,
        out_dir=parent_dir,
        reference=reference_option,
    log:
        res("logs/aggregate/continual_tables.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro aggregate --spec {params.spec:q} --out-dir {params.out_dir} {params.reference}"
        " --random {input.random} -- {input.runs} 2> {log}"


rule sparse_tables:
    input:
        runs=sparse_run_results,
        reference=reference_csv("sparse"),
    output:
        results=res("tables/sparse_results.parquet"),
        runs=res("tables/sparse_runs.parquet"),
        summary=res("tables/sparse_summary.parquet"),
        summary_md=res("tables/sparse_summary.md"),
        cells=res("tables/sparse_tables.parquet"),
        markdown=res("tables/sparse_tables.md"),
        latex=res("tables/sparse_tables.tex"),
        html=report(
            res("tables/sparse_tables.html"),
            caption="../report/sparse_tables.rst",
            category="1. Tables",
            labels={"table": "sparse suite"},
        ),
    params:
        spec=sparse_aggregate_spec,
        out_dir=parent_dir,
        reference=reference_option,
    log:
        res("logs/aggregate/sparse_tables.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro aggregate-sparse --spec {params.spec:q} --out-dir {params.out_dir} {params.reference}"
        " {input.runs} 2> {log}"


rule provenance:
    input:
        all_meta,
    output:
        html=report(
            res("tables/provenance.html"),
            caption="../report/provenance.rst",
            category="3. Provenance",
            labels={"table": "runs and software"},
        ),
        markdown=res("tables/provenance.md"),
    log:
        res("logs/aggregate/provenance.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro provenance --out {output.markdown} --html {output.html} {input} 2> {log}"


rule tables:
    input:
        continual_table_targets(),
        sparse_table_targets(),
        res("tables/provenance.md"),
