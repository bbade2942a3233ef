"""Stages declared once: the `@stage` decorator, and the declarations read back from the source text.

A stage is a function in a module of `dualmd.stages` whose keyword-only parameters are its files and names (paths
in, paths out). The decorator names its command and the stage config it reads:

    @stage("train", config="train", sections=("model", "diffusion", "train"), distributed=True)
    def train(*, config: Path, images: Path, split: Path, ..., model: str, out: Path, state_dir: Path) -> None:

Everything else is derived from that one place:

- the command line (`dualmd.cli`): one option per parameter, its kind read off the annotation (`Option`), its help
  from the docstring's ``Args:`` (or `COMMON_HELP` for a name every stage means the same by); a name (`str`)
  with a literal default in the signature is an option that may be left out;
- the stage config (`dualmd.config`): `sections` are what results/configs/.../<config>.<digest>.yaml holds; a stage
  that gives `config` without `sections` reads a config another stage declares (or a per-attack config,
  "attack_{attack}", that `dualmd.config` resolves);
- the rule's command (workflow/rules/common_jobs.smk, `stage_command`): each option filled from the rule's input, output
  or wildcard of the same name.

`declarations` reads the decorators from the source text (`ast`), without importing any stage module, so that the
workflow plans and the CLI parses without torch; a test checks that it reads what the decorators record.
"""

from __future__ import annotations

import ast
import functools
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

STAGES_DIR = Path(__file__).resolve().parent / "stages"

OptionKind = Literal[
    "path", "paths", "named_paths", "text", "optional_path", "optional_named_paths", "optional_text"
]
#: The annotation text of a stage parameter -> the kind of its option.
KINDS: dict[str, OptionKind] = {
    "Path": "path",
    "list[Path]": "paths",
    "dict[str, Path]": "named_paths",
    "str": "text",
    "Path | None": "optional_path",
    "dict[str, Path] | None": "optional_named_paths",
    "str | None": "optional_text",
}
#: What a parameter name means wherever it appears; a stage's docstring ``Args:`` entry overrides it.
COMMON_HELP = {
    "config": "stage config YAML (results/configs/<scope>/<config>.<digest>.yaml)",
    "images": "dataset .npz (prepare-data)",
    "split": "split .npz",
    "split_meta": "split sidecar JSON (hash check)",
    "state_dir": "resumable training state",
    "model": "target name (see dualmd.catalog)",
    "sampler": "target name of the sampler",
    "attack": "attack name (see dualmd.catalog)",
    "samples": "generated images .npz",
    "info": "sampling provenance JSON",
    "pretrained": "pretrained pipeline folder (diffusers layout)",
    "memorized": "memorized-prompt selection JSON (t2i-memorized-prompts); omitted: no repeats",
    "teachers": "NAME=DIR of a teacher",
    "models": "NAME=DIR of a model",
    "targets": "NAME=PATH: model directory or generated images of a target",
    "references": "NAME=DIR of a LiRA reference model (lira only)",
    "out": "the file the stage writes",
    "out_dir": "the folder the stage writes one file per target into",
    "meta": "sidecar JSON of the output (source, SHA-256)",
    "scores": "per-sample score files, one per target (file stem = target)",
    "attacks": "metrics JSON of each attack (evaluate)",
    "rocs": "ROC CSV of each attack (evaluate)",
    "utility": "utility JSON of each sampler (utility)",
    "heldout": "held-out loss JSON (heldout-loss)",
    "copies": "copy-detection JSON of each sampler (copies)",
    "t_error": "t-error summary JSON (t-error)",
    "reference": "FID features of the reference set (reference-features)",
    "roc": "ROC curves of every target as one long CSV table",
    "plot": "PNG figure",
    "grid": "PNG grid of the generated images",
    "markdown": "the same table as Markdown",
}


@dataclass(frozen=True)
class Option:
    """One parameter of a stage function as a command-line option."""

    name: str
    kind: OptionKind
    help: str
    default: str | None = None  # a name's default, the literal of the signature (`column: str = "text"`)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return not self.kind.startswith("optional_") and self.default is None

    @property
    def named(self) -> bool:
        """Values are NAME=PATH pairs (the parameter is a dict)."""
        return self.kind.endswith("named_paths")


@dataclass(frozen=True)
class StageSpec:
    """A declared stage: `command` runs `module`:`function` (module of `dualmd.stages`)."""

    command: str
    module: str
    function: str
    config: str | None
    sections: tuple[str, ...] | None
    distributed: bool
    summary: str
    options: tuple[Option, ...]


