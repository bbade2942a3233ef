"""The text2image config section in both validation layers, and config/text2image-tiny.yaml."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from dualmd.config.base import ConfigError
from dualmd.config.experiment import ExperimentConfig, load_config
from dualmd.config.stages import config_digest, stage_config, stage_names
from dualmd.config.text2image import Text2ImageConfig

ROOT = Path(__file__).parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
TINY = ROOT / "config/text2image-tiny.yaml"


def test_tiny_config_validates_in_both_layers_and_every_key_is_commented():
    raw = yaml.safe_load(TINY.read_text())
    validate(raw, schema=str(SCHEMA))  # the workflow's layer (types, choices, bounds)
    cfg = ExperimentConfig.from_mapping(raw)  # the package's layer
    assert cfg.text2image.enabled and cfg.text2image.pretrained is None
    assert cfg.dataset.image_size == 32 and cfg.dataset.channels == 3
    assert load_config(TINY) == ExperimentConfig.from_mapping(yaml.safe_load(TINY.read_text()))
    for line in TINY.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"uncommented config key: {line!r}"


def test_defaults_are_off_and_come_from_the_dataclasses_only():
    filled = {}
    validate(filled, schema=str(SCHEMA))
    assert filled == {}  # the schema fills no defaults
    assert ExperimentConfig.from_mapping(filled).text2image == Text2ImageConfig()
    assert not ExperimentConfig().text2image.enabled


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"text2image": {"caption_dropout": 1.0}}, "text2image.caption_dropout: must be in [0, 1)"),
        ({"text2image": {"guidance_scale": 0.5}}, "text2image.guidance_scale: must be >= 1"),
        (
            {"text2image": {"prompt_diversificaton": True}},
            "text2image: unknown key(s) ['prompt_diversificaton']",
        ),
        (
            {"dataset": {"name": "cifar10", "root": "x"}, "text2image": {"enabled": True}},
            "dataset.name: text2image needs captions",
        ),
        (
            {"dataset": {"image_size": 28}, "text2image": {"enabled": True}},
            "dataset.image_size: 28 is not a multiple of 8",
        ),
        (
            {"sample": {"scheduler": "ddpm"}, "text2image": {"enabled": True}},
            "sample.scheduler: text2image samples",
        ),
        (
            {"text2image": {"prompt_diversification": [True, True]}},
            "text2image.prompt_diversification: holds duplicates",
        ),
        (
            {"attack": {"names": ["loss", "gsa"]}, "text2image": {"enabled": True}},
            "attack.names: ['gsa'] do not run on text-to-image models",
        ),
        (
            {"attack": {"names": ["loss", "pang_wang"]}, "text2image": {"enabled": False}},
            "attack.names: ['pang_wang'] attack text-to-image samplers only",
        ),
        (
            {"attack": {"pang_wang": {"encoder": "deit"}}},
            "attack.pang_wang.encoder_path: encoder 'deit' needs the local folder",
        ),
        (
            {"attack": {"pang_wang": {"fit_fraction": 1.0}}},
            "attack.pang_wang.fit_fraction: must be in (0, 1)",
        ),
        (
            {
                "dataset": {"name": "image_folder", "root": "x"},
                "text2image": {"enabled": True, "unique_captions": True},
            },
            "text2image.unique_captions: tags the digits' template captions",
        ),
        (
            {"text2image": {"resources": {"finetune": {"gpu": -1}}}},
            "text2image.resources.finetune.gpu: must be >= 0",
        ),
        (
            {"text2image": {"resources": {"train": {"gpu": 1}}}},
            "text2image.resources: unknown job kind(s) ['train']",
        ),
        (
            {"text2image": {"resources": {"sample": {"mem_gb": 16}}}},
            "text2image.resources.sample: unknown key(s) ['mem_gb']",
        ),
        (
            {"text2image": {"mitigation": {"max_iterations": 0}}},
            "text2image.mitigation.max_iterations: must be >= 1",
        ),
        (
            {
                "sample": {"num_inference_steps": 5},
                "text2image": {"enabled": True, "mitigation": {"num_steps": 6}},
            },
            "text2image.mitigation.num_steps: 6 is more than the 5 DDIM steps",
        ),
        (
            {"text2image": {"enabled": True, "prompt_detection": {"memorized_list": "m.txt"}}},
            "text2image.prompt_detection: memorized_list and ordinary_list go together",
        ),
        (
            {"text2image": {"prompt_detection": {"memorized_list": "m.txt", "ordinary_list": "o.txt"}}},
            "text2image.prompt_detection: prompt detection belongs to the text-to-image experiment",
        ),
        (
            {"text2image": {"enabled": True, "prompt_detection": {"num_generations": 0}}},
            "text2image.prompt_detection.num_generations: must be >= 1",
        ),
        (
            {"attack": {"pia": {"guidance_scale": 7.5}}, "text2image": {"enabled": False}},
            "attack.pia.guidance_scale: classifier-free guidance needs a text-conditional model",
        ),
        (
            {"attack": {"pia": {"guidance_scale": 0.5}}},
            "attack.pia.guidance_scale: must be >= 1",
        ),
        (
            {"memorization": {"copy_descriptor": "sscd.pt"}, "text2image": {"enabled": False}},
            "memorization.copy_descriptor: Table 5's scores are computed by the text-to-image memorization stage",
        ),
    ],
    ids=[
        "dropout",
        "guidance",
        "typo",
        "no-captions",
        "size",
        "ddpm",
        "pd-twice",
        "attack",
        "blackbox-off",
        "deit-no-path",
        "fit-fraction",
        "unique-folder",
        "gpu-negative",
        "resources-kind-typo",
        "resources-key-typo",
        "mitigation-iterations",
        "mitigation-steps",
        "detection-one-list",
        "detection-off",
        "detection-generations",
        "pia-guidance-unconditional",
        "pia-guidance-below-1",
        "descriptor-unconditional",
    ],
)
def test_bad_text2image_values_name_the_key_in_the_package(raw, message):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping(raw)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "section",
    [
        {"caption_dropout": 1.0},
        {"guidance_scale": 0.5},
        {"prompt_diversificaton": True},
        {"enabled": "yes"},
        {"prompt_diversification": []},
        {"prompt_diversification": [False, False]},
        {"resources": {"distill": {"mem_mb": 0}}},
        {"resources": {"train": {"gpu": 1}}},
        {"mitigation": {"lr": 0}},
        {"mitigation": {"target_loss": -1.0}},
        {"prompt_detection": {"num_steps": 0}},
        {"prompt_detection": {"memorized": "m.txt"}},
        {"unique_captions": "yes"},
        {"caption_seed": 0.5},
        {"pretrain_text_encoder": 1},
    ],
    ids=[
        "dropout",
        "guidance",
        "typo",
        "type",
        "pd-empty",
        "pd-twice",
        "mem-zero",
        "resources-kind-typo",
        "mitigation-lr",
        "mitigation-target",
        "detection-steps",
        "detection-typo",
        "unique-type",
        "caption-seed-type",
        "encoder-type",
    ],
)
def test_bad_text2image_values_fail_the_schema(section):
    with pytest.raises(Exception, match="text2image|validating|Additional properties"):
        validate({"text2image": section}, schema=str(SCHEMA))


@pytest.mark.parametrize(
    ("value", "variants"), [(False, (False,)), (True, (True,)), ([False, True], (False, True))]
)
def test_prompt_diversification_names_the_variants_in_both_layers(value, variants):
    raw = {"text2image": {"prompt_diversification": value}}
    validate(raw, schema=str(SCHEMA))
    assert ExperimentConfig.from_mapping(raw).text2image.variants == variants


def test_text2image_stage_configs_leave_the_variants_out():
    """Adding the prompt-diversified variant changes no stage config: the target's name carries it."""
    raw = yaml.safe_load(TINY.read_text())
    one = ExperimentConfig.from_mapping(
        {**raw, "text2image": {**raw["text2image"], "prompt_diversification": False}}
    )
    both = ExperimentConfig.from_mapping(
        {**raw, "text2image": {**raw["text2image"], "prompt_diversification": [False, True]}}
    )
    for stage in [s for s in stage_names() if s.startswith("t2i_")]:
        cfg = stage_config(both, stage)
        assert "prompt_diversification" not in cfg["text2image"]
        # every stage reads the captions of the dataset, but the scoring of the memorized prompts (in their file)
        # and the detection on prompt lists
        assert ("dataset" in cfg) == (stage not in ("t2i_prompt_memorization", "t2i_prompt_detection"))
        assert config_digest(cfg) == config_digest(stage_config(one, stage))
        assert ExperimentConfig.from_mapping(cfg).text2image.enabled  # what the stage reads back
    assert set(stage_config(both, "t2i_attack_pia")) == {"attack", "dataset", "text2image"}


