"""The privacy-utility frontier: joint bootstrap counts, weighted metrics, the table, matched-utility verdicts."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from dualmd.config.evaluation import MetricsConfig
from dualmd.frontier import (
    NOT_BETTER,
    NOT_RESOLVABLE,
    Heldout,
    JointBootstrap,
    _interpolate,
    curve_names,
    fid_axis,
    frontier_table,
    heldout_axis,
    matched_utility,
)
from dualmd.metrics import auc, summarize, tpr_at_fpr, tpr_key
from dualmd.report import frontier_tables
from dualmd.scores import AttackResult, save_scores

MEMBERS, NONMEMBERS = np.array([10, 11, 12, 13]), np.array([20, 21, 22, 23, 24])


def result(scores, ids, is_member) -> AttackResult:
    return AttackResult(
        attack="loss",
        scores=np.asarray(scores, float),
        sample_ids=np.asarray(ids),
        is_member=np.asarray(is_member, bool),
        extra={},
    )


def test_joint_bootstrap_draws_members_and_nonmembers_separately():
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=50, seed=0)
    assert boot.counts.shape == (50, 9)
    assert (boot.counts[:, :4].sum(axis=1) == 4).all() and (boot.counts[:, 4:].sum(axis=1) == 5).all()
    np.testing.assert_array_equal(boot.weights(np.array([22, 10])), boot.counts[:, [6, 0]])
    again = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=50, seed=0)
    np.testing.assert_array_equal(boot.counts, again.counts)
    with pytest.raises(ValueError, match="sample id 99"):
        boot.weights(np.array([99]))


def test_frontier_point_values_equal_the_metrics_and_resamples_equal_repeated_data():
    scores = result([0.9, 0.8, 0.3, 0.7, 0.1, 0.8, 0.2, 0.4, 0.0], [*MEMBERS, *NONMEMBERS], [1] * 4 + [0] * 5)
    losses = np.array([0.5, 0.25, 0.75, 1.0, 0.5])
    heldout = Heldout(sample_ids=NONMEMBERS, losses={"baseline": losses})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=20, seed=1)
    table, resampled = frontier_table(
        [heldout_axis(heldout, boot)], {("baseline", "loss"): scores}, boot, max_fpr=0.2
    )
    row = table.iloc[0]
    expected = summarize(scores.scores, scores.is_member, MetricsConfig(tpr_at_fpr=(0.2,), num_bootstrap=0))
    assert row["utility"] == pytest.approx(0.6) and row["auc"] == pytest.approx(expected["auc"])
    assert row["tpr_at_fpr_0.2"] == pytest.approx(expected["tpr_at_fpr_0.2"])
    for b in (0, 7):  # a resample is the data with each sample repeated as often as it was drawn
        counts = boot.weights(scores.sample_ids)[b].astype(int)
        s, m = np.repeat(scores.scores, counts), np.repeat(scores.is_member, counts)
        assert resampled[("baseline", "loss", "heldout")]["auc"][b] == pytest.approx(auc(s, m))
        assert resampled[("baseline", "loss", "heldout")]["tpr"][b] == pytest.approx(tpr_at_fpr(s, m, 0.2))
        loss_counts = boot.weights(NONMEMBERS)[b]
        assert resampled[("baseline", "loss", "heldout")]["utility"][b] == pytest.approx(
            loss_counts @ losses / 5
        )
    assert (
        row["auc_low"] <= row["auc"] <= row["auc_high"] and row["utility_low"] <= 0.6 <= row["utility_high"]
    )


def hand_table(defense_utility):
    """A baseline curve 1.0 -> 0.5 -> 0.25 (AUC 0.6, 0.8, 0.95) and one defense, resampled without noise."""
    rows = [
        ("baseline@10", "baseline", 10, 1.0, 0.6),
        ("baseline@20", "baseline", 20, 0.5, 0.8),
        ("baseline", "baseline", None, 0.25, 0.95),
        ("student", "student", None, defense_utility, 0.55),
    ]
    table = pd.DataFrame(
        [
            {
                "target": t,
                "model": m,
                "step": s,
                "utility": u,
                "attack": "loss",
                "axis": "heldout",
                "auc": a,
                "tpr_at_fpr_0.01": a / 2,
            }
            for t, m, s, u, a in rows
        ]
    )
    shift = np.linspace(-0.01, 0.01, 11)  # small symmetric wobble of every number
    resampled = {
        (t, "loss", "heldout"): {"utility": u + shift, "auc": a + shift, "tpr": a / 2 + shift}
        for t, _, _, u, a in rows
    }
    return table, resampled


def test_matched_utility_interpolates_the_bracketing_checkpoints_by_hand():
    table, resampled = hand_table(defense_utility=0.625)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01)
    auc_row = matched[matched["metric"] == "auc"].iloc[0]
    # 0.625 lies 3/4 of the way from baseline@10 (1.0, AUC 0.6) to baseline@20 (0.5, AUC 0.8): curve AUC 0.75
    assert auc_row["curve_value"] == pytest.approx(0.75) and auc_row["difference"] == pytest.approx(-0.2)
    assert auc_row["bracket"] == "baseline@10 .. baseline@20"
    assert auc_row["difference_high"] < 0
    assert auc_row["verdict"] == "leaks less than the baseline at equal utility"
    # the 11 draws are -0.2 + 0 (the shifts cancel in the difference): every draw the same, so p = 0
    assert auc_row["p_value"] == 0.0
    tpr_row = matched[matched["metric"] == "tpr_at_fpr_0.01"].iloc[0]  # TPR = AUC / 2 on every point
    assert tpr_row["curve_value"] == pytest.approx(0.375)
    assert tpr_row["difference"] == pytest.approx(0.275 - 0.375)


def test_matched_utility_names_the_side_out_of_range_and_says_not_better_than_early_stopping():
    table, resampled = hand_table(defense_utility=2.0)  # worse than the earliest checkpoint
    out = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    # the nearest point in utility is baseline@10 (AUC 0.6, TPR 0.3); the student has AUC 0.55, TPR 0.275
    for metric, delta in (("auc", "-0.050"), ("tpr_at_fpr_0.01", "-0.025")):
        assert out.loc[metric, "verdict"] == (
            f"worse utility than every undefended point; leakage {delta} against baseline@10"
        )
        assert np.isnan(out.loc[metric, "p_value"]) and out.loc[metric, "axis"] == "heldout"
    table, resampled = hand_table(defense_utility=0.75)
    table.loc[table["target"] == "student", "auc"] = 0.7  # exactly on the curve
    resampled[("student", "loss", "heldout")]["auc"] = 0.7 + np.linspace(-0.05, 0.05, 11)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01)
    row = matched[matched["metric"] == "auc"].iloc[0]
    assert row["difference"] == pytest.approx(0.0, abs=1e-12) and row["verdict"] == NOT_BETTER


def test_tpr_below_one_over_the_nonmembers_is_nan_and_its_comparison_not_resolvable():
    """5 non-members resolve FPR steps of 1/5: TPR at FPR <= 0.1 is not a number; AUC is unaffected."""
    scores = result([0.9, 0.8, 0.3, 0.7, 0.1, 0.8, 0.2, 0.4, 0.0], [*MEMBERS, *NONMEMBERS], [1] * 4 + [0] * 5)
    heldout = Heldout(sample_ids=NONMEMBERS, losses={"baseline": np.linspace(0.1, 0.5, 5)})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=10, seed=0)
    table, resampled = frontier_table(
        [heldout_axis(heldout, boot)], {("baseline", "loss"): scores}, boot, max_fpr=0.1
    )
    row = table.iloc[0]
    assert np.isnan([row["tpr_at_fpr_0.1"], row["tpr_at_fpr_0.1_low"], row["tpr_at_fpr_0.1_high"]]).all()
    assert row["auc"] == pytest.approx(auc(scores.scores, scores.is_member))
    assert np.isnan(resampled[("baseline", "loss", "heldout")]["tpr"]).all()

    hand, draws = hand_table(defense_utility=0.625)
    hand["tpr_at_fpr_0.01"] = np.nan
    matched = matched_utility(hand, draws, ["student"], max_fpr=0.01)
    tpr_row = matched[matched["metric"] == "tpr_at_fpr_0.01"].iloc[0]
    assert tpr_row["verdict"] == f"{NOT_RESOLVABLE} (needs ≥ 100 non-members)"
    assert np.isnan(tpr_row["difference"])
    assert matched[matched["metric"] == "auc"].iloc[0]["verdict"] != NOT_RESOLVABLE


def test_curve_is_the_checkpoints_in_training_order_then_the_model():
    names = ["student", "baseline", "baseline@300", "baseline@120", "teacher1"]
    assert curve_names(names) == ["baseline@120", "baseline@300", "baseline"]


def test_frontier_tables_from_files(tmp_path):
    """The report's entry point on files: score files named <attack>/<target>.npz, the held-out JSON and the
    samplers' utility JSONs. A model attack's rows are on both axes; DualMD (no held-out loss) is on the FID axis
    only, compared there through the attack that reaches it."""
    rng = np.random.default_rng(0)
    ids, labels = np.r_[MEMBERS, NONMEMBERS], np.r_[np.ones(4, bool), np.zeros(5, bool)]
    files = []
    for attack, targets in (
        ("loss", ("baseline@1", "baseline", "student")),
        ("recon", ("baseline@1", "dualmd")),
    ):
        for target in targets:
            path = tmp_path / attack / f"{target}.npz"
            path.parent.mkdir(exist_ok=True)
            save_scores(result(rng.normal(size=9) + labels, ids, labels), path)
            files.append(path)
    recon_baseline = tmp_path / "recon" / "baseline.npz"
    save_scores(result(rng.normal(size=9) + labels, ids, labels), recon_baseline)
    files.append(recon_baseline)
    heldout = {
        "sample_ids": NONMEMBERS.tolist(),
        "models": {
            t: {"per_sample": (rng.random(5) + k).tolist()}
            for k, t in enumerate(["baseline", "student", "baseline@1"])  # the student between the two
        },
    }
    (tmp_path / "heldout.json").write_text(json.dumps(heldout))
    utility = []
    for sampler, fid in (("baseline@1", 90.0), ("baseline", 10.0), ("student", 30.0), ("dualmd", 50.0)):
        utility.append(tmp_path / f"{sampler}.json")
        draws = fid + rng.normal(0, 1, 30)
        utility[-1].write_text(json.dumps({"sampler": sampler, "fid": fid, "fid_draws": draws.tolist()}))
    table, matched = frontier_tables(
        heldout_file=tmp_path / "heldout.json",
        utility_files=utility,
        score_files=files,
        num_bootstrap=30,
        seed=0,
        max_fpr=0.2,
    )
    assert table[["axis", "attack", "target"]].values.tolist() == [
        ["heldout", "loss", "baseline@1"],
        ["heldout", "loss", "baseline"],
        ["heldout", "loss", "student"],
        ["heldout", "recon", "baseline@1"],
        ["heldout", "recon", "baseline"],
        ["fid", "loss", "baseline@1"],
        ["fid", "loss", "baseline"],
        ["fid", "loss", "student"],
        ["fid", "recon", "baseline@1"],
        ["fid", "recon", "baseline"],
        ["fid", "recon", "dualmd"],
    ]
    assert table["step"].tolist()[:1] == [1] and pd.isna(table["step"][1])
    assert table.loc[table["axis"] == "fid", "utility"].tolist() == [90.0, 10.0, 30.0, 90.0, 10.0, 50.0]
    assert set(table["utility_metric"]) == {"heldout_loss", "fid"}
    assert matched[["defense", "attack", "axis"]].drop_duplicates().values.tolist() == [
        ["student", "loss", "heldout"],
        ["student", "loss", "fid"],
        ["dualmd", "recon", "fid"],
    ]
    assert len(matched) == 6 and matched["difference"].notna().all()  # AUC and TPR each, all bracketed
    dualmd = matched[matched["defense"] == "dualmd"].iloc[0]
    assert dualmd["bracket"] == "baseline@1 .. baseline"


def test_fid_axis_reads_each_samplers_draws_and_names_a_summary_without_them():
    """The FID axis holds each sampler's FID and its stored draws, repeated or cut to the number of resamples."""
    axis = fid_axis(
        {
            "baseline": {"fid": 12.5, "fid_draws": [12.0, 13.0]},
            "dualmd": {"fid": 40.0, "fid_draws": [39, 40, 41]},
        },
        num_bootstrap=4,
    )
    assert (axis.name, axis.metric) == ("fid", "fid")
    assert axis.values == {"baseline": 12.5, "dualmd": 40.0}
    assert axis.draws["baseline"].tolist() == [12.0, 13.0, 12.0, 13.0]
    assert axis.draws["dualmd"].tolist() == [39.0, 40.0, 41.0, 39.0]
    assert axis.draws["dualmd"].dtype == np.float64  # integer draws are stored as the floats they stand for
    assert fid_axis({"student": {"fid": 1.0, "fid_draws": [1, 2, 3, 4, 5]}}, 2).draws["student"].tolist() == [
        1,
        2,
    ]
    with pytest.raises(ValueError, match=r"utility summaries of \['student'\] hold no FID draws"):
        fid_axis({"baseline": {"fid": 1.0, "fid_draws": [1.0]}, "student": {"fid": 2.0}}, num_bootstrap=4)


