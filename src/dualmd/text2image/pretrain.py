"""Pretraining the tiny stand-in for Stable Diffusion on the population outside the private set.

SD v1.5 arrives pretrained on LAION; the offline stand-in earns the same role on the images that take part in
no membership experiment (the non-participating images of the split), so that fine-tuning on members means
what it means for SD: a pretrained model adapting to a small private set.

1. `pretrain_vae`: the autoencoder (reconstruction MSE plus a small KL term, as the KL-regularised VAE of Rombach
   et al. 2022 without the adversarial and perceptual terms); its `scaling_factor` is then set to 1 / std of the
   population's latents, the rule that gave SD its 0.18215.
2. `pretrain_unet`: a randomly initialised conditional UNet trained on the population's latents and captions
   with the eps target and caption dropout, through the same loop as fine-tuning. The text encoder either stays
   at its seeded random initialisation or (`train_text_encoder`) trains with the UNet on the same loss, as LDM's
   text-to-image model trained its transformer text encoder jointly with the UNet (Rombach et al. 2022, §3.3,
   Eq. 3); either way it is frozen afterwards, so fine-tuning and the attacks see it as SD's frozen CLIP encoder,
   and it has seen the captions of the population only.
3. `build_tiny_pipeline`: both, then the pipeline folder (`save_pipeline`, with both runs in metadata.json).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from dualmd.config.sections import TrainConfig
from dualmd.models.adapter import Schedule
from dualmd.text2image.batches import CaptionTokens, latent_source
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import Components, encode_images, save_pipeline, tiny_components
from dualmd.text2image.finetune import train_conditional
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import fit, make_accelerator, noise_target


class TextConditionedUNet(torch.nn.Module):
    """A conditional UNet and its text encoder as one trained model: called as the training loop calls a conditional
    UNet, with token ids (B, L) in place of the text states, which it encodes itself (so both get gradients)."""

    def __init__(self, unet: torch.nn.Module, text_encoder: torch.nn.Module):
        super().__init__()
        self.unet = unet
        self.text_encoder = text_encoder

    def forward(self, x_t: Tensor, t: Tensor, *, encoder_hidden_states: Tensor) -> Any:
        """eps prediction (`.sample`, (B, 4, h, w)) for latents x_t (B, 4, h, w), timesteps t (B,), token ids (B, L)."""
        states = self.text_encoder(encoder_hidden_states)[0]  # (B, L, D)
        return self.unet(x_t, t, encoder_hidden_states=states)


def pretrain_vae(
    vae: AutoencoderKL,
    images: Tensor,
    *,
    num_steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    kl_weight: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Train `vae` in place on images (N, C, H, W) in [-1, 1], then set its `scaling_factor`.

    Returns:
        {"loss_curve": [[step, loss], ...] every 10% of the steps, "scaling_factor", "reconstruction_mse"
         (of the posterior means over `images`), "wall_time_s"}.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    curve, t0 = [], time.perf_counter()
    for step in range(num_steps):
        x = images[torch.randint(len(images), (batch_size,), generator=gen)]
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(recon, x) + kl_weight * dist.kl().mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, num_steps // 10) == 0:
            curve.append([step + 1, loss.item()])
    vae.eval()
    with torch.no_grad():
        mean, _ = encode_images(vae, images)
        mse = float(torch.nn.functional.mse_loss(vae.decode(mean).sample, images))
    scaling = 1.0 / float(mean.std())
    vae.register_to_config(scaling_factor=scaling)
    return {
        "loss_curve": curve,
        "scaling_factor": scaling,
        "reconstruction_mse": mse,
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }


def pretrain_unet(
    parts: Components,
    images: Tensor,
    image_ids: Sequence[int],
    sampler: CaptionSampler,
    train_cfg: TrainConfig,
    state_dir: Path,
    *,
    train_text_encoder: bool = False,
) -> dict[str, Any]:
    """Train `parts.unet` in place (from its initialisation) on the population's latents and captions.

    Args:
        images: (N, C, H, W) in [-1, 1], the population; image_ids: their (N,) dataset ids.
        sampler: the captions by dataset id and the caption-dropout rate (dropout trains the unconditional
            prediction classifier-free guidance needs).
        train_cfg: steps, batch size, learning rate, seed; state_dir: resumable state.
        train_text_encoder: train `parts.text_encoder` with the UNet (in place) on the captions of `image_ids`
            only; else it stays frozen. Either way it leaves frozen, in eval mode.
    Returns:
        {"loss_curve", "wall_time_s", "text_encoder": {"trained", and when trained "num_captions" and
        "captions_sha256" (`run_hash` of the sorted distinct captions it saw, the empty prompt included)}}.
    """
    description = {"data": {"population_sha256": tensor_sha256(images)}, "init": "random"}
    captions = [sampler.captions[i] for i in image_ids]  # the population's only
    if train_text_encoder:
        tokens = CaptionTokens.tokenize(parts.tokenizer, captions)
        batches = latent_source(
            parts, images, image_ids, sampler, batch_size=train_cfg.batch_size, bank=tokens
        )
        parts.vae.requires_grad_(False)
        model = TextConditionedUNet(parts.unet, parts.text_encoder.requires_grad_(True)).train()
        result = fit(
            unet=model,
            schedule=Schedule.from_scheduler(parts.scheduler),
            batches=batches,
            target_fn=noise_target,
            cfg=train_cfg,
            accelerator=make_accelerator(train_cfg),
            state_dir=state_dir,
            run_hash=run_hash({"train": train_cfg.to_dict(), **description, "text_encoder": "trained"}),
        )
        model.load_state_dict(result.ema_unet.state_dict())  # EMA weights of both parts
        encoder = {"trained": True, "num_captions": len(tokens.index)}
        encoder["captions_sha256"] = run_hash({"captions": sorted(tokens.index)})
    else:
        batches = latent_source(parts, images, image_ids, sampler, batch_size=train_cfg.batch_size)
        result = train_conditional(
            parts=parts,
            unet=parts.unet,
            batches=batches,
            target_fn=noise_target,
            train_cfg=train_cfg,
            state_dir=state_dir,
            description=description,
        )
        # The EMA weights become the pretrained UNet, as released SD checkpoints are EMA weights.
        parts.unet.load_state_dict(result.ema_unet.state_dict())
        encoder = {"trained": False}
    parts.text_encoder.requires_grad_(False).eval()
    return {
        "loss_curve": result.loss_curve,
        "wall_time_s": round(result.train_time_s, 2),
        "text_encoder": encoder,
    }


def build_tiny_pipeline(
    out_dir: Path,
    *,
    images: Tensor,
    image_ids: Sequence[int],
    captions: Sequence[Sequence[str]],
    vae_steps: int,
    unet_cfg: TrainConfig,
    caption_dropout: float = 0.1,
    state_dir: Path,
    seed: int = 0,
    train_text_encoder: bool = False,
) -> tuple[Components, dict[str, Any]]:
    """Build the tiny components, pretrain VAE then UNet on the population `images` and save the pipeline.

    Args:
        out_dir: pipeline folder written (diffusers layout, loadable by `StableDiffusionPipeline`).
        images: (N, C, H, W) in [-1, 1], the images outside the private set; image_ids: their dataset ids.
        captions: per dataset id, its captions (every caption of an image is used: diversified pretraining).
        vae_steps: VAE optimiser steps; unet_cfg: the UNet's training run (steps, batch, lr, EMA, seed).
        train_text_encoder: train the text encoder with the UNet (`pretrain_unet`), then freeze it.
    Returns:
        The pretrained components and a record of both runs.
    """
    _, channels, size, _ = images.shape
    parts = tiny_components(channels=channels, image_size=size, seed=seed)
    vae_record = pretrain_vae(parts.vae, images, num_steps=vae_steps, seed=seed)
    sampler = CaptionSampler(captions=captions, seed=seed, diversify=True, dropout=caption_dropout)
    unet_record = pretrain_unet(
        parts, images, image_ids, sampler, unet_cfg, state_dir, train_text_encoder=train_text_encoder
    )
    record = {
        "pretrain": {"vae": vae_record, "unet": unet_record},
        "population_size": len(images),
        "population_sha256": tensor_sha256(images),
    }
    save_pipeline(out_dir, parts, metadata=record)
    return parts, record["pretrain"]
