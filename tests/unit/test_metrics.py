"""Membership metrics against hand-computed values; members are the positive class, higher score = member."""

import json

import numpy as np
import pytest

from dualmd.config.evaluation import MetricsConfig
from dualmd.metrics import (
    asr,
    auc,
    bootstrap_ci,
    is_resolvable,
    min_nonmembers,
    roc,
    roc_points,
    summarize,
    summarize_halves,
    tpr_at_fpr,
    tpr_bound,
    tpr_key,
)

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
    # 2 non-members resolve FPR steps of 1/2 only: TPR@1% would be the TPR at zero false positives (0.5).
    assert tpr_at_fpr(SCORES, IS_MEMBER, 0.01) == 0.5
    assert np.isnan([out["tpr_at_fpr_0.01"], out["tpr_at_fpr_0.01_low"], out["tpr_at_fpr_0.01_high"]]).all()
    assert out["tpr_at_fpr_0.5"] == 1.0
    assert (out["num_members"], out["num_nonmembers"]) == (2, 2)
    assert all(out[f"{k}_low"] <= out[f"{k}_high"] for k in point if k != "tpr_at_fpr_0.01")
    # Same resamples as the single-metric bootstrap.
    assert (out["auc_low"], out["auc_high"]) == bootstrap_ci(SCORES, IS_MEMBER, auc, 20, 0)
    json.dumps({k: v for k, v in out.items() if not k.startswith("tpr_at_fpr_0.01")}, allow_nan=False)


@pytest.mark.parametrize(
    ("max_fpr", "needed"),
    [(0.5, 2), (0.01, 100), (0.001, 1000), (0.003, 334), (0.3, 4)],
    ids=["half", "1pct", "0.1pct", "not-a-reciprocal", "0.3"],
)
def test_min_nonmembers_is_the_first_count_whose_one_false_positive_fits_the_bound(max_fpr, needed):
    assert min_nonmembers(max_fpr) == needed
    assert 1 / needed <= max_fpr < 1 / (needed - 1)
    assert is_resolvable(max_fpr, needed) and not is_resolvable(max_fpr, needed - 1)


def test_tpr_at_a_bound_becomes_a_number_exactly_at_one_over_the_nonmember_count():
    """100 non-members resolve 1 % FPR (one false positive allowed), 99 do not; the member count is irrelevant."""
    cfg = MetricsConfig(tpr_at_fpr=(0.01,), num_bootstrap=10, seed=0)
    for num_nonmembers, resolved in ((99, False), (100, True)):
        scores = np.r_[np.linspace(1.0, 2.0, 7), np.linspace(0.0, 1.5, num_nonmembers)]
        is_member = np.r_[np.ones(7, bool), np.zeros(num_nonmembers, bool)]
        out = summarize(scores, is_member, cfg)
        assert np.isfinite(out["tpr_at_fpr_0.01"]) == resolved, num_nonmembers
        assert np.isfinite(out["tpr_at_fpr_0.01_low"]) == resolved, num_nonmembers
        if resolved:  # FPR 1/100 admits the threshold at the top non-member (1.5): members 1.5 .. 2.0, 4 of 7
            assert out["tpr_at_fpr_0.01"] == pytest.approx(4 / 7)
        assert out["auc"] == pytest.approx(auc(scores, is_member))


def test_tpr_bound_inverts_tpr_key():
    assert [tpr_bound(tpr_key(a)) for a in (0.01, 0.001, 0.25)] == [0.01, 0.001, 0.25]
    assert tpr_bound("auc") is None and tpr_bound("tpr_at_fpr_0.01_low") is None


def test_summarize_without_bootstrap_has_no_interval_keys():
    out = summarize(SCORES, IS_MEMBER, MetricsConfig(tpr_at_fpr=(0.01,), num_bootstrap=0))
    assert set(out) == {"auc", "asr", "tpr_at_fpr_0.01", "num_members", "num_nonmembers"}


