"""Dataset-level inference: several attacks' scores combined on the labelled slice, tested on held-out sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from dualmd import dataset_inference as di
from dualmd.scores import AttackResult, save_scores
from dualmd.stages.dataset_inference import dataset_inference
from dualmd.verdicts import selection_slice


def candidates(num_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Shuffled ids 0..2N-1 (the split's order) and their membership: N members, N non-members."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(2 * num_per_class)
    return order, order < num_per_class, rng


def results_of(ids, is_member, **scores) -> dict[str, AttackResult]:
    return {name: AttackResult(ids, is_member, values, attack=name) for name, values in scores.items()}


def test_one_informative_attack_beside_noise_separates_with_a_small_set():
    """`pia` shifts members by two standard deviations, `loss` is noise: the regression weights `pia`, its held-out
    AUC is high, and n = 8 (the rank test's smallest n that can reach 0.01) already suffices."""
    ids, is_member, rng = candidates(200, seed=0)
    results = results_of(
        ids, is_member, pia=rng.normal(size=400) + 2.0 * is_member, loss=rng.normal(size=400)
    )
    found = di.infer_dataset(results, selection_fraction=0.2, num_repeats=50, max_p=0.01, seed=0)
    assert found.attacks == ("pia", "loss") and found.left_out == ()
    assert found.num_heldout == 320 and found.num_unscored == 0
    assert found.heldout_auc > 0.85
    assert found.smallest_n == 8
    assert found.medians[64] < 1e-10

    features = di.align_features(results, found.fit_ids)
    in_slice = np.isin(features.sample_ids, found.fit_ids)
    scorer = di.fit_scorer(features.values[in_slice], features.is_member[in_slice], seed=0)
    pia_weight, loss_weight = scorer[-1].coef_[0]
    assert pia_weight > 1.0 and abs(loss_weight) < pia_weight / 4


def test_pure_noise_reaches_no_set_size():
    """Two noise attacks: no n reaches p < 0.01 and the median p-values sit in the middle of (0, 1)."""
    ids, is_member, rng = candidates(200, seed=1)
    results = results_of(ids, is_member, pia=rng.normal(size=400), loss=rng.normal(size=400))
    found = di.infer_dataset(results, selection_fraction=0.2, num_repeats=50, max_p=0.01, seed=0)
    assert found.smallest_n is None
    assert list(found.medians) == [2, 4, 8, 16, 32, 64, 128]
    assert all(0.1 < p < 0.9 for p in found.medians.values()), found.medians
    assert 0.35 < found.heldout_auc < 0.65


def test_the_scorer_is_fitted_on_exactly_the_labelled_slice(monkeypatch):
    """Each candidate's `loss` score is its own id, so the rows the scorer is fitted on name their candidates:
    they are the slice's, and no held-out candidate is among them."""
    ids, is_member, rng = candidates(50, seed=2)
    results = results_of(ids, is_member, loss=ids.astype(float), pia=rng.normal(size=100) + is_member)
    seen = []
    fit = di.fit_scorer

    def recording(values, members, *, seed):
        seen.append(values[:, 0].astype(np.int64))
        return fit(values, members, seed=seed)

    monkeypatch.setattr(di, "fit_scorer", recording)
    found = di.infer_dataset(results, selection_fraction=0.2, num_repeats=3, max_p=0.01, seed=0)
    slice_ids = selection_slice(ids, is_member, 0.2)  # the first 10 members and 10 non-members, split order
    assert len(seen) == 1 and len(seen[0]) == 20
    assert sorted(seen[0]) == sorted(slice_ids) == sorted(found.fit_ids)
    assert found.num_heldout == 80 and not np.isin(seen[0], ids[~np.isin(ids, slice_ids)]).any()


def test_a_tiny_case_gives_the_hand_checked_p_value():
    """Slice: one member (score 10) and one non-member (-10), so the fitted score increases with the one feature.
    Held out: members 3 and 1 against non-members 2 and 0. Every draw of n = 2 is the whole held-out set, U counts
    the member-above-non-member pairs, 3 of 4 (3 > 2, 3 > 0, 1 > 0), and of the C(4, 2) = 6 equally likely
    rankings U >= 3 in two ({3, 2} on top: U = 4; {3, 1}: U = 3), so p = 2/6 = 1/3."""
    ids = np.arange(6)
    is_member = np.array([True, False, True, False, True, False])
    scores = np.array([10.0, -10.0, 3.0, 2.0, 1.0, 0.0])
    found = di.infer_dataset(
        results_of(ids, is_member, loss=scores), selection_fraction=1 / 3, num_repeats=5, max_p=0.5, seed=0
    )
    assert sorted(found.fit_ids) == [0, 1]
    assert found.medians == {2: pytest.approx(1 / 3, rel=1e-12)}
    assert found.smallest_n == 2 and found.heldout_auc == 0.75


def test_missing_scores_leave_out_an_attack_or_a_candidate_never_impute():
    """`gsa` scores only the held-out candidates (it fits on the slice): left out. `pia` misses two held-out
    candidates and has a NaN score for a third: those three are left out of the test, and the rest keeps both
    `loss` and `pia`."""
    ids, is_member, rng = candidates(50, seed=3)
    slice_ids = selection_slice(ids, is_member, 0.2)
    heldout = ~np.isin(ids, slice_ids)
    loss = AttackResult(ids, is_member, rng.normal(size=100) + is_member, attack="loss")
    gsa = AttackResult(ids[heldout], is_member[heldout], rng.normal(size=80), attack="gsa")
    missing = ids[heldout][:2]
    keep = ~np.isin(ids, missing)
    pia_scores = rng.normal(size=100) + is_member
    pia_scores[np.flatnonzero(heldout)[5]] = np.nan
    pia = AttackResult(ids[keep], is_member[keep], pia_scores[keep], attack="pia")
    results = {"gsa": gsa, "loss": loss, "pia": pia}
    features = di.align_features(results, slice_ids)
    assert features.attacks == ("loss", "pia") and features.left_out == ("gsa",)
    assert len(features.sample_ids) == 97 and np.isfinite(features.values).all()
    assert not np.isin([*missing, ids[np.flatnonzero(heldout)[5]]], features.sample_ids).any()
    found = di.infer_dataset(results, selection_fraction=0.2, num_repeats=3, max_p=0.01, seed=0)
    assert (found.num_heldout, found.num_unscored, len(found.fit_ids)) == (77, 3, 20)
    with pytest.raises(ValueError, match="no attack scores every candidate of the labelled slice"):
        di.align_features({"gsa": gsa}, slice_ids)


def test_features_align_on_ids_whatever_each_file_s_order():
    ids = np.array([4, 7, 1, 9])
    is_member = np.array([True, False, True, False])
    loss = AttackResult(ids, is_member, np.array([1.0, 2.0, 3.0, 4.0]))
    reverse = AttackResult(ids[::-1], is_member[::-1], np.array([40.0, 30.0, 20.0, 10.0]))
    features = di.align_features({"loss": loss, "pia": reverse}, np.array([4, 7]))
    np.testing.assert_array_equal(features.sample_ids, ids)
    np.testing.assert_array_equal(features.values, [[1, 10], [2, 20], [3, 30], [4, 40]])
    conflicting = AttackResult(ids, ~is_member, np.zeros(4))
    with pytest.raises(ValueError, match="^pia: membership of a candidate differs from another attack$"):
        di.align_features({"loss": loss, "pia": conflicting}, np.array([4, 7]))
    named = AttackResult(ids, is_member, loss.scores, attack="loss")
    with pytest.raises(ValueError, match="^pia: membership of a candidate differs from loss$"):
        di.align_features({"loss": named, "pia": conflicting}, np.array([4, 7]))
    with pytest.raises(ValueError, match="^the labelled slice is empty"):
        di.align_features({"loss": loss}, np.array([], dtype=np.int64))


def test_the_scorer_standardises_each_feature_on_the_rows_it_is_fitted_on():
    """Logistic regression's L2 penalty depends on each feature's scale; the standardised scorer does not: giving
    one feature in other units (x 1000, shifted) leaves the fitted logits unchanged, and the scaler holds the
    slice's mean and standard deviation."""
    rng = np.random.default_rng(5)
    is_member = np.arange(20) % 2 == 0
    values = np.stack([rng.normal(size=20) + is_member, rng.normal(size=20) + 0.5 * is_member], axis=1)
    rescaled = values * np.array([1000.0, 0.001]) + np.array([5.0, -3.0])
    scorer = di.fit_scorer(values, is_member, seed=0)
    np.testing.assert_allclose(scorer[0].mean_, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scorer[0].scale_, values.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(
        di.fit_scorer(rescaled, is_member, seed=0).decision_function(rescaled),
        scorer.decision_function(values),
        rtol=1e-9,
    )


def test_stage_writes_one_block_per_target_with_weights(tmp_path):
    ids, is_member, rng = candidates(40, seed=4)
    paths = []
    for attack, target, shift in [
        ("pia", "baseline", 3.0),
        ("loss", "baseline", 0.0),
        ("loss", "student", 0.0),
        ("pia", "dualmd", 3.0),  # no weights of its own: left out
    ]:
        paths.append(tmp_path / "scores" / attack / f"{target}.npz")
        values = rng.normal(size=80) + shift * is_member
        save_scores(AttackResult(ids, is_member, values, attack=attack), paths[-1])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"dataset_inference": {"num_repeats": 5}}))
    out = tmp_path / "report" / "dataset_inference.csv"
    dataset_inference(config=config, scores=paths, out=out)
    table = pd.read_csv(out)
    assert table[["target", "n"]].values.tolist() == [["baseline", n] for n in (2, 4, 8, 16, 32)] + [
        ["student", n] for n in (2, 4, 8, 16, 32)
    ]
    first = table.groupby("target").first()
    assert first.loc["baseline", "attacks"] == "loss+pia" and first.loc["student", "attacks"] == "loss"
    assert (first["num_fit"] == 16).all() and (first["num_heldout"] == 64).all()
    assert first.loc["baseline", "smallest_n"] == "8"
    lines = (tmp_path / "report" / "dataset_inference.rst").read_text()
    assert "- ``baseline`` (``loss+pia`` combined; held-out AUC" in lines
    assert "smallest set with median p < 0.01: n = 8" in lines
