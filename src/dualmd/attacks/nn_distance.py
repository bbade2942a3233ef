"""Nearest-generated-neighbour attack, black-box (GAN-Leaks "fbb", Chen et al. CCS 2020; Matsumoto et al. 2023).

A model that memorizes its members generates images close to them. The score of an image is minus the mean
l2 distance (flattened pixels in [-1, 1]) to its k nearest generated images; k = 1 is GAN-Leaks' rule, the sum of
k = 5 distances is Matsumoto's. Needs only the generated images, never the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks.base import SampleAttack, batch_slices, register


def knn_distances(
    queries: Tensor, references: Tensor, k: int, batch_size: int = 256
) -> tuple[Tensor, Tensor]:
    """Euclidean distances from every query to its k nearest references, in chunks of queries.

    Args:
        queries: (N, ...) images, flattened per row.
        references: (M, ...) images with the same per-row shape, M >= k.
        k: neighbours kept.
        batch_size: queries per chunk (memory is batch_size * M float64).
    Returns:
        (distances (N, k) float64 ascending, indices (N, k) int64 into `references`), on the CPU.
    """
    if k > len(references):
        raise ValueError(f"k={k} nearest neighbours requested but only {len(references)} reference images")
    # float64: the |a|^2 + |b|^2 - 2ab form of cdist loses exact copies (distance 0) to rounding in float32.
    refs = references.flatten(1).double()
    dists, idxs = [], []
    for sl in batch_slices(len(queries), batch_size):
        d = torch.cdist(queries[sl].flatten(1).double().to(refs.device), refs)  # (b, M)
        top = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dists.append(top.values.cpu())
        idxs.append(top.indices.cpu())
    return torch.cat(dists), torch.cat(idxs)


@register("nn_distance")
class NNDistance(SampleAttack):
    """Score = -(mean distance to the k nearest generated images)."""

    def score(self, generated: Tensor, images: Tensor) -> np.ndarray:
        dist, _ = knn_distances(
            images, generated.to(images.device), self.cfg.nn_distance.k, self.cfg.batch_size
        )
        # Negated: members lie closer to what the model generates, scores are "higher = member".
        return -dist.mean(dim=1).numpy()
