rule evaluate_run:
    input:
        policies=rules.train_run.output.policies,
        rows=rules.train_run.output.rows,
        meta=rules.train_run.output.meta,
    output:
        results=f"{RUN_DIR}/results.parquet",
    params:
        spec=eval_spec,
        run_dir=input_run_dir,
    log:
        res("logs/evaluate/{scenario}/{method}/seed{seed}.log"),
    benchmark:
        res("benchmarks/evaluate/{scenario}/{method}/seed{seed}.tsv")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=720,
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro evaluate --spec {params.spec:q} --run-dir {params.run_dir} --out {output.results} 2> {log}"


rule random_reference:
    output:
        res(RANDOM_REFERENCE),
    params:
        spec=eval_spec,
    log:
        res("logs/random_reference/{scenario}/seed{seed}.log"),
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro random-reference --spec {params.spec:q} --out {output} 2> {log}"
