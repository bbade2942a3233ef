"""Stage configs: the sections each stage reads, resolved into the plain data of its config file, whose digest
names the file (`results/configs/<scope>/<stage>.<digest>.yaml`), and the experiment of each replicate."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import yaml

from dualmd import catalog
from dualmd.config.base import ConfigError
from dualmd.config.experiment import ExperimentConfig
from dualmd.stage import config_sections, declarations

#: The config sections each stage config holds, as the stages declare them (`dualmd.stage`). A stage's resolved
#: config (`stage_config`) is its input file, so a stage reruns exactly when one of these sections changes; attack
#: stages (`attack_<name>`) read the shared attack keys and the nested sections of `catalog.ATTACKS[name].reads`
#: (plus those of the attack a wrapping attack runs, `AttackSpec.wraps`, and the `sample` keys a sampler attack
#: reads, `AttackConfig.sample_keys_of`: its catalog entry's and, for recon's deployed interface, the step grid's).
_DECLARED = config_sections(declarations())
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {k: v for k, v in _DECLARED.items() if not k.startswith("t2i_")}
#: Sections of each text-to-image stage config (dataset: the captions). Their attacks read "t2i_attack_<name>": the
#: attack's own config plus dataset and text2image. The memorization stages read only their keys of text2image
#: (`_TEXT2IMAGE_KEYS`); prompt memorization also reads secmi_stat's attack config (its t-error).
TEXT2IMAGE_STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    k: v for k, v in _DECLARED.items() if k.startswith("t2i_")
}
#: The text2image keys of the memorization stages and of the stand-in scorers (the selection and the stand-ins
#: also read the captions' keys; the nested sections below enter no other stage: training, sampling and attacks
#: read the selection file, the scoring stages the stand-ins' files), and the keys of a nested section a stage
#: reads where it reads only some of them.
_TEXT2IMAGE_KEYS = {
    "t2i_memorized_prompts": ("enabled", "unique_captions", "caption_seed", "memorized_prompts"),
    "t2i_prompt_memorization": ("enabled", "guidance_scale", "allow_tf32", "memorized_prompts", "mitigation"),
    "t2i_prompt_detection": ("enabled", "guidance_scale", "allow_tf32", "prompt_detection"),
    "t2i_standin_scorers": ("enabled", "unique_captions", "caption_seed", "standin_scorers"),
}
_NESTED_T2I_SECTIONS = ("memorized_prompts", "mitigation", "prompt_detection", "standin_scorers")
_NESTED_KEYS = {
    "t2i_memorized_prompts": {
        "memorized_prompts": ("num_images", "repeats", "half", "prompt_caption", "seed")
    },
    "t2i_prompt_memorization": {"memorized_prompts": ("num_generations",)},
}
#: Keys of text-to-image models only, left out of the unconditional stages' configs (section -> keys): the
#: experiment refuses other values than the default there, so a config without text2image keeps its digests.
_TEXT2IMAGE_ONLY_KEYS = {"pia": ("guidance_scale",), "memorization": ("copy_descriptor", "clip_path")}
_T2I_ATTACK = "t2i_attack_"
#: The memory and precision levers of text2image (`dualmd.text2image.levers`) and the stages that apply them: all
#: of them the two training stages, TF32 also sampling, the white-box attacks and the memorization stages; every
#: other stage leaves them out, so turning a lever on reruns only the stages it changes.
_TRAINING_LEVERS = (
    "gradient_checkpointing",
    "gradient_accumulation_steps",
    "adam_weight_decay",
    "use_8bit_adam",
    "weight_dtype",
    "encode_batch_size",
)
_LEVERS_OF = {
    "t2i_train": (*_TRAINING_LEVERS, "allow_tf32"),
    "t2i_distill": (*_TRAINING_LEVERS, "allow_tf32"),
    **{s: ("allow_tf32",) for s in ("t2i_sample", "t2i_prompt_memorization", "t2i_prompt_detection")},
}
_ATTACK_SHARED_KEYS = ("weights", "batch_size", "seed", "compile", "mixed_precision")
#: Seeds that differ between replicates: replicate r adds r to each.
REPLICATE_SEEDS = (("split", "seed"), ("split", "half_seed"), ("train", "seed"))


def control_targets(experiment: ExperimentConfig) -> list[str]:
    """Every optional control target of the experiment ("student_ov50", "dpsgd_eps10", ...), from its
    `controls` section."""
    controls = experiment.controls
    return catalog.control_targets(controls.dp_epsilons, controls.overlap_percents)


def checkpoint_targets(experiment: ExperimentConfig) -> list[str]:
    """Every checkpoint target of the experiment ("baseline@120", ...), from `train.snapshot_fractions`."""
    return catalog.checkpoint_targets(experiment.train.snapshot_steps)


def stage_names() -> list[str]:
    """Every stage with a config of its own."""
    return (
        list(STAGE_SECTIONS)
        + [f"attack_{name}" for name in catalog.ATTACKS]
        + list(TEXT2IMAGE_STAGE_SECTIONS)
        + [f"{_T2I_ATTACK}{name}" for name in catalog.TEXT2IMAGE_ATTACKS]
    )


def replicate(experiment: ExperimentConfig, index: int) -> ExperimentConfig:
    """The experiment of replicate `index`: the seeds of REPLICATE_SEEDS shifted by `index` (0: unchanged)."""
    sections: dict[str, Any] = {}
    for section, key in REPLICATE_SEEDS:
        current = sections.get(section, getattr(experiment, section))
        sections[section] = replace(current, **{key: getattr(current, key) + index})
    return replace(experiment, **sections)


def stage_config(experiment: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The resolved sections one stage reads, as plain data (what `results/configs/.../<stage>.*.yaml` holds)."""
    if stage in TEXT2IMAGE_STAGE_SECTIONS or stage.startswith(_T2I_ATTACK):
        return _text2image_stage_config(experiment, stage)
    if stage.startswith("attack_"):
        cfg = _attack_stage_config(experiment, stage.removeprefix("attack_"))
        _drop_text2image_keys(cfg["attack"])
        return cfg
    if stage not in STAGE_SECTIONS:
        raise ConfigError(f"unknown stage {stage!r}; known: {stage_names()}")
    sections = STAGE_SECTIONS[stage]
    if stage == "split" and experiment.split.source == "lists":
        sections += (
            "dataset",
        )  # the lists name files of the image folder, which the dataset section locates
    cfg = {s: getattr(experiment, s).to_dict() for s in sections}
    _drop_text2image_keys(cfg)
    return cfg


