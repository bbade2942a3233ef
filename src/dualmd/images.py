"""Generated images on disk: a sampler's .npz (float32 (N, C, H, W) in [-1, 1]) and its PNG grid.

Kept apart from the sampling loop so that the stages that only read generated images (attacks on samples,
copy detection, FID) do not load diffusers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dualmd.files import atomic_write


def save_samples(images: Tensor, npz_path: str | Path, png_path: str | Path, *, nrow: int = 16) -> None:
    """Write generated images as an .npz (key "images", float32 (N, C, H, W) in [-1, 1]) and a PNG grid.

    Both files are written to a temporary name first and then renamed, so a crash never leaves half a file.
    """
    images = _check_images(images.detach().float().cpu(), str(npz_path))
    atomic_write(Path(npz_path), lambda f: np.savez(f, images=images.numpy()))
    from torchvision.utils import make_grid

    grid = make_grid((images + 1) / 2, nrow=nrow, padding=1, pad_value=1.0)  # (3, H', W') in [0, 1]
    pixels = grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    atomic_write(Path(png_path), lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def load_samples(npz_path: str | Path) -> Tensor:
    """Read images written by `save_samples`: (N, C, H, W) float32 in [-1, 1]; malformed files raise."""
    with np.load(npz_path) as data:
        if "images" not in data.files:
            raise ValueError(f"{npz_path}: no 'images' array (found {data.files})")
        images = torch.from_numpy(data["images"])
    return _check_images(images, str(npz_path))


def _check_images(images: Tensor, where: str) -> Tensor:
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"{where}: expected images (N, 1|3, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.float32:
        raise ValueError(f"{where}: expected float32 images, got {images.dtype}")
    if not torch.isfinite(images).all() or images.abs().max() > 1.0 + 1e-4:
        raise ValueError(f"{where}: images must be finite and in [-1, 1]")
    return images
