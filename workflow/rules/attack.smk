# Per-sample membership scores of one attack on every target it reaches, in one job per attack: a model attack
# scores every model (each on its own members against the non-members; a teacher on its half), a samples attack
# every sampler's generated images. Higher score = more likely a member. A changed attack parameter reruns only
# that attack's job, and adding a target adds no job.
use rule stage_job as score_model_attack with:
    input:
        config=config_file("attack_{attack}"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=model_attack_targets,
        references=reference_dirs,
        code=attack_code,
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", MODEL_TARGETS),
    log:
        "logs/{run}/score_attack/{attack}.log",
    benchmark:
        "results/benchmarks/{run}/score_attack/{attack}.tsv"
    wildcard_constraints:
        attack="|".join(SHARED_JOB_ATTACKS) or "(?!)",
    # after sampling, before the cheap evaluations
    priority: 10
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        command=stage_command("attack", targets=model_targets, out_dir=SCORES_DIR),


use rule score_model_attack as score_sample_attack with:
    input:
        config=config_file("attack_{attack}"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=sample_attack_targets,
        code=attack_code,
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", SAMPLERS),
    wildcard_constraints:
        attack="|".join(SAMPLE_ATTACKS) or "(?!)",
    params:
        command=stage_command("attack", targets=sample_targets, out_dir=SCORES_DIR),


# Sampler attacks through every sampler's denoising chain (DualMD's through both teachers, alternating as it
# samples), one job per attack; the inputs are the model directories every sampler draws with.
use rule score_model_attack as score_sampler_attack with:
    input:
        config=config_file("attack_{attack}"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=sampler_attack_models,
        code=attack_code,
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", SAMPLERS),
    wildcard_constraints:
        attack="|".join(SAMPLER_ATTACKS) or "(?!)",
    params:
        command=stage_command("attack", targets=sampler_targets, out_dir=SCORES_DIR),


# Pair attacks, white-box on both models of every pair sampler (DualMD's teachers).
use rule score_sampler_attack as score_pair_attack with:
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", PAIRS),
    wildcard_constraints:
        attack="|".join(PAIR_ATTACKS) or "(?!)",


# The same for an attack with one job per model (catalog.AttackSpec.job_per_target): each model's scores start as
# soon as that model is trained.
use rule score_model_attack as score_model_attack_each with:
    input:
        config=config_file("attack_{attack}"),
        images="results/data/images.npz",
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        targets=one_model_dir,
        code=attack_code,
    output:
        scores="results/scores/{run}/{attack}/{model}.npz",
    log:
        "logs/{run}/score_attack/{attack}/{model}.log",
    benchmark:
        "results/benchmarks/{run}/score_attack/{attack}/{model}.tsv"
    wildcard_constraints:
        attack="|".join(PER_TARGET_ATTACKS) or "(?!)",
    # long jobs: start each as soon as its model exists
    priority: 15


# Tuned variants (loss_tuned, pia_tuned, sima_tuned) from the per-timestep scores of the attack they tune, one
# cheap job per variant: no model is loaded. The a-priori attacks reach every model and checkpoint.
use rule stage_job as tune_attack with:
    input:
        config=config_file("attack_{attack}"),
        scores=tuned_base_files,
        code=attack_code,
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", MODEL_TARGETS),
    log:
        "logs/{run}/tune_attack/{attack}.log",
    benchmark:
        "results/benchmarks/{run}/tune_attack/{attack}.tsv"
    wildcard_constraints:
        attack="|".join(TUNED_ATTACKS) or "(?!)",
    params:
        command=stage_command("tune-attack", scores=tuned_base_scores, out_dir=SCORES_DIR),


# AUC, ASR, TPR at the configured FPRs with bootstrap intervals, and ROC curves, of one attack on every target
# (DualMD and its teachers also per member half, which the split says), plus the log-log ROC plot.
use rule stage_job as evaluate_attack with:
    input:
        config=config_file("metrics"),
        scores=attack_scores,
        split="results/split/{run}/split.npz",
        split_meta="results/split/{run}/split.json",
        code=stage_code("metrics"),
    output:
        metrics="results/metrics/{run}/{attack}.json",
        roc="results/metrics/{run}/{attack}_roc.csv",
        plot=report(
            "results/report/{run}/roc_{attack}.png",
            caption="../report/roc.rst",
            category="Attacks",
            labels={"run": "{run}", "attack": "{attack}"},
        ),
    log:
        "logs/{run}/evaluate_attack/{attack}.log",
    benchmark:
        "results/benchmarks/{run}/evaluate_attack/{attack}.tsv"
    params:
        command=stage_command("evaluate", out="{output.metrics}"),