def stage(
    command: str,
    *,
    config: str | None = None,
    sections: tuple[str, ...] | None = None,
    distributed: bool = False,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Declare a stage function (see the module docstring).

    Args:
        command: its subcommand of `python -m dualmd`.
        config: the stage config it reads (None: none).
        sections: the config sections that `config` holds, given by the one stage that declares the config.
        distributed: runs under `accelerate launch` when the rule is given GPUs (training).
    """

    def declare(function: Callable[..., None]) -> Callable[..., None]:
        function.stage = {  # type: ignore[attr-defined]
            "command": command,
            "config": config,
            "sections": sections,
            "distributed": distributed,
        }
        return function

    return declare


def _arg_help(doc: str) -> dict[str, str]:
    """Parameter name -> its text in a Google-style ``Args:`` section (continuation lines joined)."""
    helps: dict[str, str] = {}
    lines = doc.splitlines()
    if "Args:" not in (line.strip() for line in lines):
        return helps
    start = [line.strip() for line in lines].index("Args:") + 1
    indent, current = None, None
    for line in lines[start:]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:
            break
        text = line.strip()
        if depth == indent and ":" in text:
            names, _, rest = text.partition(":")
            current = [n.strip() for n in names.split(",")]
            for name in current:
                helps[name] = rest.strip()
        elif current:
            for name in current:
                helps[name] = f"{helps[name]} {text}".strip()
    return helps


def _spec(module: str, node: ast.FunctionDef, decorator: ast.Call) -> StageSpec:
    where = f"dualmd.stages.{module}.{node.name}"
    values: dict[str, Any] = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords if k.arg}
    if len(decorator.args) != 1 or node.args.args or node.args.vararg or node.args.kwarg:
        raise ValueError(f"{where}: @stage takes the command; the function takes keyword-only parameters")
    doc = ast.get_docstring(node) or ""
    helps = _arg_help(doc)
    options = []
    for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
        annotation = ast.unparse(arg.annotation) if arg.annotation else ""
        if annotation not in KINDS:
            raise ValueError(
                f"{where}: parameter {arg.arg!r} is {annotation!r}; a stage takes {sorted(KINDS)}"
            )
        value = ast.literal_eval(default) if default is not None else None
        if value is not None and KINDS[annotation] != "text":
            raise ValueError(f"{where}: parameter {arg.arg!r}: only a name (str) may default to a value")
        help_text = helps.get(arg.arg) or COMMON_HELP.get(arg.arg, "")
        options.append(Option(arg.arg, KINDS[annotation], help_text, value))
    sections = values.get("sections")
    return StageSpec(
        command=ast.literal_eval(decorator.args[0]),
        module=module,
        function=node.name,
        config=values.get("config"),
        sections=tuple(sections) if sections is not None else None,
        distributed=bool(values.get("distributed", False)),
        summary=" ".join(doc.split("\n\n")[0].split()),
        options=tuple(options),
    )


def _is_stage_decorator(node: ast.expr) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Name) and func.id == "stage") or (
        isinstance(func, ast.Attribute) and func.attr == "stage"
    )


def read_declarations(stages_dir: Path = STAGES_DIR) -> dict[str, StageSpec]:
    """Every stage declared in the modules of `stages_dir`, by command, read from the source text.

    Raises:
        ValueError: a command declared twice, a stage config declared by two stages or read but declared by none,
            or a parameter of a kind the command line cannot carry.
    """
    found: dict[str, StageSpec] = {}
    for path in sorted(stages_dir.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in filter(_is_stage_decorator, node.decorator_list):
                spec = _spec(path.stem, node, decorator)  # type: ignore[arg-type]
                if spec.command in found:
                    raise ValueError(f"stage command {spec.command!r} declared twice")
                found[spec.command] = spec
    config_sections(found)  # every config declared once
    return found


@functools.cache
def declarations() -> dict[str, StageSpec]:
    """`read_declarations` of the package's stages (read once per process)."""
    return read_declarations()


def config_sections(specs: dict[str, StageSpec]) -> dict[str, tuple[str, ...]]:
    """Stage config name -> the sections it holds, from the stages that declare them.

    A config that stages read but none declares must be a per-attack template ("attack_{attack}").
    """
    sections: dict[str, tuple[str, ...]] = {}
    for spec in specs.values():
        if spec.config is not None and spec.sections is not None:
            if spec.config in sections:
                raise ValueError(f"stage config {spec.config!r} declared by two stages")
            sections[spec.config] = spec.sections
    for spec in specs.values():
        if spec.config is not None and spec.config not in sections and "{" not in spec.config:
            raise ValueError(
                f"stage {spec.command!r} reads config {spec.config!r}, which no stage declares sections for"
            )
    return sections


def _items(option: Option, value: Any) -> list[Any]:
    """`value` as a list: of (name, path) pairs for a named option, of words otherwise (None: empty)."""
    if value is None:
        return []
    if option.named:
        if isinstance(value, Mapping):
            return list(value.items())
        paths = [value] if isinstance(value, (str, Path)) else list(value)
        # a directory by its name (models), a file by its stem (scores)
        return [(Path(p).stem if Path(p).suffix else Path(p).name, p) for p in paths]
    return [value] if isinstance(value, (str, Path)) else list(value)


def command_line(spec: StageSpec, values: Mapping[str, Any], *, threads: int, launch: str) -> str:
    """The shell command that runs stage `spec` with `values` and `threads` torch threads.

    Args:
        values: parameter name -> a path or a name; several paths; for a NAME=PATH option a mapping, or paths each
            named by its directory name or file stem. A missing or empty value leaves an optional option out.
        launch: what runs the package (`python -m dualmd`, or `accelerate launch ... -m dualmd`).
    Raises:
        ValueError: a required option without a value, or several values for a single path or name.
    """
    words = [launch, spec.command]
    for option in spec.options:
        items = _items(option, values.get(option.name))
        if not items:
            if option.required:
                raise ValueError(f"stage {spec.command!r}: no value for {option.flag}")
            continue
        if option.named:
            for name, path in items:
                words += [option.flag, shlex.quote(f"{name}={path}")]
        elif option.kind == "paths":
            words += [option.flag, *(shlex.quote(str(v)) for v in items)]
        elif len(items) == 1:
            words += [option.flag, shlex.quote(str(items[0]))]
        else:
            raise ValueError(f"stage {spec.command!r}: {option.flag} takes one value, got {items}")
    return " ".join([*words, "--threads", str(threads)])
