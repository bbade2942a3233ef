"""Stage of `workflow/rules/report.smk`: set-level inference against every target with weights."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.stage import stage

log = logging.getLogger(__name__)

#: Columns of set_inference.csv: one row per target and set size n.
COLUMNS = ["target", "attack", "chosen_by", "n", "median_p", "num_repeats", "smallest_n"]


@stage("set-inference", config="set_inference", sections=("set_inference", "metrics"))
def set_inference(*, config: Path, attacks: list[Path], scores: list[Path], out: Path) -> None:
    """set_inference.csv: for each target with weights, the median p-value per n of the scores of
    `set_inference.attack`, or of the strongest attack against it (`dualmd.report.strongest_attacks`, from the
    metrics files `attacks`), and the smallest n whose median is below `set_inference.max_p` ("none" if no n).
    Also writes the same result as one line per target to set_inference.rst next to `out` (the HTML report's
    landing page includes it).

    Args:
        attacks: metrics JSON of every attack (`stages.metrics.evaluate`).
        scores: per-sample score files ``<attack>/<target>.npz``; targets without a file of their attack are
            left out.
    """
    from dualmd.files import write_bytes_atomic
    from dualmd.report import attack_table, strongest_attacks

    cfg = load_config(config)
    files = {(Path(p).parent.name, Path(p).stem): Path(p) for p in scores}
    if cfg.set_inference.attack is None:
        strongest = strongest_attacks(attack_table(attacks), cfg.metrics.tpr_at_fpr[0])
        chosen = dict(zip(strongest["target"], strongest["attack"], strict=True))
        chosen_by = "strongest"
    else:
        chosen = {target: cfg.set_inference.attack for attack, target in files}
        chosen_by = "configured"
    rows = []
    for target in sorted(chosen, key=catalog.report_rank):
        attack = chosen[target]
        if not catalog.target(target).has_weights or (attack, target) not in files:
            continue
        rows += _target_rows(target, attack, chosen_by, files[(attack, target)], cfg.set_inference)
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_bytes_atomic(out, table.to_csv(index=False).encode())
    write_bytes_atomic(
        Path(out).with_suffix(".rst"), set_inference_lines(table, cfg.set_inference.max_p).encode()
    )
    log.info("set inference: %d targets", table["target"].nunique())


def _target_rows(target, attack, chosen_by, path, cfg) -> list[dict]:
    from dualmd.scores import load_scores
    from dualmd.set_inference import median_p_values, smallest_significant

    result = load_scores(path)
    medians = median_p_values(result.scores, result.is_member, num_repeats=cfg.num_repeats, seed=cfg.seed)
    smallest = smallest_significant(medians, cfg.max_p)
    common = {"target": target, "attack": attack, "chosen_by": chosen_by, "num_repeats": cfg.num_repeats}
    return [
        {**common, "n": n, "median_p": p, "smallest_n": "none" if smallest is None else smallest}
        for n, p in medians.items()
    ]


def set_inference_lines(table: pd.DataFrame, max_p: float) -> str:
    """One reStructuredText line per target: its attack and the smallest n with median p < max_p."""
    from dualmd.set_inference import smallest_set_lines

    return smallest_set_lines(table, max_p, lambda first: f"``{first['attack']}``, {first['chosen_by']}")
