"""Membership metrics against hand-computed values; members are the positive class, higher score = member."""

import json

import numpy as np
import pytest

from dualmd.config import MetricsConfig
from dualmd.metrics import asr, auc, bootstrap_ci, roc, summarize, tpr_at_fpr, tpr_key

# Four samples; ranking by score: M(0.9) N(0.8) M(0.7) N(0.1).
SCORES = np.array([0.9, 0.8, 0.7, 0.1])
IS_MEMBER = np.array([True, False, True, False])


def test_roc_points_by_hand():
    fpr, tpr = roc(SCORES, IS_MEMBER)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])


def test_auc_by_hand():
    # Member/non-member pairs ranked correctly: (0.9>0.8), (0.9>0.1), (0.7>0.1); wrong: (0.7<0.8) -> 3/4.
    assert auc(SCORES, IS_MEMBER) == pytest.approx(0.75)


def test_auc_counts_ties_as_half():
    assert auc(np.array([1.0, 1.0, 0.0]), np.array([True, False, False])) == pytest.approx(0.75)


def test_flipping_scores_flips_auc():
    rng = np.random.default_rng(0)
    scores, is_member = rng.normal(size=50), rng.random(50) < 0.5
    assert auc(-scores, is_member) == pytest.approx(1.0 - auc(scores, is_member))
    # And with the hand example: the member-positive convention is not silently flipped.
    assert auc(-SCORES, IS_MEMBER) == pytest.approx(0.25)


def test_asr_is_best_balanced_accuracy():
    # "member iff score >= 0.9": TPR 0.5, FPR 0 -> 0.75; "member iff score >= 0.7": TPR 1, FPR 0.5 -> 0.75.
    assert asr(SCORES, IS_MEMBER) == pytest.approx(0.75)
    assert asr(np.array([3.0, 2.0, 1.0, 0.0]), np.array([True, True, False, False])) == pytest.approx(1.0)


def test_asr_uses_balanced_accuracy_not_plain_accuracy():
    # 1 member, 3 non-members, scores tell nothing: plain accuracy of "nobody is a member" would be 0.75.
    assert asr(np.array([0.0, 1.0, 1.0, 1.0]), np.array([True, False, False, False])) == pytest.approx(0.5)


def test_tpr_at_fpr_picks_best_point_within_budget():
    assert tpr_at_fpr(SCORES, IS_MEMBER, max_fpr=0.0) == 0.5  # only the top score is safe
    assert tpr_at_fpr(SCORES, IS_MEMBER, max_fpr=0.49) == 0.5  # never the nearest point over the bound
    assert tpr_at_fpr(SCORES, IS_MEMBER, max_fpr=0.5) == 1.0


def test_tpr_at_fpr_is_zero_when_the_top_score_is_a_nonmember():
    assert tpr_at_fpr(np.array([1.0, 0.5]), np.array([False, True]), max_fpr=0.0) == 0.0


@pytest.mark.parametrize(
    ("scores", "is_member", "message"),
    [
        (np.zeros((2, 2)), np.array([True, False]), "1-D"),
        (np.zeros(3), np.array([True, False]), "differ in length"),
        (np.array([0.0, np.nan]), np.array([True, False]), "NaN"),
        (np.array([0.0, 1.0]), np.array([True, True]), "both members and non-members"),
        (np.array([0.0, 1.0]), np.array([2, 0]), "boolean"),
    ],
    ids=["2d", "length", "nan", "one_class", "labels"],
)
def test_bad_inputs_are_refused(scores, is_member, message):
    with pytest.raises(ValueError, match=message):
        auc(scores, is_member)


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = rng.normal(size=200) + 0.8 * is_member
    low, high = bootstrap_ci(scores, is_member, auc, num_bootstrap=200, seed=3)
    assert low < auc(scores, is_member) < high
    assert 0.03 < high - low < 0.3  # ~ +-2 standard errors of an AUC from 100 + 100 samples
    assert (low, high) == bootstrap_ci(scores, is_member, auc, num_bootstrap=200, seed=3)


def test_bootstrap_of_perfect_separation_is_degenerate():
    is_member = np.array([True] * 5 + [False] * 5)
    # Stratified resampling keeps both classes, so every resample still separates perfectly.
    assert bootstrap_ci(np.arange(10.0)[::-1], is_member, auc, num_bootstrap=50, seed=0) == (1.0, 1.0)


def test_summarize_keys_values_and_json():
    cfg = MetricsConfig(tpr_at_fpr=(0.01, 0.5), num_bootstrap=20, seed=0)
    out = summarize(SCORES, IS_MEMBER, cfg)
    point = ["auc", "asr", tpr_key(0.01), tpr_key(0.5)]
    assert point[2:] == ["tpr_at_fpr_0.01", "tpr_at_fpr_0.5"]
    assert set(out) == {*point, *(f"{k}_low" for k in point), *(f"{k}_high" for k in point),
                        "num_members", "num_nonmembers"}  # fmt: skip
    assert out["auc"] == pytest.approx(0.75)
    assert out["asr"] == pytest.approx(0.75)
    assert out["tpr_at_fpr_0.01"] == 0.5
    assert out["tpr_at_fpr_0.5"] == 1.0
    assert (out["num_members"], out["num_nonmembers"]) == (2, 2)
    assert all(out[f"{k}_low"] <= out[f"{k}_high"] for k in point)
    # Same resamples as the single-metric bootstrap.
    assert (out["auc_low"], out["auc_high"]) == bootstrap_ci(SCORES, IS_MEMBER, auc, 20, 0)
    json.dumps(out, allow_nan=False)


def test_summarize_without_bootstrap_has_no_interval_keys():
    out = summarize(SCORES, IS_MEMBER, MetricsConfig(tpr_at_fpr=(0.01,), num_bootstrap=0))
    assert set(out) == {"auc", "asr", "tpr_at_fpr_0.01", "num_members", "num_nonmembers"}
