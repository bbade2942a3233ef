"""Stage declarations: read from the source text, checked for conflicts, and turned into command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualmd import cli
from dualmd.stage import command_line, config_sections, declarations, read_declarations

STAGE = '''
from pathlib import Path
from dualmd.stage import stage


@stage("fit", config="fit", sections=("model", "train"), distributed=True)
def fit(
    *,
    config: Path,
    teachers: dict[str, Path],
    scores: list[Path],
    model: str,
    out: Path,
    memorized: Path | None = None,
    references: dict[str, Path] | None = None,
    loss: str = "mse",
    tag: str | None = None,
) -> None:
    """Fit one model.

    The long description is not the summary.

    Args:
        scores: per-sample score files,
            one per target.
        out: where the model goes.
    """


@stage("refit", config="fit")
def refit(*, config: Path, out: Path) -> None:
    """Fit again."""


def helper(x: int) -> int:
    return x
'''


def _stages(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "stages"
    folder.mkdir()
    (folder / "fitting.py").write_text(text)
    return folder


def test_declarations_are_read_from_the_source(tmp_path):
    specs = read_declarations(_stages(tmp_path, STAGE))
    assert list(specs) == ["fit", "refit"]
    fit = specs["fit"]
    assert (fit.module, fit.function, fit.config, fit.sections, fit.distributed) == (
        "fitting",
        "fit",
        "fit",
        ("model", "train"),
        True,
    )
    assert fit.summary == "Fit one model."
    kinds = {o.name: (o.kind, o.flag, o.required) for o in fit.options}
    assert kinds == {
        "config": ("path", "--config", True),
        "teachers": ("named_paths", "--teachers", True),
        "scores": ("paths", "--scores", True),
        "model": ("text", "--model", True),
        "out": ("path", "--out", True),
        "memorized": ("optional_path", "--memorized", False),
        "references": ("optional_named_paths", "--references", False),
        "loss": ("text", "--loss", False),  # a name with a default may be left out
        "tag": ("optional_text", "--tag", False),
    }
    assert {o.name: o.default for o in fit.options if o.default is not None} == {"loss": "mse"}
    helps = {o.name: o.help for o in fit.options}
    assert helps["scores"] == "per-sample score files, one per target."  # continuation line joined
    assert helps["out"] == "where the model goes."
    assert helps["config"].startswith("stage config YAML")  # a name every stage means the same by
    assert specs["refit"].sections is None
    assert config_sections(specs) == {"fit": ("model", "train")}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('@stage("refit", config="fit")', '@stage("fit", config="fit")', "'fit' declared twice"),
        ('@stage("refit", config="fit")', '@stage("refit", config="fit", sections=("x",))', "two stages"),
        ('@stage("refit", config="fit")', '@stage("refit", config="other")', "no stage declares"),
        ('out: Path) -> None:\n    """Fit again', 'out: int) -> None:\n    """Fit again', "'out' is 'int'"),
        ("def refit(*, config", "def refit(config", "keyword-only"),
        ("memorized: Path | None = None", 'memorized: Path | None = "m.json"', "only a name"),
    ],
    ids=[
        "command-twice",
        "config-twice",
        "config-undeclared",
        "unsupported-type",
        "positional",
        "path-default",
    ],
)
def test_bad_declarations_are_refused_with_the_reason(tmp_path, old, new, message):
    assert old in STAGE
    with pytest.raises(ValueError, match=message):
        read_declarations(_stages(tmp_path, STAGE.replace(old, new)))


def test_per_attack_configs_need_no_declaring_stage():
    specs = declarations()
    assert specs["attack"].config == "attack_{attack}" and specs["attack"].sections is None
    assert config_sections(specs)["train"] == ("model", "diffusion", "train")
    assert config_sections(specs)["utility"] == (
        "utility",
    )  # declared by `utility`, read by reference-features


def test_command_line_fills_every_option_from_the_values(tmp_path):
    spec = read_declarations(_stages(tmp_path, STAGE))["fit"]
    values = {
        "config": "c.yaml",
        "teachers": ["models/teacher1", "models/teacher2"],  # directories: named by their name
        "scores": ["s/loss/baseline.npz", "s/loss/student.npz"],
        "model": "student",
        "out": "models/student",
        "memorized": [],  # an input function that found nothing: the option is left out
        "references": {"reference1": "models/r1"},
    }
    assert command_line(spec, values, threads=2, launch="python -m dualmd") == (
        "python -m dualmd fit --config c.yaml --teachers teacher1=models/teacher1 "
        "--teachers teacher2=models/teacher2 --scores s/loss/baseline.npz s/loss/student.npz --model student "
        "--out models/student --references reference1=models/r1 --threads 2"
    )
    named_files = command_line(
        spec,
        {**values, "teachers": ["s/a.npz"], "memorized": "m.json", "references": None},
        threads=1,
        launch="x",
    )
    assert "--teachers a=s/a.npz" in named_files  # a file: named by its stem
    assert "--memorized m.json" in named_files and "--references" not in named_files
    assert "--loss" not in named_files  # left to the function's default
    assert "--loss l1 --tag t" in command_line(
        spec, {**values, "loss": "l1", "tag": "t"}, threads=1, launch="x"
    )
    # paths with spaces survive the shell
    assert "--out 'my models/student'" in command_line(
        spec, {**values, "out": "my models/student"}, threads=1, launch="x"
    )


def test_command_line_refuses_missing_or_ambiguous_values(tmp_path):
    spec = read_declarations(_stages(tmp_path, STAGE))["fit"]
    values = {"config": "c", "teachers": ["t"], "scores": ["s"], "model": "m", "out": "o"}
    with pytest.raises(ValueError, match="no value for --model"):
        command_line(spec, {**values, "model": None}, threads=1, launch="x")
    with pytest.raises(ValueError, match="--out takes one value"):
        command_line(spec, {**values, "out": ["a", "b"]}, threads=1, launch="x")


def test_stage_help_lists_each_option_with_its_meaning(capsys):
    with pytest.raises(SystemExit):
        cli.main(["heldout-loss", "--help"])
    text = capsys.readouterr().out
    assert "Per-non-member losses" in text  # the stage's docstring summary
    for flag in ("--config", "--images", "--split-meta", "--targets NAME=PATH", "--out", "--threads"):
        assert flag in text, flag
    assert "split sidecar JSON" in text
