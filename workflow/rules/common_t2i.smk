# The text-to-image experiment (text2image.enabled; dualmd.text2image, paper §3.5 and Table 3): its targets for
# each prompt-diversification variant, wildcard constraints and path helpers. Targets come from dualmd.catalog:
# with `text2image.prompt_diversification: [false, true]` every target also exists as "<name>_pd", trained with
# one of an image's captions drawn at each use, in the same run folder and from the same stage configs.
from dualmd.config.evaluation import STANDIN, STANDIN_KEYS  # noqa: E402
from dualmd.config.stages import TEXT2IMAGE_STAGE_SECTIONS  # noqa: E402

T2I_VARIANTS = EXPERIMENT.text2image.variants
T2I_TRAINED = catalog.text2image_targets(T2I_VARIANTS, "trained")
T2I_DISTILLED = catalog.text2image_targets(T2I_VARIANTS, "distilled")
# Models with weights, each attacked white-box (DualMD through its teachers), and the samplers.
T2I_MODELS = [t for t in catalog.text2image_targets(T2I_VARIANTS) if catalog.target(t).has_weights]
T2I_SAMPLERS = catalog.text2image_samplers(T2I_VARIANTS)
# White-box attacks (every model, Table 3) and black-box attacks prompting each sampler (Pang & Wang, Table 4).
T2I_WHITEBOX = [a for a in ATTACKS if catalog.attack(a).access == "model"]
T2I_BLACKBOX = [a for a in ATTACKS if catalog.attack(a).access == "prompts"]
# The pipeline every model is fine-tuned from: text2image.pretrained (SD v1.5), or the tiny stand-in built here.
T2I_PRETRAINED = EXPERIMENT.text2image.pretrained
# Memorized prompts (text2image.memorized_prompts, text2image_memorization.smk): every model and DualMD pair is
# scored on them.
T2I_MEMORIZED = EXPERIMENT.text2image.memorized_prompts.enabled
T2I_MEMORIZATION_TARGETS = T2I_MODELS + [
    s for s in T2I_SAMPLERS if catalog.target(s).kind == "pair"
]
# Memorized vs ordinary prompt lists on the pretrained pipeline (text2image.prompt_detection; on with both lists).
T2I_DETECTION = EXPERIMENT.text2image.prompt_detection
# The scorer keys that name the tiny run's stand-ins ("standin": memorization.copy_descriptor, memorization.clip_path,
# utility.clip_path), and what the stand-in stage writes (text2image_memorization.smk).
T2I_STANDIN = [
    f"{section}.{key}"
    for section, key in STANDIN_KEYS
    if getattr(getattr(EXPERIMENT, section), key) == STANDIN
]
T2I_STANDIN_OUTPUTS = {
    "clip": "results/t2i_scorers/{run}/clip",
    "descriptor": "results/t2i_scorers/{run}/copy_descriptor.pt",
}


