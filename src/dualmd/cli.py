"""`python -m dualmd <stage> ...`: the argument parser of the stage functions in `dualmd.stages`.

Each subcommand names one stage function; its options are that function's keyword arguments (paths in, paths
out). `main` sets the thread count (the one place it is set), imports the stage's module and calls it. The
same commands run from Snakemake rules, from tests and by hand.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("dualmd")


def _named_path(text: str) -> tuple[str, Path]:
    """NAME=PATH, as in `--target baseline=results/models/rep0/baseline`."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


# Options shared by several stages: flag -> (argparse keyword arguments).
_OPTIONS: dict[str, dict] = {
    "--config": {"type": Path, "required": True, "help": "stage config YAML"},
    "--images": {"type": Path, "required": True, "help": "dataset .npz (prepare-data)"},
    "--split": {"type": Path, "required": True, "help": "split .npz"},
    "--split-meta": {"type": Path, "required": True, "help": "split sidecar JSON (hash check)"},
    "--out": {"type": Path, "required": True},
    "--meta": {"type": Path, "required": True},
    "--out-dir": {"type": Path, "required": True},
    "--state-dir": {"type": Path, "required": True, "help": "resumable training state"},
    "--model": {"required": True, "help": "target name (see dualmd.catalog)"},
    "--sampler": {"required": True, "help": "target name of the sampler"},
    "--attack": {"required": True, "help": "attack name (see dualmd.catalog)"},
    "--samples": {"type": Path, "required": True, "help": "generated images .npz"},
    "--info": {"type": Path, "required": True, "help": "sampling provenance JSON"},
    "--pretrained": {"type": Path, "required": True, "help": "pretrained pipeline folder (diffusers layout)"},
    "--memorized": {
        "type": Path,
        "default": None,
        "help": "memorized-prompt selection JSON (t2i-memorized-prompts); omitted: no repeats",
    },
}
_LISTS = {"--scores", "--attacks", "--rocs", "--utility", "--copies", "--models"}
_NAMED = {
    "--teacher": ("teachers", "NAME=DIR of a teacher (repeat)"),
    "--model-dir": ("models", "NAME=DIR of a model the sampler uses (repeat)"),
    "--target": ("targets", "NAME=PATH: model directory or generated images of a target (repeat)"),
    "--reference-model": ("references", "NAME=DIR of a LiRA reference model (repeat; lira only)"),
}
# Named options a stage may go without.
_OPTIONAL = {"--reference-model"}

