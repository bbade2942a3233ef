"""t-error and copy detection."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from dualmd.attacks.secmi import t_error_batch
from dualmd.config import SecMIConfig
from dualmd.memorization import closest_pairs, copy_detection, t_error, t_error_separation
from dualmd.models.adapter import Schedule


def test_exact_copy_is_flagged_and_far_sample_is_not():
    members = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    far = torch.full((1, 1, 8, 8), 5.0)  # equally far from every member: ratio close to 1
    generated = torch.cat([members[7:8].clone(), far, members[3:4] + 0.01])
    result = copy_detection(generated, members, k_nearest=5, threshold=1 / 3)
    assert result["ratio"][0] == 0.0
    assert result["ratio"][1] > 0.9
    assert result["is_copy"].tolist() == [True, False, True]
    assert result["nearest_member"].tolist() == [7, result["nearest_member"][1], 3]
    assert result["memorization_rate"] == pytest.approx(2 / 3)


def test_copy_ratio_by_hand():
    """1-D "images": member distances 1, 2, 3 from the generated point; ratio = 1 / mean(1, 2, 3) = 0.5."""
    members = torch.tensor([1.0, 2.0, 3.0, 10.0]).view(4, 1, 1, 1)
    result = copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, threshold=0.6)
    assert result["ratio"][0] == pytest.approx(0.5)
    assert result["nearest_distance"][0] == pytest.approx(1.0)
    assert bool(result["is_copy"][0])
    assert not copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, threshold=0.5)["is_copy"][0]


def test_copy_of_duplicated_members_counts_as_copy():
    members = torch.zeros(3, 1, 2, 2)  # the k nearest are all at distance 0
    result = copy_detection(torch.zeros(1, 1, 2, 2), members, k_nearest=2)
    assert result["ratio"][0] == 0.0 and bool(result["is_copy"][0])


def test_copy_detection_needs_two_neighbours():
    with pytest.raises(ValueError, match="k_nearest must be >= 2"):
        copy_detection(torch.zeros(1, 1, 2, 2), torch.zeros(3, 1, 2, 2), k_nearest=1)


def test_closest_pairs_sorted_by_distance():
    members = torch.tensor([0.0, 10.0, 20.0]).view(3, 1, 1, 1)
    generated = torch.tensor([9.0, 0.5, 19.9, 30.0]).view(4, 1, 1, 1)
    result = copy_detection(generated, members, k_nearest=2)
    pairs = closest_pairs(result, num_pairs=3)
    assert pairs.tolist() == [[2, 2], [1, 0], [0, 1]]
    assert closest_pairs(result, num_pairs=10).shape == (4, 2)


def test_t_error_is_secmi_round_trip_error_and_batch_independent():
    schedule = Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))
    weight = torch.linspace(0.5, 1.5, 64).view(1, 1, 8, 8)

    def model(x, t):  # a fixed nonlinear "model", so the round trip does not cancel
        return torch.tanh(x * weight) + t.view(-1, 1, 1, 1) / 1000

    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cfg = SecMIConfig(t_sec=50, k=10)
    err = t_error(model, schedule, images, cfg, batch_size=4)
    assert err.shape == (6,) and (err > 0).all()
    np.testing.assert_allclose(err, t_error(model, schedule, images, cfg, batch_size=6), rtol=1e-6)
    np.testing.assert_allclose(err, t_error_batch(model, schedule, images, cfg).numpy(), rtol=1e-6)


def test_t_error_separation_is_auc_of_lower_error_for_members():
    assert t_error_separation(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert t_error_separation(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert t_error_separation(np.array([0.1, 0.4]), np.array([0.2, 0.3])) == 0.5
