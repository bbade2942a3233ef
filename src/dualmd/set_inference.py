"""Set-level membership inference: does a set of candidate images, as a whole, come from a model's members?

The question of dataset inference (Maini, Yaghini & Papernot, "Dataset Inference: Ownership Resolution in Machine
Learning", ICLR 2021; for diffusion models CDI, Dubinski et al., "CDI: Copyrighted Data Identification in Diffusion
Models", CVPR 2025): per-sample attack scores that are too weak to call one image a member can still separate a
set of members from a set of non-members. For n = 2, 4, 8, ... (up to the smaller of the two counts) the test draws
n members and n non-members at random, without replacement, `num_repeats` times, and runs a one-sided Mann-Whitney
U test (`scipy.stats.mannwhitneyu`, alternative "greater": members score higher). The median p-value per n, and the
smallest n whose median falls below `max_p`, say how many images an owner needs to show that a model trained on
their data.

scipy computes the exact p-value for samples of at most 8 without ties and the normal approximation otherwise. With
perfectly separated scores the exact p-value is 1 / C(2n, n), the chance that n given members take the n top ranks.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu

from dualmd.metrics import check_scores


def set_sizes(num_members: int, num_nonmembers: int) -> list[int]:
    """2, 4, 8, ... up to min(num_members, num_nonmembers)."""
    sizes, n = [], 2
    while n <= min(num_members, num_nonmembers):
        sizes.append(n)
        n *= 2
    return sizes


def median_p_values(
    scores: np.ndarray, is_member: np.ndarray, *, num_repeats: int, seed: int
) -> dict[int, float]:
    """The median one-sided Mann-Whitney p-value of n random members against n random non-members, per n.

    Args:
        scores: (N,) per-sample attack scores, higher = member.
        is_member: (N,) bool.
        num_repeats: draws per n.
        seed: the draws of size n come from a generator seeded (seed, n), so adding a size changes no other.
    Returns:
        n -> median p-value over the draws, for every n of `set_sizes` (empty if either class has < 2 samples).
    """
    scores, labels = check_scores(scores, is_member)
    members, nonmembers = scores[labels], scores[~labels]
    distinct = len(np.unique(scores)) == len(scores)  # no draw holds a tie
    medians = {}
    for n in set_sizes(len(members), len(nonmembers)):
        rng = np.random.default_rng([seed, n])
        draws = [
            (rng.choice(members, n, replace=False), rng.choice(nonmembers, n, replace=False))
            for _ in range(num_repeats)
        ]
        medians[n] = float(np.median(_one_sided_p_values(draws, stack=n > 8 or distinct)))
    return medians


def _one_sided_p_values(draws: list[tuple[np.ndarray, np.ndarray]], *, stack: bool) -> np.ndarray:
    """(num_repeats,) one-sided Mann-Whitney p-values of the (members, non-members) draws.

    scipy picks the method per call: the normal approximation above 8 per sample, whatever the ties; up to 8 the
    exact distribution, unless the call holds a tie. Where that choice cannot differ between draws (more than 8
    per set, or no two scores equal) one call over the stacked (num_repeats, n) draws gives the same p-values, bit
    for bit, as one call per draw (a test checks it) at a fraction of the cost; otherwise one call each.
    """
    if stack:
        x, y = (np.stack(side) for side in zip(*draws, strict=True))
        return mannwhitneyu(x, y, axis=1, alternative="greater").pvalue
    return np.array([mannwhitneyu(x, y, alternative="greater").pvalue for x, y in draws])


def smallest_significant(medians: dict[int, float], max_p: float) -> int | None:
    """The smallest n whose median p-value is below `max_p`, or None."""
    return next((n for n, p in sorted(medians.items()) if p < max_p), None)


def smallest_set_lines(table, max_p: float, describe) -> str:
    """One reStructuredText line per target of a set-inference table (columns target, n, smallest_n, ...): what
    was tested, `describe(first row of the target)`, and the smallest n with median p < `max_p`, or "none up to"
    the largest n tried."""
    if table.empty:
        return "No target with weights to test.\n"
    lines = []
    for target, rows in table.groupby("target", sort=False):
        first = rows.iloc[0]
        n = first["smallest_n"]
        verdict = f"n = {n}" if n != "none" else f"none up to n = {rows['n'].max()}"
        lines.append(f"- ``{target}`` ({describe(first)}): smallest set with median p < {max_p:g}: {verdict}")
    return "\n".join(lines) + "\n"
