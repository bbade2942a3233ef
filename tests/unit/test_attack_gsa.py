"""GSA's classifier settings, its labelled slice and its shadow protocol, on the gradient features of small
hand-written models."""

import re

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from sklearn.ensemble import GradientBoostingClassifier
from torch import nn

from dualmd.attacks import gsa as gsa_module
from dualmd.attacks.base import train_test_split
from dualmd.attacks.gsa import (
    ShadowModel,
    fit_classifier,
    gradient_features,
    gsa_section,
    shadow_classifier,
)
from dualmd.attacks.run import attack_model, build_attack
from dualmd.config.attacks import AttackConfig, GSAConfig, GSAShadowConfig
from dualmd.metrics import auc
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


class Affine(nn.Module):
    """eps_theta(x_t, t) = w x_t + b (+ t / 1000): gradients w.r.t. w and b differ from image to image."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.6))
        self.b = nn.Parameter(torch.tensor([0.1, -0.3]))

    def forward(self, x_t, t):
        return self.w * x_t + self.b + t.view(-1, 1, 1, 1) / 1000


def test_gsa_fits_its_configured_classifier_on_the_leading_slice_and_scores_the_rest(schedule):
    images = torch.rand(15, 1, 2, 2, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ids = np.arange(15) * 2 + 1
    is_member = np.arange(15) % 3 != 1
    gsa = GSAConfig(
        variant="gsa2", timesteps=(40, 300), train_fraction=0.4, num_estimators=7, max_depth=1,
        learning_rate=0.35, batch_size=4,
    )  # fmt: skip
    cfg = AttackConfig(seed=9, gsa=gsa)
    result = build_attack("gsa", cfg).run(Affine(), schedule, images, ids, is_member)
    train, test = train_test_split(is_member, 0.4, "gsa")
    assert len(train) == 6  # 4 of the 10 members and 2 of the 5 non-members
    features = gradient_features(Affine(), schedule, images, ids, gsa, seed=9).numpy()
    clf = GradientBoostingClassifier(n_estimators=7, max_depth=1, learning_rate=0.35, random_state=9)
    clf.fit(features[train], is_member[train])
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_array_equal(result.is_member, is_member[test])
    np.testing.assert_allclose(result.scores, clf.decision_function(features[test]), rtol=1e-9)
    assert result.scores.dtype == np.float64
    np.testing.assert_allclose(result.extra["grad_norm"], np.linalg.norm(features[test], axis=1), rtol=1e-12)
    default_rate = GradientBoostingClassifier(n_estimators=7, max_depth=1, random_state=9)
    assert not np.allclose(
        result.scores, default_rate.fit(features[train], is_member[train]).decision_function(features[test])
    )


def test_fit_classifier_passes_every_setting():
    features = np.random.default_rng(0).normal(size=(20, 3))
    labels = features[:, 0] + 0.5 * features[:, 1] > 0
    clf = fit_classifier(
        features, labels, GSAConfig(num_estimators=4, max_depth=2, learning_rate=0.7), seed=5
    )
    assert (clf.n_estimators, clf.max_depth, clf.learning_rate, clf.random_state) == (4, 2, 0.7, 5)
    assert len(clf.estimators_) == 4


def test_gsa_features_follow_the_seed_of_the_noise(schedule):
    images = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cfg = GSAConfig(timesteps=(100,))
    first, again, other = (
        gradient_features(Affine(), schedule, images, np.array([1, 2, 3]), cfg, seed=s) for s in (0, 0, 1)
    )
    torch.testing.assert_close(first, again)
    assert first.dtype == torch.float64 and first.shape == (3, 2)
    assert not torch.allclose(first, other)


def test_gsa_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images = torch.zeros(2, 1, 2, 2)
    with pytest.raises(ValueError, match=r"^attack\.gsa\.timesteps: timesteps \[1000\] outside \[0, 1000\)"):
        gradient_features(Affine(), schedule, images, np.array([0, 1]), GSAConfig(timesteps=(5, 1000)), 0)


# --- the shadow protocol -------------------------------------------------------------------------------------


class Recall(nn.Module):
    """A model that memorized the images `known`: it takes the known image y nearest to x_t / sqrt(alpha_bar_t)
    and predicts the noise that makes x_t from it, (x_t - sqrt(alpha_bar_t) y) / sqrt(1 - alpha_bar_t), times a
    parameter `gain` (1). On a known image (at small t) that is the exact noise, so the loss and its gradient are
    zero; on any other image the wrong y leaves an error, and a gradient with respect to `gain`."""

    def __init__(self, schedule: Schedule, known: torch.Tensor):
        super().__init__()
        self.schedule, self.known = schedule, known.double()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x_t, t):
        x = x_t.double()
        a = self.schedule.alpha_bar(t, x)
        nearest = ((x[:, None] - a.sqrt()[:, None] * self.known[None]) ** 2).flatten(2).sum(-1).argmin(1)
        return ((x - a.sqrt() * self.known[nearest]) / (1 - a).sqrt()).float() * self.gain


def recall_images(seed: int, num: int = 12) -> torch.Tensor:
    return torch.rand(num, 1, 2, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def shadow_models(schedule: Schedule) -> list[ShadowModel]:
    """Three reference models, each trained on the first 6 of its own 12 images (IN) and not on the rest (OUT);
    ids from 1000 up, none a candidate's."""
    models = []
    for k in range(3):
        images, is_in = recall_images(50 + k), np.arange(12) < 6
        models.append(
            ShadowModel(
                Recall(schedule, images[is_in]), schedule, images, 1000 + 12 * k + np.arange(12), is_in
            )
        )
    return models


