# The shape of every stage job: the command its rule asks for (`params.command`, from `stage_command` in
# common_jobs.smk), its log, the project's conda environment and one thread. Rules take it with
# `use rule stage_job as <name> with:` and add their inputs, outputs, log and priority; it has no output of its own,
# so nothing ever requests it. A rule defined in a loop, once for both experiments (common_jobs.smk: MODALITIES),
# cannot take it and writes out its conda environment and shell line.
rule stage_job:
    log:
        "logs/stage_job.log",
    conda:
        "../envs/dualmd.yaml"
    threads: 1
    params:
        command="",
    shell:
        "{params.command} > {log} 2>&1"
