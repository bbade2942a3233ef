"""Membership-inference metrics: pure functions of (scores, is_member), members as the positive class.

Scores follow the attacks' convention, higher = more likely a member. Everything derives from the ROC curve over
all distinct thresholds (never a hand-made threshold grid, SecMI's pitfall), scikit-learn's ``roc_curve`` as
`roc_points` computes it (see there why it is not called):

* AUC: area under the ROC curve.
* ASR: best balanced accuracy over all thresholds, max (TPR + 1 - FPR) / 2 (the attack-success rate of SecMI and
  SimA; the threshold is chosen on the evaluated data, so it is an oracle upper bound, as in those papers).
* TPR@FPR: the highest TPR among thresholds whose FPR does not exceed the bound (LiRA, ml_privacy_meter), not the
  TPR at the nearest FPR (SecMI, GSA), which may exceed the bound. With n non-members the smallest non-zero FPR is
  1/n: a bound below it admits only thresholds that flag no non-member, so the number would be the TPR at zero
  false positives, not at the bound. `summarize` reports such a bound as NaN (`is_resolvable`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from dualmd.config.evaluation import MetricsConfig

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: 1-D, equal length, finite scores, boolean (or 0/1) labels with both classes.

    Returns:
        (scores (N,) float64, is_member (N,) bool).
    """
    scores, labels = np.asarray(scores), np.asarray(is_member)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(f"scores and is_member must be 1-D, got shapes {scores.shape} and {labels.shape}")
    if len(scores) != len(labels):
        raise ValueError(f"scores ({len(scores)}) and is_member ({len(labels)}) differ in length")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise ValueError("is_member must be boolean (or 0/1)")
    scores, labels = scores.astype(np.float64), labels.astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} score(s) are NaN or infinite")
    if labels.all() or not labels.any():
        raise ValueError(
            f"need both members and non-members, got {int(labels.sum())} members of {len(labels)}"
        )
    return scores, labels


def roc_points(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of ``sklearn.metrics.roc_curve(labels, scores, sample_weight=weights, drop_intermediate=False)``
    for checked inputs (`check_scores`), by the same operations in the same order, so the arrays are equal.

    scikit-learn validates its inputs on every call (~1 ms, some 50x the computation at a few hundred samples);
    the bootstrap intervals of `summarize` and of `dualmd.frontier` call this 10^4 to 10^5 times per job.
    Samples of weight 0 are dropped, as scikit-learn does. With non-integer weights, samples tied in score may
    be summed in another order than scikit-learn's, which can move the last bit; counts (a bootstrap draw) are
    summed exactly in any order.
    """
    if weights is not None:
        keep = weights != 0
        scores, labels, weights = scores[keep], labels[keep], weights[keep]
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], labels[order].astype(np.float64)
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    if weights is None:
        tps = np.cumsum(positive)[thresholds]
        fps = 1 + thresholds.astype(np.float64) - tps
    else:
        weights = weights[order]
        tps = np.cumsum(positive * weights)[thresholds]
        fps = np.cumsum((1 - positive) * weights)[thresholds]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1]


def roc(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve with members positive, one point per distinct threshold plus (0, 0).

    Returns:
        (fpr, tpr), each (P,) float64, non-decreasing.
    """
    scores, labels = check_scores(scores, is_member)
    return roc_points(scores, labels)


def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Area under the ROC curve (0.5 = chance; 1 - AUC if the scores were negated)."""
    import sklearn.metrics  # here, not at the top: the bootstrap paths need only numpy (see `roc_points`)

    scores, labels = check_scores(scores, is_member)
    return float(sklearn.metrics.roc_auc_score(labels, scores))


def asr(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Attack success rate: best balanced accuracy over all thresholds, max (TPR + 1 - FPR) / 2."""
    fpr, tpr = roc(scores, is_member)
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, max_fpr: float) -> float:
    """Highest TPR among thresholds whose FPR does not exceed `max_fpr` (0 if only "flag nobody" qualifies)."""
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr = roc(scores, is_member)
    return float(tpr[fpr <= max_fpr].max())  # the curve starts at (0, 0), so the selection is never empty


def min_nonmembers(max_fpr: float) -> int:
    """The fewest non-members at which one false positive is within `max_fpr`: ceil(1 / max_fpr)."""
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    return math.ceil(1.0 / max_fpr - 1e-9)  # the tolerance keeps 1 / 0.001 at 1000


def is_resolvable(max_fpr: float, num_nonmembers: int) -> bool:
    """Whether TPR at FPR <= `max_fpr` measures anything beyond zero false positives: 1 / num_nonmembers <= max_fpr."""
    return num_nonmembers >= min_nonmembers(max_fpr)


def _resamples(scores: np.ndarray, labels: np.ndarray, num_bootstrap: int, seed: int):
    """Yield `num_bootstrap` stratified resamples (scores, labels): members and non-members drawn separately."""
    if num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    rng = np.random.default_rng(seed)
    members, nonmembers = scores[labels], scores[~labels]
    resampled_labels = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    for _ in range(num_bootstrap):
        yield (
            np.r_[rng.choice(members, len(members)), rng.choice(nonmembers, len(nonmembers))],
            resampled_labels,
        )


