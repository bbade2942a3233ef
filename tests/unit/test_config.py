"""Config validation: the dataclasses (the one copy of the defaults), the workflow schema (types and bounds) and
config/config.yaml agree and reject bad input."""

import re
import typing
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from dualmd import catalog
from dualmd.config.base import ConfigError, Section
from dualmd.config.experiment import SECTIONS, ExperimentConfig, load_config
from dualmd.config.stages import (
    STAGE_SECTIONS,
    checkpoint_targets,
    config_digest,
    dump_stage_config,
    replicate,
    stage_config,
    stage_names,
)

ROOT = Path(__file__).parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
# Attack timesteps that fit a 100-step schedule (the defaults assume 1000 steps).
SHORT = {
    "pia": {"timestep": 50, "sweep_timesteps": [20]},
    "loss": {"timesteps": [50]},
    "gsa": {"timesteps": [9, 99]},
    "recon": {"timesteps": [50]},
    "sima": {"sweep_timesteps": [0, 20]},
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"block_out_chanels": [8]}}, "model: unknown key(s) ['block_out_chanels']"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"num_train_steps": 1.5}}, "train.num_train_steps: expected an integer"),
        ({"split": {"member_fraction": 1.2}}, "split.member_fraction: must be in (0, 1)"),
        ({"sample": {"scheduler": "euler"}}, "sample.scheduler: 'euler' is not one of"),
        ({"attack": {"secmi": {"t_sec": 95}}}, "attack.secmi.t_sec: must be a multiple of k"),
        ({"attack": {"pia": {"timestep": "x"}}}, "attack.pia.timestep: expected an integer"),
        ({"model": {"block_out_channels": [12, 24], "norm_num_groups": 8}}, "model.norm_num_groups"),
        ({"dataset": {"name": "cifar10"}}, "dataset.root: dataset 'cifar10' needs a local root"),
        ({"bogus": {}}, "unknown config section(s) ['bogus']"),
        ({"train": [1, 2]}, "train: expected a mapping"),
        ({"memorization": {"k_nearest": 1}}, "memorization.k_nearest: must be >= 2"),
        ({"attack": {"names": ["loss", "carlini"]}}, "attack.names: unknown attack(s) ['carlini']"),
        ({"attack": {"lira": {"num_reference": 1}}}, "attack.lira.num_reference: must be from 2 to 9999"),
        ({"attack": {"lira": {"statistic": "gsa"}}}, "attack.lira.statistic: 'gsa' is not one of"),
        ({"attack": {"lira_online": {"num_reference": 3}}}, "attack.lira_online.num_reference: must be even"),
        (
            {"attack": {"lira_online": {"num_reference": 2, "global_variance": False}}},
            "attack.lira_online.num_reference: must be >= 4 online with a per-candidate variance",
        ),
        (
            {"attack": {"lira": {"mode": "online", "recipe": "target", "num_reference": 6}}},
            "attack.lira.num_reference: must be a multiple of 4 and >= 8 online with the target's recipe",
        ),
        (
            {"attack": {"lira_online_target": {"num_reference": 4}}},
            "attack.lira_online_target.num_reference: must be a multiple of 4 and >= 8 online with the target's",
        ),
        ({"attack": {"names": ["loss", "loss"]}}, "attack.names: lists an attack twice"),
        (
            {"sample": {"num_images": 8}, "utility": {"num_images": 16}},
            "utility.num_images: 16 exceeds the 8 images",
        ),
        (
            {"diffusion": {"num_train_timesteps": 100}, "attack": {"pia": {"timestep": 150}}},
            "attack.pia.timestep: 150 is not in [0, 100)",
        ),
        (
            {"diffusion": {"num_train_timesteps": 100}, "train": {"probe_timesteps": [50, 100]}},
            "train.probe_timesteps[1]: 100 is not in [0, 100)",
        ),
        ({"dataset": {"image_size": 10}, "model": {"block_out_channels": [8, 8, 8]}}, "dataset.image_size"),
        ({"metrics": {"tpr_at_fpr": [0.01, 1.5]}}, "metrics.tpr_at_fpr[1]"),
        ({"runs": {"replicates": 0}}, "runs.replicates: must be >= 1"),
        ({"train": {"snapshot_fractions": [0.5, 1.0]}}, "train.snapshot_fractions[1]: 1.0 is not in (0, 1)"),
        ({"utility": {"reference": "nonmembers"}}, "utility.reference"),
        ({"heldout": {"num_bootstrap": 0}}, "heldout.num_bootstrap: must be >= 1"),
        ({"sample": {"variance_type": "learned"}}, "sample.variance_type"),
        ({"train": {"ema_schedule": "warmup"}}, "train.ema_schedule"),
        (
            {"controls": {"dp_epsilons": [10, 0]}},
            "controls.dp_epsilons[1]: a DP-SGD target needs epsilon > 0",
        ),
        ({"controls": {"dp_epsilons": [1e-7]}}, "controls.dp_epsilons[0]"),
        ({"controls": {"dp_epsilons": [10, 10.0]}}, "controls.dp_epsilons: holds duplicates"),
        ({"controls": {"overlaps": [0.5, 0.125]}}, "controls.overlaps[1]: 0.125 is not a whole percentage"),
        ({"controls": {"overlaps": [0.5, 0.50]}}, "controls.overlaps: holds duplicates"),
        (
            {"attack": {"gsa": {"variant": "gsa3"}}},
            "attack.gsa.variant: 'gsa3' is not one of ['gsa1', 'gsa2']",
        ),
        ({"attack": {"gsa": {"timesteps": [99, 99]}}}, "attack.gsa.timesteps: lists a timestep twice"),
        ({"attack": {"gsa": {"train_fraction": 1.0}}}, "attack.gsa.train_fraction: must be in (0, 1)"),
        ({"attack": {"gsa": {"num_trees": 10}}}, "attack.gsa: unknown key(s) ['num_trees']"),
        ({"attack": {"gsa": {"protocol": "online"}}}, "attack.gsa.protocol: 'online' is not one of"),
        (
            {"attack": {"gsa_shadow": {"num_reference": 0}}},
            "attack.gsa_shadow.num_reference: must be from 1 to 9999",
        ),
        (
            {
                "diffusion": {"num_train_timesteps": 100},
                "attack": {**SHORT, "gsa": {"timesteps": [9, 99, 199]}},
            },
            "attack.gsa.timesteps: 199 is not in [0, 100)",
        ),
        (
            {"diffusion": {"num_train_timesteps": 100}, "attack": {**SHORT, "sima": {"timestep": 10}}},
            "attack.sima.sweep_timesteps: 100 is not in [0, 100)",
        ),
        ({"attack": {"sima": {"lp": 0}}}, "attack.sima.lp: must be > 0"),
        (
            {
                "diffusion": {"num_train_timesteps": 100},
                "attack": {**SHORT, "recon": {"timesteps": [50, 150]}},
            },
            "attack.recon.timesteps: 150 is not in [0, 100)",
        ),
        (
            {"attack": {"recon": {"timesteps": [2, 50], "num_steps": 4}}},
            "attack.recon.timesteps: every timestep must be >= num_steps (4)",
        ),
        ({"attack": {"recon": {"num_queries": [1, 0]}}}, "attack.recon.num_queries: counts must be >= 1"),
        ({"attack": {"recon": {"train_fraction": 0}}}, "attack.recon.train_fraction: must be in (0, 1)"),
        (
            {"attack": {"recon": {"interface": "unet"}}},
            "attack.recon.interface: 'unet' is not one of ['chain', 'deployed']",
        ),
        ({"attack": {"recon": {"strengths": [0.1, 1.5]}}}, "attack.recon.strengths: must be in (0, 1]"),
        ({"attack": {"recon": {"strengths": [0.1, 0.1]}}}, "attack.recon.strengths: lists a strength twice"),
        (
            {"attack": {"teacher_max": {"statistic": "gsa"}}},
            "attack.teacher_max.statistic: 'gsa' is not one of",
        ),
        ({"set_inference": {"attack": "carlini"}}, "set_inference.attack: unknown attack 'carlini'"),
        ({"set_inference": {"max_p": 1.0}}, "set_inference.max_p: must be in (0, 1)"),
        ({"set_inference": {"num_repeats": 0}}, "set_inference.num_repeats: must be >= 1"),
        ({"dataset_inference": {"max_p": 0.0}}, "dataset_inference.max_p: must be in (0, 1)"),
        ({"dataset_inference": {"num_repeats": 0}}, "dataset_inference.num_repeats: must be >= 1"),
        ({"train": {"compile": "yes"}}, "train.compile: expected bool"),
        ({"train": {"channels_last": 1}}, "train.channels_last: expected bool"),
        ({"train": {"fused_adam": None}}, "train.fused_adam: expected bool"),
        ({"train": {"ema_lerp": "true"}}, "train.ema_lerp: expected bool"),
        ({"train": {"data_on_device": 0}}, "train.data_on_device: expected bool"),
        ({"train": {"mixed_precision": "fp8"}}, "train.mixed_precision: 'fp8' is not one of"),
        (
            {"sample": {"mixed_precision": "fp16"}},
            "sample.mixed_precision: 'fp16' is not one of ['no', 'bf16']",
        ),
        ({"sample": {"compile": "auto"}}, "sample.compile: expected bool"),
        (
            {"attack": {"mixed_precision": "fp16"}},
            "attack.mixed_precision: 'fp16' is not one of ['no', 'bf16']",
        ),
        ({"attack": {"compile": 2}}, "attack.compile: expected bool"),
        (
            {"train": {"compile": True}, "controls": {"dp_epsilons": [10]}},
            "train.compile: cannot combine with DP-SGD (controls.dp_epsilons)",
        ),
        (
            {"train": {"channels_last": True, "fused_adam": True}, "controls": {"dp_epsilons": [10]}},
            "train.fused_adam: cannot combine with train.channels_last under DP-SGD",
        ),
    ],
    ids=[
        "typo",
        "string-for-float",
        "float-for-int",
        "range",
        "enum",
        "secmi-stride",
        "nested-type",
        "groupnorm",
        "missing-root",
        "unknown-section",
        "section-not-mapping",
        "copy-ratio-k",
        "unknown-attack",
        "lira-one-reference",
        "lira-statistic",
        "lira-online-odd",
        "lira-online-per-candidate-two",
        "lira-online-target-not-quadruples",
        "lira-online-target-four",
        "duplicate-attack",
        "fid-images-exceed-samples",
        "attack-timestep-range",
        "probe-timestep-range",
        "image-size-vs-levels",
        "fpr-bound",
        "replicates",
        "snapshot-fraction",
        "reference-set",
        "heldout-bootstrap",
        "variance-type",
        "ema-schedule",
        "dp-epsilon",
        "dp-epsilon-exponent",
        "dp-duplicates",
        "overlap-fraction",
        "overlap-duplicates",
        "gsa-variant",
        "gsa-duplicate-timestep",
        "gsa-train-fraction",
        "gsa-unknown-key",
        "gsa-protocol",
        "gsa-shadow-num-reference",
        "gsa-timestep-range",
        "sima-default-sweep-beyond-a-short-schedule",
        "sima-norm",
        "recon-timestep-range",
        "recon-chain-longer-than-t",
        "recon-queries",
        "recon-train-fraction",
        "recon-interface",
        "recon-strength-range",
        "recon-duplicate-strength",
        "teacher-max-statistic",
        "set-inference-attack",
        "set-inference-max-p",
        "set-inference-repeats",
        "dataset-inference-max-p",
        "dataset-inference-repeats",
        "train-compile",
        "train-channels-last",
        "train-fused-adam",
        "train-ema-lerp",
        "train-data-on-device",
        "train-precision",
        "sample-precision",
        "sample-compile",
        "attack-precision",
        "attack-compile",
        "compile-with-dp-sgd",
        "nhwc-fused-adam-with-dp-sgd",
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping(raw)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"attack": {"recon": {"timesteps": [0, 50]}}}, "['attack']['recon']['timesteps'][0]"),
        ({"attack": {"recon": {"num_queries": [0]}}}, "['attack']['recon']['num_queries'][0]"),
        ({"attack": {"recon": {"num_steps": 0}}}, "['attack']['recon']['num_steps']"),
        ({"attack": {"recon": {"train_fraction": 1}}}, "['attack']['recon']['train_fraction']"),
        ({"attack": {"recon": {"interface": "unet"}}}, "['attack']['recon']['interface']"),
        ({"attack": {"recon": {"strengths": [0.1, 0]}}}, "['attack']['recon']['strengths'][1]"),
        ({"attack": {"recon": {"strengths": [0.1, 0.1]}}}, "['attack']['recon']['strengths']"),
        ({"attack": {"teacher_max": {"statistic": "gsa"}}}, "['attack']['teacher_max']['statistic']"),
        ({"attack": {"gsa": {"protocol": "online"}}}, "['attack']['gsa']['protocol']"),
        ({"attack": {"gsa_shadow": {"recipe": "student"}}}, "['attack']['gsa_shadow']['recipe']"),
        ({"set_inference": {"attack": "carlini"}}, "['set_inference']['attack']"),
        ({"set_inference": {"num_repeats": 0}}, "['set_inference']['num_repeats']"),
        ({"set_inference": {"max_p": 0}}, "['set_inference']['max_p']"),
        ({"dataset_inference": {"num_repeats": 0}}, "['dataset_inference']['num_repeats']"),
        ({"dataset_inference": {"max_p": 1}}, "['dataset_inference']['max_p']"),
    ],
    ids=[
        "recon-timestep",
        "recon-queries",
        "recon-steps",
        "recon-train-fraction",
        "recon-interface",
        "recon-strength-range",
        "recon-duplicate-strength",
        "teacher-max-statistic",
        "gsa-protocol",
        "gsa-shadow-recipe",
        "set-inference-attack",
        "set-inference-repeats",
        "set-inference-max-p",
        "dataset-inference-repeats",
        "dataset-inference-max-p",
    ],
)
def test_schema_refuses_bad_values_naming_the_key(raw, path):
    """The workflow's first layer (Snakemake's `validate` against the schema) names the offending key too."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError) as err:
        validate(raw, str(ROOT / "workflow/schemas/config.schema.yaml"))
    assert path in str(err.value)


MEMORIZED_BAD = [
    ({"num_images": -1}, "text2image.memorized_prompts.num_images: must be >= 0", "['num_images']"),
    ({"repeats": 0}, "text2image.memorized_prompts.repeats: must be >= 1", "['repeats']"),
    ({"half": "half3"}, "text2image.memorized_prompts.half: 'half3' is not one of", "['half']"),
    (
        {"prompt_caption": -1},
        "text2image.memorized_prompts.prompt_caption: must be >= 0",
        "['prompt_caption']",
    ),
    (
        {"num_generations": 0},
        "text2image.memorized_prompts.num_generations: must be >= 1",
        "['num_generations']",
    ),
    ({"repeat": 4}, "text2image.memorized_prompts: unknown key(s) ['repeat']", "repeat"),
]
MEMORIZED_IDS = ["num-images", "repeats", "half", "prompt-caption", "generations", "typo"]


@pytest.mark.parametrize(("section", "message", "_path"), MEMORIZED_BAD, ids=MEMORIZED_IDS)
def test_bad_memorized_prompts_name_the_key_in_the_package(section, message, _path):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping({"text2image": {"memorized_prompts": section}})
    assert message in str(err.value)


@pytest.mark.parametrize(("section", "_message", "path"), MEMORIZED_BAD, ids=MEMORIZED_IDS)
def test_bad_memorized_prompts_fail_the_schema_naming_the_key(section, _message, path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError) as err:
        validate(
            {"text2image": {"memorized_prompts": section}}, str(ROOT / "workflow/schemas/config.schema.yaml")
        )
    assert "memorized_prompts" in str(err.value) and path in str(err.value)


def test_memorized_prompts_default_off_and_refuse_a_non_mapping():
    from snakemake.utils import validate

    filled: dict = {}
    validate(filled, str(ROOT / "workflow/schemas/config.schema.yaml"))
    assert filled == {}  # the schema adds no defaults: the dataclasses hold them
    cfg = ExperimentConfig.from_mapping(filled)
    assert cfg.text2image.memorized_prompts == ExperimentConfig().text2image.memorized_prompts
    assert not cfg.text2image.memorized_prompts.enabled and cfg.text2image.memorized_prompts.num_images == 0
    on = ExperimentConfig.from_mapping(
        {"text2image": {"enabled": True, "memorized_prompts": {"num_images": 3}}}
    )
    assert on.text2image.memorized_prompts.enabled and on.text2image.memorized_prompts.repeats == 16
    with pytest.raises(ConfigError, match="memorized_prompts: expected a mapping"):
        ExperimentConfig.from_mapping({"text2image": {"enabled": True, "memorized_prompts": 8}})
    with pytest.raises(
        ConfigError, match="memorized_prompts.num_images: memorized prompts belong to the text"
    ):
        ExperimentConfig.from_mapping({"text2image": {"memorized_prompts": {"num_images": 3}}})


def test_memorized_prompts_enter_only_the_stages_that_read_them():
    """Turning memorized prompts on changes the config of their selection stage only: training, sampling and
    attacks read the selection file instead (the workflow adds it as their input)."""
    tiny = yaml.safe_load((ROOT / "config/text2image-tiny.yaml").read_text())
    on = ExperimentConfig.from_mapping(tiny)
    off = ExperimentConfig.from_mapping(
        {**tiny, "text2image": {**tiny["text2image"], "memorized_prompts": {"num_images": 0}}}
    )
    moved = {
        stage
        for stage in stage_names()
        if config_digest(stage_config(on, stage)) != config_digest(stage_config(off, stage))
    }
    # the scoring stage reads only num_generations (the tiny config keeps the default), and runs only when on
    assert moved == {"t2i_memorized_prompts"}
    select = stage_config(on, "t2i_memorized_prompts")
    assert select["text2image"] == {
        "enabled": True,
        "unique_captions": True,  # the selection reads the captions
        "caption_seed": 0,
        "memorized_prompts": {
            "num_images": 8,
            "repeats": 16,
            "half": "half1",
            "prompt_caption": 0,
            "seed": 0,
        },
    }
    score = stage_config(on, "t2i_prompt_memorization")
    assert set(score) == {"attack", "sample", "memorization", "text2image"}
    # the t-error is SecMI's statistic: secmi_stat's attack config
    assert score["attack"] == stage_config(on, "attack_secmi_stat")["attack"]
    assert score["text2image"]["memorized_prompts"] == {"num_generations": 4}
    # a generation setting reruns the scoring, not the selection (nor, through it, the training)
    more = ExperimentConfig.from_mapping(
        {
            **tiny,
            "text2image": {
                **tiny["text2image"],
                "memorized_prompts": {**tiny["text2image"]["memorized_prompts"], "num_generations": 8},
            },
        }
    )
    assert config_digest(stage_config(more, "t2i_memorized_prompts")) == config_digest(select)
    assert config_digest(stage_config(more, "t2i_prompt_memorization")) != config_digest(score)
    for stage in ("t2i_memorized_prompts", "t2i_prompt_memorization"):
        # what the stage writes is what it reads back
        assert load_config_text(dump_stage_config(stage_config(on, stage))).text2image.enabled


def test_default_config_file_loads_and_every_key_is_commented():
    cfg = load_config(ROOT / "config/config.yaml")
    assert cfg.dataset.name == "digits"
    for line in (ROOT / "config/config.yaml").read_text().splitlines():
        stripped = line.strip()
        # every "key: value" line explains itself (section headers open a block)
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"uncommented config key: {line!r}"


def test_every_shipped_config_is_valid():
    """Every experiment config shipped passes both layers: the workflow's schema and the dataclasses."""
    import jsonschema

    paths = sorted((ROOT / "config").glob("*.yaml")) + [ROOT / ".test/config/config.yaml"]
    assert ROOT / "config/config.yaml" in paths and len(paths) >= 6
    for path in paths:
        jsonschema.validate(yaml.safe_load(path.read_text()) or {}, SCHEMA)
        load_config(path)


