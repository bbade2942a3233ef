"""Stage of `workflow/rules/report.smk`: dataset-level inference (CDI) against every target with weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.stage import stage

log = logging.getLogger(__name__)

#: Columns of dataset_inference.csv: one row per target and set size n.
COLUMNS = [
    "target",
    "attacks",
    "left_out",
    "num_fit",
    "num_heldout",
    "num_unscored",
    "heldout_auc",
    "n",
    "median_p",
    "num_repeats",
    "smallest_n",
]


@stage("dataset-inference", config="dataset_inference", sections=("dataset_inference", "metrics"))
def dataset_inference(*, config: Path, scores: list[Path], out: Path) -> None:
    """dataset_inference.csv: for each target with weights, every attack's scores against it combined by a
    logistic regression fitted on the labelled slice (`metrics.selection_fraction`), and the median one-sided
    Mann-Whitney p-value per n of n held-out members against n held-out non-members on its output
    (`dualmd.dataset_inference`), with the smallest n below `dataset_inference.max_p` ("none" if no n). Also writes
    one line per target to dataset_inference.rst next to `out` (the HTML report's landing page and report.md
    include it).

    Args:
        scores: per-sample score files ``<attack>/<target>.npz``; a target's features are the attacks with a file.
    """
    from dualmd.files import write_bytes_atomic
    from dualmd.scores import load_scores

    cfg = load_config(config)
    by_target: dict[str, dict[str, Path]] = {}
    for path in map(Path, scores):
        by_target.setdefault(path.stem, {})[path.parent.name] = path
    rows = []
    for target in sorted(by_target, key=catalog.report_rank):
        if not catalog.target(target).has_weights:
            continue
        results = {attack: load_scores(p) for attack, p in sorted(by_target[target].items())}
        rows += _target_rows(target, results, cfg)
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_bytes_atomic(out, table.to_csv(index=False).encode())
    lines = dataset_inference_lines(table, cfg.dataset_inference.max_p)
    write_bytes_atomic(Path(out).with_suffix(".rst"), lines.encode())
    log.info("dataset inference: %d targets", table["target"].nunique())


def _target_rows(target, results, cfg) -> list[dict]:
    from dualmd.dataset_inference import infer_dataset

    section = cfg.dataset_inference
    found = infer_dataset(
        results,
        selection_fraction=cfg.metrics.selection_fraction,
        num_repeats=section.num_repeats,
        max_p=section.max_p,
        seed=section.seed,
    )
    common = {
        "target": target,
        "attacks": "+".join(found.attacks),
        "left_out": "+".join(found.left_out),
        "num_fit": len(found.fit_ids),
        "num_heldout": found.num_heldout,
        "num_unscored": found.num_unscored,
        "heldout_auc": found.heldout_auc,
        "num_repeats": section.num_repeats,
        "smallest_n": "none" if found.smallest_n is None else found.smallest_n,
    }
    return [{**common, "n": n, "median_p": p} for n, p in found.medians.items()]


def dataset_inference_lines(table: pd.DataFrame, max_p: float) -> str:
    """One reStructuredText line per target: the attacks combined and the smallest n with median p < max_p."""
    from dualmd.set_inference import smallest_set_lines

    def describe(first: pd.Series) -> str:
        left_out = f"; left out: ``{first['left_out']}``" if first["left_out"] else ""
        return f"``{first['attacks']}`` combined{left_out}; held-out AUC {first['heldout_auc']:.3f}"

    return smallest_set_lines(table, max_p, describe)
