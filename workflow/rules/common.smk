# Config validation, the run dimension, the target and attack lists, wildcard constraints and each job's code inputs,
# shared by every rule file. Targets and attacks come from dualmd.catalog; no rule file names one. The stage configs
# are in stage_configs.smk, the input functions in inputs.smk.
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
