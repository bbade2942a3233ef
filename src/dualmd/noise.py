"""Per-sample noise: the Gaussian noise of one image depends only on (seed, sample id, stream).

Attacks and the held-out loss draw their noise here, so an image's number does not depend on batch size, batch
order or the other images evaluated with it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sample_seed(seed: int, sample_id: int, *stream: int) -> int:
    """A 64-bit seed that depends only on (seed, sample_id, *stream), well mixed by numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, int(sample_id), *stream]).generate_state(1, dtype=np.uint64)[0])


def per_sample_noise(seed: int, sample_ids: np.ndarray, shape: tuple[int, ...], *stream: int) -> Tensor:
    """Standard-normal noise (B, *shape), float32 on the CPU, row i drawn from its own sample's generator.

    Drawn on the CPU so the same sample gets the same noise on any device (as EDM's StackedRandomGenerator).
    """
    gen = torch.Generator()
    rows = []
    for sid in sample_ids:
        gen.manual_seed(sample_seed(seed, int(sid), *stream))
        rows.append(torch.randn(shape, generator=gen))
    return torch.stack(rows)


def per_sample_generators(seed: int, sample_ids: np.ndarray, *stream: int) -> list[torch.Generator]:
    """CPU generators, generator i seeded by `sample_seed`(seed, sample_ids[i], *stream): a sampler that draws
    image i's step noise from generator i (`dualmd.sample`) draws the same noise for a sample in any batch."""
    return [torch.Generator().manual_seed(sample_seed(seed, int(sid), *stream)) for sid in sample_ids]
