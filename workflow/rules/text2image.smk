# The text-to-image experiment (text2image.enabled): the tiny pipeline pretrained on the images outside the split,
# the fine-tuned baseline and teachers, the DistillMD student, the samplers (DualMD: the two teachers alternating),
# the white-box attacks on latents with captions and the Table 3 report, and the utility report. Every target
# exists once per prompt-diversification variant (common_t2i.smk). Resumable training state lives in
# results/train_state/. Metrics, reference features and utility scores come from the rules both experiments share
# (evaluate_t2i_attack in attack.smk; reference_t2i_features and score_t2i_utility in evaluate.smk).


# The tiny Stable-Diffusion-shaped pipeline (VAE, conditional UNet, frozen text encoder) trained on the dataset
# images outside the split; not run when text2image.pretrained names a pipeline.
use rule stage_job as pretrain_t2i_pipeline with:
    input:
        unpack(split_inputs("t2i_pretrain")),
        code=stage_code("t2i_pretrain"),
    output:
        model=directory("results/t2i_models/{run}/pretrained"),
    log:
        "logs/{run}/pretrain_t2i_pipeline.log",
    benchmark:
        "results/benchmarks/{run}/pretrain_t2i_pipeline.tsv"
    # every model is fine-tuned from it
    priority: 100
    resources:
        **t2i_resources("pretrain"),
    params:
        command=stage_command(
            "t2i-pretrain",
            out="{output.model}",
            state_dir="results/train_state/{wildcards.run}/t2i_pretrained",
        ),


# Full-UNet fine-tuning of the pretrained pipeline on a target's subset: the baseline on every member, each teacher
# on its half, with or without prompt diversification (the target's name says which).
use rule stage_job as finetune_t2i_model with:
    input:
        unpack(split_inputs("t2i_train")),
        pretrained=t2i_pretrained,
        memorized=t2i_memorized_prompts,
        code=stage_code("t2i_train"),
    output:
        model=directory("results/t2i_models/{run}/{t2i_trained}"),
    log:
        "logs/{run}/finetune_t2i_model/{t2i_trained}.log",
    benchmark:
        "results/benchmarks/{run}/finetune_t2i_model/{t2i_trained}.tsv"
    priority: t2i_training_priority
    resources:
        **t2i_resources("finetune"),
    params:
        command=stage_command(
            "t2i-train",
            model="{wildcards.t2i_trained}",
            out="{output.model}",
            state_dir="results/train_state/{wildcards.run}/t2i_{wildcards.t2i_trained}",
            cache_dir="results/train_state/{wildcards.run}/t2i_latent_cache",
        ),


# The DistillMD student: initialised from the pretrained UNet, it regresses on teacher 2's caption-conditioned
# prediction for D1 images and on teacher 1's for D2 images; refuses teachers not trained on this split's halves.
# Priority as finetune_t2i_model's.
use rule finetune_t2i_model as distill_t2i_model with:
    input:
        unpack(split_inputs("t2i_distill")),
        pretrained=t2i_pretrained,
        teachers=t2i_teacher_dirs,
        memorized=t2i_memorized_prompts,
        code=stage_code("t2i_distill"),
    output:
        model=directory("results/t2i_models/{run}/{t2i_distilled}"),
    log:
        "logs/{run}/distill_t2i_model/{t2i_distilled}.log",
    benchmark:
        "results/benchmarks/{run}/distill_t2i_model/{t2i_distilled}.tsv"
    resources:
        **t2i_resources("distill"),
    params:
        command=stage_command(
            "t2i-distill",
            model="{wildcards.t2i_distilled}",
            out="{output.model}",
            state_dir="results/train_state/{wildcards.run}/t2i_{wildcards.t2i_distilled}",
            cache_dir="results/train_state/{wildcards.run}/t2i_latent_cache",
        ),


