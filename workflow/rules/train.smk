# Train one DDPM on its split subset (the baseline on every member, each teacher on its half). Resumable state
# lives in results/train_state/, outside the declared output, so a killed job resumes from its last checkpoint.
use rule stage_job as train_model with:
    input:
        unpack(split_inputs("train")),
        code=stage_code("train"),
    output:
        model=directory("results/models/{run}/{trained}"),
    log:
        "logs/{run}/train_model/{trained}.log",
    benchmark:
        "results/benchmarks/{run}/train_model/{trained}.tsv"
    # training is the critical path: the models others are built from first
    priority: training_priority
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    params:
        command=stage_command(
            "train",
            model="{wildcards.trained}",
            out="{output.model}",
            state_dir="results/train_state/{wildcards.run}/{wildcards.trained}",
        ),


# A model distilled from others: the DistillMD student (Algorithm 2) regresses on teacher 2 for D1 batches and on
# teacher 1 for D2 batches. Refuses to run when the teachers' metadata does not name the halves of this split.
# Priority and resources as train_model's.
use rule train_model as distill_model with:
    input:
        unpack(split_inputs("distill")),
        teachers=teacher_dirs,
        code=stage_code("train"),
    output:
        model=directory("results/models/{run}/{distilled}"),
    log:
        "logs/{run}/distill_model/{distilled}.log",
    benchmark:
        "results/benchmarks/{run}/distill_model/{distilled}.tsv"
    params:
        command=stage_command(
            "distill",
            model="{wildcards.distilled}",
            out="{output.model}",
            state_dir="results/train_state/{wildcards.run}/{wildcards.distilled}",
        ),
