rule train_run:
    output:
        policies=f"{RUN_DIR}/policies.pt",
        rows=f"{RUN_DIR}/train.parquet",
        config=f"{RUN_DIR}/config.resolved.yaml",
        meta=f"{RUN_DIR}/meta.json",
    params:
        spec=train_spec,
        run_dir=parent_dir,
        checkpoint_dir=CKPT_DIR,
    log:
        res("logs/train/{scenario}/{method}/seed{seed}.log"),
    benchmark:
        res("benchmarks/train/{scenario}/{method}/seed{seed}.tsv")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=1440,
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro train --spec {params.spec:q} --run-dir {params.run_dir}"
        " --checkpoint-dir {params.checkpoint_dir} 2> {log}"


rule train:
    input:
        run_paths(f"{RUN_DIR}/meta.json"),
        sparse_run_paths(f"{SPARSE_DIR}/meta.json"),
