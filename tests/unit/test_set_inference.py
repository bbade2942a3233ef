"""Set-level inference: Mann-Whitney p-values of random member and non-member sets, on hand-checkable scores."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import mannwhitneyu

from dualmd.files import write_json
from dualmd.scores import AttackResult, save_scores
from dualmd.set_inference import median_p_values, set_sizes, smallest_significant
from dualmd.stages.set_inference import set_inference


def test_set_sizes_double_up_to_the_smaller_class():
    assert set_sizes(10, 7) == [2, 4]
    assert set_sizes(16, 40) == [2, 4, 8, 16]
    assert set_sizes(1, 5) == []


def separated(num: int) -> tuple[np.ndarray, np.ndarray]:
    """`num` members scoring 100..100+num-1 above `num` non-members scoring 0..num-1, interleaved."""
    scores = np.empty(2 * num)
    scores[0::2], scores[1::2] = 100 + np.arange(num), np.arange(num)
    return scores, np.arange(2 * num) % 2 == 0


def test_perfectly_separated_scores_give_one_over_2n_choose_n():
    """Every draw puts the n members on the n top ranks: the exact one-sided p-value is 1 / C(2n, n)."""
    scores, is_member = separated(8)
    medians = median_p_values(scores, is_member, num_repeats=5, seed=0)
    assert list(medians) == [2, 4, 8]
    for n, p in medians.items():
        assert p == pytest.approx(1 / comb(2 * n, n), rel=1e-12), n  # 1/6, 1/70, 1/12870
    assert smallest_significant(medians, 0.01) == 8  # 1/70 = 0.014 is not below 0.01
    assert smallest_significant(medians, 0.2) == 2


def test_reversed_scores_are_never_significant_and_draws_are_seeded():
    scores, is_member = separated(8)
    medians = median_p_values(-scores, is_member, num_repeats=5, seed=0)
    assert all(p == pytest.approx(1.0) for p in medians.values())  # members score lowest: p = 1
    assert smallest_significant(medians, 0.01) is None
    rng = np.random.default_rng(1)
    noisy = rng.normal(size=200) + np.r_[np.ones(100), np.zeros(100)]
    labels = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    first = median_p_values(noisy, labels, num_repeats=20, seed=3)
    assert first == median_p_values(noisy, labels, num_repeats=20, seed=3)
    assert first != median_p_values(noisy, labels, num_repeats=20, seed=4)
    assert first[64] < first[4]  # larger sets give smaller p-values


def _metrics(path, attack, rows):
    """A metrics JSON with (target, auc, TPR at 1% FPR) rows."""
    write_json(
        path,
        {
            "attack": attack,
            "rows": [
                {"target": t, "num_members": 8, "num_nonmembers": 8, "auc": a, "tpr_at_fpr_0.01": tpr}
                for t, a, tpr in rows
            ],
        },
    )
    return path


def test_stage_tests_the_strongest_attack_against_each_target_with_weights(tmp_path):
    """pia is the strongest against the baseline (perfectly separated scores), loss against the student (reversed
    scores); dualmd has no weights of its own and is left out."""
    scores, is_member = separated(8)
    ids = np.arange(16) * 3
    files = {
        ("pia", "baseline"): scores,
        ("loss", "baseline"): -scores,
        ("pia", "student"): -scores,
        ("loss", "student"): -scores,
        ("pia", "dualmd"): scores,
    }
    paths = []
    for (attack, target), values in files.items():
        paths.append(tmp_path / "scores" / attack / f"{target}.npz")
        save_scores(AttackResult(ids, is_member, values, {}, attack=attack), paths[-1])
    nan = float("nan")
    attacks = [
        _metrics(
            tmp_path / "pia.json",
            "pia",
            [("baseline", 1.0, nan), ("student", 0.0, nan), ("dualmd", 1.0, nan)],
        ),
        _metrics(tmp_path / "loss.json", "loss", [("baseline", 0.0, nan), ("student", 0.25, nan)]),
    ]
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"set_inference": {"num_repeats": 3}, "metrics": {"tpr_at_fpr": [0.01]}})
    )
    out = tmp_path / "report" / "set_inference.csv"
    set_inference(config=config, attacks=attacks, scores=paths, out=out)
    table = pd.read_csv(out)
    assert table[["target", "attack", "n"]].values.tolist() == [
        ["baseline", "pia", 2],
        ["baseline", "pia", 4],
        ["baseline", "pia", 8],
        ["student", "loss", 2],
        ["student", "loss", 4],
        ["student", "loss", 8],
    ]
    np.testing.assert_allclose(table["median_p"][:3], [1 / 6, 1 / 70, 1 / 12870])
    assert table["smallest_n"].tolist() == ["8"] * 3 + ["none"] * 3
    assert set(table["chosen_by"]) == {"strongest"}
    lines = (tmp_path / "report" / "set_inference.rst").read_text()
    assert "- ``baseline`` (``pia``, strongest): smallest set with median p < 0.01: n = 8" in lines
    assert "- ``student`` (``loss``, strongest): smallest set with median p < 0.01: none up to n = 8" in lines

    # a configured attack replaces the choice
    config.write_text(yaml.safe_dump({"set_inference": {"num_repeats": 3, "attack": "pia"}}))
    set_inference(config=config, attacks=attacks, scores=paths, out=out)
    table = pd.read_csv(out)
    assert set(table["attack"]) == {"pia"} and set(table["chosen_by"]) == {"configured"}
    assert table.groupby("target")["smallest_n"].first().to_dict() == {"baseline": "8", "student": "none"}


def test_median_p_values_equal_the_draws_made_by_hand_with_the_per_size_generator():
    """Overlapping scores (p-values differ from draw to draw): for each n the draws come from a generator
    seeded (seed, n), n members then n non-members without replacement, and the median of the one-sided
    ("members greater") p-values is reported."""
    rng = np.random.default_rng(2)
    is_member = rng.permutation(np.r_[np.ones(9, bool), np.zeros(12, bool)])
    scores = rng.normal(size=21) + 0.7 * is_member
    members, nonmembers = scores[is_member], scores[~is_member]
    medians = median_p_values(scores, is_member, num_repeats=7, seed=5)
    assert list(medians) == [2, 4, 8]
    for n, median in medians.items():
        g = np.random.default_rng([5, n])
        p_values = [
            mannwhitneyu(
                g.choice(members, n, replace=False),
                g.choice(nonmembers, n, replace=False),
                alternative="greater",
            ).pvalue
            for _ in range(7)
        ]
        assert len(set(p_values)) > 1, n  # the draws differ, so the summary statistic matters
        assert median == float(np.median(p_values)), n
        assert median != pytest.approx(float(np.mean(p_values))), n


def test_members_are_drawn_without_replacement():
    """Eight members, one of them far above the rest, against non-members in between: a set of all eight
    members holds the outlier once, so the exact p-value is that of the full samples in every draw."""
    members = np.r_[100.0, np.arange(7.0)]
    nonmembers = np.arange(8.0) + 0.5
    scores, is_member = np.r_[members, nonmembers], np.r_[np.ones(8, bool), np.zeros(8, bool)]
    expected = mannwhitneyu(members, nonmembers, alternative="greater").pvalue
    assert median_p_values(scores, is_member, num_repeats=5, seed=0)[8] == pytest.approx(expected, rel=1e-12)


def test_smallest_significant_takes_sizes_in_increasing_order_and_a_strict_bound():
    assert smallest_significant({8: 0.001, 2: 0.5, 4: 0.005}, 0.01) == 4
    assert smallest_significant({2: 0.01, 4: 0.001}, 0.01) == 4  # 0.01 is not below 0.01
    assert smallest_significant({}, 0.01) is None


def test_bad_scores_are_refused_and_too_few_samples_give_no_sizes():
    with pytest.raises(ValueError, match="both members and non-members"):
        median_p_values(np.arange(4.0), np.ones(4, bool), num_repeats=3, seed=0)
    assert median_p_values(np.arange(4.0), np.array([True, False, False, False]), num_repeats=3, seed=0) == {}
    assert set_sizes(2, 2) == [2] and set_sizes(3, 100) == [2] and set_sizes(8, 8) == [2, 4, 8]


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
def test_stacked_draws_give_the_per_draw_p_values_bit_for_bit(tied):
    """Draws tested in one stacked call (above 8 per set, or every size when no two scores tie) give the same
    p-values as one call per draw, so the medians of set_inference.csv do not depend on how they are batched."""
    rng = np.random.default_rng(7)
    is_member = rng.permutation(np.r_[np.ones(100, bool), np.zeros(300, bool)])
    scores = rng.normal(size=400) + 0.3 * is_member
    scores = np.round(scores, 1) if tied else scores
    members, nonmembers = scores[is_member], scores[~is_member]
    medians = median_p_values(scores, is_member, num_repeats=9, seed=1)
    assert list(medians) == [2, 4, 8, 16, 32, 64]
    for n in medians:
        g = np.random.default_rng([1, n])
        draws = [
            (g.choice(members, n, replace=False), g.choice(nonmembers, n, replace=False)) for _ in range(9)
        ]
        one_by_one = [mannwhitneyu(x, y, alternative="greater").pvalue for x, y in draws]
        assert medians[n] == float(np.median(one_by_one)), n
