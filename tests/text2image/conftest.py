"""Fixtures of the text-to-image tests: the tiny digits at 32x32 RGB with their captions, and one tiny pipeline
pretrained once per session on the images outside the private set (a few seconds on one core)."""

from pathlib import Path

import pytest
import torch
from helpers.text2image import NUM_IMAGES, POPULATION, short_run

from dualmd.config.sections import DatasetConfig
from dualmd.data.datasets import load_dataset, to_model_range
from dualmd.text2image.captions import load_digit_captions
from dualmd.text2image.components import load_components
from dualmd.text2image.pretrain import build_tiny_pipeline


@pytest.fixture(scope="session")
def digits32():
    """(images (96, 3, 32, 32) in [-1, 1], captions per image id)."""
    images = load_dataset(DatasetConfig(name="digits", image_size=32, channels=3, max_images=NUM_IMAGES))
    return to_model_range(images), load_digit_captions(NUM_IMAGES)


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory, digits32) -> Path:
    """A tiny pipeline folder pretrained on POPULATION (40 VAE steps, 40 UNet steps)."""
    images, captions = digits32
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrained")
    _, record = build_tiny_pipeline(
        root / "pipeline",
        images=images[list(POPULATION)],
        image_ids=POPULATION,
        captions=captions,
        vae_steps=40,
        unet_cfg=short_run(40),
        state_dir=root / "state",
    )
    (root / "record.txt").write_text(repr(record))
    return root / "pipeline"


@pytest.fixture
def parts(pretrained_dir):
    """Fresh components of the pretrained pipeline (tests may modify them)."""
    return load_components(pretrained_dir)
