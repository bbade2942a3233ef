"""Verdict rules against hand-computed values: Holm, the across-replicate t-interval, the one-seed bootstrap,
out-of-range utility, the inverted flag, and selection on one slice with the report on the other."""

import math

import numpy as np
import pandas as pd
import pytest

from dualmd.metrics import auc
from dualmd.scores import AttackResult
from dualmd.verdicts import (
    LEAKS_LESS,
    LEAKS_MORE,
    SAME,
    VERDICT_COLUMNS,
    Difference,
    across_replicates,
    bootstrap_p_value,
    from_bootstrap,
    holm,
    is_inverted,
    out_of_range,
    reported_part,
    select_strongest,
    selection_slice,
    verdict,
    verdict_table,
)


def test_holm_on_a_known_family():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_skips_nan_and_caps_at_one():
    adjusted = holm([0.5, float("nan"), 0.6])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [1.0, 1.0])  # m = 2, not 3: 0.5 * 2 = 1.0
    np.testing.assert_allclose(holm([0.02, float("nan")]), [0.02, float("nan")])


def test_t_interval_over_three_replicates_by_hand():
    # mean 2, sd 1, sem 1/sqrt(3); t(0.975, df=2) = 4.302653; t = 2 sqrt(3); with 2 df the t cdf is
    # 0.5 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14)
    diff = across_replicates([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert diff.replicates == 3
    assert diff.difference == pytest.approx(2.0)
    assert (diff.low, diff.high) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert diff.p_value == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-9)


def test_t_interval_level_and_identical_replicates():
    diff = across_replicates([1.0, 3.0], level=0.5)  # t(0.75, df=1) = 1; sem = 1
    assert (diff.low, diff.high) == pytest.approx((1.0, 3.0))
    same = across_replicates([0.2, 0.2, 0.2])
    assert (same.low, same.high) == (0.2, 0.2) and math.isnan(same.p_value)
    with pytest.raises(ValueError, match="at least two replicates"):
        across_replicates([0.1])


def test_one_seed_bootstrap_interval_and_p_value_by_hand():
    # sorted draws -1, 1, 2, 3: the 25th percentile is -1 + 0.75 * 2 = 0.5, the 75th 2 + 0.25 = 2.25;
    # mean 1.25, sd sqrt((5.0625 + 0.0625 + 0.5625 + 3.0625) / 3) = sqrt(35 / 12): p = 2 * Phi(-1.25 / 1.7078)
    diff = from_bootstrap(1.5, np.array([3.0, -1.0, 2.0, 1.0]), level=0.5)
    p = 2 * (1 - 0.5 * (1 + math.erf(1.25 / math.sqrt(35 / 12) / math.sqrt(2))))
    assert diff == Difference(1, 1.5, pytest.approx(0.5), pytest.approx(2.25), pytest.approx(p))
    assert p == pytest.approx(0.4642, abs=1e-4)
    # 99 draws -1 .. -99: mean -50, sd sqrt(99 * 100 / 12) = 28.72: z = 1.741, p = 0.0817
    assert from_bootstrap(-1.0, -np.arange(1.0, 100.0)).p_value == pytest.approx(0.08170, abs=1e-4)


@pytest.mark.parametrize(
    ("diff", "p_holm", "expected"),
    [
        (Difference(3, -0.1, -0.2, -0.05, 0.01), 0.03, LEAKS_LESS),
        (Difference(3, -0.1, -0.2, -0.05, 0.01), 0.06, SAME),  # the raw p passes, Holm's does not
        (Difference(3, 0.1, 0.05, 0.2, 0.01), 0.01, LEAKS_MORE),
        (Difference(3, 0.0, -0.1, 0.1, 0.9), 0.9, SAME),
        (Difference(1, -0.1, -0.2, -0.05, 0.002), 0.002, f"{LEAKS_LESS} (one seed)"),
    ],
)
def test_verdict_needs_the_interval_and_the_adjusted_p(diff, p_holm, expected):
    assert verdict(diff, p_holm) == expected


def test_out_of_range_names_the_side_and_the_nearest_point():
    curve = {"baseline@100": 0.5, "baseline@200": 0.3, "baseline": 0.2}
    leak = {"baseline@100": 0.9, "baseline@200": 0.95, "baseline": 0.99}
    assert out_of_range(0.7, curve, 0.6, leak) == (
        "worse utility than every undefended point; leakage -0.300 against baseline@100"
    )
    assert out_of_range(0.1, curve, 0.995, leak) == (
        "better utility than every undefended point; leakage +0.005 against baseline"
    )
    with pytest.raises(ValueError, match="inside the curve's range"):
        out_of_range(0.4, curve, 0.6, leak)


def test_inverted_only_when_the_whole_interval_is_below_half():
    assert is_inverted(0.47) and not is_inverted(0.5) and not is_inverted(0.6)


def test_selection_slice_takes_the_leading_members_and_nonmembers():
    ids = np.arange(10, 20)
    member = np.array([True, False] * 5)
    np.testing.assert_array_equal(selection_slice(ids, member, 0.4), [10, 12, 11, 13])
    with pytest.raises(ValueError, match="no member or no non-member"):
        selection_slice(ids, member, 0.1)


def _result(name, ids, member, scores):
    return AttackResult(ids, member, np.asarray(scores, dtype=np.float64), attack=name)


def test_a_score_perfect_on_the_slice_and_random_elsewhere_is_reported_as_random():
    ids = np.arange(8)
    member = np.array([True, True, False, False] * 2)
    slice_ids = np.arange(4)  # members 0, 1 and non-members 2, 3
    # "lucky" ranks the slice perfectly, then members 4, 5 against non-members 6, 7 at chance (AUC 2/4);
    # "steady" has AUC 3/4 on the slice and 1 on the rest
    lucky = _result("lucky", ids, member, [9, 8, 0, 0.5, 0.1, 0.6, 0.3, 0.2])
    steady = _result("steady", ids, member, [0.7, 0.8, 0.6, 0.75, 0.9, 0.7, 0.2, 0.4])
    chosen = select_strongest({"steady": steady, "lucky": lucky}, slice_ids)
    assert (chosen.attack, chosen.orientation, chosen.selection_auc) == ("lucky", 1, 1.0)
    rest = reported_part(lucky, slice_ids, chosen.orientation)
    np.testing.assert_array_equal(rest.sample_ids, [4, 5, 6, 7])
    assert auc(rest.scores, rest.is_member) == pytest.approx(0.5)


def test_selection_considers_the_inverted_orientation():
    ids = np.arange(6)
    member = np.array([True, False, True, False, True, False])
    slice_ids = ids
    inverted = _result("inverted", ids, member, [0.1, 0.9, 0.2, 0.8, 0.5, 0.4])  # AUC 1/9 -> 8/9 negated
    forward = _result("forward", ids, member, [0.9, 0.1, 0.8, 0.85, 0.3, 0.2])  # AUC 7/9
    chosen = select_strongest({"forward": forward, "inverted": inverted}, slice_ids)
    assert (chosen.attack, chosen.orientation) == ("inverted", -1)
    assert chosen.selection_auc == pytest.approx(8 / 9)
    flipped = reported_part(inverted, np.array([], dtype=np.int64), chosen.orientation)
    assert auc(flipped.scores, flipped.is_member) == pytest.approx(8 / 9)


def test_an_attack_that_did_not_score_the_slice_is_not_a_candidate():
    member = np.array([True, False, True, False])
    only_rest = _result("trained", np.array([2, 3]), member[2:], [1.0, 0.0])
    everywhere = _result("loss", np.arange(4), member, [0.6, 0.5, 0.4, 0.7])
    assert select_strongest({"trained": only_rest, "loss": everywhere}, np.array([0, 1])).attack == "loss"
    with pytest.raises(ValueError, match="no attack"):
        select_strongest({"trained": only_rest}, np.array([0, 1]))


def test_holm_returns_floats_and_caps_every_value_at_one():
    adjusted = holm([1, 0])
    assert adjusted.dtype == np.float64
    np.testing.assert_array_equal(adjusted, [1.0, 0.0])
    np.testing.assert_allclose(holm([0.7, 0.8]), [1.0, 1.0])  # 0.7 * 2 = 1.4 is capped


def test_identical_replicates_keep_their_value_and_count():
    same = across_replicates([0.25, 0.25, 0.25])
    assert (same.replicates, same.difference, same.low, same.high) == (3, 0.25, 0.25, 0.25)


def test_bootstrap_p_value_is_the_normal_tail_of_the_draws_with_no_floor():
    # draws 1, 2, 3: mean 2, sd 1, z = 2: p = 2 * Phi(-2) = 0.0455; the same for the negated draws
    assert bootstrap_p_value(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.045500, abs=1e-6)
    assert bootstrap_p_value(np.array([-3.0, -2.0, -1.0])) == pytest.approx(0.045500, abs=1e-6)
    # far from 0: far below 2 / (B + 1), the floor of counting draws (here 2 / 4)
    assert bootstrap_p_value(np.array([10.0, 11.0, 12.0])) < 1e-20
    # draws 0 .. 8: mean 4, sd sqrt(7.5) = 2.7386, z = 1.4606, Phi(z) = 0.92794
    assert from_bootstrap(4.0, np.arange(9.0)).p_value == pytest.approx(2 * (1 - 0.92794), abs=1e-4)
    assert bootstrap_p_value(np.zeros(3)) == 1.0 and bootstrap_p_value(np.full(3, 0.5)) == 0.0
    assert bootstrap_p_value(np.array([0.25])) == 0.0 and bootstrap_p_value(np.array([0.0])) == 1.0
    # two draws already have a standard deviation: 1, 3: mean 2, sd sqrt(2), z = sqrt(2), p = 2 * Phi(-1.4142)
    assert bootstrap_p_value(np.array([1.0, 3.0])) == pytest.approx(0.157299, abs=1e-6)


def test_verdict_statistics_are_computed_in_float64_whatever_the_input_dtype():
    """float32 differences or draws (scores kept in single precision) give the float64 numbers exactly: a float32
    mean and standard deviation would move the p-value and the interval in their seventh digit."""
    draws = np.random.default_rng(0).normal(0.1, 1.0, size=1001).astype(np.float32)
    assert bootstrap_p_value(draws) == bootstrap_p_value(draws.astype(np.float64))
    differences = np.array([0.1, 0.25, 0.3], dtype=np.float32)
    assert across_replicates(differences) == across_replicates(differences.astype(np.float64))


@pytest.mark.parametrize(
    "diff",
    [
        Difference(3, -0.1, -0.2, 0.0, 0.01),  # the interval touches 0
        Difference(3, 0.1, 0.0, 0.2, 0.01),
        Difference(3, 0.1, 0.05, 0.2, 0.01),  # excluded, but Holm's p is not below alpha (below)
    ],
)
def test_no_difference_shown_at_the_boundaries(diff):
    p_holm = 0.05 if diff.low > 0 else 0.01
    assert verdict(diff, p_holm, alpha=0.05) == SAME
    assert verdict(Difference(3, -0.1, -0.2, -0.1, 0.05), 0.05) == SAME
    assert verdict(Difference(3, 0.3, 0.1, 0.5, 0.5), 0.5) == SAME


def test_out_of_range_refuses_an_empty_curve_and_both_ends_of_the_range():
    curve = {"baseline@100": 0.5, "baseline": 0.2}
    leak = {"baseline@100": 0.9, "baseline": 0.99}
    with pytest.raises(ValueError, match="^the undefended curve has no points$"):
        out_of_range(0.7, {}, 0.6, {})
    for inside in (0.5, 0.2):
        with pytest.raises(ValueError, match="inside the curve's range"):
            out_of_range(inside, curve, 0.6, leak)


def test_selection_slice_accepts_integer_labels_and_a_single_pair():
    ids = np.arange(10, 20)
    np.testing.assert_array_equal(selection_slice(ids, [1, 0] * 5, 0.2), [10, 11])


def test_selection_skips_an_attack_that_scored_only_members_of_the_slice_and_keeps_the_first_of_ties():
    member = np.array([True, False, True, False])
    members_only = _result("members_only", np.array([0, 2, 3]), member[[0, 2, 3]], [1.0, 0.9, 0.0])
    first = _result("first", np.arange(4), member, [0.9, 0.1, 0.8, 0.2])
    second = _result("second", np.arange(4), member, [0.7, 0.3, 0.6, 0.4])
    slice_ids = np.array([0, 1, 2])  # members_only scored members 0, 2 of it, and no non-member
    chosen = select_strongest({"members_only": members_only, "first": first, "second": second}, slice_ids)
    assert (chosen.attack, chosen.selection_auc) == ("first", 1.0)  # "second" ties at 1.0
    with pytest.raises(ValueError, match="no attack"):
        select_strongest({"members_only": members_only}, slice_ids)


def test_a_chance_level_attack_keeps_its_orientation():
    member = np.array([True, False])
    chosen = select_strongest({"flat": _result("flat", np.arange(2), member, [0.5, 0.5])}, np.arange(2))
    assert (chosen.orientation, chosen.selection_auc) == (1, 0.5)


def test_reported_part_keeps_the_attack_its_extras_and_by_default_its_scores():
    result = AttackResult(
        np.arange(4),
        np.array([True, False, True, False]),
        np.array([0.4, 0.3, 0.2, 0.1]),
        extra={"t20": np.array([1.0, 2.0, 3.0, 4.0])},
        attack="pia",
    )
    rest = reported_part(result, np.array([0, 1]))
    assert rest.attack == "pia"
    np.testing.assert_array_equal(rest.scores, [0.2, 0.1])
    np.testing.assert_array_equal(rest.extra["t20"], [3.0, 4.0])


def _p_df2(values):
    """Two-sided one-sample t-test p-value for three values (df = 2: p = 1 - |t| / sqrt(2 + t^2))."""
    v = np.asarray(values)
    t = v.mean() / (v.std(ddof=1) / math.sqrt(3))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def test_verdict_table_combines_replicates_and_adjusts_within_each_defense():
    note = "worse utility than every undefended point; leakage -0.100 against baseline@120"
    rows = pd.DataFrame(
        [
            *(
                {
                    "replicate": r,
                    "defense": "student",
                    "attack": "pia",
                    "metric": "auc",
                    "axis": "heldout",
                    "difference": d,
                }
                for r, d in enumerate([-0.1, -0.2, -0.3])
            ),
            *(
                {
                    "replicate": r,
                    "defense": "student",
                    "attack": "loss",
                    "metric": "auc",
                    "axis": "heldout",
                    "difference": d,
                }
                for r, d in enumerate([-0.1, -0.11, -0.12])
            ),
            *(
                {
                    "replicate": r,
                    "defense": "student",
                    "attack": "recon",
                    "metric": "auc",
                    "axis": "fid",
                    "note": note,
                }
                for r in range(3)
            ),
            {
                "replicate": 0,
                "defense": "dualmd",
                "attack": "recon",
                "metric": "auc",
                "axis": "fid",
                "difference": -0.05,
                "low": -0.08,
                "high": -0.02,
                "p_value": 0.01,
            },
            {
                "replicate": 0,
                "defense": "selfdistill",
                "attack": "loss",
                "metric": "auc",
                "axis": "heldout",
                "difference": -0.05,
                "low": -0.08,
                "high": -0.02,
                "p_value": 0.02,
            },
        ]
    )
    table = verdict_table(rows).set_index(["defense", "attack"])
    p_pia, p_loss = _p_df2([-0.1, -0.2, -0.3]), _p_df2([-0.1, -0.11, -0.12])
    pia, loss = table.loc[("student", "pia")], table.loc[("student", "loss")]
    assert (pia["replicates"], pia["difference"]) == (3, pytest.approx(-0.2))
    assert pia["p_value"] == pytest.approx(p_pia)
    # Holm over the student's two measured rows: the smaller p doubled, the larger kept (running maximum)
    assert loss["p_holm"] == pytest.approx(2 * p_loss) and pia["p_holm"] == pytest.approx(p_pia)
    assert loss["verdict"] == LEAKS_LESS and pia["verdict"] == SAME  # pia's interval contains 0
    recon = table.loc[("student", "recon")]
    assert recon["verdict"] == note and math.isnan(recon["p_holm"]) and recon["replicates"] == 3
    dual = table.loc[("dualmd", "recon")]
    assert (dual["low"], dual["high"], dual["p_holm"]) == (-0.08, -0.02, 0.01)
    assert dual["verdict"] == f"{LEAKS_LESS} (one seed)"
    assert table.loc[("selfdistill", "loss"), "p_holm"] == 0.02  # a family of one, not pooled with dualmd
    assert list(verdict_table(rows).columns) == VERDICT_COLUMNS


def test_verdict_table_keeps_the_input_order_pairs_two_replicates_and_joins_notes():
    base = {"defense": "student", "metric": "auc", "axis": "heldout"}
    rows = pd.DataFrame(
        [
            {**base, "replicate": 0, "attack": "sima", "note": "not resolvable"},
            {**base, "replicate": 1, "attack": "sima", "note": "worse utility than every undefended point"},
            {**base, "replicate": 0, "attack": "loss", "difference": -0.1, "note": None},
            {**base, "replicate": 1, "attack": "loss", "difference": -0.3, "note": None},
            {
                **base,
                "defense": "dualmd",
                "replicate": 0,
                "attack": "nn_distance",
                "note": None,
                "difference": -0.1,
                "low": -0.2,
                "high": -0.05,
                "p_value": 0.2,
            },
        ]
    )
    table = verdict_table(rows)
    assert list(zip(table["defense"], table["attack"], strict=True)) == [
        ("student", "sima"),
        ("student", "loss"),
        ("dualmd", "nn_distance"),
    ]
    assert table["verdict"][0] == "not resolvable; worse utility than every undefended point"
    # two replicates: t(0.975, df=1) = 12.7062, sem = 0.1
    assert table["replicates"][1] == 2
    assert (table["low"][1], table["high"][1]) == pytest.approx((-0.2 - 1.270620, -0.2 + 1.270620), abs=1e-5)
    assert table["verdict"][2] == f"{SAME} (one seed)"  # p 0.2 is not below the default alpha
    assert verdict_table(rows, alpha=0.25)["verdict"][2] == f"{LEAKS_LESS} (one seed)"
    # every row measured (no note anywhere): each still gets its verdict text
    measured = verdict_table(rows[rows["note"].isna()].iloc[2:])
    assert measured["verdict"].tolist() == [f"{SAME} (one seed)"]


MATCHED_COLUMNS = "defense,attack,metric,axis,defense_value,curve_value,difference,difference_low,difference_high,p_value,bracket,verdict"


def test_the_stage_combines_each_replicates_matched_utility_file(tmp_path):
    from dualmd.stages.verdicts import verdicts

    out_of_range = "worse utility than every undefended point; leakage -0.050 against baseline@10"
    files = []
    for run, diff in (("rep0", -0.1), ("rep1", -0.11), ("rep2", -0.12)):
        folder = tmp_path / run
        folder.mkdir()
        (folder / "matched_utility.csv").write_text(
            f"{MATCHED_COLUMNS}\n"
            f"student,loss,auc,heldout,0.6,0.7,{diff},{diff - 0.05},{diff + 0.05},0.01,baseline@10 .. baseline,x\n"
            f'student,pia,auc,heldout,0.55,,,,,,,"{out_of_range}"\n'
        )
        files.append(folder / "matched_utility.csv")
    verdicts(matched=files, out=tmp_path / "verdicts.csv")
    table = pd.read_csv(tmp_path / "verdicts.csv")
    assert list(table.columns) == VERDICT_COLUMNS
    loss, pia = table.iloc[0], table.iloc[1]
    assert (loss["replicates"], loss["difference"]) == (3, pytest.approx(-0.11))
    assert loss["p_value"] == pytest.approx(_p_df2([-0.1, -0.11, -0.12])) and loss["verdict"] == LEAKS_LESS
    assert pia["verdict"] == out_of_range and pia["replicates"] == 3


def test_the_stage_names_a_matched_utility_file_without_p_values(tmp_path):
    from dualmd.stages.verdicts import verdicts

    old = tmp_path / "rep0" / "matched_utility.csv"
    old.parent.mkdir()
    old.write_text("defense,attack,metric,difference,verdict\n")
    with pytest.raises(ValueError, match=r"rep0/matched_utility.csv lacks the columns \['axis', 'p_value'\]"):
        verdicts(matched=[old], out=tmp_path / "verdicts.csv")
    assert not (tmp_path / "verdicts.csv").exists()
