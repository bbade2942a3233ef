"""Image generation for every sampler: one model, or the DualMD teacher pair, through one sampling loop.

Samplers (DDPM, Ho et al. 2020, Alg. 2; DDIM, Song et al. 2021) are diffusers schedulers built with
``from_config`` of the model's saved `DDPMScheduler` config, so they share its beta schedule; the sampling
config (`SampleConfig`) sets what the samplers may do differently:

* ``ddpm`` with ``num_inference_steps == num_train_timesteps`` is the paper's 1000-step ancestral sampler;
  fewer steps use the scheduler's ``set_timesteps`` spacing. ``variance_type`` is ``fixed_small`` (the
  posterior variance beta~_t, diffusers' default) or ``fixed_large`` (beta_t, the ``fixedlarge`` of the
  authors' pytorch-ddpm code, which their FIDs use). Both are valid DDPM samplers; FIDs differ between them.
* ``ddim`` takes ``eta`` (0 = deterministic).
* ``clip_sample=True`` clips the predicted x_0 to [-1, 1] before the posterior mean (diffusers). pytorch-ddpm
  computes the posterior mean from the unclipped prediction and clips only the final image, i.e.
  ``clip_sample=False``. Every sampler here clips the final image.

Randomness is per image, never per batch: image i draws its initial noise and every per-step noise from a CPU
generator seeded with ``seed + i``, so images do not depend on the batch size or on the device.

A *predictor selector* decides which `NoisePredictor` runs at each step (`PredictorSelector`): a single model
always returns itself; DualMD alternates its two teachers (`dualmd.defense.dualmd.AlternatingTeachers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor

from dualmd.config.sections import SampleConfig
from dualmd.models.adapter import NoisePredictor

SamplingScheduler = DDPMScheduler | DDIMScheduler
SCHEDULERS: dict[str, type[SamplingScheduler]] = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


class PredictorSelector(Protocol):
    """Chooses the noise predictor of every denoising step, before the loop runs (so it can refuse a plan)."""

    def assign(self, timesteps: Sequence[int]) -> list[NoisePredictor]:
        """One predictor per entry of `timesteps` (the scheduler's timesteps, in sampling order)."""
        ...


@dataclass(frozen=True)
class SinglePredictor:
    """The selector of an ordinary model: the same predictor at every step."""

    predictor: NoisePredictor

    def assign(self, timesteps: Sequence[int]) -> list[NoisePredictor]:
        return [self.predictor] * len(timesteps)


def as_selector(predictor_or_selector: NoisePredictor | PredictorSelector) -> PredictorSelector:
    """Wrap a bare `NoisePredictor` as a `SinglePredictor`; pass selectors through unchanged."""
    if hasattr(predictor_or_selector, "assign"):
        return predictor_or_selector  # type: ignore[return-value]
    return SinglePredictor(predictor_or_selector)  # type: ignore[arg-type]


def build_scheduler(kind: str, base: DDPMScheduler | Any, **overrides: Any) -> SamplingScheduler:
    """A fresh "ddpm" or "ddim" scheduler from the config of `base` (a scheduler or its config).

    `overrides` replace entries of that config (e.g. ``variance_type="fixed_large"``, ``clip_sample=False``).
    """
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; known: {sorted(SCHEDULERS)}")
    config = getattr(base, "config", base)
    return SCHEDULERS[kind].from_config(config, **overrides)


def scheduler_overrides(cfg: SampleConfig) -> dict[str, Any]:
    """The entries of the training scheduler's config that the sampling config replaces (DDIM has no variance)."""
    overrides: dict[str, Any] = {"clip_sample": cfg.clip_sample}
    if cfg.scheduler == "ddpm":
        overrides["variance_type"] = cfg.variance_type
    return overrides


def sampling_timesteps(scheduler: SamplingScheduler, num_inference_steps: int) -> list[int]:
    """Set the scheduler's timesteps and return them in sampling order (e.g. [999, 998, ..., 0])."""
    scheduler.set_timesteps(num_inference_steps)
    return [int(t) for t in scheduler.timesteps]


def image_generators(seed: int, start: int, count: int) -> list[torch.Generator]:
    """CPU generators seeded seed+start ... seed+start+count-1: one per image, independent of batching."""
    return [torch.Generator("cpu").manual_seed(seed + i) for i in range(start, start + count)]


@torch.no_grad()
def run_sampler(
    selector: NoisePredictor | PredictorSelector,
    scheduler: SamplingScheduler,
    *,
    num_images: int,
    image_shape: tuple[int, int, int],
    num_inference_steps: int,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The one sampling loop of the package (every model, DualMD included).

    Args:
        selector: a `NoisePredictor` or a `PredictorSelector` giving the predictor of each step.
        scheduler: a `DDPMScheduler` or `DDIMScheduler`; its timesteps are (re)set here.
        num_images: images to generate, N.
        image_shape: (C, H, W) of one image.
        num_inference_steps: denoising steps (<= num_train_timesteps).
        eta: DDIM noise scale; must be 0 for DDPM.
        seed: image i uses a generator seeded with seed + i.
        batch_size: images per forward pass (does not change the images).
        device: where x_t lives; predictors move it to their own device.
    Returns:
        (N, C, H, W) float32 CPU tensor in [-1, 1].
    """
    if not isinstance(scheduler, DDPMScheduler | DDIMScheduler):
        raise TypeError(
            f"unsupported scheduler {type(scheduler).__name__}; use DDPMScheduler or DDIMScheduler"
        )
    if isinstance(scheduler, DDPMScheduler) and eta != 0.0:
        raise ValueError(f"eta={eta} only applies to DDIM; set eta to 0 for the DDPM sampler")
    timesteps = sampling_timesteps(scheduler, num_inference_steps)
    predictors = as_selector(selector).assign(timesteps)
    step_kwargs = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
    batches = []
    for start in range(0, num_images, batch_size):
        count = min(batch_size, num_images - start)
        generators = image_generators(seed, start, count)
        batches.append(
            _denoise(predictors, scheduler, timesteps, generators, image_shape, device, step_kwargs)
        )
    return torch.cat(batches).clamp(-1.0, 1.0)


def _denoise(
    predictors: list[NoisePredictor],
    scheduler: SamplingScheduler,
    timesteps: list[int],
    generators: list[torch.Generator],
    image_shape: tuple[int, int, int],
    device: str | torch.device,
    step_kwargs: dict[str, float],
) -> Tensor:
    """Run the reverse chain for one batch (one generator per image) and return x_0 on the CPU."""
    # Drawn image by image on the CPU, so noise depends only on the image's seed, not on batch or device.
    x = torch.cat([torch.randn((1, *image_shape), generator=g) for g in generators]).to(device)
    x = x * scheduler.init_noise_sigma
    for predictor, t in zip(predictors, timesteps, strict=True):
        eps = predictor(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        # A list of CPU generators makes diffusers draw each image's step noise from its own generator.
        x = scheduler.step(eps, t, x, generator=generators, **step_kwargs).prev_sample
    return x.float().cpu()


def sample_images(
    predictor_or_selector: NoisePredictor | PredictorSelector,
    scheduler: DDPMScheduler,
    cfg: SampleConfig,
    shape: tuple[int, int, int],
    *,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Generate cfg.num_images images with the sampler cfg.scheduler built from `scheduler`'s config.

    Args:
        predictor_or_selector: one `NoisePredictor`, or a selector such as DualMD's teacher pair.
        scheduler: the model's training `DDPMScheduler` (only its config is used; it is not modified).
        cfg: sampler kind, steps, eta, variance, x_0 clipping, seed and batch size.
        shape: (C, H, W) of one image.
        device: where x_t lives.
    Returns:
        (cfg.num_images, C, H, W) float32 CPU tensor in [-1, 1].
    """
    return run_sampler(
        predictor_or_selector,
        build_scheduler(cfg.scheduler, scheduler, **scheduler_overrides(cfg)),
        num_images=cfg.num_images,
        image_shape=shape,
        num_inference_steps=cfg.num_inference_steps,
        eta=cfg.eta,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        device=device,
    )