def test_heldout_axis_is_the_mean_loss_resampled_with_the_nonmembers_counts():
    losses = np.array([0.5, 0.25, 0.75, 1.0, 0.5])
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=6, seed=3)
    axis = heldout_axis(Heldout(sample_ids=NONMEMBERS, losses={"student": losses}), boot)
    assert (axis.name, axis.metric) == ("heldout", "heldout_loss") and axis.values == {"student": 0.6}
    counts = boot.weights(NONMEMBERS).astype(int)
    expected = [np.repeat(losses, counts[b]).mean() for b in range(6)]
    np.testing.assert_allclose(axis.draws["student"], expected)


def test_a_sampler_is_matched_on_the_fid_axis_by_hand():
    """DualMD at FID 70 between baseline@10 (FID 100, AUC 0.6) and baseline@20 (FID 40, AUC 0.8): half way,
    so the curve's AUC is 0.7 and DualMD's 0.55 differs by -0.15; every resample shifts FIDs alike."""
    rows = [("baseline@10", 10, 100.0, 0.6), ("baseline@20", 20, 40.0, 0.8), ("baseline", None, 20.0, 0.95)]
    rows.append(("dualmd", None, 70.0, 0.55))
    table = pd.DataFrame(
        [
            {"target": t, "model": t.split("@")[0], "step": s, "axis": "fid", "utility": u, "attack": "recon"}
            | {"auc": a, "tpr_at_fpr_0.01": a / 2}
            for t, s, u, a in rows
        ]
    )
    shift = np.linspace(-1.0, 1.0, 11)
    resampled = {
        (t, "recon", "fid"): {"utility": u + shift, "auc": a + shift / 100, "tpr": a / 2 + shift / 100}
        for t, _, u, a in rows
    }
    matched = matched_utility(table, resampled, ["dualmd"], max_fpr=0.01).set_index("metric")
    row = matched.loc["auc"]
    assert row["axis"] == "fid" and row["bracket"] == "baseline@10 .. baseline@20"
    assert row["curve_value"] == pytest.approx(0.7) and row["difference"] == pytest.approx(-0.15)
    # resample k: FIDs all shifted by s_k, so DualMD stays half way; AUCs all shifted by s_k / 100 too
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((-0.15, -0.15))
    assert row["verdict"] == "leaks less than the baseline at equal utility"
    assert matched.loc["tpr_at_fpr_0.01", "curve_value"] == pytest.approx(0.35)


