rule transfer_matrix:
    input:
        rules.evaluate_run.output.results,
    output:
        png="results/figures/transfer_matrix/{scenario}/{method}/seed{seed}.png",
        pdf="results/figures/transfer_matrix/{scenario}/{method}/seed{seed}.pdf",
    params:
        stem=output_stem,
    log:
        "results/logs/figures/transfer_matrix/{scenario}/{method}/seed{seed}.log",
    threads: 1
    shell:
        "python -m rlrepro figure transfer-matrix --out {params.stem} {input} 2> {log}"


rule stage_performance:
    input:
        scenario_results,
    output:
        png="results/figures/stage_performance/{scenario}.png",
        pdf="results/figures/stage_performance/{scenario}.pdf",
    params:
        stem=output_stem,
    log:
        "results/logs/figures/stage_performance/{scenario}.log",
    threads: 1
    shell:
        "python -m rlrepro figure stage-performance --out {params.stem} {input} 2> {log}"


rule sparse_curves:
    input:
        sparse_env_results,
    output:
        png="results/figures/sparse_curves/{env}.png",
        pdf="results/figures/sparse_curves/{env}.pdf",
    params:
        stem=output_stem,
    log:
        "results/logs/figures/sparse_curves/{env}.log",
    threads: 1
    shell:
        "python -m rlrepro figure sparse-curves --out {params.stem} {input} 2> {log}"


rule figures:
    input:
        run_paths("results/figures/transfer_matrix/{scenario}/{method}/seed{seed}.png"),
        [f"results/figures/stage_performance/{s}.png" for s in RESOLVED.scenarios],
        [f"results/figures/sparse_curves/{env}.png" for env in RESOLVED.sparse.envs],
