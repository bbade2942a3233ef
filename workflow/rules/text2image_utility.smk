# Utility of the text-to-image samplers (the Pokemon columns of the paper's Table 1): FID and KID of the images
# each sampler generates from the members' original captions (sample_t2i_images, text2image.smk) against the
# reference set of `utility.reference`, through the utility stages of the unconditional experiment; the Inception
# Score where the feature network has a classifier head, the CLIP score (Table 5) where utility.clip_path is set.


# Features of the reference set under the FID network, computed once for every text-to-image sampler.
use rule stage_job as reference_t2i_features with:
    input:
        config=config_file("utility"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        code=stage_code("utility"),
    output:
        features="results/t2i_utility/{run}/reference.npz",
    log:
        "logs/{run}/reference_t2i_features.log",
    benchmark:
        "results/benchmarks/{run}/reference_t2i_features.tsv"
    resources:
        **t2i_resources("utility"),
    params:
        command=stage_command("reference-features", out="{output.features}"),


# FID with its bootstrap interval, KID with its standard error, IS and the CLIP score (or why each is absent) of
# one text-to-image sampler.
use rule stage_job as score_t2i_utility with:
    input:
        config=config_file("utility"),
        reference="results/t2i_utility/{run}/reference.npz",
        samples="results/t2i_samples/{run}/{t2i_sampler}/samples.npz",
        info="results/t2i_samples/{run}/{t2i_sampler}/info.json",
        code=stage_code("utility"),
    output:
        summary="results/t2i_utility/{run}/{t2i_sampler}.json",
    log:
        "logs/{run}/score_t2i_utility/{t2i_sampler}.log",
    benchmark:
        "results/benchmarks/{run}/score_t2i_utility/{t2i_sampler}.tsv"
    resources:
        **t2i_resources("utility"),
    params:
        command=stage_command("utility", sampler="{wildcards.t2i_sampler}", out="{output.summary}"),


# FID, KID, IS and CLIP score of every sampler, without and with prompt diversification
# (results/report/{run}/text2image_utility.csv and .md).
use rule stage_job as make_t2i_utility_report with:
    input:
        utility=expand("results/t2i_utility/{{run}}/{sampler}.json", sampler=T2I_SAMPLERS),
        code=stage_code("t2i_utility_report"),
    output:
        table=report(
            "results/report/{run}/text2image_utility.csv",
            caption="../report/t2i_utility.rst",
            category="Text-to-image",
            subcategory="Tables",
            labels={"run": "{run}", "table": "utility of the samplers"},
        ),
        markdown="results/report/{run}/text2image_utility.md",
    log:
        "logs/{run}/make_t2i_utility_report.log",
    resources:
        **t2i_resources("report"),
    params:
        command=stage_command("t2i-utility-report", out="{output.table}"),