def brute_force_resamples(result_, losses, boot, max_fpr):
    """Per resample: the held-out loss and the attack's AUC and TPR on the data with every sample repeated as
    often as the resample drew it (the metrics module's own functions, no weights)."""
    score_counts = boot.weights(result_.sample_ids).astype(int)
    loss_counts = boot.weights(NONMEMBERS_SHUFFLED).astype(int)
    utility, aucs, tprs = [], [], []
    for b in range(len(score_counts)):
        s = np.repeat(result_.scores, score_counts[b])
        m = np.repeat(result_.is_member, score_counts[b])
        aucs.append(auc(s, m))
        tprs.append(tpr_at_fpr(s, m, max_fpr))
        utility.append(np.repeat(losses, loss_counts[b]).mean())
    return np.array(utility), np.array(aucs), np.array(tprs)


NONMEMBERS_SHUFFLED = np.array([22, 20, 24, 21, 23])


def test_each_targets_intervals_are_the_percentiles_of_its_own_resampled_numbers():
    """Three targets with independent scores and losses, two attacks: for every row, utility, AUC and TPR and
    their 2.5th and 97.5th percentiles equal the brute-force numbers of that target on each resample."""
    rng = np.random.default_rng(11)
    order = np.array([3, 7, 0, 5, 1, 8, 2, 6, 4])  # scores listed in another order than the split's ids
    ids = np.r_[MEMBERS, NONMEMBERS][order]
    labels = np.r_[np.ones(4, bool), np.zeros(5, bool)][order]
    names = ["student", "baseline", "baseline@10"]
    losses = {name: rng.random(5) + k for k, name in enumerate(names)}
    heldout = Heldout(sample_ids=NONMEMBERS_SHUFFLED, losses=losses)
    scores = {
        (name, attack): result(rng.normal(size=9) + 1.5 * labels, ids, labels)
        for attack in ("pia", "loss")
        for name in names
    }
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=40, seed=3)
    table, resampled = frontier_table([heldout_axis(heldout, boot)], scores, boot, max_fpr=0.4)
    assert list(zip(table["attack"], table["target"], strict=True)) == [
        (attack, name) for attack in ("loss", "pia") for name in ("baseline@10", "baseline", "student")
    ]
    assert table.columns.tolist()[:9] == [
        "target",
        "model",
        "step",
        "axis",
        "utility_metric",
        "utility",
        "utility_low",
        "utility_high",
        "attack",
    ]
    assert table.index.tolist() == list(range(6))
    assert table.columns.tolist()[9:] == [
        "auc",
        "auc_low",
        "auc_high",
        "tpr_at_fpr_0.4",
        "tpr_at_fpr_0.4_low",
        "tpr_at_fpr_0.4_high",
    ]
    for row in table.to_dict("records"):
        r = scores[(row["target"], row["attack"])]
        utility, aucs, tprs = brute_force_resamples(r, losses[row["target"]], boot, 0.4)
        draws = resampled[(row["target"], row["attack"], row["axis"])]
        np.testing.assert_allclose(draws["utility"], utility, rtol=1e-12)
        np.testing.assert_allclose(draws["auc"], aucs, rtol=1e-12)
        np.testing.assert_allclose(draws["tpr"], tprs, rtol=1e-12)
        expected = {
            "utility": (losses[row["target"]].mean(), utility),
            "auc": (auc(r.scores, r.is_member), aucs),
            "tpr_at_fpr_0.4": (tpr_at_fpr(r.scores, r.is_member, 0.4), tprs),
        }
        for key, (point, values) in expected.items():
            low, high = np.percentile(values, [2.5, 97.5])
            got = (row[key], row[f"{key}_low"], row[f"{key}_high"])
            assert got == pytest.approx((point, low, high), rel=1e-12), (row["target"], key)
        assert row["model"] == row["target"].split("@")[0] and row["utility_metric"] == "heldout_loss"
    assert table["step"].tolist()[:1] == [10]
    assert len(set(table["auc_low"])) == 6  # the targets' draws differ: no interval is another's


