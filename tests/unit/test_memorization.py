"""t-error and copy detection."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from dualmd.attacks.secmi import t_error_batch
from dualmd.config.attacks import SecMIConfig
from dualmd.memorization import (
    closest_pairs,
    copy_detection,
    pair_labels,
    pairs_caption,
    t_error,
    t_error_separation,
)
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


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("mean_k_ratio", 1 / 2),  # 1 / mean(1, 2, 3)
        ("second_nearest_ratio", 1 / 2),  # 1 / 2 (the third neighbour is ignored)
        ("carlini", 1 / (0.5 * 2)),  # 1 / (alpha mean(1, 2, 3)), alpha = 1/2
    ],
)
def test_each_copy_rule_by_hand(rule, expected):
    members = torch.tensor([1.0, 2.0, 3.0, 10.0]).view(4, 1, 1, 1)
    result = copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, threshold=0.6, rule=rule)
    assert result["ratio"][0] == pytest.approx(expected) and result["rule"] == rule
    assert bool(result["is_copy"][0]) == (expected < 0.6)


def test_second_nearest_rule_ignores_the_further_neighbours():
    """Distances 1, 4, 4.5: d1 / d2 = 0.25 (a copy at 1/3) while d1 / mean(d1..d3) = 1 / 3.1667 = 0.316."""
    members = torch.tensor([1.0, 4.0, 4.5]).view(3, 1, 1, 1)
    second = copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, rule="second_nearest_ratio")
    mean_k = copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, rule="mean_k_ratio")
    assert second["ratio"][0] == pytest.approx(0.25) and mean_k["ratio"][0] == pytest.approx(1 / (9.5 / 3))
    with pytest.raises(ValueError, match="unknown copy rule 'nearest'"):
        copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=3, rule="nearest")


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


def test_pair_labels_print_each_pairs_distance_and_ratio():
    # Members at 0, 10, 20; with k = 2 each ratio is d1 / mean(d1, d2):
    # 19.9 -> 0.1 / mean(0.1, 9.9) = 0.02, 0.5 -> 0.5 / 5 = 0.1, 9 -> 1 / 5 = 0.2 (all under 1/3: copies),
    # 30 -> 10 / mean(10, 20) = 0.667 (not a copy).
    members = torch.tensor([0.0, 10.0, 20.0]).view(3, 1, 1, 1)
    generated = torch.tensor([9.0, 0.5, 19.9, 30.0]).view(4, 1, 1, 1)
    result = copy_detection(generated, members, k_nearest=2)
    assert pair_labels(result, closest_pairs(result, num_pairs=4)) == [
        "d = 0.100\nratio = 0.020\ncopy",
        "d = 0.500\nratio = 0.100\ncopy",
        "d = 1.000\nratio = 0.200\ncopy",
        "d = 10.000\nratio = 0.667",
    ]
    # A pair is labelled by its generated image, whatever member index the row carries.
    assert pair_labels(result, np.array([[3, 0]])) == ["d = 10.000\nratio = 0.667"]


@pytest.mark.parametrize(
    ("rule", "denominator"),
    [
        ("mean_k_ratio", "d / the mean distance to the k nearest members (rule mean_k_ratio, k = 2)"),
        ("second_nearest_ratio", "d / the distance to the second-nearest member (rule second_nearest_ratio"),
    ],
    ids=["mean_k", "second_nearest"],
)
def test_pairs_caption_names_the_distance_the_rule_and_the_threshold(rule, denominator):
    members = torch.tensor([0.0, 10.0, 20.0]).view(3, 1, 1, 1)
    result = copy_detection(torch.zeros(1, 1, 1, 1), members, k_nearest=2, threshold=0.25, rule=rule)
    caption = pairs_caption(result)
    assert "d: Euclidean (l2) distance between the generated image and its nearest member" in caption
    assert denominator in caption and caption.endswith("a copy when ratio < 0.25.")


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


# --- t-error by hand ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def test_t_error_of_a_constant_eps_predictor_is_zero(linear_schedule):
    """eps_theta = c (a fixed tensor): every DDIM step is x_t = sqrt(a_t) x^_0 + sqrt(1 - a_t) c with the same
    x^_0 = (x_s - sqrt(1 - a_s) c) / sqrt(a_s) along the whole path, so up-then-down lands on x~_t exactly."""
    c = torch.tensor([0.3, -0.7, 1.2, 0.05]).view(1, 1, 2, 2)
    images = torch.tensor([[0.5, -0.25, 0.75, -1.0], [0.1, 0.9, -0.6, 0.0]]).view(2, 1, 2, 2)
    err = t_error(lambda x, t: c.expand_as(x).clone(), linear_schedule, images, SecMIConfig(), batch_size=2)
    assert err.shape == (2,)
    np.testing.assert_allclose(err, 0.0, atol=1e-24)


def _ddim_by_hand(x: np.ndarray, s: int, t: int, alpha_bar: np.ndarray, eps_fn) -> np.ndarray:
    """One deterministic DDIM step s -> t in numpy (SecMI's map, with eps = eps_fn(x_s, s)):
    x^_0 = (x_s - sqrt(1 - a_s) eps) / sqrt(a_s), x_t = sqrt(a_t) x^_0 + sqrt(1 - a_t) eps."""
    eps = eps_fn(x, s)
    x0_hat = (x - np.sqrt(1 - alpha_bar[s]) * eps) / np.sqrt(alpha_bar[s])
    return np.sqrt(alpha_bar[t]) * x0_hat + np.sqrt(1 - alpha_bar[t]) * eps


def test_t_error_of_a_linear_predictor_matches_ddim_by_hand(linear_schedule):
    """eps_theta(x, t) = 0.8 x + 0.002 t, t_sec = 300, k = 100: inversion 0 -> 100 -> 200, up 200 -> 300, down
    300 -> 200, computed in numpy from the scheduler's 0-indexed alpha_bar."""
    alpha_bar = linear_schedule.alphas_cumprod.numpy()
    x_0 = np.array([0.5, -0.25, 0.75, -1.0]).reshape(1, 1, 2, 2)
    a, b = 0.8, 0.002

    def eps_fn(x, s):
        return a * x + b * s

    x_tilde = _ddim_by_hand(_ddim_by_hand(x_0, 0, 100, alpha_bar, eps_fn), 100, 200, alpha_bar, eps_fn)
    x_hat = _ddim_by_hand(_ddim_by_hand(x_tilde, 200, 300, alpha_bar, eps_fn), 300, 200, alpha_bar, eps_fn)
    expected = float(((x_hat - x_tilde) ** 2).sum())

    def model(x, t):
        return a * x + b * t.view(-1, 1, 1, 1).to(x.dtype)

    cfg = SecMIConfig(t_sec=300, k=100)
    err = t_error(model, linear_schedule, torch.tensor(x_0, dtype=torch.float32), cfg, batch_size=1)
    assert expected > 1e-3  # a real round-trip error, not rounding noise
    np.testing.assert_allclose(err, [expected], rtol=1e-5)


def test_t_error_of_eps_proportional_to_x_is_a_product_of_step_factors(linear_schedule):
    """eps_theta(x, t) = a x makes each DDIM step s -> t a multiplication by
    m(s, t) = sqrt(a_t) (1 - a sqrt(1 - a_s)) / sqrt(a_s) + a sqrt(1 - a_t), hence
    t_error = (m(300, 200) m(200, 300) - 1)^2 (m(100, 200) m(0, 100))^2 ||x_0||^2."""
    ab = linear_schedule.alphas_cumprod.numpy()
    a = 0.8

    def m(s, t):
        return np.sqrt(ab[t]) * (1 - a * np.sqrt(1 - ab[s])) / np.sqrt(ab[s]) + a * np.sqrt(1 - ab[t])

    images = torch.tensor([[0.5, -0.25, 0.75, -1.0], [0.2, 0.2, -0.4, 0.6]]).view(2, 1, 2, 2)
    norms = (images.double() ** 2).flatten(1).sum(1).numpy()
    expected = (m(300, 200) * m(200, 300) - 1) ** 2 * (m(100, 200) * m(0, 100)) ** 2 * norms
    err = t_error(lambda x, t: a * x, linear_schedule, images, SecMIConfig(t_sec=300, k=100), batch_size=2)
    np.testing.assert_allclose(err, expected, rtol=1e-5)
