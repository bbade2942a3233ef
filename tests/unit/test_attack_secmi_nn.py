"""SecMI_NN step by step: the classifier's geometry, SecMI's training recipe (MSE to 1 / 0, SGD with momentum 0.9
and weight decay 5e-4, seeded), the error maps, and the scoring of only what the classifier did not train on, with
maps scaled by their RMS on the training slice."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor
from torch import nn

from dualmd.attacks import secmi_nn
from dualmd.attacks.base import batch_slices, train_test_split
from dualmd.attacks.run import build_attack
from dualmd.attacks.secmi import round_trip
from dualmd.attacks.secmi_nn import error_maps, make_classifier, train_classifier
from dualmd.config.attacks import AttackConfig, SecMIConfig, SecMINNConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def resnet(net: nn.Module) -> nn.Module:
    return net[1] if isinstance(net, nn.Sequential) else net


@pytest.mark.parametrize(
    ("channels", "size", "factor"), [(1, 8, 4), (3, 12, 3), (1, 16, 2), (3, 32, 1), (2, 64, 1)]
)
def test_small_maps_get_the_cifar_stem_and_are_upsampled_to_32_pixels(channels, size, factor):
    net = make_classifier(channels, size)
    conv = resnet(net).conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        channels, 64, (3, 3), (1, 1), (1, 1),
    )  # fmt: skip
    assert conv.bias is None
    assert isinstance(resnet(net).maxpool, nn.Identity)
    assert resnet(net).fc.out_features == 1
    if factor == 1:
        assert not isinstance(net, nn.Sequential)
    else:
        assert isinstance(net[0], nn.Upsample) and net[0].scale_factor == factor and net[0].mode == "nearest"
    assert net.eval()(torch.zeros(2, channels, size, size)).shape == (2, 1)


def test_large_maps_keep_the_imagenet_stem():
    net = make_classifier(3, 65)
    conv = net.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        3, 64, (7, 7), (2, 2), (3, 3),
    )  # fmt: skip
    assert conv.bias is None
    assert isinstance(net.maxpool, nn.MaxPool2d)


def reference_training(features, targets, cfg: SecMINNConfig, seed):
    """SecMI's nns_attack recipe written out: seeded init, seeded shuffles, MSE, SGD(0.9, 5e-4), no batch of 1."""
    torch.manual_seed(seed)
    net = make_classifier(features.shape[1], features.shape[-1]).to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    net.train()
    for _ in range(cfg.num_epochs):
        order = torch.randperm(len(features), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2:
                continue
            loss = ((net(features[batch])[:, 0] - targets[batch]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def small_features(num=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.rand(num, 1, 8, 8, generator=gen)
    return features, (torch.arange(num) % 2 == 0).float()


BASE = dict(num_epochs=1, lr=1e-3, batch_size=3)
PROBE = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(9))


@pytest.fixture(scope="module")
def base_outputs():
    """The probe's outputs of the classifier trained with `BASE` and seed 4."""
    features, targets = small_features()
    net = train_classifier(features, targets, SecMINNConfig(**BASE), seed=4)
    with torch.no_grad():
        return net(PROBE)


def test_classifier_training_follows_secmis_recipe_and_leaves_the_global_rng_alone(base_outputs):
    """5 samples in batches of 3 then 2, as the reference recipe; the global RNG is not touched."""
    features, targets = small_features()
    torch.manual_seed(123)
    net = train_classifier(features, targets, SecMINNConfig(**BASE), seed=4)
    after = torch.rand(3)
    torch.manual_seed(123)
    torch.testing.assert_close(after, torch.rand(3))  # the seeded training consumed no global randomness
    assert not net.training
    reference = reference_training(features, targets, SecMINNConfig(**BASE), seed=4)
    with torch.no_grad():
        torch.testing.assert_close(net(PROBE), reference(PROBE), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(net(PROBE), base_outputs)


@pytest.mark.parametrize(
    "change",
    [dict(num_epochs=2), dict(lr=1e-2), dict(batch_size=2), dict(seed=5)],
    ids=["num_epochs", "lr", "batch_size", "seed"],
)
def test_each_training_option_changes_the_classifier(change, base_outputs):
    """batch_size 2 on 5 samples: batches of 2, 2 and a skipped single sample."""
    features, targets = small_features()
    options = {**BASE, "seed": 4, **change}
    seed = options.pop("seed")
    cfg = SecMINNConfig(**options)
    nets = [train_classifier(features, targets, cfg, seed), reference_training(features, targets, cfg, seed)]
    with torch.no_grad():
        got, expected = (net(PROBE) for net in nets)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, base_outputs)


def test_error_maps_are_the_absolute_round_trip_error_in_batches(schedule):
    images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    cfg = SecMIConfig(t_sec=40, k=20)
    x_tilde, x_hat = round_trip(CheckingPredictor(), schedule, images, cfg)
    maps = error_maps(CheckingPredictor(), schedule, images, cfg, batch_size=2)
    assert maps.dtype == torch.float32 and maps.shape == images.shape
    torch.testing.assert_close(maps, (x_hat - x_tilde).abs().float())
    assert (maps > 0).any()


def test_secmi_nn_scores_the_rest_with_a_classifier_fitted_on_the_leading_slice(schedule):
    """Maps are divided by their RMS over the training slice only; the classifier trained on those maps of the
    training slice (labels 1 / 0) scores the other samples; t_error is the unscaled squared error of each."""
    gen = torch.Generator().manual_seed(8)
    images = torch.rand(10, 1, 8, 8, generator=gen) * 2 - 1
    ids = np.arange(10) * 3 + 4
    is_member = np.array([True, False, False, True, True, False, True, False, True, False])
    secmi = SecMIConfig(t_sec=40, k=20)
    nn_cfg = SecMINNConfig(train_fraction=0.4, num_epochs=2, lr=1e-2, batch_size=2)
    cfg = AttackConfig(seed=6, batch_size=3, secmi=secmi, secmi_nn=nn_cfg)
    result = build_attack("secmi_nn", cfg).run(CheckingPredictor(), schedule, images, ids, is_member)

    train, test = train_test_split(is_member, 0.4, "secmi_nn")
    np.testing.assert_array_equal(train, [0, 1, 2, 3])  # first two members (0, 3) and non-members (1, 2)
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_array_equal(result.is_member, is_member[test])
    x_tilde, x_hat = round_trip(CheckingPredictor(), schedule, images, secmi)
    maps = (x_hat - x_tilde).abs().float()
    np.testing.assert_allclose(
        result.extra["t_error"], (maps[test].double() ** 2).flatten(1).sum(1), rtol=1e-5
    )
    scaled = maps / maps[train].square().mean().sqrt()
    targets = torch.as_tensor(is_member, dtype=torch.float32)
    net = reference_training(scaled[train], targets[train], nn_cfg, seed=6)
    with torch.no_grad():
        expected = torch.cat([net(scaled[test][sl]) for sl in batch_slices(len(test), 3)])[:, 0].double()
    np.testing.assert_allclose(result.scores, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_secmi_nn_scores_stay_finite_when_every_round_trip_is_exact(schedule):
    """Blank images and a zero eps round-trip exactly: all maps are 0, and scaling them by their RMS must not
    divide 0 by 0."""
    images = torch.zeros(6, 1, 8, 8)
    cfg = AttackConfig(
        secmi=SecMIConfig(t_sec=40, k=20),
        secmi_nn=SecMINNConfig(train_fraction=0.4, num_epochs=1, batch_size=4),
    )
    result = build_attack("secmi_nn", cfg).run(
        lambda x, t: torch.zeros_like(x), schedule, images, np.arange(6), np.arange(6) % 2 == 0
    )
    np.testing.assert_array_equal(result.extra["t_error"], np.zeros(4))
    assert np.isfinite(result.scores).all() and len(set(result.scores.tolist())) == 1  # one input, one output


def test_non_square_maps_size_the_classifier_by_their_width():
    """Maps 8 high and 12 wide: the classifier is built for side 12 (upsampled 3-fold, not 4-fold)."""
    features = torch.rand(5, 1, 8, 12, generator=torch.Generator().manual_seed(3))
    targets = (torch.arange(5) % 2 == 0).float()
    cfg = SecMINNConfig(**BASE)
    net = train_classifier(features, targets, cfg, seed=4)
    assert isinstance(net[0], nn.Upsample) and net[0].scale_factor == 3
    reference = reference_training(features, targets, cfg, seed=4)
    probe = torch.rand(2, 1, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(probe), reference(probe), rtol=1e-4, atol=1e-5)


def test_classifier_trains_on_the_features_device():
    """Features on "meta" (standing in for a GPU): the classifier is moved there and trained there."""
    features, targets = small_features()
    net = train_classifier(features.to("meta"), targets.to("meta"), SecMINNConfig(**BASE), seed=4)
    assert {p.device.type for p in net.parameters()} == {"meta"}


class OnMeta(CheckingPredictor):
    """A predictor that lives on the "meta" device (standing in for a GPU) and records where it is queried."""

    device = "meta"


def test_error_maps_are_computed_on_the_models_device(schedule):
    images = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    model = OnMeta()
    maps = error_maps(model, schedule, images, SecMIConfig(t_sec=20, k=10), batch_size=2)
    assert maps.device.type == "meta" and maps.shape == images.shape
    assert model.calls and all(x.device.type == "meta" for x, _ in model.calls)


def test_secmi_nn_refuses_a_training_slice_that_leaves_a_class_empty_before_the_model_runs(schedule):
    """2 members and 2 non-members: a fifth of each is no sample; the error names the attack."""
    images = torch.zeros(4, 1, 8, 8)
    model = CheckingPredictor()
    attack = build_attack("secmi_nn", AttackConfig(secmi=SecMIConfig(t_sec=20, k=10)))
    is_member = np.array([True, False, True, False])
    message = r"^secmi_nn: train_fraction=0\.2 leaves an empty training or test set with 2 members and 2 non"
    with pytest.raises(ValueError, match=message):
        attack.run(model, schedule, images, np.arange(4), is_member)
    assert model.calls == []
    with pytest.raises(ValueError, match=message):
        attack.classify(torch.rand(4, 1, 8, 8), np.arange(4), is_member)


def test_classify_returns_int64_ids_whatever_their_integer_type():
    maps = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    cfg = AttackConfig(secmi_nn=SecMINNConfig(train_fraction=0.4, num_epochs=1, batch_size=4))
    is_member = np.arange(10) % 2 == 0
    result = build_attack("secmi_nn", cfg).classify(maps, np.arange(10, dtype=np.int32) + 7, is_member)
    assert result.sample_ids.dtype == np.int64
    np.testing.assert_array_equal(result.sample_ids, np.arange(4, 10) + 7)


class Stop(Exception):
    pass


def test_classify_trains_on_the_maps_device(monkeypatch):
    """Maps on "meta" (standing in for a GPU): the training targets are put beside them."""
    seen = {}

    def record(features, targets, cfg, seed):
        seen.update(features=features.device.type, targets=targets.device.type)
        raise Stop

    monkeypatch.setattr(secmi_nn, "train_classifier", record)
    attack = build_attack("secmi_nn", AttackConfig(secmi_nn=SecMINNConfig(train_fraction=0.4)))
    with pytest.raises(Stop):
        attack.classify(torch.rand(10, 1, 8, 8).to("meta"), np.arange(10), np.arange(10) % 2 == 0)
    assert seen == {"features": "meta", "targets": "meta"}
