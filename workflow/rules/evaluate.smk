# Memorization by t-error (paper Eq. 8): member vs non-member t-error separation of every model, from the per-sample
# scores of catalog.T_ERROR_ATTACK, and the histograms (the paper's Fig. 3 analogue).
use rule stage_job as score_t_error with:
    input:
        scores=per_target(f"results/scores/{{run}}/{catalog.T_ERROR_ATTACK}/{{target}}.npz", MODELS),
        code=stage_code("memorization"),
    output:
        summary="results/memorization/{run}/t_error.json",
        plot=report(
            "results/report/{run}/t_error.png",
            caption="../report/t_error.rst",
            category="Memorization",
            labels={"run": "{run}"},
        ),
    log:
        "logs/{run}/score_t_error.log",
    benchmark:
        "results/benchmarks/{run}/score_t_error.tsv"
    params:
        command=stage_command("t-error", out="{output.summary}"),


# Copy detection: each generated image's nearest-member distance over its mean k-nearest distance; the share
# under the threshold is the sampler's memorization rate. Also the closest generated/member pairs, labelled
# with their distances.
# One job for every sampler: each costs well under a second, the job's start-up several.
use rule stage_job as detect_copies with:
    input:
        config=config_file("memorization"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=per_target("results/samples/{run}/{target}/samples.npz", SAMPLERS),
        code=stage_code("memorization"),
    output:
        summaries=per_target("results/memorization/{run}/copies/{target}.json", SAMPLERS),
        pairs=[
            report(
                f"results/memorization/{{run}}/copies/{sampler}_pairs.png",
                caption="../report/pairs.rst",
                category="Memorization",
                subcategory="Closest generated / member pairs",
                labels={"run": "{run}", "sampler": sampler},
            )
            for sampler in SAMPLERS
        ],
    log:
        "logs/{run}/detect_copies.log",
    benchmark:
        "results/benchmarks/{run}/detect_copies.tsv"
    params:
        command=stage_command(
            "copies",
            targets=sample_targets,
            out_dir="results/memorization/{wildcards.run}/copies",
        ),


# Features of the reference set (utility.reference) under the FID network, computed once for every sampler.
use rule stage_job as reference_features with:
    input:
        config=config_file("utility"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        code=stage_code("utility"),
    output:
        features="results/utility/{run}/reference.npz",
    log:
        "logs/{run}/reference_features.log",
    benchmark:
        "results/benchmarks/{run}/reference_features.tsv"
    # long and needing no model: run it while models train rather than last, alone, at the end of the run
    priority: 15
    resources:
        gpu=0,
    params:
        command=stage_command("reference-features", out="{output.features}"),


# Held-out denoising loss of every model on the non-members: the utility axis of each model.
use rule stage_job as score_heldout_loss with:
    input:
        config=config_file("heldout"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=model_attack_targets,
        code=stage_code("heldout"),
    output:
        summary="results/utility/{run}/heldout_loss.json",
    log:
        "logs/{run}/score_heldout_loss.log",
    benchmark:
        "results/benchmarks/{run}/score_heldout_loss.tsv"
    priority: 10
    resources:
        gpu=0,
    params:
        command=stage_command("heldout-loss", targets=model_targets, out="{output.summary}"),


# FID with its bootstrap interval, KID with its standard error, and IS where the feature network has a classifier
# head, of one sampler against the reference set (utility.reference).
use rule stage_job as score_utility with:
    input:
        config=config_file("utility"),
        reference="results/utility/{run}/reference.npz",
        samples="results/samples/{run}/{sampler}/samples.npz",
        info="results/samples/{run}/{sampler}/info.json",
        code=stage_code("utility"),
    output:
        summary="results/utility/{run}/{sampler}.json",
    log:
        "logs/{run}/score_utility/{sampler}.log",
    benchmark:
        "results/benchmarks/{run}/score_utility/{sampler}.tsv"
    # Inception on every generated image: among the longest jobs, so ahead of the short evaluations, which then
    # fill both cores at the end of the run instead of one of these running alone
    priority: 10
    resources:
        gpu=0,
    params:
        command=stage_command("utility", out="{output.summary}"),
