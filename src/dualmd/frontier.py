"""The privacy-utility frontier: every model's leakage against its utility, and each defense against the
undefended model at the same utility.

Utility is measured on two axes, lower better on both (an `Axis`): the held-out denoising loss of a model
(`dualmd.heldout`, "heldout"), and the FID of a sampler's images ("fid"), which also places DualMD, a sampler
without a single noise predictor. Leakage is an attack's AUC and its TPR at the first FPR bound of
``metrics.tpr_at_fpr``. The undefended model's checkpoints (``baseline@<step>``, then the final baseline) trace a
curve on each axis: an early-stopped baseline is the cheapest "defense" there is. A defense's *matched-utility*
comparison interpolates that curve linearly in utility between the two consecutive checkpoints (in training
order) whose utilities bracket the defense's, and reports defense minus curve, per attack, metric and axis.

Intervals come from one joint bootstrap: each resample draws the members and the non-members (stratified, with
replacement) once, as counts per sample id, and every number of that resample (each target's held-out loss on
the non-members, each attack's AUC and TPR on its members and the non-members) is computed on the same draw.
So a difference between two targets keeps the correlation their shared images induce, and its interval is the
percentile interval of the resampled differences, and its two-sided p-value is the bootstrap's
(`dualmd.verdicts.bootstrap_p_value`). A sampler's FID is resampled over its own generated images (the utility
stage's draws, `dualmd.utility.fid_draws`): those images are drawn independently of the members and the
non-members, so resample b pairs the b-th FID draw with the b-th member draw. Verdicts of one run
(`dualmd.verdicts.verdict_table` combines runs):

* "not resolvable": the TPR's FPR bound is below 1 / (number of non-members the attack scored), so the TPR
  would be the one at zero false positives (`dualmd.metrics.is_resolvable`); its cells are NaN;
* outside the curve's range (no like-for-like baseline): "worse utility than every undefended point" or "better
  ...", with the defense's leakage relative to the curve point nearest in utility (`dualmd.verdicts.out_of_range`);
* "not better than early stopping": the difference's interval contains 0;
* "leaks less than the baseline at equal utility" / "leaks more ...": the interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dualmd import catalog
from dualmd.metrics import is_resolvable, min_nonmembers, roc_points, tpr_key
from dualmd.scores import AttackResult
from dualmd.verdicts import bootstrap_p_value, out_of_range

#: Verdicts of `matched_utility` that say no difference was shown.
NOT_BETTER = "not better than early stopping"
NOT_RESOLVABLE = "not resolvable"


@dataclass(frozen=True)
class Heldout:
    """Per-non-member held-out losses of every model (the file `stages.heldout` writes)."""

    sample_ids: np.ndarray  # (K,) non-member dataset indices
    losses: Mapping[str, np.ndarray]  # target -> (K,) aligned with sample_ids

    @classmethod
    def from_json(cls, data: Mapping) -> Heldout:
        ids = np.asarray(data["sample_ids"], dtype=np.int64)
        losses = {name: np.asarray(m["per_sample"], dtype=np.float64) for name, m in data["models"].items()}
        bad = [name for name, v in losses.items() if v.shape != ids.shape]
        if bad:
            raise ValueError(f"held-out losses of {bad} are not aligned with the {len(ids)} sample ids")
        return cls(sample_ids=ids, losses=losses)


def _weighted_metrics(result: AttackResult, weights: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """(AUC, TPR at FPR <= max_fpr) with each sample counted `weights` times (a bootstrap draw)."""
    fpr, tpr = roc_points(result.scores, result.is_member, weights)
    auc = float(np.trapezoid(tpr, fpr))
    return auc, float(tpr[fpr <= max_fpr + 1e-12].max())


class JointBootstrap:
    """Counts per sample id for each resample: members and non-members drawn separately, with replacement."""

    def __init__(self, member_ids: np.ndarray, nonmember_ids: np.ndarray, num_bootstrap: int, seed: int):
        if num_bootstrap < 1:
            raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
        rng = np.random.default_rng(seed)
        self.ids = np.concatenate([member_ids, nonmember_ids]).astype(np.int64)
        self.position = {int(i): k for k, i in enumerate(self.ids)}
        counts = np.zeros((num_bootstrap, len(self.ids)))
        for start, ids in ((0, member_ids), (len(member_ids), nonmember_ids)):
            draws = rng.integers(0, len(ids), (num_bootstrap, len(ids))) + start
            for b in range(num_bootstrap):
                counts[b] += np.bincount(draws[b], minlength=len(self.ids))
        self.counts = counts  # (B, M + K)

    def weights(self, sample_ids: np.ndarray) -> np.ndarray:
        """(B, N) counts of the given ids in every resample."""
        try:
            cols = [self.position[int(i)] for i in sample_ids]
        except KeyError as err:
            raise ValueError(
                f"sample id {err.args[0]} is neither a member nor a non-member of the split"
            ) from err
        return self.counts[:, cols]


@dataclass(frozen=True)
class Axis:
    """One utility axis of the frontier (lower is better): each target's value and its value in every resample."""

    name: str  # "heldout" or "fid": the `axis` column of the tables
    metric: str  # what the value is: "heldout_loss" or "fid" (the `utility_metric` column)
    values: Mapping[str, float]  # target -> its utility
    draws: Mapping[str, np.ndarray]  # target -> (B,) its utility in each resample


