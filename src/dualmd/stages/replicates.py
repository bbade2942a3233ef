"""Stage of `workflow/rules/report.smk`: the summary of every replicate's report across seeds."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.stage import stage


@stage("replicates", config="metrics")
def replicates(*, config: Path, attacks: list[Path], utility: list[Path], out: Path) -> None:
    """replicates.csv from each replicate's attacks.csv and utility.csv (`dualmd.replicates`).

    Args:
        attacks: attacks.csv of each replicate's report.
        utility: utility.csv of each replicate's report.
        out: replicates.csv.
    """
    from dualmd.files import atomic_write
    from dualmd.metrics import tpr_key
    from dualmd.replicates import read_tables, summarize_replicates

    cfg = load_config(config).metrics
    table = summarize_replicates(
        read_tables(attacks), read_tables(utility), ("auc", *(tpr_key(a) for a in cfg.tpr_at_fpr))
    )
    atomic_write(out, lambda handle: handle.write(table.to_csv(index=False).encode()))
