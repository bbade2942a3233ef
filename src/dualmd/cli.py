"""`python -m dualmd <stage> ...`: one subcommand per pipeline stage; paths in, paths out.

Every subcommand loads its inputs, builds the typed config, calls one library function and writes its outputs.
The same commands run from Snakemake rules, from tests and by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dualmd.files import write_json

log = logging.getLogger("dualmd")


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _split(args):
    from dualmd.data.splits import load_split

    return load_split(args.split, args.split_meta)


def _run_prepare_data(args) -> None:
    from dualmd.config import load_config
    from dualmd.data.datasets import load_dataset, save_images

    cfg = load_config(args.config).dataset
    images = load_dataset(cfg)
    sha = save_images(args.out, images)
    write_json(args.meta, {"dataset": cfg.to_dict(), "shape": list(images.shape), "sha256": sha})
    log.info("dataset %s: %s images of shape %s", cfg.name, images.shape[0], images.shape[1:])


def _run_split(args) -> None:
    from dualmd.config import load_config
    from dualmd.data.datasets import load_images
    from dualmd.data.splits import make_split, save_split

    cfg = load_config(args.config).split
    split = make_split(len(load_images(args.images)), cfg)
    save_split(split, args.out, args.meta)
    log.info(
        "split: %d members (%d + %d), %d non-members",
        len(split.member_idx),
        len(split.half1_idx),
        len(split.half2_idx),
        len(split.nonmember_idx),
    )


def _run_train(args) -> None:
    from dualmd.pipeline import train_stage

    _threads(args.threads)
    train_stage(
        config=args.config,
        images=args.images,
        split=_split(args),
        model_id=args.model_id,
        out_dir=args.out,
        state_dir=args.state_dir,
        num_threads=args.threads,
    )


def _run_distill(args) -> None:
    from dualmd.pipeline import distill_stage

    _threads(args.threads)
    distill_stage(
        config=args.config,
        images=args.images,
        split=_split(args),
        teacher1=args.teacher1,
        teacher2=args.teacher2,
        out_dir=args.out,
        state_dir=args.state_dir,
        num_threads=args.threads,
    )


def _run_sample(args) -> None:
    from dualmd.config import load_config
    from dualmd.sample import generate, save_samples

    _threads(args.threads)
    cfg = load_config(args.config).sample
    model_dirs = dict(spec.split("=", 1) for spec in args.model)
    images, info = generate(args.sampler, {k: Path(v) for k, v in model_dirs.items()}, cfg, device=_device())
    save_samples(images, args.out, args.grid, nrow=16)
    write_json(args.info, {"sampler": args.sampler, **info, "config": cfg.to_dict()})


def _run_attack(args) -> None:
    from dualmd.pipeline import attack_stage

    _threads(args.threads)
    attack_stage(
        config=args.config,
        attack=args.attack,
        images=args.images,
        split=_split(args),
        model_id=args.model_id,
        model_dir=args.model,
        samples=args.samples,
        out=args.out,
        device=_device(),
    )


def _run_evaluate(args) -> None:
    from dualmd.pipeline import evaluate_stage
    from dualmd.plots import plot_roc

    metrics, roc = evaluate_stage(config=args.config, attack=args.attack, score_files=args.scores)
    write_json(args.out, metrics)
    roc.to_csv(args.roc, index=False)
    plot_roc(roc, attack=args.attack, out=args.plot)


def _run_t_error(args) -> None:
    from dualmd.pipeline import load_t_errors, t_error_summary
    from dualmd.plots import plot_t_error

    t_errors = load_t_errors(args.scores)
    write_json(args.out, t_error_summary(t_errors))
    plot_t_error(t_errors, out=args.plot)


def _run_copies(args) -> None:
    from dualmd.pipeline import copies_stage

    _threads(1)
    summary = copies_stage(
        config=args.config,
        images=args.images,
        split=_split(args),
        samples=args.samples,
        sampler=args.sampler,
        pairs_png=args.pairs,
    )
    write_json(args.out, summary)


def _run_reference_features(args) -> None:
    from dualmd.pipeline import reference_stage

    _threads(args.threads)
    reference_stage(
        config=args.config, images=args.images, split=_split(args), out=args.out, device=_device()
    )


def _run_utility(args) -> None:
    from dualmd.pipeline import utility_stage

    _threads(args.threads)
    summary = utility_stage(
        config=args.config,
        reference=args.reference,
        samples=args.samples,
        info=args.info,
        sampler=args.sampler,
        device=_device(),
    )
    write_json(args.out, summary)


def _run_report(args) -> None:
    from dualmd.report import write_report

    metrics = write_report(
        attack_files=args.attacks,
        utility_files=args.utility,
        copy_files=args.copies,
        t_error_file=args.t_error,
        model_dirs=args.models,
        split_meta=json.loads(Path(args.split_meta).read_text()),
        out_dir=args.out_dir,
    )
    log.info("report: %d metrics", len(metrics))


def _run_plot_loss(args) -> None:
    from dualmd.models.adapter import load_metadata
    from dualmd.plots import plot_loss_curves

    plot_loss_curves([load_metadata(d) for d in args.models], out=args.out)


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualmd", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)

    def stage(name: str, run, help: str, *, config=True, split=False, threads=False):
        p = stages.add_parser(name, help=help)
        if config:
            p.add_argument("--config", type=Path, required=True, help="stage config YAML")
        if split:
            p.add_argument("--split", type=Path, required=True, help="split .npz")
            p.add_argument("--split-meta", type=Path, default=None, help="split sidecar JSON (hash check)")
        if threads:
            p.add_argument("--threads", type=int, default=1, help="torch threads (the rule's threads)")
        p.set_defaults(run=run)
        return p

    p = stage("prepare-data", _run_prepare_data, "load the dataset into one uint8 array")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--meta", type=Path, required=True)

    p = stage("split", _run_split, "member / non-member split and the two disjoint halves")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--meta", type=Path, required=True)

    p = stage("train", _run_train, "train one DDPM on its subset", split=True, threads=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--model-id", required=True, choices=["baseline", "teacher1", "teacher2"])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, required=True)

    p = stage("distill", _run_distill, "DistillMD student from two teachers", split=True, threads=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--teacher1", type=Path, required=True)
    p.add_argument("--teacher2", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, required=True)

    p = stage("sample", _run_sample, "generate images with one sampler", threads=True)
    p.add_argument("--sampler", required=True)
    p.add_argument("--model", action="append", required=True, help="model_id=dir (repeat for dualmd)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--info", type=Path, required=True)
    p.add_argument("--grid", type=Path, required=True)

    p = stage("attack", _run_attack, "per-sample membership scores", split=True, threads=True)
    p.add_argument("--attack", required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--model-id", required=True)
    p.add_argument("--model", type=Path, default=None, help="model directory (white-box attacks)")
    p.add_argument("--samples", type=Path, default=None, help="generated images (black-box attacks)")
    p.add_argument("--out", type=Path, required=True)

    p = stage("evaluate", _run_evaluate, "metrics and ROC of one attack on every target")
    p.add_argument("--attack", required=True)
    p.add_argument("--scores", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--roc", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)

    p = stage("t-error", _run_t_error, "member / non-member t-error separation", config=False)
    p.add_argument("--scores", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)

    p = stage("copies", _run_copies, "copy detection on generated images", split=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--sampler", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pairs", type=Path, required=True)

    p = stage(
        "reference-features", _run_reference_features, "FID features of the members", split=True, threads=True
    )
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = stage("utility", _run_utility, "FID / IS of one sampler", threads=True)
    p.add_argument("--reference", type=Path, required=True)
    p.add_argument("--samples", type=Path, required=True)
    p.add_argument("--info", type=Path, required=True)
    p.add_argument("--sampler", required=True)
    p.add_argument("--out", type=Path, required=True)

    p = stage("report", _run_report, "tables, metrics.json and report.md", config=False)
    for flag in ("--attacks", "--utility", "--copies", "--models"):
        p.add_argument(flag, nargs="+", required=True)
    p.add_argument("--t-error", type=Path, required=True)
    p.add_argument("--split-meta", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)

    p = stage("plot-loss", _run_plot_loss, "training loss curves", config=False)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m dualmd` and the `dualmd` script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    args = _parser().parse_args(argv)
    from dualmd.config import ConfigError

    try:
        args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        # Bad input: one clear line naming the problem instead of a traceback through library internals.
        log.error("%s: %s", type(err).__name__, err)
        raise SystemExit(2) from err
