# Config validation, wildcard constraints, target lists and path helpers shared by every rule file.
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# The package re-validates with typed dataclasses: a broken config stops the run before any job starts.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from dualmd.config import ExperimentConfig, MODEL_IDS, SAMPLERS, TRAIN_SUBSETS  # noqa: E402

ExperimentConfig.from_mapping(config)

PACKAGE = Path(workflow.basedir) / "src" / "dualmd"
# Every attack the package knows, by what it needs (a model's noise predictions or only generated images).
BLACKBOX_NAMES = ["nn_distance"]
WHITEBOX_NAMES = ["loss", "secmi_stat", "secmi_nn", "pia", "pian"]
ATTACKS = list(config["attack"]["names"])
WHITEBOX_ATTACKS = [a for a in ATTACKS if a in WHITEBOX_NAMES]
BLACKBOX_ATTACKS = [a for a in ATTACKS if a in BLACKBOX_NAMES]
WHITEBOX_MODELS = list(MODEL_IDS)
# Nested attack parameters each attack reads; a change elsewhere in `attack:` does not rerun it.
ATTACK_PARAMS = {
    "loss": ["loss"],
    "secmi_stat": ["secmi"],
    "secmi_nn": ["secmi", "secmi_nn"],
    "pia": ["pia"],
    "pian": ["pia"],
    "nn_distance": ["nn_distance"],
}
STAGES = ["data", "split", "train", "distill", "sample", "metrics", "memorization", "utility"]


wildcard_constraints:
    model="|".join(WHITEBOX_MODELS),
    trained="|".join(TRAIN_SUBSETS),
    sampler="|".join(SAMPLERS),
    attack="|".join(WHITEBOX_NAMES + BLACKBOX_NAMES),
    stage="|".join(STAGES + [f"attack_{a}" for a in WHITEBOX_NAMES + BLACKBOX_NAMES]),


def stage_config(wildcards):
    """The config sections one stage reads; written to results/configs/{stage}.yaml by write_stage_config."""
    sections = {
        "data": ["dataset"],
        "split": ["split"],
        "train": ["model", "diffusion", "train"],
        "distill": ["model", "diffusion", "train", "distill"],
        "sample": ["sample"],
        "metrics": ["metrics"],
        "memorization": ["memorization"],
        "utility": ["utility"],
    }
    stage = wildcards.stage
    if stage.startswith("attack_"):
        name = stage.removeprefix("attack_")
        common = {k: config["attack"][k] for k in ("weights", "batch_size", "seed")}
        nested = {k: config["attack"][k] for k in ATTACK_PARAMS[name]}
        return {"attack": {"names": [name], **common, **nested}}
    return {s: config[s] for s in sections[stage]}


def package_files(*modules):
    """Source files of package modules, so that editing them reruns the rules that use them."""
    files = []
    for module in modules:
        path = PACKAGE / module
        files += (
            sorted(str(p) for p in path.rglob("*.py")) if path.is_dir() else [str(path) + ".py"]
        )
    return files


def launcher(wildcards, threads, resources):
    """`python -m dualmd` on CPU; `accelerate launch` over the rule's GPUs otherwise."""
    gpus = int(resources.get("gpu", 0) or 0)
    if gpus == 0:
        return "python -m dualmd"
    multi = f"--multi_gpu --num_processes {gpus}" if gpus > 1 else "--num_processes 1"
    precision = config["train"]["mixed_precision"]
    return (
        f"accelerate launch {multi} --num_machines 1 --dynamo_backend no "
        f"--mixed_precision {precision} -m dualmd"
    )


def sampler_models(wildcards):
    """Model directories a sampler needs: its own model, or both teachers for DualMD."""
    if wildcards.sampler == "dualmd":
        return ["results/models/teacher1", "results/models/teacher2"]
    return [f"results/models/{wildcards.sampler}"]


def sampler_model_args(wildcards, input):
    return " ".join(f"--model {Path(d).name}={d}" for d in input.models)


def attack_scores(wildcards):
    """Score files of one attack: every model for a white-box attack, every sampler for a black-box one."""
    targets = SAMPLERS if wildcards.attack in BLACKBOX_NAMES else WHITEBOX_MODELS
    return [f"results/scores/{wildcards.attack}/{t}.npz" for t in targets]


def per_sampler(pattern):
    return [pattern.format(sampler=s) for s in SAMPLERS]


def per_model(pattern):
    return [pattern.format(model=m) for m in WHITEBOX_MODELS]


def final_targets():
    """The report: tables, metrics.json, and every plot it shows."""
    return [
        "results/report/metrics.json",
        "results/report/report.md",
        "results/report/loss_curves.png",
        "results/report/t_error.png",
    ] + [f"results/report/roc_{a}.png" for a in ATTACKS]
