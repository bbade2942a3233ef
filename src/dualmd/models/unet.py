"""Factories for the diffusers UNet and DDPM scheduler used by every model of the workflow."""

from __future__ import annotations

from diffusers import DDPMScheduler, UNet2DModel

from dualmd.config.sections import DiffusionConfig, ModelConfig


def create_unet(*, model: ModelConfig, image_size: int, channels: int) -> UNet2DModel:
    """Build a randomly initialised `UNet2DModel` (epsilon prediction) from the model config.

    Args:
        model: architecture (channels per level, blocks, attention levels, dropout).
        image_size: pixels per side; must be divisible by 2 ** (levels - 1).
        channels: image channels (input = output).
    Returns:
        The UNet, in training mode, on the CPU.
    """
    levels = len(model.block_out_channels)
    if image_size % (2 ** (levels - 1)) != 0:
        raise ValueError(
            f"image_size {image_size} is not divisible by 2**{levels - 1}; use fewer levels in "
            "model.block_out_channels or another dataset.image_size"
        )
    attn = set(model.attention_levels)
    down = tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(levels))
    up = tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(levels)))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(model.block_out_channels),
        layers_per_block=model.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        add_attention=model.mid_block_attention,
        attention_head_dim=model.attention_head_dim,
        norm_num_groups=model.norm_num_groups,
        dropout=model.dropout,
    )


def create_scheduler(diffusion: DiffusionConfig) -> DDPMScheduler:
    """The DDPM forward process shared by training, sampling and attacks (epsilon prediction)."""
    return DDPMScheduler(
        num_train_timesteps=diffusion.num_train_timesteps,
        beta_start=diffusion.beta_start,
        beta_end=diffusion.beta_end,
        beta_schedule=diffusion.beta_schedule,
        prediction_type="epsilon",
        variance_type="fixed_small",
        clip_sample=True,
    )