def test_a_tpr_at_fpr_exactly_one_false_positive_counts_that_point_in_every_resample():
    """With 5 non-members a bound of 0.2 admits one false positive in the point estimate and in every resample
    (the resampled FPRs are multiples of 1/5, compared with the bound without rounding loss)."""
    ids, labels = np.r_[MEMBERS, NONMEMBERS], np.r_[np.ones(4, bool), np.zeros(5, bool)]
    # ranking: M 0.9, N 0.8, M 0.7, M 0.6, N .., M 0.1: one false positive admits three members
    r = result([0.9, 0.7, 0.6, 0.1, 0.8, 0.3, 0.2, 0.05, 0.0], ids, labels)
    heldout = Heldout(sample_ids=NONMEMBERS_SHUFFLED, losses={"baseline": np.arange(5.0)})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=30, seed=0)
    table, resampled = frontier_table(
        [heldout_axis(heldout, boot)], {("baseline", "loss"): r}, boot, max_fpr=0.2
    )
    assert table.loc[0, "tpr_at_fpr_0.2"] == 0.75
    _, _, tprs = brute_force_resamples(r, np.arange(5.0), boot, 0.2)
    np.testing.assert_array_equal(resampled[("baseline", "loss", "heldout")]["tpr"], tprs)


def test_joint_bootstrap_draws_follow_the_seed_and_cover_every_id():
    """Members' counts and non-members' counts come from one generator seeded by `seed`, members first: the
    counts equal those of the same draws made by hand, and every sample appears in some resample."""
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=200, seed=4)
    rng = np.random.default_rng(4)
    members = rng.integers(0, 4, (200, 4))
    nonmembers = rng.integers(0, 5, (200, 5))
    expected = np.zeros((200, 9))
    for b in range(200):
        expected[b, :4] = np.bincount(members[b], minlength=4)
        expected[b, 4:] = np.bincount(nonmembers[b], minlength=5)
    np.testing.assert_array_equal(boot.counts, expected)
    assert (boot.counts.sum(axis=0) > 0).all()
    assert boot.ids.dtype == np.int64 and boot.ids.tolist() == [*MEMBERS, *NONMEMBERS]
    assert not np.array_equal(boot.counts, JointBootstrap(MEMBERS, NONMEMBERS, 200, seed=5).counts)
    with pytest.raises(ValueError, match="num_bootstrap must be >= 1, got 0"):
        JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=0, seed=0)
    JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=1, seed=0)  # the smallest allowed