def test_all_equal_scores_are_chance_level():
    scores = np.full(7, 0.3)
    is_member = np.array([True] * 3 + [False] * 4)
    # One threshold flags everybody: the ROC is the diagonal's two end points only.
    fpr, tpr = roc(scores, is_member)
    np.testing.assert_array_equal(fpr, [0.0, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1.0])
    assert auc(scores, is_member) == 0.5
    assert asr(scores, is_member) == 0.5
    assert tpr_at_fpr(scores, is_member, max_fpr=0.99) == 0.0  # any bound < 1 allows only "flag nobody"
    assert tpr_at_fpr(scores, is_member, max_fpr=1.0) == 1.0
    out = summarize(scores, is_member, MetricsConfig(tpr_at_fpr=(0.01, 0.5, 0.99), num_bootstrap=30, seed=0))
    assert np.isnan(out["tpr_at_fpr_0.01"])  # 4 non-members cannot resolve 1 % FPR
    expected = {"auc": 0.5, "asr": 0.5, "tpr_at_fpr_0.5": 0.0, "tpr_at_fpr_0.99": 0.0}
    for key, value in expected.items():
        # every resample draws the same score for everybody, so the interval is the point
        assert (out[key], out[f"{key}_low"], out[f"{key}_high"]) == (value, value, value), key
    assert (out["num_members"], out["num_nonmembers"]) == (3, 4)


# Members 5, 3, 1; non-members 5, 2, 0, -1: a member and a non-member share the top score.
# Thresholds and (FPR, TPR): >=5 (1/4, 1/3), >=3 (1/4, 2/3), >=2 (1/2, 2/3), >=1 (1/2, 1), >=0 (3/4, 1), >=-1 (1, 1).
TOP_TIE_SCORES = np.array([5.0, 3.0, 1.0, 5.0, 2.0, 0.0, -1.0])
TOP_TIE_IS_MEMBER = np.array([True] * 3 + [False] * 4)


def test_roc_with_a_tie_at_the_top_by_hand():
    fpr, tpr = roc(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER)
    np.testing.assert_allclose(fpr, [0, 1 / 4, 1 / 4, 1 / 2, 1 / 2, 3 / 4, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1], rtol=0, atol=1e-15)


def test_member_tied_with_top_nonmember_counts_nothing_below_one_over_n():
    # Flagging the top member also flags the tied non-member (FPR 1/4), so below 1/4 only "flag nobody" is
    # allowed: TPR 0, not 1/3 (one member caught) nor 1/2 (the tie split in half).
    bounds = (0.001, 0.1, 0.2499)
    for max_fpr in (0.0, *bounds):
        assert tpr_at_fpr(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER, max_fpr) == 0.0, max_fpr
    # ... which is why the summary does not report these bounds at all with 4 non-members
    out = summarize(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER, MetricsConfig(tpr_at_fpr=bounds, num_bootstrap=0))
    assert np.isnan([out[tpr_key(a)] for a in bounds]).all()


def test_tpr_at_fpr_bound_at_one_over_n_after_a_top_tie():
    # FPR bound 1/4 = 1 / num_nonmembers: thresholds >=5 and >=3 both qualify; the best catches members 5 and 3.
    assert tpr_at_fpr(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER, max_fpr=0.25) == 2 / 3
    assert tpr_at_fpr(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER, max_fpr=0.5) == 1.0
    out = summarize(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER, MetricsConfig(tpr_at_fpr=(0.25, 0.5), num_bootstrap=0))
    assert (out["tpr_at_fpr_0.25"], out["tpr_at_fpr_0.5"]) == (2 / 3, 1.0)
    # best of (TPR + 1 - FPR) / 2 over the points above: (1 + 1 - 1/2) / 2 at threshold >=1
    assert asr(TOP_TIE_SCORES, TOP_TIE_IS_MEMBER) == out["asr"] == 0.75


