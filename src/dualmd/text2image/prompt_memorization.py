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
* **Table 5's scores** (`ImageScorers`): the copy score in SSCD's form (`dualmd.text2image.copy_score`: descriptor
  cosine with the prompt's own image and the largest over the target's members) and the CLIP cosine of the
  generation with its prompt (`dualmd.clip_score`), each absent, with its reason, without a local network.

With `mitigation` (Wen et al.'s inference-time mitigation, `dualmd.text2image.mitigation`) the generations are
sampled with it, and their rows carry ``mitigation = "wen"`` (otherwise "none").

`score_target` writes one row per generation; `dualmd.text2image.memorization_report` turns the rows of every
target into the detectors' AUCs, the copy rates and Table 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from dualmd.config.evaluation import MemorizationConfig
from dualmd.config.sections import SampleConfig
from dualmd.config.text2image import MitigationConfig
from dualmd.noise import sample_seed
from dualmd.text2image.copy_score import NO_DESCRIPTOR_REASON
from dualmd.text2image.memorized import GROUPS, MemorizedPrompts
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline

#: Stream of `sample_seed` for the generations (the caption sampler uses streams 0 and 1).
_GENERATION_STREAM = 2
#: Values of the rows' `mitigation` column: plain sampling, Wen et al.'s inference-time mitigation.
MITIGATIONS = ("none", "wen")
#: Why the CLIP score of the generations is absent when no model is configured.
NO_CLIP_REASON = (
    "no CLIP model: memorization.clip_path is not set (a local CLIPModel folder; nothing is downloaded)"
)


@dataclass
class ImageScorers:
    """The networks that score a generation beyond its pixels, each None with the reason it is absent: the copy
    descriptor (`dualmd.text2image.copy_score.load_descriptor`) and CLIP (`dualmd.clip_score.load_clip`: model
    and processor), each with the name the report gives it (a stand-in's says so)."""

    descriptor: Any | None = None
    descriptor_absent: str | None = NO_DESCRIPTOR_REASON
    descriptor_name: str | None = None
    clip: tuple[Any, Any] | None = None
    clip_absent: str | None = NO_CLIP_REASON
    clip_name: str | None = None
    batch_size: int = 32
    device: str | torch.device = "cpu"

    def columns(
        self, generated: Tensor, prompts: Sequence[str], own: Tensor, members: Tensor
    ) -> dict[str, Any]:
        """The rows' columns of Table 5 for generations (G, C, H, W), their prompts (G,), their prompts' own
        images (G, C, H, W) and the target's members (M, C, H, W), all in [-1, 1]: sscd_own, sscd_max,
        sscd_nearest (row of `members`; -1 when absent), clip_cosine (NaN when absent), the two networks' names
        (sscd_model, clip_model; None when absent) and the two reasons."""
        from dualmd.clip_score import clip_cosines
        from dualmd.text2image.copy_score import copy_similarities, descriptors

        nan = np.full(len(generated), np.nan)
        out: dict[str, Any] = {"sscd_own": nan, "sscd_max": nan, "sscd_nearest": np.full(len(generated), -1)}
        if self.descriptor is not None:
            embed = {"batch_size": self.batch_size, "device": self.device}
            scores = copy_similarities(
                descriptors(self.descriptor, generated, **embed),
                descriptors(self.descriptor, own, **embed),
                descriptors(self.descriptor, members, **embed),
            )
            out |= {"sscd_own": scores["own"], "sscd_max": scores["max"], "sscd_nearest": scores["nearest"]}
        out["clip_cosine"] = nan
        if self.clip is not None:
            model, processor = self.clip
            out["clip_cosine"] = clip_cosines(
                generated, prompts, model, processor, batch_size=self.batch_size, device=self.device
            )
        out["sscd_model"] = self.descriptor_name if self.descriptor is not None else None
        out["clip_model"] = self.clip_name if self.clip is not None else None
        out["sscd_absent_reason"] = None if self.descriptor is not None else self.descriptor_absent
        out["clip_absent_reason"] = None if self.clip is not None else self.clip_absent
        return out


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
    mitigation: MitigationConfig | None = None,
) -> tuple[Tensor, np.ndarray]:
    """One guided DDIM generation per prompt (with Wen et al.'s mitigation when given) and its noise magnitude
    averaged over the steps.

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
        mitigation=mitigation,
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
    mitigation: MitigationConfig | None = None,
    scorers: ImageScorers | None = None,
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
        mitigation: sample with Wen et al.'s mitigation (rows marked "wen"); None: plain sampling ("none").
        scorers: the copy descriptor and CLIP (default: both absent).
    Returns:
        One row per (prompt, generation): image_id, group, prompt, generation, mitigation, noise_magnitude,
        t_error (NaN for a pair), copy_ratio, is_copy, nearest_member (dataset id), nearest_distance,
        own_distance, sscd_own, sscd_max, sscd_nearest_member (dataset id; -1 when absent), clip_cosine, the
        names of the two networks (sscd_model, clip_model) and the reasons the scores are absent
        (sscd_absent_reason, clip_absent_reason; None when present).
    """
    from dualmd.memorization import copy_detection

    scorers = scorers if scorers is not None else ImageScorers()
    ids = list(selection.image_ids)
    prompts = [selection.prompt(i) for i in ids]
    rows, generated = [], []
    for k in range(num_generations):
        batch, magnitude = generate_with_noise_magnitude(
            pipe,
            prompts,
            generation_seeds(sample.seed, ids, k),
            sample,
            guidance_scale=guidance_scale,
            mitigation=mitigation,
        )
        generated.append(batch)
        for j, i in enumerate(ids):
            rows.append(
                {
                    "image_id": i,
                    "group": GROUPS[0] if i in selection.memorized_ids else GROUPS[1],
                    "prompt": prompts[j],
                    "generation": k,
                    "mitigation": MITIGATIONS[0] if mitigation is None else MITIGATIONS[1],
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
    scores = scorers.columns(generated_all, prompts * num_generations, own, members)
    nearest = scores.pop("sscd_nearest")
    table["sscd_own"], table["sscd_max"] = scores.pop("sscd_own"), scores.pop("sscd_max")
    table["sscd_nearest_member"] = np.where(nearest >= 0, np.asarray(member_ids)[np.maximum(nearest, 0)], -1)
    for key, value in scores.items():  # clip_cosine, the two names and the two reasons
        table[key] = value
    return table
