# Memorization on prompts in the text-to-image experiment (text2image.memorized_prompts; the paper's §3.6, the
# shape of Fig. 3 and Table 5): a few images of one member half repeated in training, so that their captions
# become memorized prompts, against as many other training prompts of that half; two detectors per prompt
# (SecMI's t-error, Wen et al.'s text-conditional noise magnitude) and the copies of its generations, for every
# model and DualMD pair of every prompt-diversification variant (and the undefended models under Wen et al.'s
# mitigation, text2image.mitigation), with the tiny run's stand-in scorers of Table 5 where asked for. With
# text2image.prompt_detection, memorized vs ordinary prompt lists on the pretrained pipeline (Fig. 3's setting).


# The memorized images and as many other images of the same half, with their prompts; every training, sampling
# and attack job of the run reads it (common_t2i.smk: t2i_memorized_prompts).
use rule stage_job as select_memorized_prompts with:
    input:
        unpack(split_inputs("t2i_memorized_prompts", images=False)),
        code=stage_code("t2i_memorized_prompts"),
    output:
        prompts="results/t2i_memorization/{run}/prompts.json",
    log:
        "logs/{run}/select_memorized_prompts.log",
    benchmark:
        "results/benchmarks/{run}/select_memorized_prompts.tsv"
    resources:
        **t2i_resources("report"),
    params:
        command=stage_command("t2i-memorized-prompts", out="{output.prompts}"),


# The tiny run's stand-ins for Table 5's scorers, where a scorer key is "standin": a tiny CLIP trained on the images
# outside the split and their captions, and a fixed centred-pixel copy descriptor (not OpenAI's CLIP, not SSCD; the
# reports say so). Read by score_prompt_memorization and score_t2i_utility.
use rule stage_job as train_t2i_standin_scorers with:
    input:
        unpack(split_inputs("t2i_standin_scorers")),
        code=stage_code("t2i_standin_scorers"),
    output:
        clip=directory(T2I_STANDIN_OUTPUTS["clip"]),
        descriptor=T2I_STANDIN_OUTPUTS["descriptor"],
    log:
        "logs/{run}/train_t2i_standin_scorers.log",
    benchmark:
        "results/benchmarks/{run}/train_t2i_standin_scorers.tsv"
    resources:
        **t2i_resources("pretrain"),
    params:
        command=stage_command("t2i-standin-scorers"),


# One row per generation of every selected prompt with every model and DualMD pair: the prompt's t-error
# (models), the generation's noise magnitude and copy statistics. One job, so that a model adds no process
# start-up (as score_t2i_attack).
use rule stage_job as score_prompt_memorization with:
    input:
        unpack(split_inputs("t2i_prompt_memorization")),
        memorized="results/t2i_memorization/{run}/prompts.json",
        models=per_target("results/t2i_models/{run}/{target}", T2I_MODELS),
        standin_clip=t2i_standin("clip", "memorization.clip_path"),
        standin_descriptor=t2i_standin("descriptor", "memorization.copy_descriptor"),
        code=stage_code("t2i_prompt_memorization"),
    output:
        scores=per_target(
            "results/t2i_memorization/{run}/scores/{target}.csv", T2I_MEMORIZATION_TARGETS
        ),
    log:
        "logs/{run}/score_prompt_memorization.log",
    benchmark:
        "results/benchmarks/{run}/score_prompt_memorization.tsv"
    resources:
        **t2i_resources("memorization"),
    params:
        command=stage_command(
            "t2i-prompt-memorization", out_dir="results/t2i_memorization/{wildcards.run}/scores"
        ),


# Memorized vs other prompts: each detector's AUC with its 95% interval per target, the copy rates, their
# Markdown and one histogram per detector (results/report/{run}/prompt_memorization*); in the HTML report.
use rule stage_job as make_t2i_memorization_report with:
    input:
        config=config_file("metrics"),
        scores=per_target(
            "results/t2i_memorization/{run}/scores/{target}.csv", T2I_MEMORIZATION_TARGETS
        ),
        code=stage_code("t2i_memorization_report"),
    output:
        table=in_report(
            "results/report/{run}/prompt_memorization.csv",
            "Text-to-image",
            table="memorization on prompts",
        ),
        copies=in_report(
            "results/report/{run}/prompt_memorization_copies.csv",
            "Text-to-image",
            table="copies from prompts",
        ),
        markdown="results/report/{run}/prompt_memorization.md",
        t_error_plot=in_report(
            "results/report/{run}/prompt_memorization_t_error.png",
            "Text-to-image",
            caption="prompt_memorization_plot",
            figure="t-error of prompts",
        ),
        noise_plot=in_report(
            "results/report/{run}/prompt_memorization_noise_magnitude.png",
            "Text-to-image",
            caption="prompt_memorization_plot",
            figure="noise magnitude of prompts",
        ),
    log:
        "logs/{run}/make_t2i_memorization_report.log",
    resources:
        **t2i_resources("report"),
    params:
        command=stage_command(
            "t2i-memorization-report", out="{output.table}", copy_table="{output.copies}"
        ),


# Memorized vs ordinary prompt lists (text2image.prompt_detection) on the pretrained pipeline, scored with Wen et
# al.'s noise magnitude: per-prompt scores, the AUC with its 95% interval, Markdown and histogram.
use rule stage_job as detect_memorized_prompts with:
    input:
        config=config_file("t2i_prompt_detection"),
        pipeline=t2i_pretrained,
        memorized_prompts=T2I_DETECTION.memorized_list or [],
        ordinary_prompts=T2I_DETECTION.ordinary_list or [],
        code=stage_code("t2i_prompt_detection"),
    output:
        scores="results/t2i_memorization/{run}/prompt_detection.csv",
        summary="results/report/{run}/prompt_detection.json",
        markdown="results/report/{run}/prompt_detection.md",
        plot=report(
            "results/report/{run}/prompt_detection.png",
            caption="../report/prompt_detection.rst",
            category="Text-to-image",
            labels={"run": "{run}", "figure": "memorized-prompt detection"},
        ),
    log:
        "logs/{run}/detect_memorized_prompts.log",
    benchmark:
        "results/benchmarks/{run}/detect_memorized_prompts.tsv"
    resources:
        **t2i_resources("memorization"),
    params:
        command=stage_command("t2i-prompt-detection", out="{output.scores}"),
