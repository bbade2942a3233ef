"""Stage of `workflow/rules/text2image_blackbox.smk`: the text-to-image black-box attack table (paper Table 4)."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.stage import stage


@stage("t2i-blackbox-report", config="metrics")
def blackbox_report(*, config: Path, attacks: list[Path], out: Path, markdown: Path) -> None:
    """The Table 4 report from the evaluate stage's metrics of the black-box attack (`dualmd.text2image.report`)."""
    from dualmd.text2image.report import write_table4

    write_table4(attacks, load_config(config).metrics.tpr_at_fpr[0], out, markdown)
