"""Stage of `workflow/rules/report.smk`: the run's tables, metrics.json, roc.csv, report.md and loss curves."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dualmd.stage import stage

log = logging.getLogger(__name__)


@stage("report", config="metrics")
def report(
    *,
    config: Path,
    scores: list[Path],
    attacks: list[Path],
    rocs: list[Path],
    utility: list[Path],
    heldout: Path,
    copies: list[Path],
    t_error: Path,
    models: list[Path],
    split_meta: Path,
    out_dir: Path,
    loss_curves: Path,
    set_inference: Path | None = None,
    dataset_inference: Path | None = None,
) -> None:
    """Every table of the report from the files the workflow declares as this stage's inputs, and nothing else.

    `scores` are the per-sample score files ``<attack>/<target>.npz`` of every attack on every target it reaches,
    the curve's checkpoints included: with the held-out losses and the samplers' FIDs they give the frontier and
    the matched-utility comparison on both axes, bootstrapped with the `metrics` section's resamples and seed at
    its first FPR bound, and the summary that opens report.md (summary.rst, with the frontier figure, opens the
    HTML report's landing page).

    Args:
        set_inference: set_inference.rst (`stages.set_inference`), one line per target, shown in report.md.
        dataset_inference: dataset_inference.rst (`stages.dataset_inference`), shown next to it.
    """
    from dualmd.config.experiment import load_config
    from dualmd.metrics import tpr_key
    from dualmd.models.directory import load_metadata
    from dualmd.plots import plot_frontier, plot_loss_curves
    from dualmd.report import frontier_tables, summary_rst, summary_table, utility_table, write_report
    from dualmd.scores import load_scores

    cfg = load_config(config).metrics
    max_fpr = cfg.tpr_at_fpr[0]
    frontier, matched = frontier_tables(
        heldout_file=heldout,
        utility_files=utility,
        score_files=scores,
        num_bootstrap=max(cfg.num_bootstrap, 1),
        seed=cfg.seed,
        max_fpr=max_fpr,
    )

    all_scores = {(Path(p).stem, Path(p).parent.name): load_scores(p) for p in scores}
    summary = summary_table(all_scores, utility_table(utility, heldout), matched, cfg)
    metrics = write_report(
        attack_files=attacks,
        roc_files=rocs,
        utility_files=utility,
        heldout_file=heldout,
        copy_files=copies,
        t_error_file=t_error,
        model_dirs=models,
        split_meta=json.loads(Path(split_meta).read_text()),
        out_dir=out_dir,
        frontier=frontier,
        matched=matched,
        summary=summary,
        max_fpr=max_fpr,
        inference_lines={
            name: Path(path).read_text()
            for name, path in (("set", set_inference), ("dataset", dataset_inference))
            if path is not None
        },
    )
    plot_frontier(frontier, tpr_column=tpr_key(max_fpr), out=Path(out_dir) / "frontier.png")
    landing = summary_rst(summary, max_fpr, frontier_png=Path(out_dir) / "frontier.png")
    (Path(out_dir) / "summary.rst").write_text(landing)
    plot_loss_curves([load_metadata(d) for d in models], out=loss_curves)
    log.info("report: %d metrics", len(metrics))
