"""Replicates: the same experiment under other split and training seeds, summarised per target and attack.

Each replicate r of `runs.replicates` is a full run (its own split, models, scores; see
`dualmd.config.stages.replicate`).
For every number that each replicate's report holds (an attack's AUC and TPR on a target, a target's held-out loss
and FID) the summary gives the per-replicate values, their mean and a 95 % interval for the mean across seeds,
mean +- t_{0.975, n-1} * sd / sqrt(n) with the sample standard deviation (Student's t: with 3 seeds the interval
is wide, as it should be). With one replicate the interval is not defined (left empty).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

from dualmd import catalog


def mean_interval_across_seeds(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the t-interval for the mean; low = high = NaN with fewer than two values."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(scipy.stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def summarize_replicates(
    attack_tables: Mapping[str, pd.DataFrame],
    utility_tables: Mapping[str, pd.DataFrame],
    metrics: Sequence[str],
) -> pd.DataFrame:
    """One row per (kind, attack, target, metric): per-replicate values, mean, low, high.

    Args:
        attack_tables: replicate name -> its attacks.csv (columns attack, target and the metric columns).
        utility_tables: replicate name -> its utility.csv (target, heldout_loss, fid).
        metrics: attack metrics to summarise, e.g. ("auc", "tpr_at_fpr_0.01").
    """
    runs = list(attack_tables)
    long = []
    for run in runs:
        for _, row in attack_tables[run].iterrows():
            for metric in metrics:
                long.append(("attack", row["attack"], row["target"], metric, run, row[metric]))
        for _, row in utility_tables.get(run, pd.DataFrame()).iterrows():
            for metric in ("heldout_loss", "fid"):
                if metric in row and pd.notna(row[metric]):
                    long.append(("utility", "", row["target"], metric, run, row[metric]))
    df = pd.DataFrame(long, columns=["kind", "attack", "target", "metric", "run", "value"])
    rows = []
    for (kind, attack, target, metric), group in df.groupby(
        ["kind", "attack", "target", "metric"], sort=False
    ):
        per_run = dict(zip(group["run"], group["value"].astype(float), strict=True))
        mean, low, high = mean_interval_across_seeds(list(per_run.values()))
        rows.append(
            {
                "kind": kind,
                "attack": attack,
                "target": target,
                "metric": metric,
                "num_replicates": len(per_run),
                "mean": mean,
                "low": low,
                "high": high,
                **{run: per_run.get(run, float("nan")) for run in runs},
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return (
        out.assign(_rank=out["target"].map(catalog.report_rank))
        .sort_values(["kind", "attack", "metric", "_rank"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def read_tables(paths: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """Replicate name (the folder above the file, e.g. "rep1") -> the CSV table."""
    return {Path(p).parent.name: pd.read_csv(p) for p in paths}