SHADOW = GSAShadowConfig(timesteps=(5, 20), num_estimators=10, max_depth=2)


def test_gsa_shadow_classifier_transfers_from_reference_models_that_memorized_their_training_sets(schedule):
    """Known answer: on every model a memorized image has a zero loss gradient and any other image a positive one,
    so the classifier fitted on the reference models' IN and OUT rows puts every member of the target (another
    model, other images) in the leaf of the zero feature, above every non-member: AUC 1, every candidate scored."""
    candidates = recall_images(7)
    is_member = np.arange(12) % 2 == 0
    ids = np.arange(12) * 3
    cfg = AttackConfig(seed=4, gsa_shadow=SHADOW)
    shadow = shadow_classifier(SHADOW, shadow_models(schedule), seed=4)
    rows = shadow.features[:, 0]
    assert rows[shadow.is_in].max() < 1e-4 < 1e-2 < rows[~shadow.is_in].min()  # float32 rounding on IN
    target = Recall(schedule, candidates[is_member])
    result = attack_model(
        "gsa_shadow", cfg, predictor=target, schedule=schedule, images=candidates, sample_ids=ids,
        is_member=is_member, references=shadow,
    )  # fmt: skip
    np.testing.assert_array_equal(result.sample_ids, ids)  # no slice lost
    assert auc(result.scores, result.is_member) == 1.0
    top = shadow.classifier.decision_function(np.zeros((1, 1)))[0]
    np.testing.assert_allclose(result.scores[is_member], top)
    assert result.scores[~is_member].max() < top


def test_gsa_shadow_protocol_never_fits_on_a_target_candidate(schedule, monkeypatch):
    """The classifier is fitted once, on the reference models' features of their own images with their own IN/OUT
    labels; scoring fits nothing, every candidate's score is the classifier's value of its features on the target,
    and permuting the target's member labels changes no score."""
    fits = []

    def spy(features, is_in, cfg, seed):
        fits.append((features.copy(), is_in.copy()))
        return fit_classifier(features, is_in, cfg, seed)

    monkeypatch.setattr(gsa_module, "fit_classifier", spy)
    models = shadow_models(schedule)
    shadow = shadow_classifier(SHADOW, models, seed=4)
    expected = np.concatenate(
        [gradient_features(m.predictor, schedule, m.images, m.sample_ids, SHADOW, 4).numpy() for m in models]
    )
    assert len(fits) == 1
    np.testing.assert_array_equal(fits[0][0], expected)
    np.testing.assert_array_equal(fits[0][1], np.tile(np.arange(12) < 6, 3))
    np.testing.assert_array_equal(shadow.features, expected)
    np.testing.assert_array_equal(shadow.model_index, np.repeat([0, 1, 2], 12))
    np.testing.assert_array_equal(shadow.sample_ids, np.concatenate([m.sample_ids for m in models]))

    candidates = recall_images(7)
    ids = np.arange(12) * 3
    assert not set(ids) & set(shadow.sample_ids)
    target = Recall(schedule, candidates[:6])
    target.gain.data.fill_(1.3)  # any model: its features need not look like the references'
    attack = build_attack("gsa_shadow", AttackConfig(seed=4, gsa_shadow=SHADOW)).with_references(shadow)
    results = [
        attack.run(target, schedule, candidates, ids, labels)
        for labels in (
            np.arange(12) < 6,
            np.arange(12) >= 6,
            np.random.default_rng(0).permutation(12) % 2 == 0,
        )
    ]
    assert len(fits) == 1  # nothing fitted while scoring
    on_target = gradient_features(target, schedule, candidates, ids, SHADOW, 4).numpy()
    for result in results:
        np.testing.assert_array_equal(result.sample_ids, ids)
        np.testing.assert_array_equal(result.scores, shadow.classifier.decision_function(on_target))
    assert len(set(np.round(results[0].scores, 9))) > 1  # not a constant score


