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


def reference_llr(fit, labels, x, ridge):
    """Standardise by the labelled set (population std), one Gaussian per class (sample covariance + ridge)."""
    from scipy.stats import multivariate_normal

    mean, std = fit.mean(axis=0), fit.std(axis=0)
    fit, x = (fit - mean) / std, (x - mean) / std
    log_p = [
        multivariate_normal(
            fit[labels == c].mean(axis=0), np.cov(fit[labels == c].T) + ridge * np.eye(fit.shape[1])
        ).logpdf(x)
        for c in (True, False)
    ]
    return log_p[0] - log_p[1]


def correlated_features(num=12, seed=2):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(num, 3))
    features = base @ np.array([[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0.0, 0.0, 0.7]]) + [5.0, -1.0, 0.5]
    labels = np.arange(num) % 3 != 0
    features[labels] += [0.8, 0.0, -0.4]
    return features, labels


@pytest.mark.parametrize("ridge", [1e-5, 0.5])
def test_gaussian_llr_matches_full_covariance_gaussians_in_three_dimensions(ridge):
    features, labels = correlated_features()
    x = np.random.default_rng(3).normal(size=(4, 3)) * 2
    llr = gaussian_llr(features, labels, x, ridge=ridge)
    np.testing.assert_allclose(llr, reference_llr(features, labels, x, ridge), rtol=1e-9)


def test_gaussian_llr_ridge_changes_the_ratio():
    features, labels = correlated_features()
    x = np.random.default_rng(3).normal(size=(4, 3))
    assert not np.allclose(
        gaussian_llr(features, labels, x, ridge=1e-5), gaussian_llr(features, labels, x, ridge=1.0)
    )


def test_gaussian_llr_needs_two_labelled_candidates_per_class():
    features = np.arange(10.0).reshape(5, 2)
    for labels, counts in (([1, 1, 0, 1, 1], "4 and 1"), ([0, 1, 0, 0, 0], "1 and 4")):
        with pytest.raises(ValueError, match=f"^need >= 2 labelled members and non-members, got {counts}$"):
            gaussian_llr(features, np.array(labels, bool), features)
    gaussian_llr(features[:4], np.array([1, 1, 0, 0], bool), features)  # two of each is enough


def test_features_of_a_zero_embedding_are_zero_not_nan():
    generated = np.array([[[0.0, 0.0], [3.0, 4.0]]])
    features = similarity_features(generated, np.array([[0.0, 2.0]]), "product")
    np.testing.assert_allclose(features, [[0.0, (0.0 + 0.8) / 2]])
    tokens = similarity_features(np.zeros((1, 1, 2, 2)), np.ones((1, 2, 2)), "token_cosine")
    np.testing.assert_array_equal(tokens, [[0.0, 0.0]])


def test_features_refuse_every_mismatch_with_a_clear_message():
    with pytest.raises(ValueError, match=r"^generated \(3, 2, 4\) and candidate \(2, 4\) do not match$"):
        similarity_features(np.ones((3, 2, 4)), np.ones((2, 4)), "product")
    with pytest.raises(ValueError, match=r"^generated \(2, 2, 4\) and candidate \(2, 5\) do not match$"):
        similarity_features(np.ones((2, 2, 4)), np.ones((2, 5)), "product")
    with pytest.raises(
        ValueError, match=r"^'token_cosine' needs token embeddings \(N, G, T, D\), got \(2, 3, 4\)$"
    ):
        similarity_features(np.ones((2, 3, 4)), np.ones((2, 4)), "token_cosine")
    with pytest.raises(
        ValueError, match=r"^'product' needs pooled embeddings \(N, G, D\), got \(2, 3, 4, 5\)$"
    ):
        similarity_features(np.ones((2, 3, 4, 5)), np.ones((2, 4, 5)), "product")
    with pytest.raises(ValueError, match=r"^unknown similarity 'dot'; use 'product' or 'token_cosine'$"):
        similarity_features(np.ones((2, 3, 4)), np.ones((2, 4)), "dot")


