"""Deciding a verdict: strongest attack chosen on one slice and reported on another, orientation, out-of-range
utility, training randomness across replicates and Holm's correction over a defense's family of verdicts.

Pure functions on numbers and scores; `dualmd.frontier` supplies the matched-utility differences they judge.

* **Selection and report on disjoint slices.** The attacker's labelled slice (the first `fraction` of members and
  of non-members, the slice `secmi_nn`, `gsa` and `recon` fit on) picks the strongest attack and its orientation;
  that attack's numbers are reported on the remaining samples only. A score that is perfect on the slice and
  random elsewhere is therefore reported as random.
* **Orientation.** An AUC whose interval lies entirely below 0.5 ranks non-members above members: that is
  leakage in the other direction, flagged "inverted", never counted as protection.
* **Across replicates.** Each replicate (seed) gives one paired difference, defense minus the undefended curve at
  equal utility. With two or more replicates the verdict's interval is the t-interval of their mean and its
  p-value the two-sided one-sample t-test; a t-interval because the replicates are few (3-5), the seeds are
  independent and the images' own resampling is already inside each replicate's difference. With one replicate
  the within-run bootstrap interval is used and the verdict says "one seed".
* **Multiplicity.** Holm's step-down adjustment over one defense's family (attack x metric x axis); a verdict
  reads "leaks less" or "leaks more" only where the adjusted p-value is below `alpha` and the interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dualmd.metrics import auc
from dualmd.scores import AttackResult

LEAKS_LESS = "leaks less than early stopping at equal utility"
LEAKS_MORE = "leaks more than early stopping at equal utility"
SAME = "no difference shown from early stopping at equal utility"
ONE_SEED = "one seed"
INVERTED = "inverted"


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input's order (NaN stays NaN and is not counted).

    The i-th smallest of m p-values is multiplied by (m - i), i from 0; a running maximum keeps the adjusted values
    in the order of the raw ones; each is capped at 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for i, position in enumerate(order):
        running = max(running, (m - i) * p[position])
        adjusted[position] = min(1.0, running)
    return adjusted


@dataclass(frozen=True)
class Difference:
    """A defense's leakage minus the curve's at equal utility, combined over replicates."""

    replicates: int
    difference: float
    low: float
    high: float
    p_value: float


def across_replicates(differences: Sequence[float], level: float = 0.95) -> Difference:
    """Mean of per-replicate differences with its t-interval and two-sided one-sample t-test p-value (>= 2)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        raise ValueError(f"a t-interval needs at least two replicates, got {len(d)}")
    mean = float(d.mean())
    if np.ptp(d) == 0.0:  # replicates that agree exactly give no test: p is NaN, so no difference is shown
        return Difference(len(d), float(d[0]), float(d[0]), float(d[0]), float("nan"))
    sem = float(d.std(ddof=1) / np.sqrt(len(d)))
    half = float(stats.t.ppf(0.5 + level / 2, df=len(d) - 1)) * sem
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return Difference(len(d), mean, mean - half, mean + half, p)


