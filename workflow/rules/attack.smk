# Per-sample membership scores of a white-box attack ({attack}: loss, secmi_stat, secmi_nn, pia, pian) against one
# model ({model}: baseline, teacher1, teacher2, student). A teacher is attacked on its own half against the
# non-members. Higher score = more likely a member.
rule score_whitebox:
    input:
        cfg="results/configs/attack_{attack}.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        model="results/models/{model}",
        code=package_files("attacks", "models/adapter"),
    output:
        scores="results/scores/{attack}/{model}.npz",
    log:
        "logs/score_whitebox/{attack}/{model}.log",
    wildcard_constraints:
        attack="|".join(WHITEBOX_NAMES),
    conda:
        "../envs/attack.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd attack --config {input.cfg} --attack {wildcards.attack} "
        "--images {input.images} --split {input.split} --split-meta {input.split_meta} "
        "--model {input.model} --model-id {wildcards.model} --out {output.scores} --threads {threads} "
        "> {log} 2>&1"


# Per-sample scores of the black-box attack (nn_distance) from one sampler's generated images only.
rule score_blackbox:
    input:
        cfg="results/configs/attack_{attack}.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        samples="results/samples/{sampler}/samples.npz",
        code=package_files("attacks"),
    output:
        scores="results/scores/{attack}/{sampler}.npz",
    log:
        "logs/score_blackbox/{attack}/{sampler}.log",
    wildcard_constraints:
        attack="|".join(BLACKBOX_NAMES),
    conda:
        "../envs/attack.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd attack --config {input.cfg} --attack {wildcards.attack} "
        "--images {input.images} --split {input.split} --split-meta {input.split_meta} "
        "--samples {input.samples} --model-id {wildcards.sampler} --out {output.scores} "
        "--threads {threads} > {log} 2>&1"


# AUC, ASR, TPR at the configured FPRs with bootstrap intervals, and ROC curves, of one attack on every target
# (models for white-box attacks, samplers for the black-box one), plus the log-log ROC plot.
rule evaluate_attack:
    input:
        cfg="results/configs/metrics.yaml",
        scores=attack_scores,
        code=package_files("metrics", "plots"),
    output:
        metrics="results/metrics/{attack}.json",
        roc="results/metrics/{attack}_roc.csv",
        plot=report(
            "results/report/roc_{attack}.png",
            caption="../report/roc.rst",
            category="Attacks",
            labels={"attack": "{attack}"},
        ),
    log:
        "logs/evaluate_attack/{attack}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    shell:
        "python -m dualmd evaluate --config {input.cfg} --attack {wildcards.attack} --scores {input.scores} "
        "--out {output.metrics} --roc {output.roc} --plot {output.plot} > {log} 2>&1"