def _interval(values: list[float]) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ci(
    scores: np.ndarray,
    is_member: np.ndarray,
    metric_fn: MetricFn,
    num_bootstrap: int,
    seed: int,
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of `metric_fn(scores, is_member)`.

    Members and non-members are resampled separately (stratified), so every resample keeps both class sizes.

    Returns:
        (2.5th percentile, 97.5th percentile).
    """
    scores, labels = check_scores(scores, is_member)
    return _interval([metric_fn(s, m) for s, m in _resamples(scores, labels, num_bootstrap, seed)])


_TPR_PREFIX = "tpr_at_fpr_"


def tpr_key(max_fpr: float) -> str:
    """Flat key of TPR at an FPR bound, e.g. 0.01 -> "tpr_at_fpr_0.01" (JSON/CSV friendly)."""
    return f"{_TPR_PREFIX}{max_fpr:g}"


def tpr_bound(key: str) -> float | None:
    """The FPR bound of a `tpr_key` ("tpr_at_fpr_0.01" -> 0.01); None for any other key."""
    rest = key.removeprefix(_TPR_PREFIX)
    try:
        return float(rest) if rest != key else None
    except ValueError:
        return None


def _point_metrics(scores: np.ndarray, labels: np.ndarray, fprs: tuple[float, ...]) -> dict[str, float]:
    """auc, asr and TPR at each bound from one ROC curve (same values as the single-metric functions)."""
    fpr, tpr = roc(scores, labels)
    out = {"auc": float(np.trapezoid(tpr, fpr)), "asr": float(np.max((tpr + 1.0 - fpr) / 2.0))}
    out.update({tpr_key(a): float(tpr[fpr <= a].max()) for a in fprs})
    return out


def summarize(scores: np.ndarray, is_member: np.ndarray, cfg: MetricsConfig) -> dict[str, float | int]:
    """All metrics of one attack on one target, as a flat dict for metrics.json / a summary table.

    Keys: auc, asr, tpr_at_fpr_<alpha> for each alpha in cfg.tpr_at_fpr (see `tpr_key`), each with
    "<key>_low" / "<key>_high" (95 % stratified bootstrap with cfg.num_bootstrap resamples and cfg.seed; the
    same resamples serve every metric; omitted when num_bootstrap is 0), plus num_members and num_nonmembers.
    A TPR whose bound is below 1 / num_nonmembers is NaN, its interval too (see `is_resolvable`).
    """
    scores, labels = check_scores(scores, is_member)
    if cfg.num_bootstrap < 0:
        raise ValueError(f"metrics.num_bootstrap must be >= 0, got {cfg.num_bootstrap}")
    bad = [a for a in cfg.tpr_at_fpr if not 0.0 < a < 1.0]
    if bad:
        raise ValueError(f"metrics.tpr_at_fpr: {bad} not in (0, 1)")
    num_nonmembers = int((~labels).sum())
    unresolved = {tpr_key(a) for a in cfg.tpr_at_fpr if not is_resolvable(a, num_nonmembers)}
    point = _point_metrics(scores, labels, cfg.tpr_at_fpr)
    point.update(dict.fromkeys(unresolved, math.nan))
    out: dict[str, float | int] = {}
    if cfg.num_bootstrap > 0:
        # One ROC per resample for all metrics: ~4x faster than bootstrapping each metric on its own.
        boot = [
            _point_metrics(s, m, cfg.tpr_at_fpr)
            for s, m in _resamples(scores, labels, cfg.num_bootstrap, cfg.seed)
        ]
    for key, value in point.items():
        out[key] = value
        if cfg.num_bootstrap > 0:
            out[f"{key}_low"], out[f"{key}_high"] = (
                (math.nan, math.nan) if key in unresolved else _interval([b[key] for b in boot])
            )
    out["num_members"] = int(labels.sum())
    out["num_nonmembers"] = num_nonmembers
    return out


def summarize_halves(
    scores: np.ndarray, is_member: np.ndarray, in_half: Mapping[str, np.ndarray], cfg: MetricsConfig
) -> dict[str, dict[str, float | int]]:
    """`summarize` of each half's members against every non-member: DualMD's D1 and D2 apart.

    Args:
        scores, is_member: (N,) as for `summarize`.
        in_half: half name ("half1", "half2") -> (N,) bool, True for the members of that half.
    Returns:
        Half name -> its `summarize` dict, for each half with at least one member among the N samples (a teacher's
        scores hold only its own half).
    Raises:
        ValueError: a mask of another length, or one that marks a non-member.
    """
    scores, labels = check_scores(scores, is_member)
    out = {}
    for half, mask in in_half.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != labels.shape:
            raise ValueError(f"{half}: mask of shape {mask.shape}, expected {labels.shape}")
        if (mask & ~labels).any():
            raise ValueError(
                f"{half}: marks {int((mask & ~labels).sum())} non-member(s) as members of the half"
            )
        if mask.any():
            keep = mask | ~labels  # the half's members and every non-member
            out[half] = summarize(scores[keep], labels[keep], cfg)
    return out
