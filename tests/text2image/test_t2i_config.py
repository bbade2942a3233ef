"""The text2image config section in both validation layers, and config/text2image-tiny.yaml."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from dualmd.config import ConfigError, ExperimentConfig, Text2ImageConfig, load_config

ROOT = Path(__file__).parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
TINY = ROOT / "config/text2image-tiny.yaml"


def test_tiny_config_validates_in_both_layers_and_every_key_is_commented():
    raw = yaml.safe_load(TINY.read_text())
    validate(raw, schema=str(SCHEMA))  # the workflow's layer (fills in schema defaults)
    cfg = ExperimentConfig.from_mapping(raw)  # the package's layer
    assert cfg.text2image.enabled and cfg.text2image.pretrained is None
    assert cfg.dataset.image_size == 32 and cfg.dataset.channels == 3
    assert load_config(TINY) == ExperimentConfig.from_mapping(yaml.safe_load(TINY.read_text()))
    for line in TINY.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"uncommented config key: {line!r}"


def test_defaults_are_off_and_the_schema_fills_the_same_defaults():
    filled = {}
    validate(filled, schema=str(SCHEMA))
    assert Text2ImageConfig.from_mapping(filled["text2image"]) == Text2ImageConfig()
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
    ],
    ids=["dropout", "guidance", "typo", "no-captions", "size", "ddpm"],
)
def test_bad_text2image_values_name_the_key_in_the_package(raw, message):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping(raw)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "section",
    [{"caption_dropout": 1.0}, {"guidance_scale": 0.5}, {"prompt_diversificaton": True}, {"enabled": "yes"}],
    ids=["dropout", "guidance", "typo", "type"],
)
def test_bad_text2image_values_fail_the_schema(section):
    with pytest.raises(Exception, match="text2image|validating|Additional properties"):
        validate({"text2image": section}, schema=str(SCHEMA))