def test_resources_change_no_stage_config():
    """text2image.resources is what jobs ask the scheduler for: no stage reads it, so changing it reruns nothing."""
    tiny = ExperimentConfig.from_mapping(yaml.safe_load(TINY.read_text()))
    raw = yaml.safe_load(TINY.read_text())
    raw["text2image"]["resources"] = {"finetune": {"gpu": 1, "mem_mb": 32000, "runtime": 360}}
    sized = ExperimentConfig.from_mapping(raw)
    assert sized.text2image.resources.finetune.mem_mb == 32000
    assert sized.text2image.resources.report == tiny.text2image.resources.report  # other kinds keep defaults
    for stage in stage_names():
        assert config_digest(stage_config(sized, stage)) == config_digest(stage_config(tiny, stage)), stage


def test_levers_enter_only_the_stage_configs_of_the_stages_that_apply_them():
    """Training levers enter fine-tuning and distillation; TF32 also sampling, the attacks and the memorization
    stages; no other stage."""
    base = ExperimentConfig.from_mapping(yaml.safe_load(TINY.read_text()))
    raw = yaml.safe_load(TINY.read_text())
    raw["text2image"].update(gradient_checkpointing=True, weight_dtype="bf16", adam_weight_decay=0.01)
    levers = ExperimentConfig.from_mapping(raw)
    raw["text2image"]["allow_tf32"] = True
    tf32 = ExperimentConfig.from_mapping(raw)
    t2i = [s for s in stage_names() if s.startswith("t2i_")]
    moved = {s for s in t2i if config_digest(stage_config(base, s)) != config_digest(stage_config(levers, s))}
    assert moved == {"t2i_train", "t2i_distill"}
    moved = {s for s in t2i if config_digest(stage_config(levers, s)) != config_digest(stage_config(tf32, s))}
    assert moved == {
        "t2i_train",
        "t2i_distill",
        "t2i_sample",
        "t2i_prompt_memorization",
        "t2i_prompt_detection",
    } | {s for s in t2i if s.startswith("t2i_attack_")}
    assert ExperimentConfig.from_mapping(stage_config(tf32, "t2i_train")).text2image.weight_dtype == "bf16"
    # the unconditional stages never see the text2image section
    assert all(
        config_digest(stage_config(base, s)) == config_digest(stage_config(tf32, s))
        for s in stage_names()
        if not s.startswith("t2i_")
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"gradient_accumulation_steps": 0}, "text2image.gradient_accumulation_steps: must be >= 1"),
        ({"adam_weight_decay": -1.0}, "text2image.adam_weight_decay: must be >= 0"),
        ({"weight_dtype": "fp8"}, "text2image.weight_dtype"),
        ({"encode_batch_size": 0}, "text2image.encode_batch_size: must be >= 1"),
    ],
)
def test_bad_levers_fail_both_layers_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        ExperimentConfig.from_mapping({"text2image": section})
    with pytest.raises(Exception, match="text2image|validating"):
        validate({"text2image": section}, schema=str(SCHEMA))


