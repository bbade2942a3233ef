"""DualMD: two teachers trained on disjoint member halves denoise alternately (paper §3.4, Fig. 2).

At every denoising step exactly one teacher predicts the noise; their outputs are never averaged. If teacher 1
pulls a sample towards one of its training images at step t, teacher 2 (for which that image is a non-member)
takes the next step. The paper has no algorithm box; the rule comes from the authors' code (paper digest §2g):

* ``"timestep_parity"`` (their DDPM code, ``eval-DualMD.py``): t odd -> teacher 1, t even -> teacher 2, so the
  first step of a 1000-step chain (t = 999) uses teacher 1.
* ``"step_index"`` (their Stable Diffusion/DDIM code): step i = 0, 1, ... of the chain; i even -> teacher 1,
  i odd -> teacher 2.

Default (``sample.dualmd_alternation: step_index``): both rules give the same sequence 1, 2, 1, 2, ... whenever the
timesteps count down by an odd stride from an odd timestep, which includes the paper's full DDPM chain
(T = 1000, 1000 steps). Step index also alternates for any number of steps and any spacing, whereas timestep
parity does not alternate at all for e.g. DDPM/DDIM with 50 "leading" steps (all timesteps even), so it is
the default for both DDPM and DDIM. ``timestep_parity`` refuses a chain whose consecutive timesteps share a
parity (the two teachers would not alternate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DModel
from PIL import Image
from torch import Tensor

from dualmd.models.adapter import NoisePredictor, UNetPredictor
from dualmd.sample import run_sampler, sampling_timesteps

Alternation = Literal["timestep_parity", "step_index"]
ALTERNATIONS: tuple[str, ...] = ("timestep_parity", "step_index")


def teacher_sequence(timesteps: Sequence[int], alternation: Alternation) -> list[int]:
    """The teacher (1 or 2) that denoises at each step of a chain.

    Args:
        timesteps: the scheduler's timesteps in sampling order, e.g. [999, 998, ..., 0].
        alternation: "timestep_parity" (t odd -> 1, t even -> 2) or "step_index" (i even -> 1, i odd -> 2).
    Returns:
        One entry per step, each 1 or 2.
    Raises:
        ValueError: unknown rule, or timestep parity on a chain whose consecutive timesteps share a parity.
    """
    if alternation == "step_index":
        return [1 if i % 2 == 0 else 2 for i in range(len(timesteps))]
    if alternation != "timestep_parity":
        raise ValueError(f"unknown DualMD alternation {alternation!r}; known: {list(ALTERNATIONS)}")
    stuck = [(a, b) for a, b in zip(timesteps, timesteps[1:], strict=False) if (a - b) % 2 == 0]
    if stuck:
        raise ValueError(
            f"DualMD timestep parity does not alternate the teachers on these timesteps "
            f"({len(timesteps)} steps, e.g. t={stuck[0][0]} and t={stuck[0][1]} have the same parity, as with "
            "DDPM/DDIM 'leading' spacing at an even stride). Use sample.dualmd_alternation: step_index, or "
            "num_inference_steps = num_train_timesteps."
        )
    return [1 if t % 2 == 1 else 2 for t in timesteps]


@dataclass(frozen=True, kw_only=True)
class AlternatingTeachers:
    """The DualMD `PredictorSelector`: teacher 1 or teacher 2 per step, as `teacher_sequence` says."""

    teacher1: NoisePredictor
    teacher2: NoisePredictor
    alternation: Alternation = "step_index"

    def assign(self, timesteps: Sequence[int]) -> list[NoisePredictor]:
        teachers = {1: self.teacher1, 2: self.teacher2}
        return [teachers[k] for k in teacher_sequence(timesteps, self.alternation)]


class DualMDPipeline(DiffusionPipeline):
    """DualMD sampling as a diffusers pipeline (works with ``save_pretrained`` / ``from_pretrained``).

    Example:
        >>> pipe = DualMDPipeline(unet1=teacher1, unet2=teacher2, scheduler=DDIMScheduler.from_config(cfg))
        >>> images = pipe(16, num_inference_steps=50, seed=0)   # (16, C, H, W) in [-1, 1]

    The scheduler's class picks the sampler: `DDPMScheduler` (ancestral) or `DDIMScheduler` (takes eta).
    """

    def __init__(self, unet1: UNet2DModel, unet2: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler):
        super().__init__()
        self.register_modules(unet1=unet1, unet2=unet2, scheduler=scheduler)

    def teacher_sequence(
        self, num_inference_steps: int | None = None, alternation: Alternation = "step_index"
    ) -> str:
        """The teacher at each step of a call with these settings, as a string such as "1212..."."""
        steps = sampling_timesteps(self.scheduler, self._num_steps(num_inference_steps))
        return "".join(str(k) for k in teacher_sequence(steps, alternation))

    def __call__(
        self,
        num_images: int = 1,
        *,
        num_inference_steps: int | None = None,
        eta: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        alternation: Alternation = "step_index",
        output_type: Literal["pt", "pil"] = "pt",
    ) -> Tensor | list[Image.Image]:
        """Generate `num_images` images, the two UNets alternating at every step.

        Args:
            num_images: N.
            num_inference_steps: denoising steps; None means num_train_timesteps (the paper's full chain).
            eta: DDIM noise scale (must be 0 with a DDPMScheduler).
            seed: image i uses a generator seeded with seed + i (independent of batch_size).
            batch_size: images per forward pass.
            alternation: "step_index" or "timestep_parity" (see module docstring).
            output_type: "pt" -> (N, C, H, W) float32 CPU tensor in [-1, 1]; "pil" -> list of N PIL images.
        """
        selector = AlternatingTeachers(
            teacher1=UNetPredictor(self.unet1), teacher2=UNetPredictor(self.unet2), alternation=alternation
        )
        config = self.unet1.config
        with torch.no_grad():
            images = run_sampler(
                selector,
                self.scheduler,
                num_images=num_images,
                image_shape=(config.in_channels, config.sample_size, config.sample_size),
                num_inference_steps=self._num_steps(num_inference_steps),
                eta=eta,
                seed=seed,
                batch_size=batch_size,
                device=self.device,
            )
        if output_type == "pt":
            return images
        if output_type == "pil":
            return to_pil(images)
        raise ValueError(f"unknown output_type {output_type!r}; use 'pt' or 'pil'")

    def _num_steps(self, num_inference_steps: int | None) -> int:
        return num_inference_steps or int(self.scheduler.config.num_train_timesteps)


def to_pil(images: Tensor) -> list[Image.Image]:
    """(N, C, H, W) in [-1, 1] -> N PIL images ("L" for one channel, "RGB" for three)."""
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]


__all__ = ["ALTERNATIONS", "AlternatingTeachers", "DualMDPipeline", "teacher_sequence", "to_pil"]
