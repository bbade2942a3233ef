"""Tiny training runs: bar-pattern images, a 12-step run of the tiny UNet with probes and checkpoints, and an
interruption at a chosen step."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DModel

from dualmd.config.sections import DiffusionConfig, TrainConfig
from dualmd.train.loop import StepInfo
from dualmd.train.run import train_model
from helpers.models import TINY_MODEL

DIFFUSION = DiffusionConfig(num_train_timesteps=20)
TRAIN = TrainConfig(
    num_train_steps=12,
    batch_size=8,
    lr=2e-3,
    warmup_steps=3,
    checkpoint_every_steps=5,
    log_every_steps=4,
    probe_timesteps=(2, 5, 10),
    probe_num_images=16,
    seed=3,
)
CALLER_META = {
    "model_id": "baseline",
    "subset": "members",
    "subset_sha256": "ab" * 32,
    "split_fingerprint": "fp",
}


def tiny_images(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 8, 8) in [-1, 1]: one of four bar patterns per image plus a little noise, so models can fit."""
    g = torch.Generator().manual_seed(seed)
    base = -torch.ones(4, 1, 8, 8)
    base[0, :, 2:4, :], base[1, :, :, 2:4], base[2, :, 5:7, :], base[3, :, :, 5:7] = 1, 1, 1, 1
    x = base[torch.arange(n) % 4] + 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    return x.clamp(-1, 1)


def run(tmp: Path, name: str, cfg: TrainConfig = TRAIN, **kw) -> dict:
    """Train `TINY_MODEL` on 32 tiny images into `tmp / name` (state in `tmp / f"state_{name}"`); its metadata."""
    images = tiny_images(32, seed=0)
    return train_model(
        images=images,
        probe_members=images,
        probe_nonmembers=tiny_images(32, seed=1),
        model_cfg=TINY_MODEL,
        diffusion_cfg=DIFFUSION,
        train_cfg=cfg,
        out_dir=tmp / name,
        state_dir=tmp / f"state_{name}",
        metadata=dict(CALLER_META),
        **kw,
    )


def load_weights(model_dir: Path, sub: str) -> dict[str, torch.Tensor]:
    """The state dict of the UNet in `model_dir / sub` ("unet" or "unet_ema")."""
    return UNet2DModel.from_pretrained(model_dir / sub).state_dict()


class Interrupt(Exception):
    """Stands in for a job killed in the middle of training."""


def interrupt_at(step: int):
    """An `on_step` hook that raises `Interrupt` at `step`."""

    def hook(info: StepInfo) -> None:
        if info.step == step:
            raise Interrupt

    return hook
