# Train one DDPM on its split subset (the baseline on every member, each teacher on its half). Resumable state
# lives in results/train_state/, outside the declared output, so a killed job resumes from its last checkpoint.
rule train_model:
    input:
        cfg=config_file("train"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        code=stage_code("train"),
    output:
        model=directory("results/models/{run}/{trained}"),
    log:
        "logs/{run}/train_model/{trained}.log",
    benchmark:
        "results/benchmarks/{run}/train_model/{trained}.tsv"
    # training is the critical path: the models others are built from first
    priority: training_priority
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    params:
        launch=launcher,
        state="results/train_state/{run}/{trained}",
    shell:
        "{params.launch} train --config {input.cfg} --images {input.images} "
        "--split {input.split} --split-meta {input.split_meta} --model {wildcards.trained} "
        "--out {output.model} --state-dir {params.state} --threads {threads} > {log} 2>&1"


# A model distilled from others: the DistillMD student (Algorithm 2) regresses on teacher 2 for D1 batches and on
# teacher 1 for D2 batches. Refuses to run when the teachers' metadata does not name the halves of this split.
rule distill_model:
    input:
        cfg=config_file("distill"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        teachers=teacher_dirs,
        code=stage_code("train"),
    output:
        model=directory("results/models/{run}/{distilled}"),
    log:
        "logs/{run}/distill_model/{distilled}.log",
    benchmark:
        "results/benchmarks/{run}/distill_model/{distilled}.tsv"
    priority: training_priority
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    params:
        launch=launcher,
        state="results/train_state/{run}/{distilled}",
        teachers=teacher_args,
    shell:
        "{params.launch} distill --config {input.cfg} --images {input.images} "
        "--split {input.split} --split-meta {input.split_meta} --model {wildcards.distilled} "
        "{params.teachers} --out {output.model} --state-dir {params.state} --threads {threads} > {log} 2>&1"