@pytest.mark.parametrize(("num_nonmembers", "max_fpr"), [(100, 0.01), (1000, 0.001)])
def test_tpr_at_fpr_bound_exactly_one_nonmember_includes_that_point(num_nonmembers, max_fpr):
    # The configured bounds with 100 / 1000 non-members: FPR 1/n is achievable and must count as "<= bound".
    nonmembers = np.arange(num_nonmembers, dtype=float)  # top non-member scores n - 1
    top = num_nonmembers - 1.0
    members = np.array([top + 2, top + 1, top - 0.5, top - 0.5, top - 0.5, -1, -1, -1, -1, -1])
    scores = np.r_[members, nonmembers]
    is_member = np.r_[np.ones(10, bool), np.zeros(num_nonmembers, bool)]
    # Above the top non-member: 2 of 10 members at FPR 0; passing it (FPR 1/n) adds the three at top - 0.5.
    assert tpr_at_fpr(scores, is_member, max_fpr) == 0.5
    assert tpr_at_fpr(scores, is_member, max_fpr * 0.999) == 0.2
    out = summarize(scores, is_member, MetricsConfig(tpr_at_fpr=(max_fpr,), num_bootstrap=0))
    assert out[tpr_key(max_fpr)] == 0.5


def test_tied_thresholds_on_the_diagonal_are_separate_roc_points():
    # Members 3, 2, 1; non-members 3, 2, 1: each threshold flags one of each, so the points (0,0), (1/3,1/3),
    # (2/3,2/3), (1,1) lie on one line; the inner ones are still thresholds an attacker can use.
    scores = np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0])
    is_member = np.array([True] * 3 + [False] * 3)
    fpr, tpr = roc(scores, is_member)
    np.testing.assert_array_equal(fpr, [0.0, 1 / 3, 2 / 3, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1 / 3, 2 / 3, 1.0])
    assert tpr_at_fpr(scores, is_member, max_fpr=2 / 3) == 2 / 3
    assert tpr_at_fpr(scores, is_member, max_fpr=0.66) == 1 / 3
    out = summarize(scores, is_member, MetricsConfig(tpr_at_fpr=(2 / 3,), num_bootstrap=0))
    assert (out["auc"], out["asr"], out[tpr_key(2 / 3)]) == (0.5, 0.5, 2 / 3)


def test_summarize_auc_counts_tied_pairs_as_half():
    # Members 3, 2, 2, 1; non-members 2, 1, 1, 0. Pairs won (ties 1/2): member 3 -> 4; each member 2 -> 3 + 1/2;
    # member 1 -> 1 + 2 * 1/2. Total 13 of 16.
    scores = np.array([3.0, 2.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.0])
    is_member = np.array([True] * 4 + [False] * 4)
    out = summarize(scores, is_member, MetricsConfig(tpr_at_fpr=(0.25,), num_bootstrap=0))
    assert out["auc"] == pytest.approx(13 / 16, abs=1e-12)
    assert auc(scores, is_member) == pytest.approx(13 / 16, abs=1e-12)
    # Points (0,0), (0,1/4), (1/4,3/4), (3/4,1), (1,1): best balanced accuracy (3/4 + 1 - 1/4) / 2 = 3/4.
    assert out["asr"] == 0.75
    assert out["tpr_at_fpr_0.25"] == 0.75


def test_summarize_auc_equals_pair_count_on_heavy_ties():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, 301).astype(float)  # 5 distinct values among 301 samples
    is_member = rng.random(301) < 0.4
    members, nonmembers = scores[is_member], scores[~is_member]
    greater, equal = members[:, None] > nonmembers[None, :], members[:, None] == nonmembers[None, :]
    by_pairs = (greater.sum() + 0.5 * equal.sum()) / greater.size  # every member/non-member pair, ties 1/2
    cfg = MetricsConfig(tpr_at_fpr=(0.01,), num_bootstrap=40, seed=2)
    out = summarize(scores, is_member, cfg)
    assert out["auc"] == pytest.approx(by_pairs, abs=1e-12)
    assert auc(scores, is_member) == pytest.approx(by_pairs, abs=1e-12)
    # the per-resample trapezoid AUCs agree with roc_auc_score too
    low, high = bootstrap_ci(scores, is_member, auc, num_bootstrap=40, seed=2)
    assert (out["auc_low"], out["auc_high"]) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (MetricsConfig(tpr_at_fpr=(0.0,)), "not in \\(0, 1\\)"),
        (MetricsConfig(tpr_at_fpr=(1.0,)), "not in \\(0, 1\\)"),
        (MetricsConfig(num_bootstrap=-1), "num_bootstrap"),
    ],
    ids=["bound_0", "bound_1", "negative_bootstrap"],
)
def test_summarize_refuses_configs_built_without_validation(cfg, message):
    # A MetricsConfig built directly skips from_mapping's checks; summarize repeats them.
    with pytest.raises(ValueError, match=message):
        summarize(SCORES, IS_MEMBER, cfg)