def test_accumulation_must_divide_the_effective_batch():
    with pytest.raises(ConfigError, match="train.batch_size 16 .* not divisible by 3"):
        ExperimentConfig.from_mapping(
            {"train": {"batch_size": 16}, "text2image": {"gradient_accumulation_steps": 3}}
        )
    cfg = ExperimentConfig.from_mapping(
        {"train": {"batch_size": 16}, "text2image": {"gradient_accumulation_steps": 4}}
    )
    assert cfg.train.batch_size == 16  # the effective batch; micro-batches of 4


def merged(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in key by key, recursively."""
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


def test_memorization_options_enter_only_the_stages_that_read_them():
    """The mitigation, the copy descriptor and the CLIP model enter the prompt-memorization stage, the prompt lists
    the detection stage, PIA's guidance the PIA and PIAN stages; no unconditional stage config moves."""
    raw = yaml.safe_load(TINY.read_text())
    base = ExperimentConfig.from_mapping(raw)
    changes = {
        "t2i_prompt_memorization": [
            {"text2image": {"mitigation": {"enabled": True, "target_loss": 1.0}}},
            {"memorization": {"copy_descriptor": "sscd.pt"}},
            {"memorization": {"clip_path": "clip"}},
        ],
        "t2i_prompt_detection": [
            {"text2image": {"prompt_detection": {"memorized_list": "m.txt", "ordinary_list": "o.txt"}}}
        ],
        "t2i_attack_pia t2i_attack_pian": [{"attack": {"pia": {"guidance_scale": 7.5}}}],
    }
    for stages, edits in changes.items():
        for edit in edits:
            cfg = ExperimentConfig.from_mapping(merged(raw, edit))
            moved = {
                s
                for s in stage_names()
                if config_digest(stage_config(base, s)) != config_digest(stage_config(cfg, s))
            }
            assert moved == set(stages.split()), edit
    pia = stage_config(ExperimentConfig.from_mapping(raw), "attack_pia")
    assert "guidance_scale" not in pia["attack"]["pia"]  # an unconditional stage config keeps its digest
    assert {"copy_descriptor", "clip_path"}.isdisjoint(stage_config(base, "memorization")["memorization"])
    assert ExperimentConfig.from_mapping(
        stage_config(base, "t2i_prompt_memorization")
    ).text2image.mitigation == (base.text2image.mitigation)