def test_resolve_checks_a_partial_user_config_across_every_section():
    """A user's config may leave sections out: `resolve` fills them with their defaults and applies every check
    across sections, where `from_mapping` (for stage configs) checks only the sections given."""
    raw = {"attack": {"pia": {"sweep_timesteps": [100, 2000]}}}
    assert ExperimentConfig.from_mapping(raw).attack.pia.sweep_timesteps == (
        100,
        2000,
    )  # no diffusion section
    with pytest.raises(ConfigError, match=r"attack\.pia\.sweep_timesteps: 2000 is not in \[0, 1000\)"):
        ExperimentConfig.resolve(raw)
    assert ExperimentConfig.resolve({}) == ExperimentConfig() == ExperimentConfig.resolve(None)
    with pytest.raises(ConfigError, match=r"unknown config section\(s\) \['atack'\]"):
        ExperimentConfig.resolve({"atack": {}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def load_config_text(text: str) -> ExperimentConfig:
    return ExperimentConfig.from_mapping(yaml.safe_load(text))


def _defaults_in(node: object) -> list[str]:
    """Every place in the schema that holds a `default:` key (as dotted paths)."""
    found = []
    if isinstance(node, dict):
        found += ["default"] if "default" in node else []
        for key, value in node.items():
            found += [f"{key}.{path}" for path in _defaults_in(value)]
    elif isinstance(node, list):
        for item in node:
            found += _defaults_in(item)
    return found


def test_schema_holds_no_defaults():
    """Defaults live in the dataclasses only; the schema checks keys, types, choices and bounds."""
    assert _defaults_in(SCHEMA) == []


def _choices(hint: object) -> set | None:
    """The allowed values of a Literal hint (also inside `X | None` or `tuple[Literal, ...]`), else None."""
    if typing.get_origin(hint) is typing.Literal:
        return set(typing.get_args(hint))
    for arg in typing.get_args(hint):
        if arg is not type(None) and arg is not Ellipsis and (choices := _choices(arg)) is not None:
            return choices
    return None


def _check_section(section_cls: type[Section], spec: dict, where: str) -> None:
    assert spec["type"] == "object" and spec["additionalProperties"] is False, where
    hints = typing.get_type_hints(section_cls)
    names = [f.name for f in fields(section_cls)]
    assert names, where  # every section has keys
    assert set(names) == set(spec["properties"]), where
    for name in names:
        hint, prop = hints[name], spec["properties"][name]
        if isinstance(hint, type) and issubclass(hint, Section):  # a nested section
            _check_section(hint, prop, f"{where}.{name}")
            continue
        choices = _choices(hint)
        enum = prop.get("enum", prop.get("items", {}).get("enum"))
        if choices is not None:
            assert enum is not None and set(enum) == choices, f"{where}.{name}"


def test_schema_matches_dataclasses():
    """Every dataclass field has a schema property and every property a field; choices agree."""
    assert SCHEMA["additionalProperties"] is False
    assert set(SCHEMA["properties"]) == set(SECTIONS)
    for name, section_cls in SECTIONS.items():
        _check_section(section_cls, SCHEMA["properties"][name], name)


def test_the_workflow_config_holds_every_key_a_report_caption_reads():
    """common.smk fills Snakemake's `config` from the dataclasses; every `snakemake.config[...]` key a report
    caption reads exists there even when the user's config leaves the section out."""
    filled = ExperimentConfig().to_dict()
    paths = []
    for caption in (ROOT / "workflow/report").glob("*.rst"):
        for match in re.finditer(r"snakemake\.config((?:\[\"\w+\"\])+)", caption.read_text()):
            paths.append(re.findall(r"\w+", match.group(1)))
    assert len(paths) >= 3
    for keys in paths:
        node = filled
        for key in keys:
            assert key in node, keys
            node = node[key]


def test_stage_config_holds_exactly_the_sections_a_stage_reads():
    experiment = load_config(ROOT / "config/config.yaml")
    for stage, sections in STAGE_SECTIONS.items():
        cfg = stage_config(experiment, stage)
        assert list(cfg) == list(sections)
        # what the stage writes is what the stage reads back, defaults included
        assert ExperimentConfig.from_mapping(yaml.safe_load(dump_stage_config(cfg))) == ExperimentConfig(
            **{s: getattr(experiment, s) for s in sections}
        )
    pia = stage_config(experiment, "attack_pian")["attack"]
    shared = {"names", "weights", "batch_size", "seed", "compile", "mixed_precision"}
    assert pia["names"] == ["pian"] and set(pia) == shared | {"pia"}
    # recon queries the sampler the sample stage runs: its weights and DualMD's alternation, nothing else
    recon = stage_config(experiment, "attack_recon")
    assert recon["sample"] == {"weights": "ema", "dualmd_alternation": "step_index"}
    assert set(recon["attack"]) == shared | {"recon"}
    assert load_config_text(dump_stage_config(recon)).sample.dualmd_alternation == "step_index"


def test_recon_through_the_deployed_sampler_reads_its_step_grid_and_the_chain_does_not():
    """The deployed interface's stage config holds the sample keys that fix the grid (so changing the sampler reruns
    it); the chain's holds none of them, so that changing the sampler's steps reruns no chain attack."""
    chain = ExperimentConfig.from_mapping({"sample": {"num_inference_steps": 20}})
    deployed = ExperimentConfig.from_mapping(
        {"sample": {"num_inference_steps": 20}, "attack": {"recon": {"interface": "deployed"}}}
    )
    assert stage_config(chain, "attack_recon")["sample"] == {
        "weights": "ema",
        "dualmd_alternation": "step_index",
    }
    assert stage_config(deployed, "attack_recon")["sample"] == {
        "weights": "ema",
        "dualmd_alternation": "step_index",
        "scheduler": "ddim",
        "num_inference_steps": 20,
        "eta": 0.0,
        "variance_type": "fixed_small",
        "clip_sample": True,
    }
    assert not chain.attack.queries_deployed_sampler("recon") and deployed.attack.queries_deployed_sampler(
        "recon"
    )
    assert not deployed.attack.queries_deployed_sampler("teacher_max")
    fewer_steps = ExperimentConfig.from_mapping({"attack": {"recon": {"interface": "deployed"}}})
    digests = [config_digest(stage_config(e, "attack_recon")) for e in (chain, ExperimentConfig())]
    assert digests[0] == digests[1]
    assert config_digest(stage_config(deployed, "attack_recon")) != config_digest(
        stage_config(fewer_steps, "attack_recon")
    )
    strong = yaml.safe_load((ROOT / "config/attacks-strong.yaml").read_text())["attack"]["recon"]
    assert strong["interface"] == "deployed"


def test_a_changed_section_changes_only_the_digests_of_the_stages_that_read_it():
    base = ExperimentConfig()
    changed = ExperimentConfig.from_mapping({"attack": {"pia": {"timestep": 100}}})
    moved = {
        stage
        for stage in stage_names()
        if config_digest(stage_config(base, stage)) != config_digest(stage_config(changed, stage))
    }
    readers = {f"attack_{a.name}" for a in catalog.ATTACKS.values() if "pia" in a.reads}
    # teacher_max runs its statistic, PIA by default, and reads PIA's section through it
    assert moved == readers | {"attack_teacher_max", "t2i_attack_pia", "t2i_attack_pian"}
    assert readers == {"attack_pia", "attack_pian"}
    loss_statistic = ExperimentConfig.from_mapping({"attack": {"teacher_max": {"statistic": "loss"}}})
    assert set(stage_config(loss_statistic, "attack_teacher_max")["attack"]) == {
        *("names", "weights", "batch_size", "seed", "compile", "mixed_precision"),
        *("teacher_max", "loss"),
    }
    # key order and defaults written out do not matter, only values
    assert config_digest({"b": 1, "a": [1, 2]}) == config_digest({"a": [1, 2], "b": 1})


def test_gsa_protocols_name_their_reference_models_and_keep_the_slice_digest():
    """The slice protocol (gsa's default) queries no reference model and writes GSA's keys of before the shadow
    protocol, so its stage config keeps its digest; the shadow protocol names LiRA's offline reference models of
    its recipe (built like each target by default), and gsa_shadow is the same keys with that protocol."""
    targets = ["baseline", "teacher1", "student", "selfdistill", "baseline@24"]
    default = ExperimentConfig().attack
    assert "gsa" in default.names and "gsa_shadow" not in default.names
    assert default.reference_section("gsa") is None and default.reference_models("gsa", targets) == []
    written = stage_config(ExperimentConfig(), "attack_gsa")["attack"]["gsa"]
    old_keys = {"variant", "timesteps", "train_fraction", "num_estimators", "max_depth", "learning_rate"}
    assert set(written) == old_keys | {"batch_size"}
    sets = [f"reference{k}" for k in (1, 2)]
    built_like = sets + [f"{r}_{role}" for role in ("teacher1", "student") for r in sets]
    assert default.reference_models("gsa_shadow", targets) == [f"reference{k}" for k in (1, 2, 3, 4)] + [
        f"reference{k}_{role}" for role in ("teacher1", "student") for k in (1, 2, 3, 4)
    ]
    shadow = ExperimentConfig.from_mapping(
        {"attack": {"gsa": {"protocol": "shadow", "num_reference": 2}, "gsa_shadow": {"recipe": "baseline"}}}
    ).attack
    assert shadow.reference_models("gsa", targets) == built_like
    assert shadow.gsa.reference_models("baseline@24") == ["reference1@24", "reference2@24"]
    assert shadow.reference_models("gsa_shadow", targets) == [f"reference{k}" for k in (1, 2, 3, 4)]
    assert (
        stage_config(ExperimentConfig(), "attack_gsa_shadow")["attack"]["gsa_shadow"]["protocol"] == "shadow"
    )
    assert "gsa" not in stage_config(ExperimentConfig(), "attack_gsa_shadow")["attack"]
    assert (
        stage_config(
            ExperimentConfig.from_mapping({"attack": {"gsa": {"protocol": "shadow"}}}), "attack_gsa"
        )["attack"]["gsa"]["protocol"]
        == "shadow"
    )


def test_lira_online_target_names_the_shadow_sets_rebuilt_like_each_target():
    """lira_online_target's section defaults to the online mode and the target's recipe; its reference models are
    the shadow models of each target's role (the baseline and its checkpoints: lira_online's shadow<k>), K a
    multiple of 4."""
    # lira_online_target at its defaults, lira_online at the same K
    cfg = ExperimentConfig.from_mapping({"attack": {"lira_online": {"num_reference": 8}}}).attack
    section = cfg.lira_online_target
    assert (section.mode, section.recipe, section.num_reference) == ("online", "target", 8)
    assert "lira_online_target" not in cfg.names  # opt-in, as every LiRA attack
    targets = ["baseline", "baseline@24", "teacher1", "teacher2", "student", "selfdistill"]
    shadows = [f"shadow{k}" for k in range(1, 9)]
    assert cfg.reference_models("lira_online_target", targets) == shadows + [
        f"{s}_{role}" for role in ("teacher1", "teacher2", "student") for s in shadows
    ]
    assert cfg.reference_models("lira_online", targets) == shadows  # the baseline's recipe: shadow<k> only
    assert section.reference_models("baseline@24") == shadows  # online shadow models keep no checkpoints


def test_replicates_shift_only_their_seeds():
    base = ExperimentConfig()
    assert replicate(base, 0) == base
    second = replicate(base, 2)
    assert (second.split.seed, second.split.half_seed, second.train.seed) == (
        base.split.seed + 2,
        base.split.half_seed + 2,
        base.train.seed + 2,
    )
    assert second.sample == base.sample and second.attack == base.attack and second.model == base.model


def test_snapshot_steps_round_fractions_of_the_run_and_name_checkpoints():
    cfg = ExperimentConfig.from_mapping({"train": {"num_train_steps": 1200}})
    assert cfg.train.snapshot_steps == (24, 60, 120, 300, 600)  # 2, 5, 10, 25 and 50 % of the steps
    assert checkpoint_targets(cfg) == [f"baseline@{s}" for s in (24, 60, 120, 300, 600)]
    tiny = ExperimentConfig.from_mapping(
        {"train": {"num_train_steps": 4, "snapshot_fractions": [0.1, 0.5, 0.9]}}
    )
    assert tiny.train.snapshot_steps == (
        2,
    )  # round(0.4) = 0 and round(3.6) = 4 (the final model) are dropped
    assert checkpoint_targets(ExperimentConfig.from_mapping({"train": {"snapshot_fractions": []}})) == []


FAST_PATHS = {
    "train": {
        "mixed_precision": "bf16",
        "channels_last": True,
        "compile": True,
        "fused_adam": True,
        "ema_lerp": True,
        "data_on_device": True,
    },
    "sample": {"compile": True, "mixed_precision": "bf16"},
    "attack": {"compile": True, "mixed_precision": "bf16"},
}


def test_fast_path_options_round_trip_through_validation_and_stage_configs():
    import jsonschema

    jsonschema.validate(FAST_PATHS, SCHEMA)  # the workflow's layer accepts them
    experiment = ExperimentConfig.from_mapping(FAST_PATHS)
    for section, values in FAST_PATHS.items():
        assert {k: experiment.to_dict()[section][k] for k in values} == values
    # each stage's config file carries its options, and reads back to the same values
    for stage, section in (
        ("train", "train"),
        ("distill", "train"),
        ("sample", "sample"),
        ("attack_pia", "attack"),
    ):
        written = yaml.safe_load(dump_stage_config(stage_config(experiment, stage)))
        assert {k: written[section][k] for k in FAST_PATHS[section]} == FAST_PATHS[section], stage
    # DP-SGD controls combine with every fast path but compile, and with fused Adam only on NCHW weights
    for off in ("channels_last", "fused_adam"):
        train = {**FAST_PATHS["train"], "compile": False, off: False}
        ExperimentConfig.from_mapping({**FAST_PATHS, "train": train, "controls": {"dp_epsilons": [10]}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "compile", "yes"),
        ("train", "data_on_device", 1),
        ("sample", "mixed_precision", "fp16"),
        ("attack", "compile", "no"),
    ],
    ids=["train-compile", "train-data-on-device", "sample-precision", "attack-compile"],
)
def test_schema_rejects_bad_fast_path_values_naming_the_key(section, key, value):
    import jsonschema

    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate({section: {key: value}}, SCHEMA)
    assert list(err.value.path) == [section, key]


@pytest.mark.parametrize(
    ("raw", "message", "schema_path"),
    [
        (
            {"attack": {"pang_wang": {"encoder_image_size": 64}}},
            "attack.pang_wang.encoder_image_size: must be >= 75",
            "['attack']['pang_wang']['encoder_image_size']",
        ),
        (
            {"attack": {"pang_wang": {"encoder_image_size": 128.5}}},
            "attack.pang_wang.encoder_image_size: expected an integer",
            "['attack']['pang_wang']['encoder_image_size']",
        ),
        (
            {"utility": {"clip_path": 3}},
            "utility.clip_path: expected",
            "['utility']['clip_path']",
        ),
    ],
    ids=["encoder-size-below-75", "encoder-size-float", "clip-path-type"],
)
def test_t2i_utility_and_encoder_keys_are_checked_in_both_layers(raw, message, schema_path):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping(raw)
    assert message in str(err.value)
    with pytest.raises(WorkflowError) as err:
        validate(raw, str(ROOT / "workflow/schemas/config.schema.yaml"))
    assert schema_path in str(err.value)


def test_encoder_size_is_inception_only_and_clip_needs_text2image():
    with pytest.raises(ConfigError, match="encoder_image_size: applies to the inception encoder only"):
        ExperimentConfig.from_mapping(
            {"attack": {"pang_wang": {"encoder": "pixels", "encoder_image_size": 128}}}
        )
    with pytest.raises(
        ConfigError, match="utility.clip_path: the CLIP score compares images with their prompts"
    ):
        ExperimentConfig.from_mapping({"utility": {"clip_path": "clip"}, "text2image": {"enabled": False}})
    cfg = ExperimentConfig.from_mapping(
        {
            "utility": {"clip_path": "clip"},
            "text2image": {"enabled": True},
            "attack": {"names": ["loss", "pang_wang"], "pang_wang": {"encoder_image_size": 128}},
        }
    )
    assert cfg.utility.clip_path == "clip" and cfg.attack.pang_wang.encoder_image_size == 128
    defaults = ExperimentConfig()
    assert defaults.utility.clip_path is None and defaults.attack.pang_wang.encoder_image_size == 299
