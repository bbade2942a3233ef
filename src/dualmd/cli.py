"""`python -m dualmd <stage> ...`: the argument parser of the stage functions in `dualmd.stages`.

Each subcommand is a stage declared with `dualmd.stage.stage`; its options are that function's keyword
parameters (paths in, paths out), read from the declarations without importing any stage. `main` sets the thread
count (the one place it is set), imports the stage's module and calls it. The same commands run from Snakemake
rules, from tests and by hand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dualmd.stage import Option, declarations

log = logging.getLogger("dualmd")


def _named_path(text: str) -> tuple[str, Path]:
    """NAME=PATH, as in `--targets baseline=results/models/rep0/baseline`."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """One stage parameter as an option: a path, several paths, NAME=PATH pairs (repeated) or a name (with its
    default from the signature, if it has one)."""
    kwargs: dict = {"dest": option.name, "help": option.help or None}
    if option.named:
        kwargs.update(type=_named_path, action="append", required=option.required, metavar="NAME=PATH")
    elif option.kind == "paths":
        kwargs.update(type=Path, nargs="+", required=True)
    elif option.kind == "text" and option.default is not None:
        kwargs.update(default=option.default, help=f"{option.help} (default: {option.default})".lstrip())
    elif option.kind in ("text", "optional_text"):
        kwargs.update(required=option.required, default=None)
    else:
        kwargs.update(type=Path, required=option.required, default=None)
    parser.add_argument(option.flag, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualmd", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    for command, spec in declarations().items():
        p = stages.add_parser(command, help=spec.summary, description=spec.summary)
        for option in spec.options:
            _add_option(p, option)
        p.add_argument("--threads", type=int, default=1, help="CPU threads of torch (the rule's threads)")
    return parser


def set_threads(threads: int) -> None:
    """The thread count of every numeric library, set before any of them is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(max(1, threads))
    if "torch" in sys.modules:  # only when embedded in a process that already imported torch
        sys.modules["torch"].set_num_threads(max(1, threads))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m dualmd` and the `dualmd` script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    args = vars(_parser().parse_args(argv))
    set_threads(args.pop("threads"))
    spec = declarations()[args.pop("stage")]
    for option in spec.options:
        if option.named:
            args[option.name] = dict(args[option.name] or ())
    from dualmd.config.base import ConfigError

    stage = getattr(importlib.import_module(f"dualmd.stages.{spec.module}"), spec.function)
    try:
        stage(**args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        # Bad input: one clear line naming the problem instead of a traceback through library internals.
        log.error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from err
