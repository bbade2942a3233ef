# The run's tables (attacks, utility, memorization) as CSV and Markdown, a flat metrics.json for
# `dvc metrics show`, and a combined roc.csv for `dvc plots show`.
rule make_report:
    input:
        attacks=expand("results/metrics/{attack}.json", attack=ATTACKS),
        utility=per_sampler("results/utility/{sampler}.json"),
        copies=per_sampler("results/memorization/copies/{sampler}.json"),
        t_error="results/memorization/t_error.json",
        models=per_model("results/models/{model}"),
        split_meta="results/split/split.json",
        code=package_files("report"),
    output:
        metrics="results/report/metrics.json",
        markdown="results/report/report.md",
        roc="results/report/roc.csv",
        attacks=report(
            "results/report/attacks.csv",
            caption="../report/attacks.rst",
            category="Tables",
        ),
        utility=report(
            "results/report/utility.csv",
            caption="../report/utility.rst",
            category="Tables",
        ),
        memorization=report(
            "results/report/memorization.csv",
            caption="../report/memorization.rst",
            category="Tables",
        ),
    log:
        "logs/make_report.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    shell:
        "python -m dualmd report --attacks {input.attacks} --utility {input.utility} "
        "--copies {input.copies} --t-error {input.t_error} --models {input.models} "
        "--split-meta {input.split_meta} --out-dir results/report > {log} 2>&1"


# Training loss curves of every model.
rule plot_loss_curves:
    input:
        models=per_model("results/models/{model}"),
        code=package_files("plots"),
    output:
        plot=report(
            "results/report/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
    log:
        "logs/plot_loss_curves.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    shell:
        "python -m dualmd plot-loss --models {input.models} --out {output.plot} > {log} 2>&1"