B = 41


def noisy_table(defense_utility, seed=0):
    """The curve of `hand_table` (utility 1.0 -> 0.5 -> 0.25, AUC 0.6 -> 0.8 -> 0.95, TPR = AUC / 2) and a
    defense (AUC 0.55), each number resampled with noise of its own (independent across targets and metrics)."""
    rng = np.random.default_rng(seed)
    table, _ = hand_table(defense_utility)
    resampled = {}
    for row in table.itertuples():
        resampled[(row.target, "loss", "heldout")] = {
            "utility": row.utility + rng.normal(0, 0.03, B),
            "auc": row.auc + rng.normal(0, 0.05, B),
            "tpr": row.auc / 2 + rng.normal(0, 0.05, B),
        }
    return table, resampled


def brute_force_differences(resampled, a, b, defense, key):
    out = []
    for k in range(B):
        ua, ub = (
            resampled[(a, "loss", "heldout")]["utility"][k],
            resampled[(b, "loss", "heldout")]["utility"][k],
        )
        ma, mb = resampled[(a, "loss", "heldout")][key][k], resampled[(b, "loss", "heldout")][key][k]
        u = resampled[(defense, "loss", "heldout")]["utility"][k]
        out.append(resampled[(defense, "loss", "heldout")][key][k] - (ma + (mb - ma) * (u - ua) / (ub - ua)))
    return np.array(out)


@pytest.mark.parametrize(
    ("defense_utility", "a", "b"),
    [
        (0.625, "baseline@10", "baseline@20"),
        (0.375, "baseline@20", "baseline"),
        (0.5, "baseline@10", "baseline@20"),
    ],
    ids=["first_segment", "last_segment", "at_a_checkpoint"],
)
def test_difference_interval_interpolates_each_resample_on_its_own_bracket(defense_utility, a, b):
    """Every resample interpolates the curve at the defense's resampled utility between the bracketing
    checkpoints' resampled points; the interval is the 2.5th and 97.5th percentile of those differences, for
    AUC and TPR each from its own draws (a utility on a checkpoint belongs to the earlier segment)."""
    table, resampled = noisy_table(defense_utility)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    points = table.set_index("target")
    for metric, key in (("auc", "auc"), ("tpr_at_fpr_0.01", "tpr")):
        row = matched.loc[metric]
        assert row["bracket"] == f"{a} .. {b}"
        ua, ub = points.loc[a, "utility"], points.loc[b, "utility"]
        ma, mb = points.loc[a, metric], points.loc[b, metric]
        curve = ma + (mb - ma) * (defense_utility - ua) / (ub - ua)
        assert row["defense_value"] == points.loc["student", metric]
        assert row["curve_value"] == pytest.approx(curve, rel=1e-12)
        assert row["difference"] == pytest.approx(points.loc["student", metric] - curve, rel=1e-12)
        low, high = np.percentile(brute_force_differences(resampled, a, b, "student", key), [2.5, 97.5])
        assert (row["difference_low"], row["difference_high"]) == pytest.approx((low, high), rel=1e-9)