# Images of one sampler (a model, or DualMD's teachers alternating at every DDIM step), prompted with the members'
# original captions: an .npz in [-1, 1], the provenance and a PNG grid.
use rule stage_job as sample_t2i_images with:
    input:
        unpack(split_inputs("t2i_sample", images=False)),
        models=t2i_sampler_dirs,
        memorized=t2i_memorized_prompts,
        code=stage_code("t2i_sample"),
    output:
        samples="results/t2i_samples/{run}/{t2i_sampler}/samples.npz",
        info="results/t2i_samples/{run}/{t2i_sampler}/info.json",
        grid=in_report(
            "results/t2i_samples/{run}/{t2i_sampler}/grid.png",
            "Text-to-image",
            caption="t2i_samples",
            subcategory="Samples",
            sampler="{t2i_sampler}",
        ),
    log:
        "logs/{run}/sample_t2i_images/{t2i_sampler}.log",
    benchmark:
        "results/benchmarks/{run}/sample_t2i_images/{t2i_sampler}.tsv"
    resources:
        **t2i_resources("sample"),
    params:
        command=stage_command(
            "t2i-sample", sampler="{wildcards.t2i_sampler}", out="{output.samples}"
        ),


# Per-sample scores of one white-box attack on every model of every variant (each on its members against the
# non-members), each image's latent conditioned on its original caption: one job per attack, as for the
# unconditional experiment's cheap attacks, so that a model adds no process start-up.
use rule stage_job as score_t2i_attack with:
    input:
        unpack(split_inputs("t2i_attack_{t2i_whitebox}")),
        targets=per_target("results/t2i_models/{run}/{target}", T2I_MODELS),
        memorized=t2i_memorized_prompts,
        code=t2i_attack_code,
    output:
        scores=per_target("results/t2i_scores/{run}/{t2i_whitebox}/{target}.npz", T2I_MODELS),
    log:
        "logs/{run}/score_t2i_attack/{t2i_whitebox}.log",
    benchmark:
        "results/benchmarks/{run}/score_t2i_attack/{t2i_whitebox}.tsv"
    priority: 10
    resources:
        **t2i_resources("attack"),
    params:
        command=stage_command(
            "t2i-attack",
            attack="{wildcards.t2i_whitebox}",
            out_dir="results/t2i_scores/{wildcards.run}/{wildcards.t2i_whitebox}",
        ),


# The paper's Table 3: every attack against the undefended model, DistillMD and DualMD's teachers, with and without
# prompt diversification (results/report/{run}/text2image.csv and .md).
use rule stage_job as make_t2i_report with:
    input:
        config=config_file("metrics"),
        attacks=expand("results/t2i_metrics/{{run}}/{attack}.json", attack=T2I_WHITEBOX),
        code=stage_code("t2i_report"),
    output:
        table=in_report(
            "results/report/{run}/text2image.csv",
            "Text-to-image",
            caption="t2i_whitebox",
            subcategory="Tables",
            table="Table 3: white-box attacks",
        ),
        markdown="results/report/{run}/text2image.md",
    log:
        "logs/{run}/make_t2i_report.log",
    resources:
        **t2i_resources("report"),
    params:
        command=stage_command("t2i-report", out="{output.table}"),


# FID, KID, IS and CLIP score of every sampler (score_t2i_utility, evaluate.smk), without and with prompt
# diversification (results/report/{run}/text2image_utility.csv and .md): the Pokemon columns of the paper's Table 1.
# Resources as make_t2i_report's.
use rule make_t2i_report as make_t2i_utility_report with:
    input:
        utility=expand("results/t2i_utility/{{run}}/{sampler}.json", sampler=T2I_SAMPLERS),
        code=stage_code("t2i_utility_report"),
    output:
        table=in_report(
            "results/report/{run}/text2image_utility.csv",
            "Text-to-image",
            caption="t2i_utility",
            subcategory="Tables",
            table="utility of the samplers",
        ),
        markdown="results/report/{run}/text2image_utility.md",
    log:
        "logs/{run}/make_t2i_utility_report.log",
    params:
        command=stage_command("t2i-utility-report", out="{output.table}"),
