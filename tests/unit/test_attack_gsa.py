"""GSA's classifier settings and labelled slice, on the gradient features of a two-parameter linear model."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from sklearn.ensemble import GradientBoostingClassifier
from torch import nn

from dualmd.attacks.base import train_test_split
from dualmd.attacks.gsa import fit_classifier, gradient_features
from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, GSAConfig
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
