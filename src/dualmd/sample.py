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

A *deployed sampler* (`DeployedSampler`) is a selector with its scheduler and step grid, as a service runs it. Its
image-to-image query (`DeployedSampler.img2img`, diffusers' img2img and SDEdit) starts from a given image instead of
pure noise: strength s in (0, 1] runs the last k = min(int(N * s), N) steps of the N-step grid (`img2img_start`),
noising the image to the grid timestep of step N - k and denoising through the rest of the grid with the predictor
the selector assigns to each step of the *whole* grid, so that every step is taken by the model that takes it in
generation (DualMD's step-index alternation counts from the first step of the grid, not of the query).
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
    step_kwargs = _step_kwargs(scheduler, eta)
    timesteps = sampling_timesteps(scheduler, num_inference_steps)
    predictors = as_selector(selector).assign(timesteps)
    batches = []
    for start in range(0, num_images, batch_size):
        count = min(batch_size, num_images - start)
        generators = image_generators(seed, start, count)
        batches.append(
            _denoise(predictors, scheduler, timesteps, generators, image_shape, device, step_kwargs)
        )
    return torch.cat(batches).clamp(-1.0, 1.0)


def _step_kwargs(scheduler: SamplingScheduler, eta: float) -> dict[str, float]:
    """The keyword arguments of `scheduler.step` (DDIM's eta), refusing an unsupported scheduler or a DDPM eta."""
    if not isinstance(scheduler, DDPMScheduler | DDIMScheduler):
        raise TypeError(
            f"unsupported scheduler {type(scheduler).__name__}; use DDPMScheduler or DDIMScheduler"
        )
    if isinstance(scheduler, DDPMScheduler) and eta != 0.0:
        raise ValueError(f"eta={eta} only applies to DDIM; set eta to 0 for the DDPM sampler")
    return {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}


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
    return _reverse(predictors, scheduler, timesteps, x, generators, step_kwargs).float().cpu()


def _reverse(
    predictors: list[NoisePredictor],
    scheduler: SamplingScheduler,
    timesteps: list[int],
    x: Tensor,
    generators: list[torch.Generator],
    step_kwargs: dict[str, float],
) -> Tensor:
    """The reverse steps at `timesteps` from x (B, C, H, W), `predictors[i]` at step i; returns the last x."""
    for predictor, t in zip(predictors, timesteps, strict=True):
        eps = predictor(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        # A list of CPU generators makes diffusers draw each image's step noise from its own generator.
        x = scheduler.step(eps, t, x, generator=generators, **step_kwargs).prev_sample
    return x


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


def img2img_start(strength: float, num_inference_steps: int) -> int:
    """The grid step at which an image-to-image query of `strength` starts (diffusers' img2img `get_timesteps`).

    The query runs k = min(int(N * strength), N) steps of the N-step grid, from step N - k to the last, computed in
    float arithmetic as diffusers does (int(100 * 0.29) = 28, since 100 * 0.29 = 28.999999999999996). With 50-step
    DDIM ("leading" grid 980, 960, ..., 0), strength 0.1 starts at step 45, timestep 80, and runs 5 steps; with
    the 1000-step ancestral grid (999, ..., 0) it starts at step 900, timestep 99, and runs 100.

    Raises:
        ValueError: strength outside (0, 1], or so small that it runs no step (int(N * strength) = 0).
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength {strength} is not in (0, 1]")
    num_steps = min(int(num_inference_steps * strength), num_inference_steps)
    if num_steps < 1:
        raise ValueError(
            f"strength {strength} runs no step of the {num_inference_steps}-step grid "
            f"(int({num_inference_steps} * {strength}) = 0); the smallest is 1 / {num_inference_steps}"
        )
    return num_inference_steps - num_steps


@dataclass(frozen=True, kw_only=True)
class DeployedSampler:
    """A sampler as a service deploys it: the predictor of each step, its scheduler and its N-step grid.

    Attributes:
        selector: a `NoisePredictor` or a `PredictorSelector` (DualMD's teachers).
        scheduler: the sampling `DDPMScheduler` or `DDIMScheduler` (`build_scheduler`); its timesteps are set here.
        num_inference_steps: N, the steps of the grid (N = num_train_timesteps with DDPM: the paper's sampler).
        eta: DDIM noise scale (0 for DDPM).
    """

    selector: NoisePredictor | PredictorSelector
    scheduler: SamplingScheduler
    num_inference_steps: int
    eta: float = 0.0

    @classmethod
    def from_config(
        cls, selector: NoisePredictor | PredictorSelector, base: DDPMScheduler | Any, cfg: SampleConfig
    ) -> DeployedSampler:
        """The sampler the sample stage runs with `cfg` (scheduler kind, steps, eta, variance, x_0 clipping) on
        the training schedule of `base`."""
        scheduler = build_scheduler(cfg.scheduler, base, **scheduler_overrides(cfg))
        return cls(
            selector=selector, scheduler=scheduler, num_inference_steps=cfg.num_inference_steps, eta=cfg.eta
        )

    def grid(self) -> list[int]:
        """The N timesteps of the grid in sampling order (e.g. [980, 960, ..., 0] for 50-step DDIM)."""
        return sampling_timesteps(self.scheduler, self.num_inference_steps)

    def start(self, strength: float) -> tuple[int, int]:
        """(grid step, its timestep) where an image-to-image query of `strength` starts (`img2img_start`)."""
        step = img2img_start(strength, self.num_inference_steps)
        return step, self.grid()[step]

    @torch.no_grad()
    def img2img(
        self, x_0: Tensor, strength: float, noise: Tensor, generators: list[torch.Generator]
    ) -> Tensor:
        """The image-to-image query: noise x_0 to the start timestep t, x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) noise
        (`scheduler.add_noise`), and run the remaining grid steps as generation runs them.

        Args:
            x_0: (B, C, H, W) images in [-1, 1] on the device the predictors take.
            strength: in (0, 1]; the share of the grid that is run (`img2img_start`).
            noise: (B, C, H, W) standard normal noise of the initial noising.
            generators: one CPU generator per image, for the step noise of DDPM (and DDIM with eta > 0).
        Returns:
            (B, C, H, W) float32 CPU tensor in [-1, 1], clipped as generated images are.
        """
        step_kwargs = _step_kwargs(self.scheduler, self.eta)
        grid = self.grid()
        step = img2img_start(strength, self.num_inference_steps)
        # the predictors of the whole grid, then its tail: each step keeps the model generation gives it
        predictors = as_selector(self.selector).assign(grid)[step:]
        t = torch.full((len(x_0),), grid[step], dtype=torch.long, device=x_0.device)
        x = self.scheduler.add_noise(x_0.float(), noise.to(x_0.device, torch.float32), t)
        x = _reverse(predictors, self.scheduler, grid[step:], x, generators, step_kwargs)
        return x.float().cpu().clamp(-1.0, 1.0)
