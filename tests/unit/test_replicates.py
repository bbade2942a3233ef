"""Replicates across seeds: the t-interval by hand, the summary table from per-replicate tables."""

from __future__ import annotations

import math

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
