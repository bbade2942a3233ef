"""Stage of `workflow/rules/text2image_memorization.smk`: memorized vs other prompts, the detector table,
copy rates and histograms (paper Fig. 3 and Table 5; tables in `dualmd.text2image.memorization_report`).
"""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.stage import stage


@stage("t2i-memorization-report", config="metrics")
def report(
    *,
    config: Path,
    scores: list[Path],
    out: Path,
    copy_table: Path,
    markdown: Path,
    t_error_plot: Path,
    noise_plot: Path,
) -> None:
    """The detector table (AUC of memorized vs other prompts with 95 % intervals from the metrics config), the
    copy table, their Markdown and one histogram per detector.

    Args:
        scores: per-prompt score CSV of each target (t2i-prompt-memorization).
        out: the detector table (CSV).
        copy_table: the copy rate of each target (CSV).
        t_error_plot, noise_plot: histograms of the t-error and of the noise magnitude.
    """
    from dualmd.text2image.memorization_report import write_prompt_memorization

    metrics = load_config(config).metrics
    write_prompt_memorization(
        scores,
        num_bootstrap=metrics.num_bootstrap,
        seed=metrics.seed,
        table=out,
        copies=copy_table,
        markdown=markdown,
        plots={"t_error": t_error_plot, "noise_magnitude": noise_plot},
    )
