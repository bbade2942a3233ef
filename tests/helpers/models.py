"""The tiny UNet the tests build, and a model directory holding it."""

from pathlib import Path

import torch
from diffusers import DDPMScheduler

from dualmd.config.sections import ModelConfig
from dualmd.models.unet import create_unet

#: The smallest UNet the package builds: two levels (8, 16) on 1x8x8 images.
TINY_MODEL = ModelConfig(block_out_channels=(8, 16), norm_num_groups=4)


def tiny_unet(seed: int = 0):
    """A randomly initialised `TINY_MODEL` UNet, the same for the same seed."""
    torch.manual_seed(seed)
    return create_unet(model=TINY_MODEL, image_size=8, channels=1)


def tiny_model_dir(path: Path, seed: int = 0, num_train_timesteps: int = 20) -> Path:
    """A model directory (raw and EMA weights, scheduler) holding `tiny_unet(seed)`, without metadata."""
    unet = tiny_unet(seed)
    unet.save_pretrained(path / "unet")
    unet.save_pretrained(path / "unet_ema")
    DDPMScheduler(num_train_timesteps=num_train_timesteps).save_pretrained(path / "scheduler")
    return path