def bootstrap_p_value(draws: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from its bootstrap draws: the normal approximation with the
    draws' mean and standard error, 2 * Phi(-|mean| / sd) (Efron & Tibshirani 1993, ch. 12); 0 where every draw
    is the same non-zero number, 1 where every draw is 0.

    Counting the draws beyond 0 cannot give less than 2 / (B + 1), which Holm's adjustment over a family of m
    verdicts multiplies by m: with B = 1,000 resamples and the 32 verdicts of a defense in the default run, no
    verdict could pass alpha = 0.05 however far its interval lies from 0. The normal approximation has no floor.
    """
    d = np.asarray(draws, dtype=np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return float(2 * stats.norm.sf(abs(mean) / sd))


def from_bootstrap(difference: float, draws: np.ndarray, level: float = 0.95) -> Difference:
    """One replicate: the percentile interval of the bootstrap draws of the difference and their p-value
    (`bootstrap_p_value`)."""
    tail = (1 - level) / 2 * 100
    low, high = (float(v) for v in np.percentile(draws, [tail, 100 - tail]))
    return Difference(1, float(difference), low, high, bootstrap_p_value(draws))


def verdict(diff: Difference, p_holm: float, alpha: float = 0.05) -> str:
    """Leaks less / more where the interval excludes 0 and Holm's p is below alpha; else no difference shown.
    One replicate adds "(one seed)": its interval holds the trained models fixed."""
    if diff.high < 0 and p_holm < alpha:
        text = LEAKS_LESS
    elif diff.low > 0 and p_holm < alpha:
        text = LEAKS_MORE
    else:
        text = SAME
    return f"{text} ({ONE_SEED})" if diff.replicates == 1 else text


def out_of_range(
    utility: float, curve: Mapping[str, float], leakage: float, curve_leakage: Mapping[str, float]
) -> str:
    """The verdict of a defense whose utility (lower is better: a loss or FID) lies outside the curve's range:
    the side it lies on and its leakage relative to the curve point nearest in utility."""
    if not curve:
        raise ValueError("the undefended curve has no points")
    nearest = min(curve, key=lambda name: abs(curve[name] - utility))
    if min(curve.values()) <= utility <= max(curve.values()):
        raise ValueError(f"utility {utility} lies inside the curve's range; interpolate instead")
    side = "worse" if utility > max(curve.values()) else "better"
    delta = leakage - curve_leakage[nearest]
    return f"{side} utility than every undefended point; leakage {delta:+.3f} against {nearest}"


def is_inverted(auc_high: float) -> bool:
    """An AUC whose whole interval lies below 0.5: members rank below non-members (leakage, not protection)."""
    return bool(auc_high < 0.5)


def selection_slice(sample_ids: np.ndarray, is_member: np.ndarray, fraction: float) -> np.ndarray:
    """Sample ids of the labelled slice: the first `fraction` (floored) of the members and of the non-members, in
    the order given (the split's order, as `attacks.base.train_test_split`)."""
    ids, member = np.asarray(sample_ids), np.asarray(is_member, dtype=bool)
    members, nonmembers = ids[member], ids[~member]
    n_m = int(np.floor(len(members) * fraction + 1e-9))
    n_n = int(np.floor(len(nonmembers) * fraction + 1e-9))
    if min(n_m, n_n) < 1:
        raise ValueError(f"fraction {fraction} leaves no member or no non-member in the selection slice")
    return np.concatenate([members[:n_m], nonmembers[:n_n]])


@dataclass(frozen=True)
class Selection:
    """The attack picked on the slice, its orientation (+1 as scored, -1 negated) and its AUC there."""

    attack: str
    orientation: int
    selection_auc: float


def _restrict(result: AttackResult, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.isin(result.sample_ids, keep)
    return result.scores[mask], result.is_member[mask]


def select_strongest(results: Mapping[str, AttackResult], slice_ids: np.ndarray) -> Selection:
    """The attack and orientation with the highest AUC on the samples of `slice_ids` (ties: the first attack in
    `results`' order). An attack with no member or no non-member scored on the slice is not a candidate (one that
    scores only the rest cannot be chosen on it)."""
    best: Selection | None = None
    for name, result in results.items():
        scores, labels = _restrict(result, slice_ids)
        if labels.all() or not labels.any():
            continue
        value = auc(scores, labels)
        orientation = 1 if value >= 0.5 else -1
        oriented = value if orientation == 1 else 1.0 - value
        if best is None or oriented > best.selection_auc:
            best = Selection(name, orientation, oriented)
    if best is None:
        raise ValueError(f"no attack among {sorted(results)} scored members and non-members of the slice")
    return best


def reported_part(result: AttackResult, slice_ids: np.ndarray, orientation: int = 1) -> AttackResult:
    """`result` without the selection slice's samples, its scores multiplied by `orientation`."""
    mask = ~np.isin(result.sample_ids, slice_ids)
    return AttackResult(
        sample_ids=result.sample_ids[mask],
        is_member=result.is_member[mask],
        scores=orientation * result.scores[mask],
        extra={k: v[mask] for k, v in result.extra.items()},
        attack=result.attack,
    )


#: Columns of `results/report/verdicts.csv`.
VERDICT_COLUMNS = [
    "defense",
    "attack",
    "metric",
    "axis",
    "replicates",
    "difference",
    "low",
    "high",
    "p_value",
    "p_holm",
    "verdict",
]


def verdict_table(rows: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One verdict per (defense, attack, metric, axis) from per-replicate matched-utility rows.

    `rows` has columns replicate, defense, attack, metric, axis, difference, low, high, p_value (the within-run
    bootstrap's interval and p-value) and note: a row whose note is set (out of range, not resolvable) has no
    difference, and its note becomes the verdict where every replicate has one. With two or more replicates the
    differences are combined by `across_replicates`; with one, its bootstrap interval and p-value are kept. Holm's
    adjustment runs over each defense's family of rows that have a p-value.
    """
    out = []
    keys = ["defense", "attack", "metric", "axis"]
    for _, group in rows.groupby(keys, sort=False):
        measured = group[group["note"].isna()]
        row = group.iloc[0][keys].to_dict()
        if measured.empty:
            out.append({**row, "replicates": len(group), "verdict": "; ".join(sorted(set(group["note"])))})
            continue
        if len(measured) >= 2:
            diff = across_replicates(measured["difference"].to_numpy())
        else:
            first = measured.iloc[0]
            diff = Difference(1, first["difference"], first["low"], first["high"], first["p_value"])
        out.append(
            {
                **row,
                "replicates": diff.replicates,
                "difference": diff.difference,
                "low": diff.low,
                "high": diff.high,
                "p_value": diff.p_value,
            }
        )
    table = pd.DataFrame(out, columns=VERDICT_COLUMNS)
    table["verdict"] = table["verdict"].astype(object)  # all NaN (a float column) when every row was measured
    for defense in table["defense"].unique():
        family = table["defense"] == defense
        table.loc[family, "p_holm"] = holm(table.loc[family, "p_value"])
    for i, row in table.iterrows():
        if pd.isna(row["difference"]):
            continue
        diff = Difference(**{name: row[name] for name in Difference.__dataclass_fields__})
        table.at[i, "verdict"] = verdict(diff, row["p_holm"], alpha)
    return table