#: Subcommand -> (stage function "module:function", help, options).
STAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "prepare-data": (
        "data:prepare_data",
        "load the dataset into one uint8 array",
        ("--config", "--out", "--meta"),
    ),
    "split": (
        "data:split",
        "member / non-member split and the two disjoint halves",
        ("--config", "--images", "--out", "--meta"),
    ),
    "train": (
        "train:train",
        "train one DDPM on its split subset",
        ("--config", "--images", "--split", "--split-meta", "--model", "--out", "--state-dir"),
    ),
    "distill": (
        "train:distill",
        "distil a model from its teachers (DistillMD)",
        ("--config", "--images", "--split", "--split-meta", "--model", "--teacher", "--out", "--state-dir"),
    ),
    "sample": (
        "sample:sample",
        "generate images with one sampler",
        ("--config", "--sampler", "--model-dir", "--out", "--info", "--grid"),
    ),
    "attack": (
        "attack:score",
        "per-sample membership scores of one attack on each target",
        (
            "--config",
            "--attack",
            "--images",
            "--split",
            "--split-meta",
            "--target",
            "--out-dir",
            "--reference-model",
        ),
    ),
    "evaluate": (
        "metrics:evaluate",
        "metrics and ROC of one attack on every target",
        ("--config", "--attack", "--scores", "--out", "--roc", "--plot"),
    ),
    "t-error": (
        "memorization:t_error",
        "member / non-member t-error separation",
        ("--scores", "--out", "--plot"),
    ),
    "copies": (
        "memorization:copies",
        "copy detection on every sampler's generated images",
        ("--config", "--images", "--split", "--split-meta", "--target", "--out-dir"),
    ),
    "reference-features": (
        "utility:reference",
        "FID features of the reference set (the dataset or the members)",
        ("--config", "--images", "--split", "--split-meta", "--out"),
    ),
    "heldout-loss": (
        "heldout:heldout_loss",
        "held-out denoising loss of every model",
        ("--config", "--images", "--split", "--split-meta", "--target", "--out"),
    ),
    "utility": (
        "utility:utility",
        "FID / KID / IS of one sampler (and the CLIP score of prompted samples)",
        ("--config", "--reference", "--samples", "--info", "--sampler", "--out"),
    ),
    "set-inference": (
        "set_inference:set_inference",
        "set-level inference: Mann-Whitney tests on n members vs n non-members per target",
        ("--config", "--attacks", "--scores", "--out"),
    ),
    "replicates": (
        "replicates:replicates",
        "summary of every replicate's attacks and utility across seeds",
        ("--config", "--attacks", "--utility", "--out"),
    ),
    "t2i-pretrain": (
        "text2image:pretrain",
        "pretrain the tiny text-to-image pipeline on the images outside the split",
        ("--config", "--images", "--split", "--split-meta", "--out", "--state-dir"),
    ),
    "t2i-train": (
        "text2image:train",
        "fine-tune the pretrained text-to-image UNet on a target's subset",
        (
            "--config",
            "--images",
            "--split",
            "--split-meta",
            "--model",
            "--pretrained",
            "--out",
            "--state-dir",
            "--memorized",
        ),
    ),
    "t2i-distill": (
        "text2image:distill",
        "distil the text-to-image DistillMD student from its two teachers",
        (
            "--config",
            "--images",
            "--split",
            "--split-meta",
            "--model",
            "--pretrained",
            "--teacher",
            "--out",
            "--state-dir",
            "--memorized",
        ),
    ),
    "t2i-sample": (
        "text2image:sample",
        "generate images with one text-to-image sampler (a model, or the DualMD pair)",
        (
            "--config",
            "--split",
            "--split-meta",
            "--sampler",
            "--model-dir",
            "--out",
            "--info",
            "--grid",
            "--memorized",
        ),
    ),
    "t2i-attack": (
        "text2image:score",
        "white-box attack scores on text-to-image targets (latents, caption as condition)",
        (
            "--config",
            "--attack",
            "--images",
            "--split",
            "--split-meta",
            "--target",
            "--out-dir",
            "--memorized",
        ),
    ),
    "t2i-blackbox": (
        "text2image:blackbox",
        "black-box attack scores on one text-to-image sampler (Pang & Wang: generations from captions)",
        (
            "--config",
            "--attack",
            "--images",
            "--split",
            "--split-meta",
            "--sampler",
            "--model-dir",
            "--out",
            "--memorized",
        ),
    ),
    "t2i-blackbox-report": (
        "text2image:blackbox_report",
        "the text-to-image black-box attack table (paper Table 4) from its metrics",
        ("--config", "--attacks", "--out", "--markdown"),
    ),
    "t2i-utility-report": (
        "text2image:utility_report",
        "FID, KID, IS and CLIP score of every text-to-image sampler (the paper's Table 1 Pokemon columns, Table 5)",
        ("--utility", "--out", "--markdown"),
    ),
    "t2i-memorized-prompts": (
        "text2image_memorization:select",
        "choose the text-to-image images repeated in training (memorized prompts) and as many other ones",
        ("--config", "--split", "--split-meta", "--out"),
    ),
    "t2i-prompt-memorization": (
        "text2image_memorization:score",
        "t-error, noise magnitude (Wen et al.) and copies of the memorized and other prompts, every target",
        ("--config", "--images", "--split", "--split-meta", "--memorized", "--model-dir", "--out-dir"),
    ),
    "t2i-memorization-report": (
        "text2image_memorization:report",
        "memorized vs other prompts: detector AUCs, copy rates, histograms (paper Fig. 3 and Table 5)",
        ("--config", "--scores", "--out", "--copy-table", "--markdown", "--t-error-plot", "--noise-plot"),
    ),
    "t2i-report": (
        "text2image:report",
        "the text-to-image attack table (paper Table 3) from every attack's metrics",
        ("--config", "--attacks", "--out", "--markdown"),
    ),
    "report": (
        "report:report",
        "tables, frontier, metrics.json, report.md and loss curves",
        (
            "--config",
            "--scores",
            "--attacks",
            "--rocs",
            "--utility",
            "--heldout",
            "--copies",
            "--t-error",
            "--models",
            "--split-meta",
            "--out-dir",
            "--loss-curves",
        ),
    ),
}


def _add_option(parser: argparse.ArgumentParser, flag: str) -> None:
    if flag in _NAMED:
        dest, help_text = _NAMED[flag]
        required = flag not in _OPTIONAL
        parser.add_argument(
            flag, dest=dest, type=_named_path, action="append", required=required, help=help_text
        )
    elif flag in _LISTS:
        parser.add_argument(flag, type=Path, nargs="+", required=True)
    else:
        parser.add_argument(flag, **_OPTIONS.get(flag, {"type": Path, "required": True}))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualmd", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)
    for name, (function, help_text, options) in STAGES.items():
        p = stages.add_parser(name, help=help_text)
        for flag in options:
            _add_option(p, flag)
        p.add_argument("--threads", type=int, default=1, help="CPU threads of torch (the rule's threads)")
        p.set_defaults(function=function, named=[_NAMED[flag][0] for flag in options if flag in _NAMED])
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
    module, function = args.pop("function").split(":")
    del args["stage"]
    for dest in args.pop("named"):
        args[dest] = dict(args[dest] or ())
    from dualmd.config.base import ConfigError

    stage = getattr(importlib.import_module(f"dualmd.stages.{module}"), function)
    try:
        stage(**args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        # Bad input: one clear line naming the problem instead of a traceback through library internals.
        log.error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from err
