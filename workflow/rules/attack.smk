# Per-sample membership scores of one attack on every target it reaches, in one job per attack: a model attack
# scores every model (each on its own members against the non-members; a teacher on its half), a samples attack
# every sampler's generated images. Higher score = more likely a member. A changed attack parameter reruns only
# that attack's job, and adding a target adds no job.
use rule stage_job as score_model_attack with:
    input:
        unpack(split_inputs("attack_{attack}")),
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
        attack=one_of(SHARED_JOB_ATTACKS),
    # after sampling, before the cheap evaluations
    priority: 10
    resources:
        gpu=0,
        mem_mb=4000,
    params:
        command=stage_command("attack", targets=model_targets, out_dir=SCORES_DIR),


use rule score_model_attack as score_sample_attack with:
    input:
        unpack(split_inputs("attack_{attack}")),
        targets=sample_attack_targets,
        code=attack_code,
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", SAMPLERS),
    wildcard_constraints:
        attack=one_of(SAMPLE_ATTACKS),
    params:
        command=stage_command("attack", targets=sample_targets, out_dir=SCORES_DIR),


# Sampler attacks through every sampler's denoising chain (DualMD's through both teachers, alternating as it
# samples), one job per attack; the inputs are the model directories every sampler draws with, the outputs one score
# file per sampler (as score_sample_attack's).
use rule score_sample_attack as score_sampler_attack with:
    input:
        unpack(split_inputs("attack_{attack}")),
        targets=sampler_attack_models,
        code=attack_code,
    wildcard_constraints:
        attack=one_of(SAMPLER_ATTACKS),
    params:
        command=stage_command("attack", targets=sampler_targets, out_dir=SCORES_DIR),


# Pair attacks, white-box on both models of every pair sampler (DualMD's teachers).
use rule score_sampler_attack as score_pair_attack with:
    output:
        scores=per_target("results/scores/{run}/{attack}/{target}.npz", PAIRS),
    wildcard_constraints:
        attack=one_of(PAIR_ATTACKS),


# The same for an attack with one job per model (catalog.AttackSpec.job_per_target): each model's scores start as
# soon as that model is trained.
use rule score_model_attack as score_model_attack_each with:
    input:
        unpack(split_inputs("attack_{attack}")),
        targets=one_model_dir,
        code=attack_code,
    output:
        scores="results/scores/{run}/{attack}/{model}.npz",
    log:
        "logs/{run}/score_attack/{attack}/{model}.log",
    benchmark:
        "results/benchmarks/{run}/score_attack/{attack}/{model}.tsv"
    wildcard_constraints:
        attack=one_of(PER_TARGET_ATTACKS),
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
        attack=one_of(TUNED_ATTACKS),
    params:
        command=stage_command("tune-attack", scores=tuned_base_scores, out_dir=SCORES_DIR),


# AUC, ASR, TPR at the configured FPRs with bootstrap intervals, and ROC curves, of one attack on every target of
# an experiment (DualMD and its teachers also per member half, which the split says), plus the log-log ROC plot:
# evaluate_attack, and evaluate_t2i_attack for the text-to-image one.
for m in MODALITIES:

    rule:
        name:
            m.rule("evaluate_attack")
        input:
            unpack(m.evaluate_inputs),
        output:
            metrics=f"{m.folder('metrics')}/{{attack}}.json",
            roc=f"{m.folder('metrics')}/{{attack}}_roc.csv",
            plot=in_report(
                f"results/report/{{run}}/{m.prefix}roc_{{attack}}.png",
                **m.roc_entry,
                attack="{attack}",
            ),
        log:
            job_log(m.rule("evaluate_attack"), "{attack}"),
        benchmark:
            job_benchmark(m.rule("evaluate_attack"), "{attack}")
        conda:
            "../envs/dualmd.yaml"
        resources:
            **m.resources("report"),
        params:
            command=stage_command("evaluate", out="{output.metrics}"),
        shell:
            "{params.command} > {log} 2>&1"
