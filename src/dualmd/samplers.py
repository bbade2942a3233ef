"""The sampler of each target: one model alone, or the DualMD pair alternating its two teachers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import Tensor

from dualmd import catalog
from dualmd.config.sections import SampleConfig
from dualmd.defense.dualmd import AlternatingTeachers, teacher_sequence
from dualmd.models.adapter import NoisePredictor, UNetPredictor
from dualmd.models.directory import load_unet
from dualmd.sample import PredictorSelector, build_scheduler, sample_images, sampling_timesteps


def generate(
    sampler: str, model_dirs: dict[str, Path], cfg: SampleConfig, *, device: str | torch.device = "cpu"
) -> tuple[Tensor, dict[str, Any]]:
    """Load the model(s) of `sampler` and generate cfg.num_images images.

    Args:
        sampler: a target of `dualmd.catalog`: a model samples alone, a pair (dualmd) alternates its models.
        model_dirs: model id -> trained-model directory; needs the ids `sampler` uses.
        cfg: sampling settings; cfg.weights picks raw or EMA weights.
        device: where the UNets run.
    Returns:
        images: (N, C, H, W) float32 CPU tensor in [-1, 1];
        info: provenance (sampler, scheduler, steps, eta, variance_type, weights, seed, and for dualmd the
        alternation rule and the teacher used at each step as a string such as "1212...").
    """
    selector, base, shape = load_sampler(
        sampler,
        model_dirs,
        weights=cfg.weights,
        alternation=cfg.dualmd_alternation,
        device=device,
        compile=cfg.compile,
        mixed_precision=cfg.mixed_precision,
    )
    images = sample_images(selector, base, cfg, shape, device=device)
    model_ids = list(catalog.sampler_models(sampler))
    info = _sampling_info(sampler, base, cfg, model_ids, model_dirs)
    if catalog.target(sampler).kind == "pair":
        steps = sampling_timesteps(build_scheduler(cfg.scheduler, base), cfg.num_inference_steps)
        info["alternation"] = cfg.dualmd_alternation
        info["teacher_sequence"] = "".join(str(k) for k in teacher_sequence(steps, cfg.dualmd_alternation))
    return images, info


def load_sampler(
    sampler: str,
    model_dirs: dict[str, Path],
    *,
    weights: str,
    alternation: str,
    device: str | torch.device = "cpu",
    compile: bool = False,
    mixed_precision: str = "no",
) -> tuple[NoisePredictor | PredictorSelector, DDPMScheduler, tuple[int, int, int]]:
    """The denoiser of `sampler` as the sampling loop runs it: one model's predictor, or DualMD's teachers
    alternating by `alternation` (`AlternatingTeachers`).

    Args:
        sampler: a target of `dualmd.catalog`.
        model_dirs: model id -> trained-model directory; needs the ids `sampler` uses.
        weights: "raw" or "ema".
        alternation: DualMD's rule, "step_index" or "timestep_parity" (ignored for a single model).
        device: where the UNets run.
        compile, mixed_precision: as in `UNetPredictor`.
    Returns:
        (predictor or selector, the models' shared training scheduler, (C, H, W) of one image).
    """
    model_ids = list(catalog.sampler_models(sampler))
    missing = [m for m in model_ids if m not in model_dirs]
    if missing:
        raise ValueError(f"sampler {sampler!r} needs model directories for {missing}")
    base = _shared_scheduler([Path(model_dirs[m]) for m in model_ids])
    unets = [load_unet(model_dirs[m], weights, device) for m in model_ids]
    predictors = [UNetPredictor(u, compile=compile, mixed_precision=mixed_precision) for u in unets]
    selector: NoisePredictor | PredictorSelector = predictors[0]
    if catalog.target(sampler).kind == "pair":
        selector = AlternatingTeachers(
            teacher1=predictors[0],
            teacher2=predictors[1],
            alternation=alternation,  # type: ignore[arg-type]
        )
    shape = (unets[0].config.in_channels, unets[0].config.sample_size, unets[0].config.sample_size)
    return selector, base, shape


def _shared_scheduler(model_dirs: list[Path]) -> DDPMScheduler:
    """The training scheduler of the model(s); DualMD's teachers must share the same forward process."""
    schedulers = [DDPMScheduler.from_pretrained(d / "scheduler") for d in model_dirs]
    for d, s in zip(model_dirs[1:], schedulers[1:], strict=True):
        first = schedulers[0].alphas_cumprod
        if s.alphas_cumprod.shape != first.shape or not torch.allclose(s.alphas_cumprod, first):
            raise ValueError(f"{d} was trained with another noise schedule than {model_dirs[0]}")
    return schedulers[0]


def _sampling_info(
    sampler: str, base: DDPMScheduler, cfg: SampleConfig, model_ids: list[str], model_dirs: dict[str, Path]
) -> dict[str, Any]:
    return {
        "sampler": sampler,
        "models": {m: str(model_dirs[m]) for m in model_ids},
        "weights": cfg.weights,
        "scheduler": cfg.scheduler,
        "num_inference_steps": cfg.num_inference_steps,
        "num_train_timesteps": int(base.config.num_train_timesteps),
        "eta": cfg.eta if cfg.scheduler == "ddim" else None,
        "variance_type": cfg.variance_type if cfg.scheduler == "ddpm" else None,
        "clip_sample": cfg.clip_sample,
        "timestep_spacing": base.config.timestep_spacing,
        "num_images": cfg.num_images,
        "seed": cfg.seed,
    }
