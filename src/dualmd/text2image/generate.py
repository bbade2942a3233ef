"""Generated images of a text-to-image sampler: one fine-tuned model, or the DualMD pair.

Every sampler runs the loop of `DualMDStableDiffusionPipeline` (DDIM, classifier-free guidance, per-image seeds):
a single model fills both UNet slots, so that it and DualMD differ only in which UNet takes each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch import Tensor

from dualmd import catalog
from dualmd.config.sections import SampleConfig
from dualmd.text2image.components import load_components
from dualmd.text2image.finetune import load_finetuned_unet
from dualmd.text2image.levers import bf16_autocast
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline


def sampler_pipeline(
    sampler: str, model_dirs: dict[str, Path], *, weights: str = "ema"
) -> DualMDStableDiffusionPipeline:
    """The pipeline of catalog target `sampler`: its two teachers for a pair (dualmd), else its own UNet twice."""
    ids = list(catalog.sampler_models(sampler))
    missing = [m for m in ids if m not in model_dirs]
    if missing:
        raise ValueError(f"sampler {sampler!r} needs pipeline folders for {missing}")
    if len(ids) == 2:
        sub = "unet" if weights == "ema" else "unet_raw"
        return DualMDStableDiffusionPipeline.from_teachers(
            model_dirs[ids[0]], model_dirs[ids[1]], unet_subfolder=sub
        )
    folder = Path(model_dirs[ids[0]])
    return folder_pipeline(folder, unet=load_finetuned_unet(folder, weights))  # type: ignore[arg-type]


def folder_pipeline(
    folder: str | Path, *, unet: UNet2DConditionModel | None = None
) -> DualMDStableDiffusionPipeline:
    """The model of a pipeline folder (a fine-tuned one, the tiny pretrained one or SD v1.5) sampling alone: its
    UNet (or `unet`) in both slots, DDIM from the folder's scheduler config."""
    folder = Path(folder)
    parts = load_components(folder)
    unet = unet if unet is not None else parts.unet.eval()
    return DualMDStableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet1=unet,
        unet2=unet,
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"),
    )


def generate(
    sampler: str,
    model_dirs: dict[str, Path],
    prompts: Sequence[str],
    cfg: SampleConfig,
    *,
    guidance_scale: float,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, dict[str, Any]]:
    """One image per prompt with `sampler`.

    Args:
        sampler: a catalog target: a model samples alone, a pair (dualmd) alternates its teachers.
        model_dirs: model id -> fine-tuned pipeline folder; needs the ids `sampler` uses.
        prompts: N prompts.
        cfg: DDIM steps, eta, weights, alternation rule, batch size, seed; mixed_precision "bf16" runs the
            pipeline under bf16 autocast (refused on a device without bf16).
        guidance_scale: classifier-free guidance scale.
    Returns:
        images (N, C, H, W) float32 CPU in [-1, 1], and the sampling provenance (with the UNet of each step).
    """
    pipe = sampler_pipeline(sampler, model_dirs, weights=cfg.weights).to(device)
    with bf16_autocast(device, cfg.mixed_precision == "bf16"):  # the UNets' and the VAE's forward
        images = pipe(
            list(prompts),
            num_inference_steps=cfg.num_inference_steps,
            guidance_scale=guidance_scale,
            eta=cfg.eta,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            alternation=cfg.dualmd_alternation,
        )
    info = {
        "sampler": sampler,
        "models": {m: str(model_dirs[m]) for m in catalog.sampler_models(sampler)},
        "weights": cfg.weights,
        "scheduler": "ddim",
        "num_inference_steps": cfg.num_inference_steps,
        "eta": cfg.eta,
        "guidance_scale": guidance_scale,
        "seed": cfg.seed,
        "num_prompts": len(prompts),
        "mixed_precision": cfg.mixed_precision,
        "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }
    if catalog.target(sampler).kind == "pair":
        info["alternation"] = cfg.dualmd_alternation
        info["teacher_sequence"] = pipe.teacher_sequence(cfg.num_inference_steps, cfg.dualmd_alternation)
    return images, info  # type: ignore[return-value]
