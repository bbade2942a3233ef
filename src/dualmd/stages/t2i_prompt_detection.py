"""Stage of `workflow/rules/text2image_memorization.smk`: memorized against ordinary prompt lists on the pretrained
pipeline, scored with Wen et al.'s detector (the paper's Fig. 3 setting; `dualmd.text2image.prompt_detection`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd.stage import stage
from dualmd.text2image.experiment import text2image_config

log = logging.getLogger(__name__)


@stage(
    "t2i-prompt-detection",
    config="t2i_prompt_detection",
    sections=("sample", "text2image", "metrics"),
)
def detect(
    *,
    config: Path,
    pipeline: Path,
    memorized_prompts: Path,
    ordinary_prompts: Path,
    out: Path,
    summary: Path,
    markdown: Path,
    plot: Path,
) -> None:
    """Each prompt's noise magnitude on the pipeline, and the AUC of memorized vs ordinary prompts.

    Args:
        pipeline: a pipeline folder in the diffusers layout (text2image.pretrained, or the tiny stand-in's).
        memorized_prompts: text file, one memorized prompt per line.
        ordinary_prompts: text file, one ordinary prompt per line.
        out: per-prompt scores (CSV).
        summary: AUC with its 95-percent bootstrap interval, TPR at the metrics' FPR bounds, counts and medians (JSON).
        markdown: the summary as Markdown.
        plot: histogram of the two groups (PNG).
    """
    from dualmd.files import write_json
    from dualmd.plots import plot_group_histograms
    from dualmd.stages.device import device
    from dualmd.text2image.generate import folder_pipeline
    from dualmd.text2image.levers import apply_tf32
    from dualmd.text2image.prompt_detection import (
        GROUPS,
        detection_markdown,
        detection_rows,
        detection_summary,
        noise_magnitudes,
        read_prompt_list,
    )

    cfg = text2image_config(config)
    apply_tf32(cfg.text2image.allow_tf32)
    detection = cfg.text2image.prompt_detection
    prompts = dict(zip(GROUPS, map(read_prompt_list, (memorized_prompts, ordinary_prompts)), strict=True))
    pipe = folder_pipeline(pipeline).to(device())
    settings = {
        "num_generations": detection.num_generations,
        "num_steps": detection.num_steps,
        "guidance_scale": cfg.text2image.guidance_scale,
    }
    magnitudes = {g: noise_magnitudes(pipe, prompts[g], cfg.sample, **settings) for g in GROUPS}
    rows = detection_rows(prompts, magnitudes)
    rows.to_csv(out, index=False)
    result = detection_summary(rows, cfg.metrics)
    steps = detection.num_steps or cfg.sample.num_inference_steps
    write_json(summary, {**result, **settings, "num_steps": steps, "pipeline": str(pipeline)})
    Path(markdown).write_text(
        detection_markdown(result, num_generations=detection.num_generations, num_steps=steps)
    )
    is_memorized = (rows["group"] == GROUPS[0]).to_numpy()
    plot_group_histograms(
        {"pretrained pipeline": (rows["noise_magnitude"].to_numpy(dtype=float), is_memorized)},
        labels=GROUPS,
        xlabel=f"||eps(x, c) - eps(x, '')||, mean over the first {steps} steps",
        out=plot,
    )
    log.info("prompt detection: AUC %.3f [%.3f, %.3f]", result["auc"], result["auc_low"], result["auc_high"])
