"""Stage of `workflow/rules/report.smk`: the run's tables, metrics.json, roc.csv, report.md and loss curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def report(
    *,
    attacks: list[Path],
    rocs: list[Path],
    utility: list[Path],
    copies: list[Path],
    t_error: Path,
    models: list[Path],
    split_meta: Path,
    out_dir: Path,
    loss_curves: Path,
) -> None:
    """Every table of the report from the files the workflow declares as this stage's inputs, and nothing else."""
    from dualmd.models.directory import load_metadata
    from dualmd.plots import plot_loss_curves
    from dualmd.report import write_report

    metrics = write_report(
        attack_files=attacks,
        roc_files=rocs,
        utility_files=utility,
        copy_files=copies,
        t_error_file=t_error,
        model_dirs=models,
        split_meta=json.loads(Path(split_meta).read_text()),
        out_dir=out_dir,
    )
    plot_loss_curves([load_metadata(d) for d in models], out=loss_curves)
    log.info("report: %d metrics", len(metrics))