def test_a_defense_better_than_the_curve_in_utility_is_bracketed_by_nothing_on_either_side():
    """A utility beyond the final model's (0.1 < 0.25) or before the first checkpoint's is not bracketed; a
    utility exactly at either end of the curve is."""
    worse = "worse utility than every undefended point; leakage {} against baseline@10"  # AUC 0.6, TPR 0.3
    better = "better utility than every undefended point; leakage {} against baseline"  # AUC 0.95, TPR 0.475
    for u, verdicts in (
        (0.1, [better.format("-0.400"), better.format("-0.200")]),
        (1.5, [worse.format("-0.050"), worse.format("-0.025")]),
    ):
        table, resampled = noisy_table(u)
        assert matched_utility(table, resampled, ["student"], max_fpr=0.01)["verdict"].tolist() == verdicts
    for u, bracket in ((0.25, "baseline@20 .. baseline"), (1.0, "baseline@10 .. baseline@20")):
        table, resampled = noisy_table(u)
        matched = matched_utility(table, resampled, ["student"], max_fpr=0.01)
        assert set(matched["bracket"]) == {bracket}


def test_a_curve_whose_utility_rises_with_training_still_brackets_by_its_range():
    """Brackets are found between the smaller and the larger utility of two consecutive checkpoints, whichever
    comes first in training."""
    table, resampled = noisy_table(0.375)
    rising = {"baseline@10": 0.25, "baseline@20": 0.5, "baseline": 1.0}
    for name, u in rising.items():
        table.loc[table["target"] == name, "utility"] = u
        resampled[(name, "loss", "heldout")]["utility"] = u + np.linspace(-0.01, 0.01, B)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    assert matched.loc["auc", "bracket"] == "baseline@10 .. baseline@20"
    # 0.375 halfway from 0.25 (AUC 0.6) to 0.5 (AUC 0.8)
    assert matched.loc["auc", "curve_value"] == pytest.approx(0.7)
    table.loc[table["target"] == "student", "utility"] = 0.75
    resampled[("student", "loss", "heldout")]["utility"] = 0.75 + np.linspace(-0.01, 0.01, B)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    assert matched.loc["auc", "bracket"] == "baseline@20 .. baseline"


def test_checkpoints_of_equal_utility_give_the_first_ones_metric():
    """Where the bracketing checkpoints have the same utility (in the point estimate or in a resample) the
    curve's value is the earlier checkpoint's, not a division by zero."""
    table, resampled = hand_table(defense_utility=0.5)
    table.loc[table["target"] == "baseline@10", "utility"] = 0.5
    for name in ("baseline@10", "baseline@20", "student"):
        resampled[(name, "loss", "heldout")]["utility"] = np.full(11, 0.5)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    row = matched.loc["auc"]
    assert row["bracket"] == "baseline@10 .. baseline@20"
    assert row["curve_value"] == pytest.approx(0.6) and row["difference"] == pytest.approx(-0.05)
    # each resample: defense 0.55 + shift minus the first checkpoint's 0.6 + shift
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((-0.05, -0.05))
    tpr = matched.loc["tpr_at_fpr_0.01"]  # TPR = AUC / 2: 0.275 against 0.3
    assert tpr["curve_value"] == pytest.approx(0.3) and tpr["difference"] == pytest.approx(-0.025)
    assert (tpr["difference_low"], tpr["difference_high"]) == pytest.approx((-0.025, -0.025))


def exact_table(differences):
    """One defense sitting on baseline@20's utility in every resample, so each resampled difference is exactly
    the defense's AUC minus baseline@20's (dyadic numbers, no rounding)."""
    table, resampled = hand_table(defense_utility=0.5)
    for name in ("baseline@10", "baseline@20", "baseline", "student"):
        u = float(table.loc[table["target"] == name, "utility"].iloc[0])
        resampled[(name, "loss", "heldout")]["utility"] = np.full(len(differences), u)
    resampled[("baseline@20", "loss", "heldout")]["auc"] = np.full(len(differences), 0.75)
    resampled[("student", "loss", "heldout")]["auc"] = 0.75 + np.asarray(differences)
    # with the defense at utility 0.5 the first segment (baseline@10 .. baseline@20) brackets it at its end
    resampled[("baseline@10", "loss", "heldout")]["auc"] = np.full(len(differences), 0.5)
    return table, resampled


