"""FID / IS: preprocessing, the Fréchet distance on the 'pixels' net, reference files, the Inception paths."""

import numpy as np
import pytest
import torch
from torch import nn

from dualmd.config import UtilityConfig
from dualmd.utility import (
    ReferenceStats,
    compute_features,
    compute_utility,
    frechet_distance,
    inception_score,
    load_reference,
    preprocess,
    save_reference,
    to_pixel_range,
)

PIXELS = UtilityConfig(num_images=64, feature_net="pixels", batch_size=16)


def random_images(n, seed, channels=1, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, 8, 8, generator=g) * 1.2 - 0.6 + shift).clamp(-1, 1)


def test_pixel_range_quantises_and_makes_rgb():
    images = torch.tensor([-1.0, 0.0, 1.0, 0.999]).view(1, 1, 2, 2)
    pixels = to_pixel_range(images)
    assert pixels.shape == (1, 3, 2, 2) and pixels.dtype == torch.float32
    assert pixels[0, 0].flatten().tolist() == [0.0, 128.0, 255.0, 255.0]  # round((x + 1) * 127.5)
    assert torch.equal(pixels[0, 0], pixels[0, 2])
    stored = torch.tensor([0, 128, 255, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    assert torch.equal(to_pixel_range(stored), pixels)  # uint8 members and float samples agree


def test_preprocess_resizes_to_inception_size_in_pixel_range():
    x = preprocess(random_images(2, 0, channels=3), 299)
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 255.0 and x.max() > 100


def test_to_pixel_range_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N, 1|3, H, W"):
        to_pixel_range(torch.zeros(2, 4, 8, 8))


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    images = random_images(64, 0)
    same = compute_utility(images, images, PIXELS)
    other = compute_utility(images, random_images(64, 1), PIXELS)
    shifted = compute_utility(images, random_images(64, 1, shift=0.4), PIXELS)
    assert abs(same["fid"]) < 1e-3 * other["fid"]  # ~0 up to sqrtm error on a rank-deficient covariance
    assert 0 < other["fid"] < shifted["fid"]
    assert same["num_images"] == 64 and same["feature_net"].startswith("pixels")


def test_reference_round_trip_gives_same_fid(tmp_path):
    images, members = random_images(64, 0), random_images(80, 1)
    feats = compute_features(members, PIXELS)
    assert feats.shape == (80, 192)
    stats = ReferenceStats.from_features(feats, compute_utility(images, feats, PIXELS)["feature_net"])
    save_reference(tmp_path / "ref.npz", stats)
    loaded = load_reference(tmp_path / "ref.npz")
    assert loaded.feature_net == stats.feature_net and np.allclose(loaded.sigma, stats.sigma)
    assert compute_utility(images, loaded, PIXELS)["fid"] == pytest.approx(
        compute_utility(images, members, PIXELS)["fid"], rel=1e-9
    )


def test_reference_from_another_network_is_refused():
    stats = ReferenceStats.from_features(np.random.default_rng(0).normal(size=(10, 192)), "inception-v3 (x)")
    with pytest.raises(ValueError, match="reference statistics come from"):
        compute_utility(random_images(64, 0), stats, PIXELS)


def test_too_few_generated_images_raise():
    with pytest.raises(ValueError, match="utility.num_images"):
        compute_utility(random_images(10, 0), random_images(10, 1), PIXELS)


def test_inception_score_bounds():
    one_class = np.tile(np.eye(4)[:1], (40, 1))
    uniform_classes = np.tile(np.eye(4), (10, 1))
    assert inception_score(one_class, num_splits=2)[0] == pytest.approx(1.0)
    assert inception_score(uniform_classes, num_splits=2)[0] == pytest.approx(4.0, rel=1e-6)  # K classes -> K


def test_pixels_net_reports_why_is_is_absent():
    result = compute_utility(random_images(64, 0), random_images(64, 1), PIXELS)
    assert result["inception_score"] is None and result["inception_score_std"] is None
    assert result["is_absent_reason"].startswith("feature network has no classifier head")


class FakeCleanFidInception(nn.Module):
    """Same interface as clean-fid's inception-2015-12-05.pt: `.layers` -> (B, 2048, 1, 1), `.output` 2048 -> 1008."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 2048, 1))
        self.output = nn.Linear(2048, 1008)

    def forward(self, x):
        return self.layers(x)


@pytest.mark.parametrize("num", [40, 7], ids=["more-images-than-dims", "fewer-images-than-dims"])
def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift(num):
    """Features f and f + d have the same covariance: FID = |d|^2 exactly, in both branches."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(num, 16))
    shift = rng.normal(size=16)
    cov = np.cov(feats, rowvar=False)
    assert frechet_distance(feats + shift, feats.mean(axis=0), cov) == pytest.approx(shift @ shift, rel=1e-9)
    assert frechet_distance(feats, feats.mean(axis=0), cov) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_and_clean_fid_agree():
    """Diagonal covariances: sum (mu1 - mu2)^2 + sum (a + b - 2 sqrt(ab)); clean-fid's sqrtm gives the same."""
    from cleanfid.fid import frechet_distance as clean_fid_frechet

    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 2.0, size=8), rng.uniform(0.5, 2.0, size=8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    # features whose sample mean and covariance are exactly mu1 and diag(a): whitened draws, rescaled
    z = rng.normal(size=(500, 8))
    z = (z - z.mean(axis=0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)
    feats = mu1 + z * np.sqrt(a)
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    assert frechet_distance(feats, mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    assert clean_fid_frechet(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)


def test_clean_fid_file_gives_fid_and_inception_score(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(FakeCleanFidInception()).save(str(path))
    cfg = UtilityConfig(num_images=12, inception_path=str(tmp_path), batch_size=6)
    result = compute_utility(random_images(12, 0, channels=3), random_images(12, 1, channels=3), cfg)
    assert result["fid"] > 0 and result["is_absent_reason"] is None
    assert 1.0 <= result["inception_score"] <= 1008 and result["inception_score_std"] >= 0
    assert "clean-fid inception-2015-12-05.pt, sha1=" in result["feature_net"]


@pytest.mark.inception
def test_real_inception_on_tiny_images():
    cfg = UtilityConfig(num_images=8, feature_net="inception", batch_size=8)
    images = random_images(8, 0)
    feats = compute_features(images, cfg)
    assert feats.shape == (8, 2048) and np.isfinite(feats).all()
    result = compute_utility(images, feats, cfg)
    assert abs(result["fid"]) < 1e-6  # same images, same features
    assert "default_1.pt, sha1=a16e4d89c0ecbc17a915dd76ea9e41211aa82562" in result["feature_net"]
    assert result["inception_score"] is None and "no classifier head" in result["is_absent_reason"]