@pytest.mark.parametrize("max_fpr", [-0.01, 1.01])
def test_tpr_at_fpr_refuses_bounds_outside_unit_interval(max_fpr):
    with pytest.raises(ValueError, match="max_fpr"):
        tpr_at_fpr(SCORES, IS_MEMBER, max_fpr)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_roc_points_equal_scikit_learns_roc_curve(seed, weighted):
    """Bit for bit, with heavy ties (scores rounded to 1 decimal) and bootstrap counts including zeros."""
    import sklearn.metrics

    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)
    weights = rng.poisson(1.0, 300).astype(np.float64) if weighted else None
    fpr, tpr = roc_points(scores, labels, weights)
    ref_fpr, ref_tpr, _ = sklearn.metrics.roc_curve(
        labels, scores, sample_weight=weights, drop_intermediate=False
    )
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)


def hand_resamples(scores, is_member, num_bootstrap, seed):
    """The stratified resamples drawn by hand: one generator, members then non-members in each resample."""
    rng = np.random.default_rng(seed)
    members, nonmembers = scores[is_member], scores[~is_member]
    labels = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    for _ in range(num_bootstrap):
        s = np.r_[rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers))]
        yield s, labels


def overlapping_scores(seed=4, num_members=30, num_nonmembers=40):
    rng = np.random.default_rng(seed)
    is_member = rng.permutation(np.r_[np.ones(num_members, bool), np.zeros(num_nonmembers, bool)])
    return rng.normal(size=len(is_member)) + 0.8 * is_member, is_member


def test_bootstrap_interval_is_the_2_5th_and_97_5th_percentile_of_the_hand_drawn_resamples():
    scores, is_member = overlapping_scores()
    values = [auc(s, m) for s, m in hand_resamples(scores, is_member, 60, seed=8)]
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    assert bootstrap_ci(scores, is_member, auc, num_bootstrap=60, seed=8) == pytest.approx(
        expected, rel=1e-12
    )
    assert expected != pytest.approx(tuple(np.percentile(values, [5, 95])))  # the percentiles matter here


def test_each_metrics_interval_comes_from_its_own_resampled_values():
    """AUC, ASR and every TPR bound: the summary's interval equals the percentiles of that metric on the same
    hand-drawn resamples, computed with the single-metric functions."""
    scores, is_member = overlapping_scores()
    bounds = (0.05, 0.25)
    cfg = MetricsConfig(tpr_at_fpr=bounds, num_bootstrap=50, seed=6)
    out = summarize(scores, is_member, cfg)
    functions = {
        "auc": auc,
        "asr": asr,
        **{tpr_key(a): (lambda s, m, a=a: tpr_at_fpr(s, m, a)) for a in bounds},
    }
    intervals = set()
    for key, fn in functions.items():
        values = [fn(s, m) for s, m in hand_resamples(scores, is_member, 50, seed=6)]
        low, high = np.percentile(values, [2.5, 97.5])
        assert out[key] == pytest.approx(fn(scores, is_member), abs=1e-12), key
        assert (out[f"{key}_low"], out[f"{key}_high"]) == pytest.approx((low, high), abs=1e-12), key
        intervals.add((round(low, 12), round(high, 12)))
    assert len(intervals) == len(functions)  # four different intervals: none can stand in for another
    assert (out["num_members"], out["num_nonmembers"]) == (30, 40)


