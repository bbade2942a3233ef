"""Memorized-prompt detection on a pretrained pipeline: the paper's Fig. 3 setting (SD v1.5 as released; the 500
memorized prompts Webster (2023) extracted from SD v1 against 500 ordinary prompts), scored with the detector of
Wen et al. ("Detecting, Explaining, and Mitigating Memorization in Diffusion Models", ICLR 2024), which they
evaluate on the same lists.

The detector of a prompt is its text-conditional noise magnitude ||eps(x_t, c) - eps(x_t, "")||_2 averaged over the
first `num_steps` DDIM steps of a classifier-free-guided generation and over `num_generations` generations
(Wen et al.: all 50 steps, 4 generations; fewer steps detect almost as well and stop the chains early, since no
image is needed). Generation k of the i-th prompt of either list starts from the noise seeded with
(sample.seed, i, k): the two lists share their starting noises, so they differ in their prompts only.

The report: the AUC of memorized (positive) against ordinary prompts, higher magnitude = memorized, with a 95 %
stratified bootstrap interval (`dualmd.metrics.bootstrap_ci`), TPR at each `metrics.tpr_at_fpr` bound the
ordinary list resolves, and the histogram of both groups (Fig. 3's shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dualmd.config.evaluation import MetricsConfig
from dualmd.config.sections import SampleConfig
from dualmd.noise import sample_seed
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline
from dualmd.text2image.prompt_memorization import NoiseMagnitudes

#: The two prompt lists, in report order (the first is the positive class).
GROUPS = ("memorized", "ordinary")
#: Stream of `sample_seed` for the generations (memorized prompts use 2).
_DETECTION_STREAM = 3


def read_prompt_list(path: str | Path) -> list[str]:
    """The prompts of a text file, one per line (surrounding whitespace stripped, blank lines skipped).

    Raises:
        FileNotFoundError: no file; ValueError: no prompt in it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt list {path} does not exist")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt list {path} holds no prompt")
    return prompts


def detection_seeds(seed: int, num_prompts: int, generation: int) -> list[int]:
    """The seed of generation `generation` of prompts 0 .. num_prompts - 1 of a list (the same for both lists)."""
    return [sample_seed(seed, i, generation, _DETECTION_STREAM) for i in range(num_prompts)]


def noise_magnitudes(
    pipe: DualMDStableDiffusionPipeline,
    prompts: Sequence[str],
    sample: SampleConfig,
    *,
    num_generations: int,
    num_steps: int | None,
    guidance_scale: float,
) -> np.ndarray:
    """Wen et al.'s detector of each prompt per generation: its noise magnitude averaged over the first
    `num_steps` DDIM steps (None: all of `sample.num_inference_steps`), the chains stopped there.

    Returns:
        (N, num_generations) float64.
    """
    steps = sample.num_inference_steps if num_steps is None else num_steps
    out = np.empty((len(prompts), num_generations))
    for k in range(num_generations):
        recorder = NoiseMagnitudes(len(prompts), steps)
        pipe(
            list(prompts),
            num_inference_steps=sample.num_inference_steps,
            guidance_scale=guidance_scale,
            eta=sample.eta,
            seeds=detection_seeds(sample.seed, len(prompts), k),
            batch_size=sample.batch_size,
            alternation=sample.dualmd_alternation,
            output_type="latent",
            stop_after=steps,
            on_step=recorder,
        )
        out[:, k] = recorder.mean()
    return out


def detection_rows(prompts: dict[str, Sequence[str]], magnitudes: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per prompt: group, index (in its list), prompt, noise_magnitude (mean over generations) and
    noise_magnitude_std (over generations); groups in GROUPS order."""
    parts = []
    for group in GROUPS:
        values = magnitudes[group]
        parts.append(
            pd.DataFrame(
                {
                    "group": group,
                    "index": np.arange(len(prompts[group])),
                    "prompt": list(prompts[group]),
                    "noise_magnitude": values.mean(axis=1),
                    "noise_magnitude_std": values.std(axis=1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def detection_summary(rows: pd.DataFrame, metrics: MetricsConfig) -> dict[str, Any]:
    """AUC of memorized vs ordinary prompts with its 95 % bootstrap interval (`metrics.num_bootstrap`, NaN for
    0), TPR at each bound of `metrics.tpr_at_fpr` (None where the ordinary prompts are too few to resolve it),
    the counts and each group's median magnitude."""
    from dualmd.metrics import auc, bootstrap_ci, is_resolvable, tpr_at_fpr, tpr_key

    score = rows["noise_magnitude"].to_numpy(dtype=float)
    is_memorized = (rows["group"] == GROUPS[0]).to_numpy()
    low, high = (
        bootstrap_ci(score, is_memorized, auc, metrics.num_bootstrap, metrics.seed)
        if metrics.num_bootstrap > 0
        else (float("nan"), float("nan"))
    )
    num_ordinary = int((~is_memorized).sum())
    summary: dict[str, Any] = {
        "detector": "noise_magnitude",
        "auc": auc(score, is_memorized),
        "auc_low": low,
        "auc_high": high,
    }
    for alpha in metrics.tpr_at_fpr:
        resolved = is_resolvable(alpha, num_ordinary)
        summary[tpr_key(alpha)] = tpr_at_fpr(score, is_memorized, alpha) if resolved else None
    return summary | {
        "num_memorized": int(is_memorized.sum()),
        "num_ordinary": num_ordinary,
        "memorized_median": float(np.median(score[is_memorized])),
        "ordinary_median": float(np.median(score[~is_memorized])),
    }


def detection_markdown(summary: dict[str, Any], *, num_generations: int, num_steps: int) -> str:
    """The summary as a short Markdown report."""
    tprs = [
        f"TPR at {key.removeprefix('tpr_at_fpr_')} FPR: "
        + ("n/a (too few ordinary prompts)" if value is None else f"{value:.2f}")
        for key, value in summary.items()
        if key.startswith("tpr_at_fpr_")
    ]
    return "\n".join(
        [
            "# Memorized-prompt detection on the pretrained pipeline (paper Fig. 3)",
            "",
            f"Wen et al.'s text-conditional noise magnitude, mean over the first {num_steps} DDIM steps and "
            f"{num_generations} generations per prompt; {summary['num_memorized']} memorized against "
            f"{summary['num_ordinary']} ordinary prompts.",
            "",
            "AUC {:.3f} [{:.3f}, {:.3f}] (95 % bootstrap interval); ".format(
                summary["auc"], summary["auc_low"], summary["auc_high"]
            )
            + "; ".join(tprs)
            + ".",
            "",
            f"Median magnitude: memorized {summary['memorized_median']:.4g}, ordinary "
            f"{summary['ordinary_median']:.4g}.",
            "",
        ]
    )