@pytest.mark.parametrize(
    ("differences", "verdict"),
    [
        ([0.0, 0.0] + [0.25] * 9, NOT_BETTER),  # 2.5th percentile exactly 0
        ([-0.25] * 9 + [0.0, 0.0], NOT_BETTER),  # 97.5th percentile exactly 0
        ([0.125, 0.125] + [0.25] * 9, "leaks more than the baseline at equal utility"),
        ([-0.25] * 9 + [-0.125, -0.125], "leaks less than the baseline at equal utility"),
    ],
    ids=["low_zero", "high_zero", "above", "below"],
)
def test_verdict_from_the_interval_with_zero_on_its_edge(differences, verdict):
    """An interval that reaches 0 at either end does not exclude 0: no difference is shown."""
    table, resampled = exact_table(differences)
    row = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric").loc["auc"]
    low, high = np.percentile(differences, [2.5, 97.5])
    assert (row["difference_low"], row["difference_high"]) == (low, high)
    assert row["verdict"] == verdict


def test_heldout_from_json_aligns_each_models_losses_with_the_sample_ids():
    data = {
        "sample_ids": [22, 20, 24],
        "models": {"baseline": {"per_sample": [1, 2, 4]}, "student": {"per_sample": [0.5, 0.25, 0.125]}},
    }
    heldout = Heldout.from_json(data)
    assert heldout.sample_ids.dtype == np.int64 and heldout.sample_ids.tolist() == [22, 20, 24]
    assert Heldout.from_json({**data, "sample_ids": [22.0, 20.0, 24.0]}).sample_ids.dtype == np.int64
    assert heldout.losses["baseline"].dtype == np.float64
    assert heldout.losses["baseline"].tolist() == [1.0, 2.0, 4.0]
    assert heldout.losses["student"].tolist() == [0.5, 0.25, 0.125]
    data["models"]["student"]["per_sample"] = [0.5, 0.25]
    with pytest.raises(
        ValueError, match=r"held-out losses of \['student'\] are not aligned with the 3 sample ids"
    ):
        Heldout.from_json(data)


def test_a_curve_of_two_points_brackets_and_one_point_does_not():
    """The final baseline and one checkpoint already make a curve; the final baseline alone does not."""
    table, resampled = noisy_table(0.375)
    two = table[table["target"] != "baseline@20"]
    matched = matched_utility(two, resampled, ["student"], max_fpr=0.01).set_index("metric")
    assert matched.loc["auc", "bracket"] == "baseline@10 .. baseline"
    # 0.375 lies 5/6 of the way from 1.0 (AUC 0.6) to 0.25 (AUC 0.95)
    assert matched.loc["auc", "curve_value"] == pytest.approx(0.6 + 0.35 * 5 / 6)
    one = table[~table["target"].isin(["baseline@10", "baseline@20"])]
    assert matched_utility(one, resampled, ["student"], max_fpr=0.01).empty


def test_matched_rows_follow_the_attacks_order_and_skip_absent_defenses():
    """Attacks in the order of the table (not alphabetical), every defense in the given order, and a defense the
    table lacks (or another model's curve) gives no row."""
    table, resampled = noisy_table(0.625)
    other = table.assign(attack="gsa")
    for (name, _, axis), draws in list(resampled.items()):
        resampled[(name, "gsa", axis)] = draws
    both = pd.concat([table, other], ignore_index=True)
    both = pd.concat([both, both[both["target"] == "student"].assign(target="dualmd")], ignore_index=True)
    for attack in ("loss", "gsa"):
        resampled[("dualmd", attack, "heldout")] = resampled[("student", attack, "heldout")]
    matched = matched_utility(both, resampled, ["selfdistill", "dualmd", "student"], max_fpr=0.01)
    assert list(zip(matched["attack"], matched["defense"], matched["metric"], strict=True)) == [
        (attack, defense, metric)
        for attack in ("loss", "gsa")
        for defense in ("dualmd", "student")
        for metric in ("auc", "tpr_at_fpr_0.01")
    ]
    assert matched_utility(both, resampled, ["student"], max_fpr=0.01, model="teacher1").empty


def test_targets_without_a_heldout_loss_are_left_out_of_the_frontier():
    """A model without held-out losses (dualmd has no single noise predictor) has no frontier row, wherever it
    comes among the score files."""
    ids, labels = np.r_[MEMBERS, NONMEMBERS], np.r_[np.ones(4, bool), np.zeros(5, bool)]
    r = result([0.9, 0.7, 0.6, 0.1, 0.8, 0.3, 0.2, 0.05, 0.0], ids, labels)
    heldout = Heldout(sample_ids=NONMEMBERS, losses={"baseline": np.arange(5.0), "student": np.ones(5)})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=5, seed=0)
    scores = {("dualmd", "loss"): r, ("student", "loss"): r, ("teacher1", "loss"): r, ("baseline", "loss"): r}
    table, resampled = frontier_table([heldout_axis(heldout, boot)], scores, boot, max_fpr=0.2)
    assert table["target"].tolist() == ["baseline", "student"]
    assert set(resampled) == {("baseline", "loss", "heldout"), ("student", "loss", "heldout")}
    empty, nothing = frontier_table([heldout_axis(heldout, boot)], {("dualmd", "loss"): r}, boot, max_fpr=0.2)
    assert empty.empty and nothing == {}


