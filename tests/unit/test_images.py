"""Sample grids on disk: every image shown at 32 px or more by whole-pixel enlargement, the layout kept."""

import numpy as np
import pytest
import torch
from PIL import Image

from dualmd.images import grid_pixels, load_samples, save_samples, upscale_factor


@pytest.mark.parametrize(
    ("size_px", "factor"),
    [(8, 4), (28, 2), (32, 1), (64, 1), (5, 7), (1, 32)],
    ids=["digits_8px", "fashion_28px", "cifar_32px", "64px", "5px_to_35px", "1px"],
)
def test_upscale_factor_is_smallest_integer_reaching_32_px(size_px, factor):
    assert upscale_factor(size_px) == factor
    assert size_px * factor >= 32 and (factor == 1 or size_px * (factor - 1) < 32)


def test_upscale_factor_refuses_empty_image():
    with pytest.raises(ValueError, match=">= 1 px"):
        upscale_factor(0)


def test_grid_of_256_digit_sized_images_shows_each_at_32_px(tmp_path):
    # Image i is uniform grey level i / 255 * 2 - 1 with one black pixel at (row 1, column 2).
    images = (
        torch.arange(256, dtype=torch.float32).view(256, 1, 1, 1).expand(256, 1, 8, 8).clone() / 255 * 2 - 1
    )
    images[:, :, 1, 2] = -1.0
    save_samples(images, tmp_path / "s.npz", tmp_path / "grid.png", nrow=16)
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    # 16 x 16 images of 8 px enlarged 4x, 2 px of white padding between and around them.
    assert grid.shape == (16 * (32 + 2) + 2, 16 * (32 + 2) + 2, 3)
    for i in (0, 17, 255):
        top, left = 2 + (i // 16) * 34, 2 + (i % 16) * 34
        cell = grid[top : top + 32, left : left + 32, 0].astype(int)
        expected = np.full((32, 32), i)
        expected[4:8, 8:12] = 0  # the black pixel became a sharp 4 x 4 block
        np.testing.assert_array_equal(cell, expected)
        assert (grid[top - 2 : top, left : left + 32] == 255).all()  # white padding above
    assert torch.equal(load_samples(tmp_path / "s.npz"), images)  # the .npz keeps the 8 px images


def test_grid_does_not_enlarge_32_px_images(tmp_path):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_samples(images, tmp_path / "s.npz", tmp_path / "grid.png", nrow=3)
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    assert grid.shape == (32 + 2 * 2, 3 * (32 + 2) + 2, 3)
    # The middle image appears pixel for pixel, as (x + 1) / 2 * 255 rounded.
    expected = ((images[1] + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(grid[2:34, 36:68], expected)


def test_grid_enlarges_28_px_images_twice_and_keeps_a_partial_last_row():
    pixels = grid_pixels(torch.zeros(5, 1, 28, 28), nrow=4, padding_px=2)
    assert pixels.shape == (2 * (56 + 2) + 2, 4 * (56 + 2) + 2, 3)
    assert (pixels[60:116, 60:118] == 255).all()  # row 2 has one image; the rest of it is white
    assert (pixels[60:116, 2:58] == 128).all()  # 0 -> grey 128, over the whole 56 px block


def test_single_image_grid_has_no_padding():
    assert grid_pixels(torch.zeros(1, 3, 8, 8), nrow=16).shape == (32, 32, 3)
