"""Config validation: the dataclasses, the workflow schema and config/config.yaml agree and reject bad input."""

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from dualmd.config import SECTIONS, ConfigError, ExperimentConfig, load_config

ROOT = Path(__file__).parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


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
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_mapping(raw)
    assert message in str(err.value)


def test_default_config_file_loads_and_every_key_is_commented():
    cfg = load_config(ROOT / "config/config.yaml")
    assert cfg.dataset.name == "digits"
    for line in (ROOT / "config/config.yaml").read_text().splitlines():
        stripped = line.strip()
        # every "key: value" line explains itself (section headers open a block)
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"uncommented config key: {line!r}"


def test_every_shipped_config_is_valid():
    for path in [
        ROOT / "config/config.yaml",
        ROOT / "config/paper-cifar10.yaml",
        ROOT / ".test/config/config.yaml",
    ]:
        load_config(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def _schema_defaults(props: dict) -> dict:
    out = {}
    for key, spec in props.items():
        if spec.get("type") == "object":
            out[key] = _schema_defaults(spec["properties"])
        else:
            out[key] = spec.get("default")
    return out


def test_schema_matches_dataclasses():
    """Keys and defaults of the workflow schema equal the package dataclasses (one source of truth each)."""
    schema = _schema_defaults(SCHEMA["properties"])
    assert set(schema) == set(SECTIONS)
    defaults = ExperimentConfig().to_dict()
    for section, values in defaults.items():
        assert set(schema[section]) == set(values), section
        for key, value in values.items():
            if isinstance(value, dict):
                assert schema[section][key] == value, f"{section}.{key}"
            elif isinstance(value, float):
                assert schema[section][key] == pytest.approx(value), f"{section}.{key}"
            else:
                assert schema[section][key] == value, f"{section}.{key}"
    for section_cls in SECTIONS.values():
        assert [f.name for f in fields(section_cls)]  # every section has keys
