# The sparse suite (dapd.md): one training job per (env, method, keep ratio, seed); it evaluates as it trains
# (every sparse.evaluation.every_steps, as the original does), so its results.parquet holds the learning curve.


rule train_sparse:
    input:
        unpack(sparse_dense_reference),
    output:
        model=f"{SPARSE_DIR}/model.pt",
        results=f"{SPARSE_DIR}/results.parquet",
        config=f"{SPARSE_DIR}/config.resolved.yaml",
        meta=f"{SPARSE_DIR}/meta.json",
    params:
        spec=sparse_spec,
        run_dir=parent_dir,
        checkpoint_dir=SPARSE_CKPT_DIR,
        dense=sparse_dense_flag,
    log:
        res("logs/train_sparse/{env}/{method}/keep{keep}/seed{seed}.log"),
    benchmark:
        res("benchmarks/train_sparse/{env}/{method}/keep{keep}/seed{seed}.tsv")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=1440,
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro train-sparse --spec {params.spec:q} --run-dir {params.run_dir}"
        " --checkpoint-dir {params.checkpoint_dir} {params.dense} 2> {log}"


rule sparse:
    input:
        sparse_table_targets(),
        [res(f"figures/sparse_curves/{env}.png") for env in RESOLVED.sparse.envs],
        [res(f"figures/sparse_layer_density/{env}.png") for env in RESOLVED.sparse.envs],