MATCHED_COLUMNS = [
    "defense",
    "attack",
    "metric",
    "axis",
    "defense_value",
    "curve_value",
    "difference",
    "difference_low",
    "difference_high",
    "p_value",
    "bracket",
    "verdict",
]


def test_an_unbracketed_defense_has_a_row_per_metric_and_every_column():
    """Outside the curve's range both metrics get the verdict, and the table keeps all its columns (empty ones
    NaN), also when nothing is compared at all."""
    table, resampled = noisy_table(2.0)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01)
    assert matched.columns.tolist() == MATCHED_COLUMNS
    assert matched[["metric", "verdict"]].values.tolist() == [
        ["auc", "worse utility than every undefended point; leakage -0.050 against baseline@10"],
        ["tpr_at_fpr_0.01", "worse utility than every undefended point; leakage -0.025 against baseline@10"],
    ]
    assert matched["defense_value"].tolist() == [0.55, 0.275] and matched["curve_value"].isna().all()
    assert matched["p_value"].isna().all() and set(matched["axis"]) == {"heldout"}
    assert matched_utility(table, resampled, [], max_fpr=0.01).columns.tolist() == MATCHED_COLUMNS


def test_a_bound_a_rounding_error_below_an_fpr_step_admits_that_step():
    """FPR steps are k / n; a bound within 1e-12 below a step (a bound computed with rounding) counts the step,
    a bound 1e-11 below it does not, in the point estimate and in the resamples."""
    ids, labels = np.r_[MEMBERS, NONMEMBERS], np.r_[np.ones(4, bool), np.zeros(5, bool)]
    r = result([0.9, 0.7, 0.6, 0.1, 0.8, 0.3, 0.2, 0.05, 0.0], ids, labels)
    heldout = Heldout(sample_ids=NONMEMBERS, losses={"baseline": np.arange(5.0)})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=5, seed=0)
    for max_fpr, expected in ((0.2 - 1e-12, 0.75), (0.2 - 1e-11, 0.25)):
        table, _ = frontier_table(
            [heldout_axis(heldout, boot)], {("baseline", "loss"): r}, boot, max_fpr=max_fpr
        )
        assert table.iloc[0, table.columns.get_loc(tpr_key(max_fpr))] == expected, max_fpr


def test_curve_without_the_final_model_is_its_checkpoints_only():
    assert curve_names(["baseline@20", "student", "baseline@5"]) == ["baseline@5", "baseline@20"]
    assert curve_names(["teacher1@7", "teacher1", "baseline@3"], model="teacher1") == [
        "teacher1@7",
        "teacher1",
    ]


def test_single_precision_resamples_are_interpolated_in_double_precision():
    """Resampled numbers stored as float32 give the differences computed in float64 from the same values."""
    table, resampled = noisy_table(0.625, seed=3)
    single = {k: {m: v.astype(np.float32) for m, v in d.items()} for k, d in resampled.items()}
    double = {k: {m: v.astype(np.float64) for m, v in d.items()} for k, d in single.items()}
    got = matched_utility(table, single, ["student"], max_fpr=0.01).set_index("metric").loc["auc"]
    want = matched_utility(table, double, ["student"], max_fpr=0.01).set_index("metric").loc["auc"]
    assert (got["difference_low"], got["difference_high"]) == pytest.approx(
        (want["difference_low"], want["difference_high"]), rel=1e-12
    )


def test_a_metric_without_a_value_does_not_stop_the_other_metrics_comparison():
    """A defense whose AUC cell is empty (NaN) gets no AUC comparison, and its TPR is still compared."""
    table, resampled = hand_table(defense_utility=0.625)
    table.loc[table["target"] == "student", "auc"] = np.nan
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01).set_index("metric")
    assert matched.index.tolist() == ["auc", "tpr_at_fpr_0.01"]
    assert np.isnan(matched.loc["auc", "difference"])
    assert matched.loc["tpr_at_fpr_0.01", "difference"] == pytest.approx(0.275 - 0.375)


def test_interpolation_is_linear_in_utility_and_takes_the_first_point_where_utilities_are_equal():
    """Halfway along a utility step of exactly 1 is the mean of the two metrics; where the two utilities are
    equal the first point's metric is taken whatever the utility asked for, without a division by zero."""
    assert _interpolate((1.0, 0.5), (2.0, 0.9), 1.5) == pytest.approx(0.7)
    first = (np.array([1.0, 1.0]), np.array([0.5, 0.2]))
    second = (np.array([1.0, 3.0]), np.array([0.9, 0.6]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        got = _interpolate(first, second, np.array([1.3, 2.0]))
    np.testing.assert_allclose(got, [0.5, 0.4])