def test_gsa_shadow_refuses_a_missing_or_mismatched_classifier_and_labelless_models(schedule):
    images, ids = recall_images(7), np.arange(12)
    is_member = np.arange(12) < 6
    shadow = shadow_classifier(SHADOW, shadow_models(schedule), seed=4)
    common = dict(
        predictor=Recall(schedule, images[:6]),
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
    )
    with pytest.raises(ValueError, match="calibrated by reference models"):
        attack_model("gsa_shadow", AttackConfig(seed=4, gsa_shadow=SHADOW), **common)
    with pytest.raises(ValueError, match="takes no reference models"):  # gsa's default: the slice protocol
        attack_model("gsa", AttackConfig(seed=4), references=shadow, **common)
    with pytest.raises(ValueError, match="settings"):  # another seed: other noise, other features
        attack_model("gsa_shadow", AttackConfig(seed=5, gsa_shadow=SHADOW), references=shadow, **common)
    as_gsa = AttackConfig(
        seed=4, gsa=GSAConfig(protocol="shadow", timesteps=(5, 20), num_estimators=10, max_depth=2)
    )
    assert attack_model("gsa", as_gsa, references=shadow, **common).scores.shape == (
        12,
    )  # one attack, two names
    with pytest.raises(ValueError, match="needs its shadow classifier"):
        build_attack("gsa_shadow", AttackConfig(gsa_shadow=SHADOW)).run(
            common["predictor"], schedule, images, ids, is_member
        )
    model = shadow_models(schedule)[0]
    only_in = ShadowModel(model.predictor, schedule, model.images, model.sample_ids, np.ones(12, bool))
    with pytest.raises(ValueError, match="reference model 0 needs IN and OUT images, got 12 IN"):
        shadow_classifier(SHADOW, [only_in], seed=4)
    with pytest.raises(ValueError, match="^gsa: the shadow protocol needs at least one reference model$"):
        shadow_classifier(SHADOW, [], seed=4)


# --- devices, sections and the messages that name them --------------------------------------------------------


class Recording(Affine):
    """`Affine` that records the devices of its input and timesteps at every forward."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append((x_t.device.type, t.device.type))
        return super().forward(x_t, t)


class RecordingOnMeta(Recording):
    """A network that says it lives on "meta" (standing in for a GPU), as `UNetPredictor.device` does."""

    device = "meta"


def test_gsa_features_are_computed_on_the_models_device(schedule):
    """Images on the CPU, the network on "meta": images, noise and timesteps are all moved there (the features
    then cannot be read back from "meta", which holds no numbers)."""
    network = RecordingOnMeta().to("meta")
    with pytest.raises(NotImplementedError, match="meta"):
        gradient_features(
            network, schedule, torch.zeros(3, 1, 2, 2), np.arange(3), GSAConfig(timesteps=(5, 20)), 0
        )
    assert network.seen == [("meta", "meta")]


def test_gsa_noise_and_timesteps_follow_images_on_another_device(schedule):
    """A network without a device of its own computes where the images are: noise and timesteps go there too."""
    network = Recording().to("meta")
    images = torch.zeros(3, 1, 2, 2, device="meta")
    with pytest.raises(NotImplementedError, match="meta"):
        gradient_features(network, schedule, images, np.arange(3), GSAConfig(timesteps=(5, 20)), 0)
    assert network.seen == [("meta", "meta")]


def test_gsa_section_is_the_names_own_and_refuses_another_kind():
    cfg = AttackConfig(gsa=GSAConfig(num_estimators=3), gsa_shadow=GSAShadowConfig(num_estimators=5))
    assert gsa_section(cfg) is cfg.gsa
    assert gsa_section(cfg, "gsa_shadow") is cfg.gsa_shadow
    with pytest.raises(ValueError, match=r"^'lira' is not a GSA attack \(its section is 'lira'\)$"):
        gsa_section(cfg, "lira")


def test_shadow_labels_are_kept_as_booleans(schedule):
    """0 / 1 labels of a reference model are stored as the booleans they stand for."""
    models = [
        ShadowModel(m.predictor, schedule, m.images, m.sample_ids, m.is_in.astype(int))
        for m in shadow_models(schedule)
    ]
    shadow = shadow_classifier(SHADOW, models, seed=4)
    assert shadow.is_in.dtype == bool
    np.testing.assert_array_equal(shadow.is_in, np.tile(np.arange(12) < 6, 3))


def test_gsa_refusals_name_the_attack_and_both_settings(schedule):
    shadow = shadow_classifier(SHADOW, shadow_models(schedule)[:1], seed=4)
    with pytest.raises(
        ValueError, match=r"^gsa: the slice protocol trains on the target; it takes no reference models$"
    ):
        build_attack("gsa", AttackConfig(seed=4)).with_references(shadow)
    built = re.escape(str(settings_of(4)))
    wanted = re.escape(str(settings_of(5)))
    with pytest.raises(
        ValueError,
        match=rf"^gsa_shadow: the shadow classifier was built with settings {built}, not attack\.gsa_shadow's {wanted}$",
    ):
        build_attack("gsa_shadow", AttackConfig(seed=5, gsa_shadow=SHADOW)).with_references(shadow)
    images = recall_images(7)[:4]
    cfg = AttackConfig(gsa=GSAConfig(timesteps=(5,)))
    with pytest.raises(ValueError, match=r"^gsa: train_fraction=0\.2 leaves an empty training or test set"):
        build_attack("gsa", cfg).run(Affine(), schedule, images, np.arange(4), np.array([1, 0, 1, 0]))


def settings_of(seed):
    """The settings tuple of `SHADOW` with noise seed `seed`, written out."""
    return (
        SHADOW.variant,
        SHADOW.timesteps,
        SHADOW.num_estimators,
        SHADOW.max_depth,
        SHADOW.learning_rate,
        seed,
    )
