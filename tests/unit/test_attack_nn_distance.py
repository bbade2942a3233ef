"""k nearest generated neighbours: distances ascending with their indices, in any chunking of the queries."""

import numpy as np
import pytest
import torch

from dualmd.attacks.nn_distance import knn_distances
from dualmd.attacks.run import attack_samples
from dualmd.config.attacks import AttackConfig, NNDistanceConfig


def test_knn_distances_and_indices_match_a_brute_force_search():
    gen = torch.Generator().manual_seed(4)
    queries, references = torch.rand(7, 1, 3, 3, generator=gen), torch.rand(9, 1, 3, 3, generator=gen)
    full = np.linalg.norm(
        queries.double().numpy().reshape(7, 1, -1) - references.double().numpy().reshape(1, 9, -1), axis=2
    )
    order = np.argsort(full, axis=1)[:, :3]
    for batch_size in (2, 7, 256):
        dist, idx = knn_distances(queries, references, 3, batch_size)
        assert dist.dtype == torch.float64 and idx.dtype == torch.int64
        np.testing.assert_array_equal(idx.numpy(), order)
        np.testing.assert_allclose(dist.numpy(), np.take_along_axis(full, order, axis=1), rtol=1e-9)


def test_knn_needs_at_least_k_references():
    with pytest.raises(ValueError, match=r"^k=4 nearest neighbours requested but only 3 reference images$"):
        knn_distances(torch.zeros(2, 4), torch.zeros(3, 4), 4)
    dist, _ = knn_distances(torch.zeros(2, 4), torch.ones(3, 4), 3)  # k equal to the references is fine
    np.testing.assert_allclose(dist.numpy(), np.full((2, 3), 2.0))


def test_nn_distance_uses_k_from_its_config():
    generated = torch.tensor([0.0, 0.1, 0.5, 0.9]).view(4, 1, 1, 1)
    images = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)
    common = dict(generated=generated, images=images, sample_ids=np.array([3, 8]), is_member=np.array([1, 0]))
    for k, expected in ((1, [0.0, -0.1]), (2, [-0.05, -0.3]), (4, [-0.375, -0.625])):
        result = attack_samples(
            "nn_distance", AttackConfig(nn_distance=NNDistanceConfig(k=k), batch_size=1), **common
        )
        np.testing.assert_allclose(result.scores, expected, rtol=1e-6, atol=1e-7)
