# The black-box attack of the text-to-image experiment (Pang & Wang 2023, the paper's Table 4): each sampler
# (undefended, DualMD, DistillMD, with and without prompt diversification) is prompted with every candidate's
# original caption; the metrics come from evaluate_t2i_attack (attack.smk), the table from here.


# Per-candidate scores of one black-box attack on one sampler: generations from each candidate's caption,
# embedded and compared with the candidate, a Gaussian per class fitted on a labelled slice of the candidates;
# only the other candidates are scored.
use rule stage_job as score_t2i_blackbox with:
    input:
        unpack(split_inputs("t2i_attack_{t2i_blackbox}")),
        models=t2i_sampler_dirs,
        memorized=t2i_memorized_prompts,
        code=stage_code("t2i_blackbox"),
    output:
        scores="results/t2i_scores/{run}/{t2i_blackbox}/{t2i_sampler}.npz",
    log:
        "logs/{run}/score_t2i_blackbox/{t2i_blackbox}/{t2i_sampler}.log",
    benchmark:
        "results/benchmarks/{run}/score_t2i_blackbox/{t2i_blackbox}/{t2i_sampler}.tsv"
    priority: 10
    resources:
        **t2i_resources("blackbox"),
    params:
        command=stage_command(
            "t2i-blackbox",
            attack="{wildcards.t2i_blackbox}",
            sampler="{wildcards.t2i_sampler}",
            out="{output.scores}",
        ),


# The paper's Table 4: the black-box attack against the undefended sampler, DualMD and DistillMD, with and
# without prompt diversification (results/report/{run}/text2image_blackbox.csv and .md). Resources as
# make_t2i_report's.
use rule make_t2i_report as make_t2i_blackbox_report with:
    input:
        config=config_file("metrics"),
        attacks=expand("results/t2i_metrics/{{run}}/{attack}.json", attack=T2I_BLACKBOX),
        code=stage_code("t2i_blackbox_report"),
    output:
        table=in_report(
            "results/report/{run}/text2image_blackbox.csv",
            "Text-to-image",
            caption="t2i_blackbox",
            subcategory="Tables",
            table="Table 4: black-box attack",
        ),
        markdown="results/report/{run}/text2image_blackbox.md",
    log:
        "logs/{run}/make_t2i_blackbox_report.log",
    params:
        command=stage_command("t2i-blackbox-report", out="{output.table}"),
