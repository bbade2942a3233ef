"""The privacy-utility frontier: joint bootstrap counts, weighted metrics, the table, matched-utility verdicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dualmd.config.evaluation import MetricsConfig
from dualmd.frontier import (
    NOT_BETTER,
    NOT_RESOLVABLE,
    Heldout,
    JointBootstrap,
    curve_names,
    frontier_table,
    matched_utility,
)
from dualmd.metrics import auc, summarize, tpr_at_fpr
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
    table, resampled = frontier_table(heldout, {("baseline", "loss"): scores}, boot, max_fpr=0.2)
    row = table.iloc[0]
    expected = summarize(scores.scores, scores.is_member, MetricsConfig(tpr_at_fpr=(0.2,), num_bootstrap=0))
    assert row["utility"] == pytest.approx(0.6) and row["auc"] == pytest.approx(expected["auc"])
    assert row["tpr_at_fpr_0.2"] == pytest.approx(expected["tpr_at_fpr_0.2"])
    for b in (0, 7):  # a resample is the data with each sample repeated as often as it was drawn
        counts = boot.weights(scores.sample_ids)[b].astype(int)
        s, m = np.repeat(scores.scores, counts), np.repeat(scores.is_member, counts)
        assert resampled[("baseline", "loss")]["auc"][b] == pytest.approx(auc(s, m))
        assert resampled[("baseline", "loss")]["tpr"][b] == pytest.approx(tpr_at_fpr(s, m, 0.2))
        loss_counts = boot.weights(NONMEMBERS)[b]
        assert resampled[("baseline", "loss")]["utility"][b] == pytest.approx(loss_counts @ losses / 5)
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
                "auc": a,
                "tpr_at_fpr_0.01": a / 2,
            }
            for t, m, s, u, a in rows
        ]
    )
    shift = np.linspace(-0.01, 0.01, 11)  # small symmetric wobble of every number
    resampled = {
        (t, "loss"): {"utility": u + shift, "auc": a + shift, "tpr": a / 2 + shift} for t, _, _, u, a in rows
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
    assert auc_row["p_value"] == pytest.approx(2 / 12)  # all 11 draws below 0: 2 * (0 + 1) / (11 + 1)
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
    resampled[("student", "loss")]["auc"] = 0.7 + np.linspace(-0.05, 0.05, 11)
    matched = matched_utility(table, resampled, ["student"], max_fpr=0.01)
    row = matched[matched["metric"] == "auc"].iloc[0]
    assert row["difference"] == pytest.approx(0.0, abs=1e-12) and row["verdict"] == NOT_BETTER


def test_tpr_below_one_over_the_nonmembers_is_nan_and_its_comparison_not_resolvable():
    """5 non-members resolve FPR steps of 1/5: TPR at FPR <= 0.1 is not a number; AUC is unaffected."""
    scores = result([0.9, 0.8, 0.3, 0.7, 0.1, 0.8, 0.2, 0.4, 0.0], [*MEMBERS, *NONMEMBERS], [1] * 4 + [0] * 5)
    heldout = Heldout(sample_ids=NONMEMBERS, losses={"baseline": np.linspace(0.1, 0.5, 5)})
    boot = JointBootstrap(MEMBERS, NONMEMBERS, num_bootstrap=10, seed=0)
    table, resampled = frontier_table(heldout, {("baseline", "loss"): scores}, boot, max_fpr=0.1)
    row = table.iloc[0]
    assert np.isnan([row["tpr_at_fpr_0.1"], row["tpr_at_fpr_0.1_low"], row["tpr_at_fpr_0.1_high"]]).all()
    assert row["auc"] == pytest.approx(auc(scores.scores, scores.is_member))
    assert np.isnan(resampled[("baseline", "loss")]["tpr"]).all()

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
    """The report's entry point on files: score files named <attack>/<target>.npz and the held-out JSON."""
    rng = np.random.default_rng(0)
    ids, labels = np.r_[MEMBERS, NONMEMBERS], np.r_[np.ones(4, bool), np.zeros(5, bool)]
    files = []
    for target in ("baseline@1", "baseline", "student"):
        path = tmp_path / "loss" / f"{target}.npz"
        path.parent.mkdir(exist_ok=True)
        save_scores(result(rng.normal(size=9) + labels, ids, labels), path)
        files.append(path)
    heldout = {
        "sample_ids": NONMEMBERS.tolist(),
        "models": {
            t: {"per_sample": (rng.random(5) + k).tolist()}
            for k, t in enumerate(["baseline", "baseline@1", "student"])
        },
    }
    (tmp_path / "heldout.json").write_text(json.dumps(heldout))
    table, matched = frontier_tables(
        heldout_file=tmp_path / "heldout.json", score_files=files, num_bootstrap=30, seed=0, max_fpr=0.2
    )
    assert table["target"].tolist() == ["baseline@1", "baseline", "student"]
    assert table["step"].tolist()[:1] == [1] and pd.isna(table["step"][1])
    assert set(matched["defense"]) == {"student"} and len(matched) == 2  # AUC and TPR
