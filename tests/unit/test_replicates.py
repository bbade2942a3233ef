"""Replicates across seeds: the t-interval by hand, the summary table from per-replicate tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dualmd.replicates import mean_interval_across_seeds, read_tables, summarize_replicates

T_975_2 = 4.302652729749464  # Student's t, 97.5th percentile, 2 degrees of freedom
T_975_1 = 12.706204736174694  # and 1 degree of freedom


def test_t_interval_by_hand_and_undefined_for_one_seed():
    mean, low, high = mean_interval_across_seeds([1.0, 2.0, 3.0])  # sd 1
    half = T_975_2 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half), rel=1e-12)
    mean, low, high = mean_interval_across_seeds([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)


def test_two_seeds_give_an_interval_with_one_degree_of_freedom():
    """The smallest defined case: n - 1 = 1 degree of freedom (an odd n hides an off-by-one in the degrees)."""
    mean, low, high = mean_interval_across_seeds([1.0, 3.0])  # sd sqrt(2): half = t * sqrt(2) / sqrt(2)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - T_975_1, 2.0 + T_975_1), rel=1e-12)
    mean, low, high = mean_interval_across_seeds([1.0, 2.0, 3.0, 6.0])  # 3 degrees, sd sqrt(14 / 3)
    half = 3.1824463052837078 * math.sqrt(14 / 3) / 2
    assert (low, high) == pytest.approx((3.0 - half, 3.0 + half), rel=1e-12)


def attacks(auc_baseline, auc_student):
    return pd.DataFrame(
        {
            "attack": ["pia", "pia"],
            "target": ["student", "baseline"],
            "auc": [auc_student, auc_baseline],
            "tpr_at_fpr_0.01": [0.0, 0.5],
        }
    )


def test_summary_has_every_replicate_and_the_interval(tmp_path):
    tables, utility = {}, {}
    for r, (b, s) in enumerate([(0.9, 0.5), (0.95, 0.6), (1.0, 0.7)]):
        folder = tmp_path / f"rep{r}"
        folder.mkdir()
        attacks(b, s).to_csv(folder / "attacks.csv", index=False)
        pd.DataFrame(
            {"target": ["dualmd", "baseline"], "heldout_loss": [None, 0.25 + r], "fid": [80.0, 70.0]}
        ).to_csv(folder / "utility.csv", index=False)
    tables = read_tables(sorted(tmp_path.glob("rep*/attacks.csv")))
    utility = read_tables(sorted(tmp_path.glob("rep*/utility.csv")))
    summary = summarize_replicates(tables, utility, ("auc", "tpr_at_fpr_0.01"))
    auc = summary[(summary["metric"] == "auc")].set_index("target")
    assert auc.index.tolist() == ["baseline", "student"]  # catalog order
    assert auc.loc["student", ["rep0", "rep1", "rep2"]].tolist() == pytest.approx([0.5, 0.6, 0.7])
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert auc.loc["student", ["mean", "low", "high"]].tolist() == pytest.approx(
        [0.6, 0.6 - half, 0.6 + half]
    )
    assert (summary["num_replicates"] == 3).all()
    loss = summary[summary["metric"] == "heldout_loss"].set_index("target")
    assert loss.index.tolist() == ["baseline"] and loss.loc["baseline", "mean"] == pytest.approx(1.25)
    fid = summary[summary["metric"] == "fid"].set_index("target")
    assert fid.loc["dualmd", "mean"] == 80.0 and fid.loc["dualmd", "low"] == pytest.approx(80.0)  # sd 0


def test_interval_is_computed_in_double_precision_from_single_precision_scores():
    """Scores saved as float32 are summarised in float64: mean and half-width equal the float64 computation."""
    values = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    x = values.astype(np.float64)
    mean = float(x.mean())
    half = T_975_2 * float(x.std(ddof=1)) / math.sqrt(3)
    got = mean_interval_across_seeds(values)
    assert got[0] == mean
    assert got[1] == pytest.approx(mean - half, rel=1e-12, abs=0)
    assert got[2] == pytest.approx(mean + half, rel=1e-12, abs=0)
    assert got[0] != float(values.mean())  # single precision would give another mean


def test_summary_rows_name_their_kind_and_utility_rows_have_no_attack():
    """Attack metrics are rows of kind "attack" named by their attack; utility numbers are rows of kind
    "utility" with an empty attack; the table has exactly the documented columns and a fresh 0..n-1 index."""
    tables = {"rep0": attacks(0.9, 0.5), "rep1": attacks(1.0, 0.7)}
    utility = {
        "rep0": pd.DataFrame({"target": ["baseline"], "heldout_loss": [0.5], "fid": [70.0]}),
        "rep1": pd.DataFrame({"target": ["baseline"], "heldout_loss": [0.7], "fid": [72.0]}),
    }
    summary = summarize_replicates(tables, utility, ("auc",))
    assert summary.columns.tolist() == [
        "kind",
        "attack",
        "target",
        "metric",
        "num_replicates",
        "mean",
        "low",
        "high",
        "rep0",
        "rep1",
    ]
    assert summary.index.tolist() == list(range(len(summary)))
    rows = {(r.kind, r.attack, r.target, r.metric): r.mean for r in summary.itertuples()}
    assert rows == pytest.approx(
        {
            ("attack", "pia", "baseline", "auc"): 0.95,
            ("attack", "pia", "student", "auc"): 0.6,
            ("utility", "", "baseline", "fid"): 71.0,
            ("utility", "", "baseline", "heldout_loss"): 0.6,
        }
    )


def test_a_replicate_without_utility_table_or_attack_rows_is_missing_not_an_error():
    """A replicate that has no utility table contributes only its attack numbers; one whose attack table is
    empty has NaN (not None) in its column, and neither counts towards the number of replicates."""
    empty = attacks(0.0, 0.0).iloc[:0]
    tables = {"rep0": attacks(0.9, 0.5), "rep1": attacks(1.0, 0.7), "rep2": empty}
    utility = {"rep0": pd.DataFrame({"target": ["baseline"], "heldout_loss": [0.5], "fid": [70.0]})}
    summary = summarize_replicates(tables, utility, ("auc",))
    auc = summary[summary["metric"] == "auc"].set_index("target")
    assert auc.loc["student", ["rep0", "rep1"]].tolist() == pytest.approx([0.5, 0.7])
    assert auc["num_replicates"].tolist() == [2, 2]
    assert all(isinstance(v, float) and math.isnan(v) for v in summary["rep2"])
    loss = summary[summary["metric"] == "heldout_loss"].iloc[0]
    assert loss["num_replicates"] == 1 and loss["rep0"] == 0.5
    assert math.isnan(loss["rep1"]) and math.isnan(loss["low"])


def test_targets_ranked_alike_keep_the_order_of_the_replicate_tables():
    """Two spellings of one checkpoint ("@100", "@0100") rank alike in the report; their rows then stay in the
    order in which the replicate tables list them, not in alphabetical order."""
    table = pd.DataFrame(
        {"attack": ["pia", "pia"], "target": ["baseline@100", "baseline@0100"], "auc": [0.8, 0.6]}
    )
    summary = summarize_replicates({"rep0": table, "rep1": table}, {}, ("auc",))
    assert summary["target"].tolist() == ["baseline@100", "baseline@0100"]
    assert summary["mean"].tolist() == pytest.approx([0.8, 0.6])