def heldout_axis(heldout: Heldout, bootstrap: JointBootstrap) -> Axis:
    """The held-out loss axis: each model's mean loss on the non-members, resampled with the non-members' counts
    of `bootstrap` (the draws the attacks' metrics use)."""
    weights = bootstrap.weights(heldout.sample_ids)
    return Axis(
        name="heldout",
        metric="heldout_loss",
        values={name: float(losses.mean()) for name, losses in heldout.losses.items()},
        draws={name: weights @ losses / weights.sum(axis=1) for name, losses in heldout.losses.items()},
    )


def fid_axis(summaries: Mapping[str, Mapping], num_bootstrap: int) -> Axis:
    """The FID axis from each sampler's utility summary ({"fid", "fid_draws"}, `dualmd.utility.compute_utility`).

    A sampler with other than `num_bootstrap` stored draws has them repeated or cut to that number (they are
    independent draws of its generated images, in no order).
    """
    missing = [name for name, s in summaries.items() if not s.get("fid_draws")]
    if missing:
        raise ValueError(f"the utility summaries of {missing} hold no FID draws; rerun their utility stage")
    return Axis(
        name="fid",
        metric="fid",
        values={name: float(s["fid"]) for name, s in summaries.items()},
        draws={
            name: np.resize(np.asarray(s["fid_draws"], dtype=np.float64), num_bootstrap)
            for name, s in summaries.items()
        },
    )


