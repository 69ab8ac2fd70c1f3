rule transfer_matrix:
    input:
        rules.evaluate_run.output.results,
    output:
        png=report(
            res("figures/transfer_matrix/{scenario}/{method}/seed{seed}.png"),
            caption="../report/transfer_matrix.rst",
            category="2. Figures",
            subcategory="transfer matrices",
            labels={"scenario": "{scenario}", "method": "{method}", "seed": "{seed}"},
        ),
        pdf=res("figures/transfer_matrix/{scenario}/{method}/seed{seed}.pdf"),
    params:
        stem=output_stem,
    log:
        res("logs/figures/transfer_matrix/{scenario}/{method}/seed{seed}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure transfer-matrix --out {params.stem} {input} 2> {log}"


rule stage_performance:
    input:
        scenario_results,
    output:
        png=report(
            res("figures/stage_performance/{scenario}.png"),
            caption="../report/stage_performance.rst",
            category="2. Figures",
            subcategory="performance per stage",
            labels={"scenario": "{scenario}"},
        ),
        pdf=res("figures/stage_performance/{scenario}.pdf"),
        data=res("figures/stage_performance/{scenario}.csv"),
    params:
        stem=output_stem,
    log:
        res("logs/figures/stage_performance/{scenario}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure stage-performance --out {params.stem} {input} 2> {log}"


rule task_performance:
    input:
        runs=scenario_results,
        random=scenario_random_results,
    output:
        png=report(
            res("figures/task_performance/{scenario}.png"),
            caption="../report/task_performance.rst",
            category="2. Figures",
            subcategory="performance per task",
            labels={"scenario": "{scenario}"},
        ),
        pdf=res("figures/task_performance/{scenario}.pdf"),
        data=res("figures/task_performance/{scenario}.csv"),
    params:
        stem=output_stem,
    log:
        res("logs/figures/task_performance/{scenario}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure task-performance --out {params.stem} --random {input.random} -- {input.runs} 2> {log}"


rule continual_curves:
    input:
        scenario_results,
    output:
        png=report(
            res("figures/continual_curves/{scenario}.png"),
            caption="../report/continual_curves.rst",
            category="2. Figures",
            subcategory="learning curves",
            labels={"scenario": "{scenario}"},
        ),
        pdf=res("figures/continual_curves/{scenario}.pdf"),
        data=res("figures/continual_curves/{scenario}.csv"),
    params:
        stem=output_stem,
        spec=bootstrap_spec,
    log:
        res("logs/figures/continual_curves/{scenario}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure continual-curves --spec {params.spec:q} --out {params.stem} {input} 2> {log}"


rule tradeoff:
    input:
        rules.continual_tables.output.runs,
    output:
        png=report(
            res("figures/tradeoff/{domain}.png"),
            caption="../report/tradeoff.rst",
            category="2. Figures",
            subcategory="performance vs model size",
            labels={"domain": "{domain}"},
        ),
        pdf=res("figures/tradeoff/{domain}.pdf"),
        data=res("figures/tradeoff/{domain}.csv"),
    params:
        stem=output_stem,
        spec=bootstrap_spec,
    log:
        res("logs/figures/tradeoff/{domain}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure tradeoff --domain {wildcards.domain} --spec {params.spec:q}"
        " --out {params.stem} {input} 2> {log}"


rule aggregate_figure:
    input:
        rules.continual_tables.output.runs,
    output:
        png=report(
            res("figures/aggregate/normalised_performance.png"),
            caption="../report/aggregate_figure.rst",
            category="2. Figures",
            subcategory="across scenarios",
            labels={"figure": "IQM, mean and performance profiles"},
        ),
        pdf=res("figures/aggregate/normalised_performance.pdf"),
    params:
        stem=output_stem,
        spec=bootstrap_spec,
    log:
        res("logs/figures/aggregate.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure aggregate --spec {params.spec:q} --out {params.stem} {input} 2> {log}"


rule sparse_curves:
    input:
        sparse_env_results,
    output:
        png=report(
            res("figures/sparse_curves/{env}.png"),
            caption="../report/sparse_curves.rst",
            category="2. Figures",
            subcategory="sparse suite",
            labels={"env": "{env}", "figure": "learning curves"},
        ),
        pdf=res("figures/sparse_curves/{env}.pdf"),
        data=res("figures/sparse_curves/{env}.csv"),
    params:
        stem=output_stem,
        spec=bootstrap_spec,
    log:
        res("logs/figures/sparse_curves/{env}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure sparse-curves --spec {params.spec:q} --out {params.stem} {input} 2> {log}"


rule sparse_layer_density:
    input:
        sparse_env_results,
    output:
        png=report(
            res("figures/sparse_layer_density/{env}.png"),
            caption="../report/sparse_layer_density.rst",
            category="2. Figures",
            subcategory="sparse suite",
            labels={"env": "{env}", "figure": "mask density per layer"},
        ),
        pdf=res("figures/sparse_layer_density/{env}.pdf"),
    params:
        stem=output_stem,
    log:
        res("logs/figures/sparse_layer_density/{env}.log"),
    threads: 1
    conda:
        CONDA_ENV
    shell:
        "python -m rlrepro figure sparse-layer-density --out {params.stem} {input} 2> {log}"


rule figures:
    input:
        figure_targets(),
