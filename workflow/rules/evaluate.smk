# Memorization by t-error (paper Eq. 8): member vs non-member t-error separation of every model, from SecMI's
# per-sample scores, and the histograms (the paper's Fig. 3 analogue).
rule score_t_error:
    input:
        scores=per_model("results/scores/secmi_stat/{model}.npz"),
        code=package_files("memorization", "plots"),
    output:
        summary="results/memorization/t_error.json",
        plot=report(
            "results/report/t_error.png",
            caption="../report/t_error.rst",
            category="Memorization",
        ),
    log:
        "logs/score_t_error.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    shell:
        "python -m dualmd t-error --scores {input.scores} --out {output.summary} --plot {output.plot} "
        "> {log} 2>&1"


# Copy detection: each generated image's nearest-member distance over its mean k-nearest distance; the share
# under the threshold is the sampler's memorization rate. Also the grid of the closest generated/member pairs.
rule detect_copies:
    input:
        cfg="results/configs/memorization.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        samples="results/samples/{sampler}/samples.npz",
        code=package_files("memorization"),
    output:
        summary="results/memorization/copies/{sampler}.json",
        pairs=report(
            "results/memorization/copies/{sampler}_pairs.png",
            caption="../report/pairs.rst",
            category="Memorization",
            subcategory="Closest generated / member pairs",
            labels={"sampler": "{sampler}"},
        ),
    log:
        "logs/detect_copies/{sampler}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd copies --config {input.cfg} --images {input.images} "
        "--split {input.split} --split-meta {input.split_meta} --samples {input.samples} "
        "--sampler {wildcards.sampler} --out {output.summary} --pairs {output.pairs} > {log} 2>&1"


# Features of the member images under the FID network, computed once for every sampler's FID.
rule reference_features:
    input:
        cfg="results/configs/utility.yaml",
        images="results/data/images.npz",
        split="results/split/split.npz",
        split_meta="results/split/split.json",
        code=package_files("utility"),
    output:
        features="results/utility/reference.npz",
    log:
        "logs/reference_features.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        gpu=0,
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd reference-features --config {input.cfg} "
        "--images {input.images} --split {input.split} --split-meta {input.split_meta} "
        "--out {output.features} --threads {threads} > {log} 2>&1"


# FID (and IS where the feature network has a classifier head) of one sampler against the member set.
rule score_utility:
    input:
        cfg="results/configs/utility.yaml",
        reference="results/utility/reference.npz",
        samples="results/samples/{sampler}/samples.npz",
        info="results/samples/{sampler}/info.json",
        code=package_files("utility"),
    output:
        summary="results/utility/{sampler}.json",
    log:
        "logs/score_utility/{sampler}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        gpu=0,
    shell:
        "OMP_NUM_THREADS={threads} python -m dualmd utility --config {input.cfg} "
        "--reference {input.reference} --samples {input.samples} --info {input.info} "
        "--sampler {wildcards.sampler} --out {output.summary} --threads {threads} > {log} 2>&1"