def _attack_stage_config(experiment: ExperimentConfig, name: str) -> dict[str, Any]:
    """The shared attack keys, the attack's own sections and, for an attack that runs another (teacher_max's
    `statistic`), that attack's; a sampler attack also gets the sample keys of the sampler it queries."""
    spec = catalog.attack(name)
    full = experiment.attack.to_dict()
    keys = _ATTACK_SHARED_KEYS + experiment.attack.sections_of(spec.name)
    cfg: dict[str, Any] = {"attack": {"names": [spec.name], **{k: full[k] for k in dict.fromkeys(keys)}}}
    sample_keys = experiment.attack.sample_keys_of(spec.name)
    if sample_keys:  # a sampler attack queries the sampler of the sample stage
        sample = experiment.sample.to_dict()
        cfg["sample"] = {k: sample[k] for k in sample_keys}
    return cfg


def _drop_text2image_keys(sections: dict[str, Any]) -> None:
    """Remove the keys of `_TEXT2IMAGE_ONLY_KEYS` from the sections present (in place)."""
    for section, keys in _TEXT2IMAGE_ONLY_KEYS.items():
        for key in keys:
            sections.get(section, {}).pop(key, None)


def _text2image_stage_config(experiment: ExperimentConfig, stage: str) -> dict[str, Any]:
    """A text-to-image stage's sections; `text2image.prompt_diversification` is left out (the target's name
    carries it), so adding a variant reruns nothing of the other. `text2image.memorized_prompts` enters only the
    two stages that read it (`_MEMORIZED_KEYS`), so turning it on changes no other stage's config: those stages
    get the selection file as an input instead. `text2image.resources` enters none: what a job asks the scheduler
    for changes no result."""
    if stage.startswith(_T2I_ATTACK):
        cfg = _attack_stage_config(experiment, stage.removeprefix(_T2I_ATTACK))
        sections: tuple[str, ...] = ("dataset", "text2image")
    elif stage == "t2i_prompt_memorization":
        # the t-error is SecMI's statistic: secmi_stat's attack config (t_sec, k, weights, batch size)
        cfg, sections = _attack_stage_config(experiment, "secmi_stat"), TEXT2IMAGE_STAGE_SECTIONS[stage]
    else:
        cfg, sections = {}, TEXT2IMAGE_STAGE_SECTIONS[stage]
    cfg.update({s: getattr(experiment, s).to_dict() for s in sections})
    text2image = cfg["text2image"]
    del text2image["prompt_diversification"], text2image["resources"]
    kept = _LEVERS_OF.get(stage, ("allow_tf32",) if stage.startswith(_T2I_ATTACK) else ())
    for key in set(_TRAINING_LEVERS + ("allow_tf32",)) - set(kept):
        del text2image[key]
    nested = {k: text2image.pop(k) for k in _NESTED_T2I_SECTIONS}
    if stage in _TEXT2IMAGE_KEYS:
        text2image |= nested
        cfg["text2image"] = {k: text2image[k] for k in _TEXT2IMAGE_KEYS[stage] if k in text2image}
        for section, keys in _NESTED_KEYS.get(stage, {}).items():
            cfg["text2image"][section] = {k: nested[section][k] for k in keys}
    return cfg


def dump_stage_config(cfg: dict[str, Any]) -> str:
    """Canonical YAML text of a stage config (sorted keys): equal configs give equal bytes."""
    return yaml.safe_dump(cfg, sort_keys=True)


def config_digest(cfg: dict[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical text: the name a stage config file carries."""
    return hashlib.sha256(dump_stage_config(cfg).encode()).hexdigest()[:12]