def test_token_cosine_averages_over_generations():
    candidate = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # (N=1, T=2, D=2)
    generated = np.array([[[[2.0, 0.0], [0.0, 3.0]], [[0.0, 1.0], [1.0, 1.0]]]])  # (1, G=2, 2, 2)
    # generation 1: d=0 cos((2, 0), (1, 0)) = 1, d=1 cos((0, 3), (0, 1)) = 1; generation 2: d=0 0, d=1 1/sqrt(2)
    features = similarity_features(generated, candidate, "token_cosine")
    np.testing.assert_allclose(features, [[0.5, (1 + 1 / math.sqrt(2)) / 2]])


def test_pang_wang_fits_on_the_configured_fraction_with_the_configured_ridge():
    features, labels = correlated_features(num=30, seed=4)
    ids = np.arange(30) * 2
    cfg = AttackConfig(pang_wang=PangWangConfig(fit_fraction=0.3, covariance_ridge=0.25))
    result = build_attack("pang_wang", cfg).run(features, ids, labels)
    fit = np.sort(
        np.r_[np.flatnonzero(labels)[:6], np.flatnonzero(~labels)[:3]]
    )  # 20 members, 10 non-members
    test = np.setdiff1d(np.arange(30), fit)
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_allclose(
        result.scores, reference_llr(features[fit], labels[fit], features[test], 0.25), rtol=1e-9
    )
    with pytest.raises(ValueError, match=r"^29 feature rows for 30 candidates$"):
        build_attack("pang_wang", cfg).run(features[:29], ids, labels)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_features_do_not_depend_on_the_embedding_scale(scale):
    rng = np.random.default_rng(5)
    generated, candidate = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4))
    np.testing.assert_allclose(
        similarity_features(scale * generated, scale * candidate, "product"),
        similarity_features(generated, candidate, "product"),
        rtol=1e-9,
    )
    tokens_g, tokens_c = rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(2, 5, 4))
    np.testing.assert_allclose(
        similarity_features(scale * tokens_g, scale * tokens_c, "token_cosine"),
        similarity_features(tokens_g, tokens_c, "token_cosine"),
        rtol=1e-9,
    )


def test_gaussian_llr_default_ridge_is_the_authors_1e_5():
    features, labels = correlated_features()
    x = np.random.default_rng(3).normal(size=(4, 3))
    np.testing.assert_allclose(
        gaussian_llr(features, labels, x), reference_llr(features, labels, x, 1e-5), rtol=1e-9
    )


def test_float32_embeddings_are_compared_in_float64():
    rng = np.random.default_rng(6)
    generated, candidate = rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 5))
    tokens_g, tokens_c = rng.normal(size=(3, 2, 4, 5)), rng.normal(size=(3, 4, 5))
    for gen, cand, how in ((generated, candidate, "product"), (tokens_g, tokens_c, "token_cosine")):
        exact = similarity_features(gen.astype(np.float32).astype(np.float64), cand.astype(np.float32), how)
        for g, c in ((gen.astype(np.float32), cand.astype(np.float32).astype(np.float64)),
                     (gen.astype(np.float32).astype(np.float64), cand.astype(np.float32))):  # fmt: skip
            features = similarity_features(g, c, how)
            assert features.dtype == np.float64
            np.testing.assert_allclose(features, exact, rtol=1e-13, atol=1e-15)


def test_gaussian_llr_of_float32_features_is_computed_in_float64():
    features, labels = correlated_features()
    features32 = features.astype(np.float32)
    x = np.random.default_rng(3).normal(size=(4, 3))
    exact = reference_llr(features32.astype(np.float64), labels, x, 1e-5)
    np.testing.assert_allclose(gaussian_llr(features32, labels, x), exact, rtol=1e-10)


def test_pang_wang_returns_int64_ids_and_names_itself_in_errors():
    features, labels = correlated_features(num=12)
    result = build_attack("pang_wang", AttackConfig()).run(features, np.arange(12, dtype=np.int32), labels)
    assert result.sample_ids.dtype == np.int64
    one_member = np.array([True] + [False] * 11)
    with pytest.raises(
        ValueError, match=r"^pang_wang: train_fraction=0\.5 leaves an empty training or test set"
    ):
        build_attack("pang_wang", AttackConfig()).run(features, np.arange(12), one_member)


def test_gaussian_llr_takes_zero_one_labels_and_float32_candidates():
    features, labels = correlated_features()
    x = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    exact = reference_llr(features, labels, x.astype(np.float64), 1e-5)
    np.testing.assert_allclose(gaussian_llr(features, labels.astype(int), x), exact, rtol=1e-10)
