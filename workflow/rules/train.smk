# Train one DDPM on its subset: baseline (all members), teacher1 (D1) or teacher2 (D2). The two teachers are
# independent jobs. Resumable state lives in results/train_state/{trained}/, outside the declared output, so a
# killed job resumes from its last checkpoint when started again.
rule train_model:
    input:
        cfg="results/configs/train.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        code=package_files("train", "models"),
    output:
        model=directory("results/models/{trained}"),
    log:
        "logs/train_model/{trained}.log",
    benchmark:
        "results/benchmarks/train_model/{trained}.tsv"
    # training is the critical path: schedule it before attacks and sampling of finished models
    priority: 50
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    params:
        launch=launcher,
        state="results/train_state/{trained}",
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} train --config {input.cfg} --images {input.images} "
        "--split {input.split} --split-meta {input.split_meta} --model-id {wildcards.trained} "
        "--out {output.model} --state-dir {params.state} --threads {threads} > {log} 2>&1"


# DistillMD student (Algorithm 2): D1 batches regress on teacher2, D2 batches on teacher1. Refuses to run when
# the teachers' metadata does not name the halves of the current split.
rule distill_student:
    input:
        cfg="results/configs/distill.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        teacher1="results/models/teacher1",
        teacher2="results/models/teacher2",
        code=package_files("train", "models", "defense/distill"),
    output:
        model=directory("results/models/student"),
    log:
        "logs/distill_student/student.log",
    benchmark:
        "results/benchmarks/distill_student/student.tsv"
    # training is the critical path: schedule it before attacks and sampling of finished models
    priority: 50
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    params:
        launch=launcher,
        state="results/train_state/student",
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} distill --config {input.cfg} --images {input.images} "
        "--split {input.split} --split-meta {input.split_meta} --teacher1 {input.teacher1} "
        "--teacher2 {input.teacher2} --out {output.model} --state-dir {params.state} --threads {threads} "
        "> {log} 2>&1"