def test_one_resample_is_enough_and_none_is_refused():
    scores, is_member = overlapping_scores()
    (s, m), *_ = hand_resamples(scores, is_member, 1, seed=2)
    assert bootstrap_ci(scores, is_member, auc, num_bootstrap=1, seed=2) == (auc(s, m), auc(s, m))
    with pytest.raises(ValueError, match="num_bootstrap must be >= 1, got 0"):
        bootstrap_ci(scores, is_member, auc, num_bootstrap=0, seed=2)
    out = summarize(scores, is_member, MetricsConfig(tpr_at_fpr=(0.25,), num_bootstrap=1, seed=2))
    assert out["auc_low"] == out["auc_high"] == pytest.approx(auc(s, m), abs=1e-12)


def test_labels_given_as_zeros_and_ones_are_members_and_nonmembers():
    assert auc(SCORES, np.array([1, 0, 1, 0])) == pytest.approx(0.75)
    assert auc(SCORES, np.array([1.0, 0.0, 1.0, 0.0])) == pytest.approx(0.75)
    fpr, tpr = roc(SCORES, np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        auc(SCORES, IS_MEMBER[:, None])  # scores 1-D, labels not
    with pytest.raises(ValueError, match="both members and non-members, got 0 members of 4"):
        auc(SCORES, np.zeros(4, bool))
    with pytest.raises(ValueError, match="^3 score\\(s\\) are NaN or infinite"):
        auc(np.array([np.inf, np.nan, -np.inf, 1.0]), IS_MEMBER)
    with pytest.raises(ValueError, match="^is_member must be boolean \\(or 0/1\\)$"):
        auc(SCORES, np.array([1, 0, 1, -1]))


def test_integer_scores_are_ranked_as_numbers():
    """Scores of an integer dtype give the same curve as the same values in float64."""
    ints = np.array([9, 8, 7, 1])
    fpr, tpr = roc(ints, IS_MEMBER)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    out = summarize(ints, IS_MEMBER, MetricsConfig(tpr_at_fpr=(0.5,), num_bootstrap=0))
    assert (out["auc"], out["asr"], out["tpr_at_fpr_0.5"]) == (0.75, 0.75, 1.0)


def test_roc_points_drop_samples_of_weight_zero():
    """A sample of weight 0 is absent: the curve equals the one of the data without it."""
    scores = np.array([0.9, 0.85, 0.8, 0.7, 0.1])
    labels = np.array([True, False, False, True, False])
    fpr, tpr = roc_points(scores, labels, np.array([1.0, 0.0, 1.0, 1.0, 1.0]))
    ref_fpr, ref_tpr = roc_points(scores[[0, 2, 3, 4]], labels[[0, 2, 3, 4]])
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    fpr, tpr = roc_points(scores, labels, np.array([2.0, 1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(fpr, [0.0, 0.0, 1 / 3, 2 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 2 / 3, 2 / 3, 2 / 3, 1.0, 1.0])


@pytest.mark.parametrize("max_fpr", [0.0, -0.1, 1.5])
def test_min_nonmembers_refuses_bounds_outside_zero_to_one(max_fpr):
    with pytest.raises(ValueError, match="max_fpr must be in \\(0, 1\\]"):
        min_nonmembers(max_fpr)


def test_a_bound_of_one_needs_one_nonmember():
    assert min_nonmembers(1.0) == 1 and is_resolvable(1.0, 1)


def test_tpr_bound_of_a_key_that_is_not_a_number_is_none():
    assert tpr_bound("tpr_at_fpr_abc") is None and tpr_bound("tpr_at_fpr_") is None
    assert tpr_bound("0.01") is None  # a number without the prefix is not a TPR key
    assert tpr_bound("tpr_at_fpr_1e-05") == 1e-5 and tpr_key(1e-5) == "tpr_at_fpr_1e-05"


def test_resampled_labels_are_boolean_so_a_metric_may_select_with_them():
    """A metric that selects members with the labels (mean member score minus mean non-member score) gets
    boolean labels in every resample; its interval equals the brute-force one."""

    def gap(s, m):
        return float(s[m].mean() - s[~m].mean())

    scores, is_member = overlapping_scores()
    values = [gap(s, m) for s, m in hand_resamples(scores, is_member, 40, seed=1)]
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    assert bootstrap_ci(scores, is_member, gap, num_bootstrap=40, seed=1) == pytest.approx(
        expected, rel=1e-12
    )


def test_weighted_roc_sums_tied_samples_in_input_order():
    """With fractional weights the order of summation shows in the last bit: samples tied in score are added
    in the order they are given (a stable sort), so the curve equals the running sums taken by hand."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, 300).astype(float)
    labels = rng.random(300) < 0.4
    weights = rng.random(300)
    tps, fps, tp, fp = [0.0], [0.0], 0.0, 0.0
    for value in sorted(set(scores), reverse=True):
        for i in np.flatnonzero(scores == value):  # input order within the tie
            if labels[i]:
                tp += weights[i] * 1.0
                fp += weights[i] * 0.0
            else:
                tp += weights[i] * 0.0
                fp += weights[i] * 1.0
        tps.append(tp)
        fps.append(fp)
    fpr, tpr = roc_points(scores, labels, weights)
    np.testing.assert_array_equal(fpr, np.array(fps) / fps[-1])
    np.testing.assert_array_equal(tpr, np.array(tps) / tps[-1])


def test_per_half_auc_of_a_pair_that_leaks_one_half():
    """Non-members 0.4, 0.5, 0.6; D1's members 0.9, 0.8 rank above all of them (AUC 1), D2's 0.55 beats two of three
    and 0.1 none (AUC (2 + 0) / 6 = 1/3). Together the six comparisons of 4 members give (3 + 3 + 2 + 0) / 12 = 2/3:
    the pooled number hides that one teacher's half is fully exposed."""
    scores = np.array([0.9, 0.55, 0.4, 0.8, 0.5, 0.1, 0.6])
    is_member = np.array([True, True, False, True, False, True, False])
    in_half = {
        "half1": np.array([True, False, False, True, False, False, False]),
        "half2": np.array([False, True, False, False, False, True, False]),
    }
    cfg = MetricsConfig(tpr_at_fpr=(0.01,), num_bootstrap=200, seed=0)
    halves = summarize_halves(scores, is_member, in_half, cfg)
    assert auc(scores, is_member) == pytest.approx(2 / 3)
    assert halves["half1"]["auc"] == 1.0 and (halves["half1"]["auc_low"], halves["half1"]["auc_high"]) == (
        1.0,
        1.0,
    )
    assert halves["half2"]["auc"] == pytest.approx(1 / 3)
    assert halves["half2"]["auc_low"] <= 1 / 3 <= halves["half2"]["auc_high"]
    assert [(h["num_members"], h["num_nonmembers"]) for h in halves.values()] == [(2, 3), (2, 3)]
    # a teacher's scores hold only its half: the other half is left out, not reported empty
    teacher = summarize_halves(scores[[0, 2, 3, 4, 6]], is_member[[0, 2, 3, 4, 6]],
                               {h: m[[0, 2, 3, 4, 6]] for h, m in in_half.items()}, cfg)  # fmt: skip
    assert list(teacher) == ["half1"] and teacher["half1"]["auc"] == 1.0


def test_per_half_masks_must_mark_members_of_the_same_samples():
    scores, is_member = np.array([0.9, 0.1, 0.5]), np.array([True, False, True])
    cfg = MetricsConfig(num_bootstrap=0)
    with pytest.raises(ValueError, match=r"^half1: marks 1 non-member\(s\) as members of the half"):
        summarize_halves(scores, is_member, {"half1": np.array([True, True, False])}, cfg)
    with pytest.raises(ValueError, match=r"^half2: mask of shape \(2,\), expected \(3,\)"):
        summarize_halves(scores, is_member, {"half2": np.array([True, False])}, cfg)
