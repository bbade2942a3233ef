"""Stage of `workflow/rules/text2image.smk`: the text-to-image white-box attack table (paper Table 3)."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.stage import stage


@stage("t2i-report", config="metrics")
def report(*, config: Path, attacks: list[Path], out: Path, markdown: Path) -> None:
    """The Table 3 report from the evaluate stage's metrics of every attack (`dualmd.text2image.report`): a CSV
    and its Markdown, TPR at the first FPR bound of the metrics config."""
    from dualmd.text2image.report import write_table3

    write_table3(attacks, load_config(config).metrics.tpr_at_fpr[0], out, markdown)
