"""Stage of `workflow/rules/text2image.smk`: the text-to-image utility table (FID, KID, IS, CLIP
score of every sampler).
"""

from __future__ import annotations

from pathlib import Path

from dualmd.stage import stage


@stage("t2i-utility-report")
def utility_report(*, utility: list[Path], out: Path, markdown: Path) -> None:
    """FID, KID, IS and CLIP score of every text-to-image sampler (the utility stage's files) as CSV and
    Markdown."""
    from dualmd.text2image.report import write_utility_table

    write_utility_table(utility, out, markdown)
