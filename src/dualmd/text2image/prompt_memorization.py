"""Memorization on prompts (paper §3.6: Fig. 3's detection and Table 5's mitigation, on the stand-in's memorized
prompts of `dualmd.text2image.memorized`): two detectors per prompt and the copies its generations make.

For every target (a fine-tuned model, or DualMD's alternating pair) and every prompt of the selection -- the
memorized ones and as many other training prompts of the same half -- this module measures:

* **t-error** (SecMI's Eq. 8, the paper's memorization loss; `dualmd.text2image.attack.caption_t_error`): the
  deterministic round-trip error of the latent of the image the prompt captions, with the prompt as condition.
  Low for a memorized pair, so its detector score is the negated t-error. Models only: DualMD has no weights of
  its own (as for the white-box attacks, its teachers are scored).
* **Text-conditional noise magnitude** (Wen, Liu, Chen and Lyu, "Detecting, Explaining, and Mitigating
  Memorization in Diffusion Models", ICLR 2024, §3): d = (1/S) sum_s ||eps(x_s, c) - eps(x_s, "")||_2 over the S
  DDIM steps of a classifier-free-guided generation from the prompt c, the norm over the whole latent; a
  memorized prompt pulls every starting noise towards one image, so its text guidance is large. Averaged over
  `memorized_prompts.num_generations` generations, generation k of prompt i seeded by (sample.seed, i, k).
* **Copies** of each generation with the copy rule of the unconditional workflow (`dualmd.memorization.
  copy_detection` against the target's members), its nearest member, and its distance to the prompt's own image.

`score_target` writes one row per generation; `dualmd.text2image.memorization_report` turns the rows of every
target into the detectors' AUCs and the copy rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from dualmd.config.evaluation import MemorizationConfig
from dualmd.config.sections import SampleConfig
from dualmd.noise import sample_seed
from dualmd.text2image.memorized import GROUPS, MemorizedPrompts
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline

#: Stream of `sample_seed` for the generations (the caption sampler uses streams 0 and 1).
_GENERATION_STREAM = 2


def noise_magnitude(eps_uncond: Tensor, eps_cond: Tensor) -> Tensor:
    """||eps(x_t, c) - eps(x_t, "")||_2 of each sample over all its latent entries: (B, ...) x 2 -> (B,) float64."""
    return torch.linalg.vector_norm((eps_cond.double() - eps_uncond.double()).flatten(1), dim=1)


class NoiseMagnitudes:
    """A `StepCallback` that keeps the noise magnitude of every image (N) at every denoising step (S)."""

    def __init__(self, num_images: int, num_steps: int):
        self.values = np.full((num_images, num_steps), np.nan)

    def __call__(self, start: int, step: int, eps_uncond: Tensor, eps_cond: Tensor) -> None:
        magnitude = noise_magnitude(eps_uncond, eps_cond).cpu().numpy()
        self.values[start : start + len(magnitude), step] = magnitude

    def mean(self) -> np.ndarray:
        """(N,) the magnitude of each image averaged over the steps; raises if a step was never recorded."""
        if np.isnan(self.values).any():
            raise RuntimeError("some denoising steps were not recorded")
        return self.values.mean(axis=1)


def generation_seeds(seed: int, image_ids: Sequence[int], generation: int) -> list[int]:
    """The seed of generation `generation` of the prompt of each image id (the same for every target)."""
    return [sample_seed(seed, int(i), generation, _GENERATION_STREAM) for i in image_ids]


def generate_with_noise_magnitude(
    pipe: DualMDStableDiffusionPipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    sample: SampleConfig,
    *,
    guidance_scale: float,
) -> tuple[Tensor, np.ndarray]:
    """One guided DDIM generation per prompt and its noise magnitude averaged over the steps.

    Returns:
        images (N, C, H, W) float32 CPU in [-1, 1], magnitudes (N,) float64.
    """
    recorder = NoiseMagnitudes(len(prompts), sample.num_inference_steps)
    images = pipe(
        list(prompts),
        num_inference_steps=sample.num_inference_steps,
        guidance_scale=guidance_scale,
        eta=sample.eta,
        seeds=seeds,
        batch_size=sample.batch_size,
        alternation=sample.dualmd_alternation,
        on_step=recorder,
    )
    return images, recorder.mean()  # type: ignore[return-value]


def score_target(
    pipe: DualMDStableDiffusionPipeline,
    selection: MemorizedPrompts,
    *,
    images: Mapping[int, Tensor],
    members: Tensor,
    member_ids: np.ndarray,
    t_errors: np.ndarray | None,
    num_generations: int,
    sample: SampleConfig,
    guidance_scale: float,
    memorization: MemorizationConfig,
) -> pd.DataFrame:
    """Every generation of every selected prompt with one target, its noise magnitude and its copy statistics.

    Args:
        pipe: the target's sampler (a model in both UNet slots, or the DualMD pair).
        selection: the memorized and other prompts.
        images: dataset id -> (C, H, W) image in [-1, 1], for every selected id.
        members: (M, C, H, W) the target's training images, same scale; member_ids: (M,) their dataset ids.
        t_errors: (len(selection.image_ids),) the t-error of each prompt in selection order, or None (a pair).
        num_generations: generations per prompt.
        sample: DDIM steps, eta, batch size, alternation and the seed of the generations.
        memorization: the copy rule, its threshold and k.
    Returns:
        One row per (prompt, generation): image_id, group, prompt, generation, noise_magnitude, t_error (NaN for a
        pair), copy_ratio, is_copy, nearest_member (dataset id), nearest_distance, own_distance.
    """
    from dualmd.memorization import copy_detection

    ids = list(selection.image_ids)
    prompts = [selection.prompt(i) for i in ids]
    rows, generated = [], []
    for k in range(num_generations):
        batch, magnitude = generate_with_noise_magnitude(
            pipe, prompts, generation_seeds(sample.seed, ids, k), sample, guidance_scale=guidance_scale
        )
        generated.append(batch)
        for j, i in enumerate(ids):
            rows.append(
                {
                    "image_id": i,
                    "group": GROUPS[0] if i in selection.memorized_ids else GROUPS[1],
                    "prompt": prompts[j],
                    "generation": k,
                    "noise_magnitude": float(magnitude[j]),
                    "t_error": float("nan") if t_errors is None else float(t_errors[j]),
                }
            )
    generated_all = torch.cat(generated)  # (G * N, C, H, W), generation-major like `rows`
    copies = copy_detection(
        generated_all,
        members,
        k_nearest=memorization.k_nearest,
        threshold=memorization.copy_threshold,
        rule=memorization.copy_rule,
    )
    own = torch.stack([images[i] for i in ids] * num_generations)
    table = pd.DataFrame(rows)
    table["copy_ratio"] = copies["ratio"]
    table["is_copy"] = copies["is_copy"]
    table["nearest_member"] = np.asarray(member_ids)[copies["nearest_member"]]
    table["nearest_distance"] = copies["nearest_distance"]
    table["own_distance"] = torch.linalg.vector_norm((generated_all - own).flatten(1).double(), dim=1).numpy()
    return table
