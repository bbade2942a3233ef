# Memorization by t-error (paper Eq. 8): member vs non-member t-error separation of every model, from the per-sample
# scores of catalog.T_ERROR_ATTACK, and the histograms (the paper's Fig. 3 analogue).
use rule stage_job as score_t_error with:
    input:
        scores=per_target(f"results/scores/{{run}}/{catalog.T_ERROR_ATTACK}/{{target}}.npz", MODELS),
        code=stage_code("memorization"),
    output:
        summary="results/memorization/{run}/t_error.json",
        plot=in_report("results/report/{run}/t_error.png", "Memorization"),
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
        unpack(split_inputs("memorization")),
        targets=per_target("results/samples/{run}/{target}/samples.npz", SAMPLERS),
        code=stage_code("memorization"),
    output:
        summaries=per_target("results/memorization/{run}/copies/{target}.json", SAMPLERS),
        pairs=[
            in_report(
                f"results/memorization/{{run}}/copies/{sampler}_pairs.png",
                "Memorization",
                caption="pairs",
                subcategory="Closest generated / member pairs",
                sampler=sampler,
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


# Held-out denoising loss of every model on the non-members: the utility axis of each model.
use rule stage_job as score_heldout_loss with:
    input:
        unpack(split_inputs("heldout")),
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


for m in MODALITIES:

    # Features of the reference set (utility.reference) under the FID network, computed once for every sampler of
    # the experiment (reference_features; reference_t2i_features). Long and needing no model: the unconditional
    # experiment runs it while models train rather than last, alone, at the end of the run.
    rule:
        name:
            m.rule("reference_features")
        input:
            unpack(split_inputs("utility")),
            code=stage_code("utility"),
        output:
            features=f"{m.folder('utility')}/reference.npz",
        log:
            job_log(m.rule("reference_features")),
        benchmark:
            job_benchmark(m.rule("reference_features"))
        priority: m.priority(15)
        conda:
            "../envs/dualmd.yaml"
        resources:
            **m.resources("utility", gpu=0),
        params:
            command=stage_command("reference-features", out="{output.features}"),
        shell:
            "{params.command} > {log} 2>&1"

    # FID with its bootstrap interval, KID with its standard error, and IS where the feature network has a
    # classifier head (the CLIP score too for text-to-image, where utility.clip_path is set: a folder, or the tiny
    # run's stand-in), of one sampler against the reference set (utility.reference): score_utility,
    # score_t2i_utility. Inception on every generated image is among the longest jobs: the unconditional experiment
    # runs them ahead of the short evaluations, which then fill both cores at the end of the run instead of one of
    # these running alone.
    rule:
        name:
            m.rule("score_utility")
        input:
            config=config_file("utility"),
            reference=f"{m.folder('utility')}/reference.npz",
            samples=f"{m.folder('samples')}/{m.sampler}/samples.npz",
            info=f"{m.folder('samples')}/{m.sampler}/info.json",
            standin_clip=t2i_standin("clip", "utility.clip_path") if m.is_text2image else [],
            code=stage_code("utility"),
        output:
            summary=f"{m.folder('utility')}/{m.sampler}.json",
        log:
            job_log(m.rule("score_utility"), m.sampler),
        benchmark:
            job_benchmark(m.rule("score_utility"), m.sampler)
        priority: m.priority(10)
        conda:
            "../envs/dualmd.yaml"
        resources:
            **m.resources("utility", gpu=0),
        params:
            command=stage_command("utility", sampler=m.sampler_option, out="{output.summary}"),
        shell:
            "{params.command} > {log} 2>&1"
