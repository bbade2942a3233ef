# Input functions of the unconditional rules (paths by target and attack); what `all` and `dvc_artifacts` request.


def training_priority(wildcards):
    """Models that others are built from train first, so that distillation starts as early as possible."""
    name = getattr(wildcards, "trained", None) or wildcards.distilled
    return 50 + 10 * len(catalog.downstream(name))


def teacher_dirs(wildcards):
    return [
        f"results/models/{wildcards.run}/{name}"
        for name in catalog.target(wildcards.distilled).models
    ]


def sampler_models(wildcards):
    """Name -> model directory of every model a sampler draws with (a checkpoint: its model's directory)."""
    return {m: model_dir(wildcards.run, m) for m in catalog.sampler_models(wildcards.sampler)}


def sampler_dirs(wildcards):
    return list(sampler_models(wildcards).values())


def model_attack_targets(wildcards):
    return [f"results/models/{wildcards.run}/{m}" for m in MODELS]


def reference_dirs(wildcards):
    """LiRA's reference models, for an attack they calibrate; nothing for any other."""
    names = REFERENCES_OF.get(wildcards.attack, [])
    return [f"results/models/{wildcards.run}/{name}" for name in names]


def model_dir(run, name):
    """Directory of a model target, or of the model whose checkpoint `name` is."""
    return f"results/models/{run}/{catalog.split_checkpoint(name)[0]}"


def model_targets(wildcards):
    """Target name -> model directory, for one model target (a per-target job) or every model and checkpoint."""
    names = [wildcards.model] if "model" in wildcards.keys() else MODEL_TARGETS
    return {name: model_dir(wildcards.run, name) for name in names}


def one_model_dir(wildcards):
    return model_dir(wildcards.run, wildcards.model)


def sample_attack_targets(wildcards):
    return [f"results/samples/{wildcards.run}/{s}/samples.npz" for s in SAMPLERS]


def sample_targets(wildcards):
    """Sampler name -> its generated images."""
    return {s: f"results/samples/{wildcards.run}/{s}/samples.npz" for s in SAMPLERS}


def reached_targets(attack):
    """Targets an attack scores: models and checkpoints (an attack off the curve: models only), samplers, or
    pairs (by its access)."""
    spec = catalog.attack(attack)
    if spec.tunes is not None:  # the targets of the attack whose scores it reads
        return reached_targets(spec.tunes)
    if spec.access == "model":
        return MODEL_TARGETS if spec.curve else MODELS
    return PAIRS if spec.access == "pair" else SAMPLERS


def sampler_attack_models(wildcards):
    """Model directories of every target a sampler or pair attack reaches (DualMD: both teachers)."""
    needed = [catalog.sampler_models(t) for t in reached_targets(wildcards.attack)]
    return list(dict.fromkeys(model_dir(wildcards.run, m) for m in sum(needed, ())))


def sampler_targets(wildcards):
    """Target name -> the run's models folder, for every target a sampler or pair attack reaches (the stage takes
    each target's models from it)."""
    return {t: f"results/models/{wildcards.run}" for t in reached_targets(wildcards.attack)}


def attack_scores(wildcards):
    """Score files of one attack: one per target it reaches."""
    return [
        f"results/scores/{wildcards.run}/{wildcards.attack}/{t}.npz"
        for t in reached_targets(wildcards.attack)
    ]


def tuned_base_scores(wildcards):
    """Target name -> score file of the attack that a tuned variant reads, for every target it reaches."""
    base = catalog.attack(wildcards.attack).tunes
    return {
        t: f"results/scores/{wildcards.run}/{base}/{t}.npz"
        for t in reached_targets(wildcards.attack)
    }


def tuned_base_files(wildcards):
    return list(tuned_base_scores(wildcards).values())


def report_score_files(wildcards):
    """Per-sample scores of every attack on every target it reaches (the input of the frontier, the
    matched-utility verdicts and the report's summary)."""
    return [
        f"results/scores/{wildcards.run}/{a}/{t}.npz" for a in ATTACKS for t in reached_targets(a)
    ]


def weighted_target_scores(wildcards):
    """Per-sample scores of every attack on every target with weights (the set- and dataset-level inference's
    input)."""
    return [
        f"results/scores/{wildcards.run}/{a}/{t}.npz"
        for a in ATTACKS
        for t in reached_targets(a)
        if catalog.target(t).has_weights
    ]


# The folder of one attack's score files, as a `stage_command` pattern.
SCORES_DIR = "results/scores/{wildcards.run}/{wildcards.attack}"


def per_target(pattern, names):
    """`pattern` (with {run} left as a wildcard) for each target name."""
    return [pattern.replace("{target}", name) for name in names]


def final_targets():
    """The report of every replicate (tables, metrics.json, every plot it shows) and the current configs; those
    of the text-to-image experiment when it is enabled (common_t2i.smk)."""
    if EXPERIMENT.text2image.enabled:
        return t2i_final_targets()
    files = current_configs() + ["results/report/replicates.csv", "results/report/verdicts.csv"]
    for run in RUNS:
        folder = f"results/report/{run}"
        files += [f"{folder}/metrics.json", f"{folder}/t_error.png", f"{folder}/set_inference.csv"]
        files += [f"{folder}/dataset_inference.csv"]
        files += [f"{folder}/roc_{a}.png" for a in ATTACKS]
    return files


def dvc_artifacts():
    """The model directories of every replicate (and, upstream of them, the data, splits and their configs)."""
    if EXPERIMENT.text2image.enabled:
        return t2i_model_dirs()
    return [f"results/models/{run}/{m}" for run in RUNS for m in MODELS]