def one_of(names):
    """A wildcard pattern matching exactly `names` (none: a pattern nothing matches)."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    t2i_whitebox=one_of(T2I_WHITEBOX),
    t2i_blackbox=one_of(T2I_BLACKBOX),
    t2i_trained="|".join(map(re.escape, T2I_TRAINED)),
    t2i_distilled="|".join(map(re.escape, T2I_DISTILLED)),
    t2i_sampler="|".join(map(re.escape, T2I_SAMPLERS)),


def t2i_stages():
    """The text-to-image stages with a config of their own (no pretraining when a pipeline is given, no
    memorized-prompt stages when they are off, no stand-in scorers unless a scorer key names them).
    """
    skipped = {"t2i_pretrain"} if T2I_PRETRAINED else set()
    if not T2I_MEMORIZED:
        skipped |= {"t2i_memorized_prompts", "t2i_prompt_memorization"}
    if not T2I_DETECTION.enabled:
        skipped.add("t2i_prompt_detection")
    if not T2I_STANDIN:
        skipped.add("t2i_standin_scorers")
    stages = [s for s in TEXT2IMAGE_STAGE_SECTIONS if s not in skipped]
    return stages + [f"t2i_attack_{a}" for a in ATTACKS] + ["metrics", "utility"]


def t2i_resources(kind):
    """The `gpu`, `mem_mb` and `runtime` a kind of text-to-image job requests (text2image.resources.<kind>)."""
    return getattr(EXPERIMENT.text2image.resources, kind).to_dict()


def t2i_memorized_prompts(wildcards):
    """The memorized-prompt selection a training, sampling or attack job reads (none when they are off)."""
    return [f"results/t2i_memorization/{wildcards.run}/prompts.json"] if T2I_MEMORIZED else []


def t2i_standin(output, key):
    """Input function: the stand-in scorers' `output` ("clip" or "descriptor") of a replicate where the scorer key
    `key` ("memorization.clip_path", ...) is "standin"; nothing otherwise."""

    def path(wildcards):
        return [T2I_STANDIN_OUTPUTS[output].format(run=wildcards.run)] if key in T2I_STANDIN else []

    return path


def t2i_pretrained(wildcards):
    """The pretrained pipeline folder of a replicate."""
    return T2I_PRETRAINED or f"results/t2i_models/{wildcards.run}/pretrained"


def t2i_training_priority(wildcards):
    """Teachers first, so that distillation starts as early as possible."""
    name = getattr(wildcards, "t2i_trained", None) or wildcards.t2i_distilled
    return 50 + 10 * len(catalog.downstream(name.removesuffix(catalog.PD_SUFFIX)))


def t2i_teacher_dirs(wildcards):
    return [
        f"results/t2i_models/{wildcards.run}/{m}"
        for m in catalog.target(wildcards.t2i_distilled).models
    ]


def t2i_sampler_dirs(wildcards):
    return [
        f"results/t2i_models/{wildcards.run}/{m}"
        for m in catalog.sampler_models(wildcards.t2i_sampler)
    ]


def t2i_attack_code(wildcards):
    """Code of a white-box text-to-image attack job: its stage and the module of its attack."""
    return stage_code("t2i_attack", [catalog.attack(wildcards.t2i_whitebox).module_name])


def t2i_attack_scores(wildcards):
    """Score files of one attack: one per model of every variant (white-box) or per sampler (black-box)."""
    targets = T2I_SAMPLERS if wildcards.attack in T2I_BLACKBOX else T2I_MODELS
    return [f"results/t2i_scores/{wildcards.run}/{wildcards.attack}/{m}.npz" for m in targets]


def t2i_final_targets():
    """The Table 3 report (white-box attacks), Table 4 report (black-box), the samplers' utility, every ROC plot
    and sampler grid of each replicate, the memorized-prompt report and the prompt-list detection when they are
    on, and the current configs.
    """
    files = [config_path("data", SHARED)]
    for run in RUNS:
        files += [config_path("split", run)] + [config_path(s, run) for s in t2i_stages()]
        for name, attacks in (("text2image", T2I_WHITEBOX), ("text2image_blackbox", T2I_BLACKBOX)):
            if attacks:
                files += [f"results/report/{run}/{name}.csv", f"results/report/{run}/{name}.md"]
        files += [f"results/report/{run}/text2image_utility.{ext}" for ext in ("csv", "md")]
        files += [f"results/report/{run}/t2i_roc_{a}.png" for a in ATTACKS]
        files += [f"results/t2i_samples/{run}/{s}/grid.png" for s in T2I_SAMPLERS]
        if T2I_MEMORIZED:
            files += [f"results/report/{run}/prompt_memorization.{ext}" for ext in ("csv", "md")]
        if T2I_DETECTION.enabled:
            files += [
                f"results/report/{run}/prompt_detection.{ext}" for ext in ("json", "md", "png")
            ]
    return files


def t2i_model_dirs():
    """The text-to-image model folders of every replicate (the artifacts DVC versions)."""
    return [f"results/t2i_models/{run}/{m}" for run in RUNS for m in T2I_MODELS]
