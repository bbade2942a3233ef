# Config validation, the run dimension, stage configs, wildcard constraints and path helpers shared by every rule
# file. Targets and attacks come from dualmd.catalog; no rule file names one.
import os
import re
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Planning imports only torch-free modules and writes nothing, not even bytecode: a dry run changes no file.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from dualmd import catalog, sources  # noqa: E402
from dualmd.stage import command_line, declarations  # noqa: E402
from dualmd.config.experiment import ExperimentConfig  # noqa: E402
from dualmd.config.stages import (  # noqa: E402
    STAGE_SECTIONS,
    checkpoint_targets,
    config_digest,
    control_targets,
    dump_stage_config,
    replicate,
    stage_config,
    stage_names,
)

EXPERIMENT = ExperimentConfig.resolve(config)
# The schema checks keys and values but holds no defaults: the dataclasses do. The workflow's config gets every
# resolved value, so that a report caption reads a key the user's config leaves out.
config.update(EXPERIMENT.to_dict())
# Replicate r of the experiment lives under .../rep<r>/ in every result folder.
RUNS = [f"rep{r}" for r in range(EXPERIMENT.runs.replicates)]
ATTACKS = list(EXPERIMENT.attack.names)
# Attacks by what they score and by job granularity (catalog.AttackSpec.job_per_target).
MODEL_ATTACKS = [a for a in ATTACKS if catalog.attack(a).access == "model"]
SAMPLE_ATTACKS = [a for a in ATTACKS if catalog.attack(a).access == "samples"]
PER_TARGET_ATTACKS = [a for a in MODEL_ATTACKS if catalog.attack(a).job_per_target]
SHARED_JOB_ATTACKS = [a for a in MODEL_ATTACKS if not catalog.attack(a).job_per_target]
# Attacks through a sampler's denoising chain, and attacks on both models of a pair sampler.
SAMPLER_ATTACKS = [a for a in ATTACKS if catalog.attack(a).access == "sampler"]
PAIR_ATTACKS = [a for a in ATTACKS if catalog.attack(a).access == "pair"]
# Tuned variants computed from the score files of the attack they tune (catalog.AttackSpec.tunes): no model query.
TUNED_ATTACKS = [a for a in ATTACKS if catalog.attack(a).access == "scores"]
# Optional controls of the config (overlap ablation "teacher1_ov50"..., DP-SGD baselines "dpsgd_eps10"): models
# like the catalog's own.
CONTROLS = control_targets(EXPERIMENT)
REFERENCE_ATTACKS = [a for a in MODEL_ATTACKS if catalog.attack(a).references]


def kind_names(kind):
    """The catalog's targets of one kind and the config's controls of that kind."""
    return catalog.names(kind) + [c for c in CONTROLS if catalog.target(c).kind == kind]


def reference_names(kind):
    """LiRA's reference models of one kind."""
    return [r for r in REFERENCES if catalog.target(r).kind == kind]


MODELS = catalog.models() + [c for c in CONTROLS if catalog.target(c).has_weights]
# Weights kept during a model's training ("baseline@120", ...): models and samplers like the others (the
# undefended curve on both utility axes), stored inside the model's directory (the workflow tracks the directory,
# the stage resolves the checkpoint in it).
CHECKPOINTS = checkpoint_targets(EXPERIMENT)
MODEL_TARGETS = MODELS + CHECKPOINTS
SAMPLERS = catalog.samplers() + CONTROLS + CHECKPOINTS
PAIRS = kind_names("pair")
# LiRA's reference models, read only by the attacks they calibrate (catalog.lira_references): "reference1", ...
# (offline, outside the split), "reference1_teacher1", ..., "reference1_student" (built like the target), "shadow1",
# ... (online, on half of the candidates).
REFERENCES_OF = {a: EXPERIMENT.attack.reference_models(a, MODEL_TARGETS) for a in REFERENCE_ATTACKS}
REFERENCES = list(dict.fromkeys(sum(REFERENCES_OF.values(), [])))
# Stage configs not tied to one replicate live under this scope.
SHARED = "shared"


wildcard_constraints:
    run=r"rep\d+",
    scope=r"shared|rep\d+",
    digest=r"[0-9a-f]{12}",
    trained="|".join(map(re.escape, kind_names("trained") + reference_names("trained"))),
    distilled="|".join(map(re.escape, kind_names("distilled") + reference_names("distilled"))),
    model="|".join(map(re.escape, MODEL_TARGETS)),
    sampler="|".join(map(re.escape, SAMPLERS)),
    attack="|".join(catalog.ATTACKS),
    stage="|".join(stage_names()),


def run_experiment(scope):
    return EXPERIMENT if scope == SHARED else replicate(EXPERIMENT, int(scope.removeprefix("rep")))


def stage_text(wildcards):
    """The YAML text of a stage config (what `results/configs/{scope}/{stage}.{digest}.yaml` holds)."""
    cfg = stage_config(run_experiment(wildcards.scope), wildcards.stage)
    if config_digest(cfg) != wildcards.digest:
        raise ValueError(
            f"{wildcards.stage}.{wildcards.digest}.yaml is not the current {wildcards.stage} config "
            f"(digest {config_digest(cfg)}); request `all` or the stage's outputs instead"
        )
    return dump_stage_config(cfg)


def config_path(stage, scope):
    """The config file of `stage` in `scope` ("shared" or a replicate), named by the digest of its content."""
    digest = config_digest(stage_config(run_experiment(scope), stage))
    return f"results/configs/{scope}/{stage}.{digest}.yaml"


def config_file(stage, scope="{run}"):
    """Input function: `config_path` of `stage` (which may hold wildcards, e.g. "attack_{attack}").

    A changed section gives a new file name. `rule all` requests every current config file, so a new one is
    written and, being newer than every output, reruns exactly its readers whether or not Snakemake's metadata
    (.snakemake/) is present; a dry run only plans the write.
    """

    def path(wildcards):
        values = dict(wildcards.items())
        return config_path(stage.format(**values), scope.format(**values))

    return path


def current_configs():
    """Every stage config file the run reads (stale ones are replaced when their stage config is written)."""
    files = [config_path("data", SHARED)]
    stages = [stage for stage in STAGE_SECTIONS if stage != "data"]
    for run in RUNS:
        files += [config_path(stage, run) for stage in stages + [f"attack_{a}" for a in ATTACKS]]
    return files


# The package's import graph (imports of a plugin by name left out) and source files, read once per workflow start.
_GRAPH = sources.import_graph(plugins=False)
_FILES = sources.module_files()
# Every stage by command, as declared in dualmd.stages (dualmd.stage): each rule's command line derives from it.
STAGES = declarations()


def stage_code(module, plugins=()):
    """Source files a job of stage module `dualmd.stages.<module>` runs, relative to the working directory: the
    module's import closure and that of each plugin it names (an attack module), so that editing one reruns the
    jobs that run it and a moved project reruns nothing."""
    modules = set().union(
        *(sources.closure(_GRAPH, m) for m in (f"dualmd.stages.{module}", *plugins))
    )
    return sorted(os.path.relpath(_FILES[m], Path.cwd()) for m in modules)


def attack_code(wildcards):
    """Code of an attack job: the attack stage and the module of its attack, no other attack's."""
    return stage_code("attack", [catalog.attack(wildcards.attack).module_name])


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
