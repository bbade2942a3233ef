"""The numbers of Pang & Wang's black-box attack: similarity features, the Gaussian log-likelihood ratio and the
half/half protocol (fit on the labelled slice, score only the rest)."""

import math

import numpy as np
import pytest

from dualmd.attacks.pang_wang import gaussian_llr, similarity_features
from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, PangWangConfig


def test_product_features_are_normalised_products_averaged_over_generations():
    candidate = np.array([[3.0, 4.0]])  # unit vector (0.6, 0.8)
    generated = np.array([[[1.0, 0.0], [0.0, 2.0]]])  # unit vectors (1, 0) and (0, 1)
    features = similarity_features(generated, candidate, "product")
    np.testing.assert_allclose(features, [[(0.6 + 0.0) / 2, (0.0 + 0.8) / 2]])
    # summed over dimensions, the product of one generation is the cosine similarity
    one = similarity_features(generated[:, :1], candidate, "product")
    assert one.sum() == pytest.approx(0.6)


def test_token_cosine_features_compare_each_dimension_over_the_tokens():
    candidate = np.array([[[1.0, 2.0], [0.0, 0.0]]])  # (N=1, T=2, D=2)
    generated = np.array([[[[1.0, 0.0], [1.0, 5.0]]]])  # (N=1, G=1, T=2, D=2)
    features = similarity_features(generated, candidate, "token_cosine")
    # d=0: cos((1, 0), (1, 1)) = 1/sqrt(2); d=1: cos((2, 0), (0, 5)) = 0
    np.testing.assert_allclose(features, [[1 / math.sqrt(2), 0.0]])


def test_features_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="pooled"):
        similarity_features(np.ones((2, 3, 4, 5)), np.ones((2, 4, 5)), "product")
    with pytest.raises(ValueError, match="do not match"):
        similarity_features(np.ones((2, 3, 4)), np.ones((2, 5)), "product")


def test_gaussian_llr_matches_a_hand_computation():
    # 1-D features: members {1, 3}, non-members {-1, -3}. StandardScaler: mean 0, std sqrt(5). Scaled class
    # means +-2/sqrt(5), sample variances (N - 1) 2/5, plus the ridge.
    fit = np.array([[1.0], [3.0], [-1.0], [-3.0]])
    is_member = np.array([True, True, False, False])
    ridge = 1e-5
    var = 2 / 5 + ridge
    llr = gaussian_llr(fit, is_member, np.array([[0.0], [math.sqrt(5)]]), ridge=ridge)
    # at the scaled point 1: -((1 - m)^2 - (1 + m)^2) / (2 var) = 2 m / var with m = 2 / sqrt(5)
    np.testing.assert_allclose(llr, [0.0, 2 * (2 / math.sqrt(5)) / var], rtol=1e-12)


def test_gaussian_llr_uses_the_class_covariances():
    rng = np.random.default_rng(0)
    members = rng.normal(0.0, 1.0, (200, 2))
    nonmembers = rng.normal(0.0, 3.0, (200, 2))  # same mean, wider
    fit = np.concatenate([members, nonmembers])
    labels = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    llr = gaussian_llr(fit, labels, np.array([[0.0, 0.0], [6.0, 6.0]]))
    assert llr[0] > 0 > llr[1]  # the narrow class wins at the centre, the wide one far out


def test_pang_wang_scores_only_the_held_out_half():
    rng = np.random.default_rng(1)
    is_member = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    features = rng.normal(size=(40, 3)) + 3.0 * is_member[:, None]  # members shifted: separable
    ids = np.arange(100, 140)
    cfg = AttackConfig(pang_wang=PangWangConfig(fit_fraction=0.5))
    result = build_attack("pang_wang", cfg).run(features, ids, is_member)
    # the first half of the members (100..109) and of the non-members (120..129) fit the Gaussians
    np.testing.assert_array_equal(result.sample_ids, np.r_[110:120, 130:140])
    np.testing.assert_array_equal(result.is_member, np.r_[np.ones(10, bool), np.zeros(10, bool)])
    assert result.attack == "pang_wang"
    assert result.scores[result.is_member].min() > result.scores[~result.is_member].max()  # higher = member
    # only the labelled slice fits: changing one held-out candidate changes no other candidate's score
    changed = features.copy()
    changed[15] += 100.0
    other = build_attack("pang_wang", cfg).run(changed, ids, is_member)
    keep = result.sample_ids != 115
    np.testing.assert_allclose(other.scores[keep], result.scores[keep])
    assert other.scores[~keep] != result.scores[~keep]
