"""Generated images on disk: a sampler's .npz (float32 (N, C, H, W) in [-1, 1]) and its PNG grid.

Kept apart from the sampling loop so that the stages that only read generated images (attacks on samples,
copy detection, FID) do not load diffusers.

Pictures show every image at `MIN_SHOWN_PX` pixels or more: a smaller image (8 px digits, 28 px
Fashion-MNIST) is enlarged by the smallest integer factor that gets there, each pixel becoming a sharp square
block (nearest neighbour), and an image of 32 px or more is left as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dualmd.files import atomic_write

#: Smallest side, in screen pixels, at which a picture shows one image.
MIN_SHOWN_PX = 32


def save_samples(
    images: Tensor, npz_path: str | Path, png_path: str | Path, *, nrow: int = 16, padding_px: int = 2
) -> None:
    """Write generated images as an .npz and a PNG grid of them.

    The grid has ceil(N / nrow) rows of min(N, nrow) images, each enlarged as `grid_pixels` says (an 8 px
    image is shown at 32 px, a 32 px one as it is). Both files are written to a temporary name first and then
    renamed, so a crash never leaves half a file.

    Args:
        images: (N, C, H, W), C in {1, 3}, float32 in [-1, 1]; stored unchanged in the .npz under "images".
        npz_path: the .npz.
        png_path: the PNG grid.
        nrow: images per grid row.
        padding_px: white gap between and around the images of the grid.
    """
    images = _check_images(images.detach().float().cpu(), str(npz_path))
    atomic_write(Path(npz_path), lambda f: np.savez(f, images=images.numpy()))
    pixels = grid_pixels(images, nrow=nrow, padding_px=padding_px)
    atomic_write(Path(png_path), lambda f: Image.fromarray(pixels).save(f, format="PNG"))


def upscale_factor(size_px: int, min_px: int = MIN_SHOWN_PX) -> int:
    """The smallest integer factor that shows an image of `size_px` pixels at `min_px` or more (1 if it
    already is that large): 8 -> 4, 28 -> 2, 32 -> 1 for the default 32 px."""
    if size_px < 1:
        raise ValueError(f"image size must be >= 1 px, got {size_px}")
    return max(1, -(-min_px // size_px))


def upscale(images: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour enlargement: every pixel of images (N, C, H, W) becomes a factor x factor block,
    giving (N, C, H * factor, W * factor)."""
    return images.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def grid_pixels(images: Tensor, *, nrow: int, padding_px: int = 2, min_px: int = MIN_SHOWN_PX) -> np.ndarray:
    """The images (N, C, H, W) in [-1, 1], each shown at `min_px` or more, as one RGB grid on white padding.

    Returns:
        (H', W', 3) uint8 with W' = min(N, nrow) * (W * f + padding_px) + padding_px, f = `upscale_factor` of
        the shorter side (no padding for a single image, as torchvision's make_grid does).
    """
    from torchvision.utils import make_grid

    shown = upscale((images.clamp(-1, 1) + 1) / 2, upscale_factor(min(images.shape[-2:]), min_px))
    grid = make_grid(shown, nrow=nrow, padding=padding_px, pad_value=1.0)  # (3, H', W') in [0, 1]
    return grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


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