def frontier_table(
    axes: Sequence[Axis],
    scores: Mapping[tuple[str, str], AttackResult],
    bootstrap: JointBootstrap,
    max_fpr: float,
) -> tuple[pd.DataFrame, dict[tuple[str, str, str], dict[str, np.ndarray]]]:
    """One row per (target, attack, axis) with a utility on that axis and scores: utility and leakage with
    intervals. A target no axis measures has no row.

    Returns:
        (table, resampled) where resampled[(target, attack, axis)] holds the (B,) arrays "utility", "auc", "tpr"
        that `matched_utility` differences.
    """
    tpr_col = tpr_key(max_fpr)
    rows, resampled = [], {}
    for (name, attack), result in scores.items():
        measured = [axis for axis in axes if name in axis.values]
        if not measured:
            continue
        w = bootstrap.weights(result.sample_ids)
        metrics_b = np.array([_weighted_metrics(result, w[b], max_fpr) for b in range(len(w))])
        point = _weighted_metrics(result, np.ones(len(result.scores)), max_fpr)
        if not is_resolvable(max_fpr, int((~result.is_member).sum())):
            metrics_b[:, 1], point = np.nan, (point[0], np.nan)
        base, step = catalog.split_checkpoint(name)
        for axis in measured:
            utility_b = axis.draws[name]
            resampled[(name, attack, axis.name)] = {
                "utility": utility_b,
                "auc": metrics_b[:, 0],
                "tpr": metrics_b[:, 1],
            }
            row = {
                "target": name,
                "model": base,
                "step": step,
                "axis": axis.name,
                "utility_metric": axis.metric,
            }
            for key, value, draws in (
                ("utility", axis.values[name], utility_b),
                ("auc", point[0], metrics_b[:, 0]),
                (tpr_col, point[1], metrics_b[:, 1]),
            ):
                low, high = np.percentile(draws, [2.5, 97.5])  # NaN for an unresolvable TPR
                row.update({key: value, f"{key}_low": float(low), f"{key}_high": float(high)})
            rows.append({"attack": attack, **row})
    table = pd.DataFrame(rows)
    if not table.empty:
        order = {axis.name: k for k, axis in enumerate(axes)}
        table = (
            table.assign(_axis=table["axis"].map(order), _rank=table["target"].map(catalog.report_rank))
            .sort_values(["_axis", "attack", "_rank"], kind="stable")
            .drop(columns=["_axis", "_rank"])
            .reset_index(drop=True)
        )
        first = [
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
        table = table[first + [c for c in table.columns if c not in first]]
    return table, resampled


def curve_names(names: list[str], model: str = "baseline") -> list[str]:
    """The checkpoints of `model` in training order, then `model` itself (those present in `names`)."""
    steps = sorted(s for n in names for b, s in [catalog.split_checkpoint(n)] if b == model and s is not None)
    return [f"{model}{catalog.CHECKPOINT_SEP}{s}" for s in steps] + ([model] if model in names else [])


def _interpolate(first, second, utility):
    """The metric of the line through (utility, metric) points `first` and `second` at `utility` (elementwise
    for bootstrap arrays; the first point's metric where both utilities are equal)."""
    (u1, m1), (u2, m2) = first, second
    du = np.asarray(u2 - u1, dtype=np.float64)
    share = np.where(du != 0, (utility - u1) / np.where(du != 0, du, 1.0), 0.0)
    return m1 + (m2 - m1) * share


def matched_utility(
    table: pd.DataFrame,
    resampled: Mapping[tuple[str, str, str], Mapping[str, np.ndarray]],
    defenses: list[str],
    max_fpr: float,
    model: str = "baseline",
) -> pd.DataFrame:
    """Each defense against the undefended curve at the defense's utility, per attack, axis and metric.

    Columns: defense, attack, metric, axis (the utility matched on: "heldout" or "fid"), defense_value,
    curve_value (interpolated), difference (defense - curve), difference_low, difference_high, p_value, bracket
    ("baseline@300 .. baseline@600"), verdict.
    """
    rows = []
    metrics = {"auc": "auc", tpr_key(max_fpr): "tpr"}
    for (attack, axis), group in table.groupby(["attack", "axis"], sort=False):
        points = group.set_index("target")
        curve = curve_names(list(points.index), model)
        for defense in defenses:
            if defense not in points.index or len(curve) < 2:
                continue
            u = float(points.loc[defense, "utility"])
            utilities = [float(points.loc[c, "utility"]) for c in curve]
            pair = next(
                (
                    (i, i + 1)
                    for i in range(len(curve) - 1)
                    if min(utilities[i], utilities[i + 1]) <= u <= max(utilities[i], utilities[i + 1])
                ),
                None,
            )
            for column, key in metrics.items():
                row = {"defense": defense, "attack": attack, "metric": column, "axis": axis}
                row["defense_value"] = float(points.loc[defense, column])
                if np.isnan(row["defense_value"]):  # a TPR whose bound the non-members cannot resolve
                    rows.append(
                        {
                            **row,
                            "verdict": f"{NOT_RESOLVABLE} (needs ≥ {min_nonmembers(max_fpr)} non-members)",
                        }
                    )
                    continue
                if pair is None:
                    values = {c: float(points.loc[c, column]) for c in curve}
                    by_name = {c: float(points.loc[c, "utility"]) for c in curve}
                    where = out_of_range(u, by_name, row["defense_value"], values)
                    rows.append({**row, "verdict": where})
                    continue
                a, b = (curve[i] for i in pair)
                draws = {n: resampled[(n, attack, axis)] for n in (a, b, defense)}
                curve_value = float(
                    _interpolate(
                        (utilities[pair[0]], float(points.loc[a, column])),
                        (utilities[pair[1]], float(points.loc[b, column])),
                        u,
                    )
                )
                diff_b = draws[defense][key] - _interpolate(
                    (draws[a]["utility"], draws[a][key]),
                    (draws[b]["utility"], draws[b][key]),
                    draws[defense]["utility"],
                )
                low, high = (float(v) for v in np.percentile(diff_b, [2.5, 97.5]))
                if low <= 0 <= high:
                    verdict = NOT_BETTER
                elif high < 0:
                    verdict = "leaks less than the baseline at equal utility"
                else:
                    verdict = "leaks more than the baseline at equal utility"
                rows.append(
                    {
                        **row,
                        "curve_value": curve_value,
                        "difference": row["defense_value"] - curve_value,
                        "difference_low": low,
                        "difference_high": high,
                        "p_value": bootstrap_p_value(diff_b),
                        "bracket": f"{a} .. {b}",
                        "verdict": verdict,
                    }
                )
    columns = [
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
    return pd.DataFrame(rows, columns=columns)
