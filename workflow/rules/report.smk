# The run's tables (attacks, utility, memorization, training) as CSV and Markdown, a flat metrics.json for
# `dvc metrics show`, a combined roc.csv for `dvc plots show`, and the training loss curves. Every file the
# report reads is an input here.
use rule stage_job as make_report with:
    input:
        config=config_file("metrics"),
        scores=report_score_files,
        attacks=expand("results/metrics/{{run}}/{attack}.json", attack=ATTACKS),
        rocs=expand("results/metrics/{{run}}/{attack}_roc.csv", attack=ATTACKS),
        utility=per_target("results/utility/{run}/{target}.json", SAMPLERS),
        heldout="results/utility/{run}/heldout_loss.json",
        copies=per_target("results/memorization/{run}/copies/{target}.json", SAMPLERS),
        t_error="results/memorization/{run}/t_error.json",
        models=per_target("results/models/{run}/{target}", MODELS),
        split_meta="results/split/{run}/split.json",
        # the set- and dataset-level inference lines, shown in report.md
        set_inference="results/report/{run}/set_inference.rst",
        dataset_inference="results/report/{run}/dataset_inference.rst",
        code=stage_code("report"),
    output:
        metrics="results/report/{run}/metrics.json",
        markdown="results/report/{run}/report.md",
        roc="results/report/{run}/roc.csv",
        # the matched-utility lines, included by the HTML report's landing page (workflow/report/workflow.rst)
        verdicts="results/report/{run}/verdicts.rst",
        # the strongest attack against each target, also included by the landing page
        strongest="results/report/{run}/strongest.rst",
        # the summary table and the frontier figure that open the landing page
        summary_rst="results/report/{run}/summary.rst",
        summary=in_report("results/report/{run}/summary.csv", "Tables", table="summary"),
        attacks=in_report("results/report/{run}/attacks.csv", "Tables", table="attacks"),
        strongest_attacks=in_report(
            "results/report/{run}/strongest_attacks.csv", "Tables", table="strongest attacks"
        ),
        utility=in_report("results/report/{run}/utility.csv", "Tables", table="utility"),
        memorization=in_report(
            "results/report/{run}/memorization.csv", "Tables", table="memorization"
        ),
        frontier=in_report("results/report/{run}/frontier.csv", "Frontier", table="frontier"),
        matched=in_report(
            "results/report/{run}/matched_utility.csv", "Frontier", table="matched utility"
        ),
        frontier_plot=in_report("results/report/{run}/frontier.png", "Frontier", figure="frontier"),
        loss_curves=in_report("results/report/{run}/loss_curves.png", "Training"),
    log:
        "logs/{run}/make_report.log",
    benchmark:
        "results/benchmarks/{run}/make_report.tsv"
    params:
        command=stage_command("report", out_dir="results/report/{wildcards.run}"),


# Set-level inference against every target with weights: one-sided Mann-Whitney U tests of n members against n
# non-members (n = 2, 4, 8, ...) on the scores of the strongest attack against it (or the configured attack);
# the median p-value per n and the smallest n below set_inference.max_p. The .rst lines go to the landing page.
use rule stage_job as infer_set_membership with:
    input:
        config=config_file("set_inference"),
        attacks=expand("results/metrics/{{run}}/{attack}.json", attack=ATTACKS),
        scores=weighted_target_scores,
        code=stage_code("set_inference"),
    output:
        table=in_report("results/report/{run}/set_inference.csv", "Tables", table="set inference"),
        lines="results/report/{run}/set_inference.rst",
    log:
        "logs/{run}/infer_set_membership.log",
    benchmark:
        "results/benchmarks/{run}/infer_set_membership.tsv"
    params:
        command=stage_command("set-inference", out="{output.table}"),


# Dataset-level inference (CDI) against every target with weights: every attack's scores against it combined by a
# logistic regression fitted on the labelled slice, then one-sided Mann-Whitney U tests of n held-out members
# against n held-out non-members on its output; the median p-value per n and the smallest n below
# dataset_inference.max_p. The .rst lines go to the landing page and report.md.
use rule stage_job as infer_dataset_membership with:
    input:
        config=config_file("dataset_inference"),
        scores=weighted_target_scores,
        code=stage_code("dataset_inference"),
    output:
        table=in_report(
            "results/report/{run}/dataset_inference.csv", "Tables", table="dataset inference"
        ),
        lines="results/report/{run}/dataset_inference.rst",
    log:
        "logs/{run}/infer_dataset_membership.log",
    benchmark:
        "results/benchmarks/{run}/infer_dataset_membership.tsv"
    params:
        command=stage_command("dataset-inference", out="{output.table}"),


# Every replicate's attack and utility numbers side by side, with their mean and a 95% t-interval across seeds.
use rule stage_job as summarize_replicates with:
    input:
        config=config_path("metrics", RUNS[0]),
        attacks=expand("results/report/{run}/attacks.csv", run=RUNS),
        utility=expand("results/report/{run}/utility.csv", run=RUNS),
        code=stage_code("replicates"),
    output:
        table=in_report("results/report/replicates.csv", "Tables", table="replicates"),
    log:
        "logs/summarize_replicates.log",
    benchmark:
        "results/benchmarks/summarize_replicates.tsv"
    params:
        command=stage_command("replicates", out="{output.table}"),


# Every defense's verdicts at equal utility: each replicate's matched-utility difference combined across seeds
# (t-interval over replicates; the within-run bootstrap with one), Holm-adjusted within each defense's family.
use rule stage_job as decide_verdicts with:
    input:
        matched=expand("results/report/{run}/matched_utility.csv", run=RUNS),
        code=stage_code("verdicts"),
    output:
        table=in_report(
            "results/report/verdicts.csv", "Tables", caption="verdicts_table", table="verdicts"
        ),
    log:
        "logs/decide_verdicts.log",
    benchmark:
        "results/benchmarks/decide_verdicts.tsv"
    params:
        command=stage_command("verdicts", out="{output.table}"),
