"""Dataset-level inference: several attacks' scores combined into one scorer, then a test of a suspect set.

After CDI (Dubinski et al., "CDI: Copyrighted Data Identification in Diffusion Models", CVPR 2025): a data owner
holds a suspect set (images they believe a model trained on) and a reference set of images the model certainly did
not see. Each candidate gets one feature per attack (the per-sample scores of every attack that scored the target,
aligned on sample ids); a scorer fitted on the attacker's labelled slice (`dualmd.verdicts.selection_slice`, the
slice the report picks the strongest attack on) maps the features to one number; and for n = 2, 4, 8, ... n held-out
members (the suspect set) are compared with n held-out non-members (the reference), `num_repeats` seeded draws per
n. The smallest n whose median p-value is below `max_p` says how many images an owner needs to show, with every
attack at once, that the model trained on their data.

**The scorer** is scikit-learn's logistic regression (L2, C = 1, seeded) on features standardised with the slice's
mean and standard deviation: CDI's own scorer, and one whose weights stay readable. It sees only the slice; every
candidate it scores is held out (a test checks the ids it is fitted on).

**The test** is the one-sided Mann-Whitney U test of `dualmd.set_inference` (members greater), not CDI's one-sided
Welch t-test: the scorer's output is a logit of heavy-tailed attack scores, not a normal sample, and the t-test's
p-values at n = 2 or 4 rest on that normality; the rank test needs none, and it makes this table's smallest n
comparable with set_inference.csv's (same draws, same seeds, only the score differs). Its cost: an exact p-value
cannot go below 1 / C(2n, n), so p < 0.01 needs n >= 8 however well the sets separate (1/70 at n = 4).

**Missing scores.** Attacks that fit on the labelled slice (`secmi_nn`, `gsa`, `recon`) score only the other
candidates, so the scorer could not learn their weight: an attack that leaves out any candidate of the slice is
left out of the features (and named in the output). A held-out candidate that a kept attack did not score is left
out of the test (counted); no score is imputed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dualmd.metrics import auc
from dualmd.scores import AttackResult
from dualmd.set_inference import median_p_values, smallest_significant


@dataclass(frozen=True)
class Features:
    """Attack scores of the candidates, aligned on sample ids.

    Attributes:
        sample_ids: (N,) ids of the candidates every kept attack scored, in the widest attack's order.
        is_member: (N,) bool.
        values: (N, A) float64, one column per kept attack (higher = member).
        attacks: the A kept attacks, in the order of the columns.
        left_out: attacks left out because they did not score every candidate of the labelled slice.
    """

    sample_ids: np.ndarray
    is_member: np.ndarray
    values: np.ndarray
    attacks: tuple[str, ...]
    left_out: tuple[str, ...]


def widest(results: Mapping[str, AttackResult]) -> AttackResult:
    """The result that scores the most candidates: its order is the split's, which defines the labelled slice."""
    return max(results.values(), key=lambda r: len(r.sample_ids))


def align_features(results: Mapping[str, AttackResult], slice_ids: np.ndarray) -> Features:
    """One feature per attack that scored every candidate of `slice_ids`; the candidates they all scored.

    A candidate is scored by an attack if its id is in the attack's result with a finite score.

    Args:
        results: attack -> its per-sample scores against one target.
        slice_ids: (S,) ids of the labelled slice.
    Returns:
        The aligned features; raises ValueError if the slice is empty, no attack scored the whole slice or two
        results disagree on a candidate's membership.
    """
    if len(slice_ids) == 0:
        raise ValueError("the labelled slice is empty: no attack can be fitted on it")
    scored = {a: r.sample_ids[np.isfinite(r.scores)] for a, r in results.items()}  # a NaN score is no score
    kept = {a: r for a, r in results.items() if np.isin(slice_ids, scored[a]).all()}
    if not kept:
        raise ValueError(
            f"no attack scores every candidate of the labelled slice (attacks: {sorted(results)})"
        )
    base = widest(kept)
    in_all = np.all([np.isin(base.sample_ids, scored[a]) for a in kept], axis=0)
    ids, is_member = base.sample_ids[in_all], base.is_member[in_all]
    columns = []
    for attack, result in kept.items():
        position = dict(zip(result.sample_ids.tolist(), range(len(result.sample_ids)), strict=True))
        rows = np.array([position[i] for i in ids.tolist()], dtype=np.int64)
        if not np.array_equal(result.is_member[rows], is_member):
            raise ValueError(
                f"{attack}: membership of a candidate differs from {base.attack or 'another attack'}"
            )
        columns.append(result.scores[rows])
    left_out = tuple(a for a in results if a not in kept)
    return Features(ids, is_member, np.stack(columns, axis=1), tuple(kept), left_out)


def fit_scorer(values: np.ndarray, is_member: np.ndarray, *, seed: int):
    """Logistic regression on standardised features (scikit-learn pipeline), fitted on the rows given.

    Args:
        values: (S, A) features of the labelled slice.
        is_member: (S,) bool.
        seed: `random_state` of the regression.
    Returns:
        The fitted pipeline; its `decision_function` maps (M, A) features to (M,) logits, higher = member.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(random_state=seed)).fit(values, is_member)


@dataclass(frozen=True)
class DatasetInference:
    """The result for one target: which attacks, how many candidates, the held-out AUC and the p-values per n."""

    attacks: tuple[str, ...]
    left_out: tuple[str, ...]
    fit_ids: np.ndarray  # (S,) the ids the scorer was fitted on: exactly the labelled slice
    num_heldout: int  # held-out candidates scored by every kept attack
    num_unscored: int  # held-out candidates left out because a kept attack did not score them
    heldout_auc: float
    medians: dict[int, float]
    smallest_n: int | None


def infer_dataset(
    results: Mapping[str, AttackResult],
    *,
    selection_fraction: float,
    num_repeats: int,
    max_p: float,
    seed: int,
) -> DatasetInference:
    """Fit the scorer on the labelled slice and test held-out members against held-out non-members.

    Args:
        results: attack -> its per-sample scores against one target.
        selection_fraction: the labelled slice's share of the members and of the non-members.
        num_repeats: draws per n; seed: of the scorer and of the draws (`set_inference.median_p_values`).
        max_p: the bound of the smallest n.
    """
    from dualmd.verdicts import selection_slice

    base = widest(results)
    slice_ids = selection_slice(base.sample_ids, base.is_member, selection_fraction)
    features = align_features(results, slice_ids)
    in_slice = np.isin(features.sample_ids, slice_ids)
    scorer = fit_scorer(features.values[in_slice], features.is_member[in_slice], seed=seed)
    heldout_scores = scorer.decision_function(features.values[~in_slice])
    heldout_members = features.is_member[~in_slice]
    medians = median_p_values(heldout_scores, heldout_members, num_repeats=num_repeats, seed=seed)
    return DatasetInference(
        attacks=features.attacks,
        left_out=features.left_out,
        fit_ids=features.sample_ids[in_slice],
        num_heldout=int((~in_slice).sum()),
        num_unscored=int((~np.isin(base.sample_ids, slice_ids)).sum() - (~in_slice).sum()),
        heldout_auc=auc(heldout_scores, heldout_members),
        medians=medians,
        smallest_n=smallest_significant(medians, max_p),
    )
