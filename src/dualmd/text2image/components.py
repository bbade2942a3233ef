"""Tiny Stable-Diffusion-shaped components built in code, and the pipeline folder that holds them.

The shapes follow Stable Diffusion v1.5 at a small scale: an `AutoencoderKL` with three levels (latents 4x
smaller per side than the images, 4 latent channels), a CLIP text encoder over the shipped tiny tokenizer, a
`UNet2DConditionModel` with cross-attention to the text states, and SD's scaled-linear DDPM schedule. The text
encoder starts at its seeded random initialisation, which maps each caption to a deterministic, distinct sequence
of states; pretraining may train it with the UNet on the images outside the split
(`text2image.pretrain_text_encoder`, `dualmd.text2image.pretrain`), and every later use keeps it frozen, as SD's
CLIP encoder is (the real pipeline loads SD's).

A pipeline folder is what `StableDiffusionPipeline.save_pretrained` writes (model_index.json, vae/,
text_encoder/, tokenizer/, unet/, scheduler/); `load_components` reads the parts back.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch import Tensor

from dualmd.text2image.tokenizer import MAX_LENGTH, TOKENIZER_DIR, load_tokenizer

#: Provenance file of a pipeline folder written by this package.
METADATA = "metadata.json"
#: Stable Diffusion's forward process (scaled-linear betas 0.00085 -> 0.012 over 1000 steps).
SD_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}


@dataclass
class Components:
    """The parts of a text-to-image pipeline that training and attacks use (tokenizer: a CLIPTokenizer)."""

    vae: AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler


def tiny_vae(*, channels: int = 3, image_size: int = 32, seed: int = 0) -> AutoencoderKL:
    """A seeded three-level `AutoencoderKL`: (B, channels, S, S) images <-> (B, 4, S/4, S/4) latents."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=image_size,
    )


def tiny_text_encoder(*, seed: int = 0, tokenizer_dir: str | Path = TOKENIZER_DIR):
    """A seeded two-layer `CLIPTextModel` (width 32) over the tokenizer in `tokenizer_dir`, in eval mode."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = load_tokenizer(tokenizer_dir)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return CLIPTextModel(config).eval()


def tiny_cond_unet(
    *, sample_size: int = 8, cross_attention_dim: int = 32, seed: int = 0
) -> UNet2DConditionModel:
    """A seeded two-level `UNet2DConditionModel` on 4-channel latents, cross-attending to the text states."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def ddpm_scheduler(**overrides: Any) -> DDPMScheduler:
    """The training scheduler: SD's schedule, epsilon prediction (`overrides` replace entries)."""
    return DDPMScheduler(**{**SD_SCHEDULE, "prediction_type": "epsilon", "clip_sample": False, **overrides})


def ddim_scheduler(base: DDPMScheduler) -> DDIMScheduler:
    """The sampling scheduler of SD pipelines, from the training scheduler's config (same betas)."""
    return DDIMScheduler.from_config(base.config, set_alpha_to_one=False, steps_offset=1)


def tiny_components(*, channels: int = 3, image_size: int = 32, seed: int = 0) -> Components:
    """Every tiny part, untrained (the UNet's sample size follows the VAE's 4x downsampling)."""
    tokenizer = load_tokenizer()
    text_encoder = tiny_text_encoder(seed=seed)
    return Components(
        vae=tiny_vae(channels=channels, image_size=image_size, seed=seed),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=tiny_cond_unet(
            sample_size=image_size // 4, cross_attention_dim=text_encoder.config.hidden_size, seed=seed
        ),
        scheduler=ddpm_scheduler(),
    )


def save_pipeline(
    folder: str | Path,
    parts: Components,
    unet: UNet2DConditionModel | None = None,
    *,
    extra_unets: dict[str, UNet2DConditionModel] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a `StableDiffusionPipeline` folder (no safety checker) of `parts`, atomically.

    Args:
        folder: the folder written; it appears (replacing an older one) only once complete.
        parts: the components; the scheduler saved is DDIM (SD's sampler) on the training schedule.
        unet: saved in place of `parts.unet` (e.g. the EMA weights of a fine-tuned model).
        extra_unets: more UNets saved in subfolders of these names (ignored by diffusers' loader).
        metadata: written as metadata.json.
    """
    folder = Path(folder)
    pipe = StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=unet if unet is not None else parts.unet,
        scheduler=ddim_scheduler(parts.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    for name, extra in (extra_unets or {}).items():
        extra.save_pretrained(tmp / name)
    if metadata is not None:
        (tmp / METADATA).write_text(json.dumps(metadata, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def load_components(folder: str | Path, *, device: str | torch.device = "cpu") -> Components:
    """The parts of a pipeline folder (SD v1.5 or one written by `save_pipeline`), VAE and text encoder in
    eval mode; the scheduler is the DDPM training scheduler built from the saved scheduler's config."""
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    saved = DDIMScheduler.from_pretrained(folder / "scheduler")
    return Components(
        vae=AutoencoderKL.from_pretrained(folder / "vae").to(device).eval(),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder").to(device).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet").to(device),
        scheduler=DDPMScheduler.from_config(saved.config),
    )


@torch.no_grad()
def encode_prompts(parts: Components, prompts: list[str]) -> Tensor:
    """Text-encoder states (B, L, D) of the prompts, padded to the tokenizer's length as SD pipelines do."""
    ids = parts.tokenizer(
        prompts,
        padding="max_length",
        max_length=parts.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    device = next(parts.text_encoder.parameters()).device
    return parts.text_encoder(ids.to(device))[0]


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: Tensor, *, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The VAE posterior of images (N, C, H, W) in [-1, 1]: mean and std, each (N, 4, H/4, W/4), unscaled, fp32
    on the CPU, computed on the VAE's device in its dtype, `batch_size` images per pass."""
    weight = next(vae.parameters())
    means, stds = [], []
    for start in range(0, len(images), batch_size):
        # in the VAE's dtype (text2image.weight_dtype); the posterior is returned in fp32
        dist = vae.encode(images[start : start + batch_size].to(weight.device, weight.dtype)).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.cat(means), torch.cat(stds)
