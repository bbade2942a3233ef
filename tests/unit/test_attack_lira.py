"""LiRA by hand. Offline: (s(x) - mean_k s_k(x)) / sigma(x) with sigma per candidate (ddof 1) or pooled over every
candidate, from reference statistics scored with the attacked model's own noise. Online: the log likelihood ratio
of the candidate's IN and OUT Gaussians. And their checks."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import affine_eps, affine_eps_np

from dualmd.attacks.lira import Lira, ReferenceStatistics, lira_section, online_lira, reference_statistics
from dualmd.attacks.run import attack_model, build_attack
from dualmd.config.attacks import AttackConfig, LiraConfig, LossAttackConfig, SimAConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def scaled(gain):
    return lambda x, t: gain * affine_eps(x, t)


def images_and_ids(num=5):
    images = torch.rand(num, 1, 4, 4, generator=torch.Generator().manual_seed(6)) * 2 - 1
    return images, np.arange(num) * 4 + 3, np.arange(num) % 2 == 0


def sima_np(images, gain, t=10, lp=2.0):
    x = images.double().numpy()
    return -(np.abs(gain * affine_eps_np(x, t)) ** lp).reshape(len(x), -1).sum(axis=1)


@pytest.mark.parametrize("global_variance", [False, True])
def test_lira_z_score_of_sima_against_three_references(global_variance, schedule):
    images, ids, is_member = images_and_ids()
    cfg = AttackConfig(
        sima=SimAConfig(timestep=10, sweep_timesteps=(), lp=2.0),
        lira=LiraConfig(statistic="sima", global_variance=global_variance, num_reference=3),
    )
    gains = (0.8, 1.1, 1.5)
    refs = reference_statistics(cfg, [(scaled(g), schedule) for g in gains], images, ids)
    ref_values = np.stack([sima_np(images, g) for g in gains])
    np.testing.assert_allclose(refs.values, ref_values, rtol=1e-5)
    assert refs.statistic == "sima"
    result = attack_model(
        "lira", cfg, predictor=scaled(1.0), schedule=schedule, images=images, sample_ids=ids,
        is_member=is_member, references=refs,
    )  # fmt: skip
    statistic = sima_np(images, 1.0)
    mean = ref_values.mean(axis=0)
    std = (
        np.sqrt(ref_values.var(axis=0, ddof=1).mean()) if global_variance else ref_values.std(axis=0, ddof=1)
    )
    np.testing.assert_allclose(result.scores, (statistic - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(result.extra["statistic"], statistic, rtol=1e-5)
    np.testing.assert_allclose(result.extra["reference_mean"], mean, rtol=1e-5)


def test_reference_statistics_use_the_attack_seed_like_the_target(schedule):
    images, ids, _ = images_and_ids(3)
    cfg = AttackConfig(seed=7, loss=LossAttackConfig(timesteps=(40,)))
    refs = reference_statistics(cfg, [(scaled(0.5), schedule), (scaled(2.0), schedule)], images, ids)
    loss = build_attack("loss", cfg)
    np.testing.assert_array_equal(refs.values[1], loss.score(scaled(2.0), schedule, images, ids))
    np.testing.assert_array_equal(refs.sample_ids, ids)
    other = reference_statistics(
        AttackConfig(seed=8, loss=cfg.loss), [(scaled(0.5), schedule)] * 2, images, ids
    )
    assert not np.allclose(other.values[0], refs.values[0])


def test_reference_statistics_are_checked():
    with pytest.raises(ValueError, match=r"^reference statistics: expected \(K >= 2, 3\) values, got \(3,\)"):
        ReferenceStatistics(np.array([1, 2, 3]), np.zeros(3), "loss")
    with pytest.raises(ValueError, match=r"expected \(K >= 2, 3\) values, got \(2, 2\)"):
        ReferenceStatistics(np.array([1, 2, 3]), np.zeros((2, 2)), "loss")
    with pytest.raises(ValueError, match=r"got \(1, 3\); LiRA needs at least two reference models$"):
        ReferenceStatistics(np.array([1, 2, 3]), np.zeros((1, 3)), "loss")
    with pytest.raises(ValueError, match=r"^reference statistics: duplicate sample ids$"):
        ReferenceStatistics(np.array([1, 2, 1]), np.zeros((2, 3)), "loss")
    with pytest.raises(ValueError, match=r"^reference statistics: non-finite values$"):
        ReferenceStatistics(np.array([1, 2]), np.array([[0.0, np.nan], [1.0, 2.0]]), "loss")
    refs = ReferenceStatistics([1, 2], [[0, 1], [2, 5]], "loss")
    assert refs.sample_ids.dtype == np.int64 and refs.values.dtype == np.float64


def test_out_distribution_refuses_unknown_or_uncalibrated_candidates():
    refs = ReferenceStatistics(
        np.arange(10), np.stack([np.arange(10.0), np.arange(10.0) + np.r_[np.zeros(8), 1, 2]]), "loss"
    )
    with pytest.raises(
        ValueError, match=r"^lira: no reference statistic for sample ids \[10, 11, 12, 13, 14\] \(of 6\)$"
    ):
        refs.out_distribution(np.array([3, 10, 11, 12, 13, 14, 15]), global_variance=True)
    with pytest.raises(
        ValueError,
        match=r"^lira: the reference models give identical statistics for 3 candidate\(s\), so they cannot "
        r"calibrate them \(are they copies of one model\?\)$",
    ):
        refs.out_distribution(np.array([0, 1, 2, 8]), global_variance=False)
    mean, std = refs.out_distribution(np.array([9, 8]), global_variance=False)
    np.testing.assert_allclose(mean, [10.0, 8.5])
    np.testing.assert_allclose(std, [np.sqrt(2.0), np.sqrt(0.5)])
    same = ReferenceStatistics(np.arange(3), np.ones((2, 3)), "loss")
    with pytest.raises(ValueError, match="identical statistics for 2 candidate"):
        same.out_distribution(np.array([0, 2]), global_variance=True)


def test_lira_refuses_references_of_another_statistic_and_scoring_without_them(schedule):
    images, ids, _ = images_and_ids(2)
    refs = ReferenceStatistics(ids, np.array([[1.0, 2.0], [2.0, 4.0]]), "pia")
    lira = Lira(cfg=AttackConfig(lira=LiraConfig(statistic="sima")))
    with pytest.raises(
        ValueError, match=r"^lira: reference statistics of 'pia', but attack\.lira\.statistic is 'sima'$"
    ):
        lira.with_references(refs)
    message = (
        r"^lira needs the statistics of its reference models \(dualmd\.attacks\.lira\.reference_statistics\)$"
    )
    with pytest.raises(ValueError, match=message):
        lira.score_batch(scaled(1.0), schedule, images, ids)
    half = Lira(cfg=lira.cfg)
    half.references = ReferenceStatistics(
        ids, np.array([[1.0, 2.0], [2.0, 4.0]]), "sima"
    )  # no statistic attack
    with pytest.raises(ValueError, match=message):
        half.score_batch(scaled(1.0), schedule, images, ids)
    calibrated = Lira(cfg=AttackConfig(lira=LiraConfig(statistic="pia"))).with_references(refs)
    assert calibrated.references is refs and calibrated.statistic.name == "pia"
    assert lira.references is None  # calibrating returns a new attack


# Offline LiRA's scores on this fixed setup before the online mode and the target recipe existed (computed with
# that code): the offline mode with the baseline's recipe must reproduce them exactly.
OFFLINE_SCORES_BEFORE_ONLINE = {
    True: [
        -0.3551799142402969, -0.3846032424270503, 0.5885212728225313,
        0.23874022455078237, -0.057031882133277444, -0.17635698005977407,
    ],
    False: [
        -0.28663632567242037, -0.2824835180726781, 0.46612495945175436,
        0.547652003006418, -0.11165334796484397, -0.23445805002902886,
    ],
}  # fmt: skip


@pytest.mark.parametrize("global_variance", [True, False], ids=["pooled", "per-candidate"])
def test_offline_lira_with_the_baseline_recipe_reproduces_earlier_scores_exactly(global_variance, schedule):
    images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(6)) * 2 - 1
    ids = np.arange(6) * 4 + 3
    lira = LiraConfig(num_reference=3, global_variance=global_variance)
    assert (lira.mode, lira.recipe) == ("offline", "baseline")  # the defaults
    cfg = AttackConfig(loss=LossAttackConfig(timesteps=(50, 100)), lira=lira)
    refs = reference_statistics(cfg, [(scaled(g), schedule) for g in (0.8, 1.1, 1.5)], images, ids)
    result = attack_model(
        "lira", cfg, predictor=scaled(1.0), schedule=schedule, images=images, sample_ids=ids,
        is_member=np.arange(6) % 2 == 0, references=refs,
    )  # fmt: skip
    np.testing.assert_array_equal(result.scores, OFFLINE_SCORES_BEFORE_ONLINE[global_variance])


def test_online_lira_is_the_log_likelihood_ratio_of_two_gaussians():
    # s = 1: log N(1; 1, 1) - log N(1; 0, 2^2) = 0 - (-1/8 - log 2)
    one = torch.ones(1, dtype=torch.float64)
    score = online_lira(one, mean_in=one, std_in=one, mean_out=0 * one, std_out=2 * one)
    assert score.item() == pytest.approx(0.125 + np.log(2))


# Four shadow models, three candidates; candidate n is IN for the models where IS_IN[:, n].
SHADOW_VALUES = np.array([[1.0, 5.0, -2.0], [3.0, 4.0, 0.0], [0.0, 2.0, -1.0], [2.0, 1.0, -4.0]])
IS_IN = np.array([[True, True, False], [True, False, True], [False, True, False], [False, False, True]])


@pytest.mark.parametrize("global_variance", [True, False], ids=["pooled", "per-candidate"])
def test_online_in_and_out_gaussians_by_hand(global_variance):
    refs = ReferenceStatistics(np.array([10, 20, 30]), SHADOW_VALUES, statistic="loss", is_in=IS_IN)
    mean_in, std_in, mean_out, std_out = refs.in_out_distributions(np.array([30, 10]), global_variance)
    # candidate 30: IN {0, -4} (mean -2), OUT {-2, -1} (mean -1.5); candidate 10: IN {1, 3}, OUT {0, 2}
    np.testing.assert_allclose(mean_in, [-2.0, 2.0])
    np.testing.assert_allclose(mean_out, [-1.5, 1.0])
    if global_variance:
        # squared deviations from each candidate's mean, over sum(count - 1) = 3 per distribution
        # IN: 10 -> 1 + 1, 20 -> 0.5^2 * 2 (5, 2 around 3.5 -> 2.25 * 2), 30 -> 4 + 4
        pooled_in = np.sqrt((2.0 + 4.5 + 8.0) / 3)
        # OUT: 10 -> 1 + 1, 20 -> (4 - 2.5)^2 + (1 - 2.5)^2 = 4.5, 30 -> 0.25 + 0.25
        pooled_out = np.sqrt((2.0 + 4.5 + 0.5) / 3)
        np.testing.assert_allclose(std_in, [pooled_in] * 2)
        np.testing.assert_allclose(std_out, [pooled_out] * 2)
    else:
        np.testing.assert_allclose(std_in, [np.sqrt(8.0), np.sqrt(2.0)])
        np.testing.assert_allclose(std_out, [np.sqrt(0.5), np.sqrt(2.0)])


@pytest.mark.parametrize("global_variance", [True, False], ids=["pooled", "per-candidate"])
def test_lira_online_scores_the_log_likelihood_ratio_of_the_statistic(global_variance, schedule):
    """The attack end to end: its statistic on the target, IN/OUT Gaussians from the shadow models' statistics."""
    images, ids, is_member = images_and_ids(num=4)
    lira = {"statistic": "sima", "num_reference": 4, "global_variance": global_variance}
    cfg = AttackConfig.from_mapping(
        {"sima": {"timestep": 10, "sweep_timesteps": [], "lp": 2.0}, "lira_online": lira}
    )
    assert cfg.lira_online.mode == "online"
    gains = (0.8, 1.1, 1.5, 0.9)
    is_in = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    refs = reference_statistics(
        cfg, [(scaled(g), schedule) for g in gains], images, ids, attack="lira_online", is_in=is_in
    )
    result = attack_model(
        "lira_online", cfg, predictor=scaled(1.0), schedule=schedule, images=images, sample_ids=ids,
        is_member=is_member, references=refs,
    )  # fmt: skip
    # the hand computation starts from the attack's float32 statistics, checked against numpy first
    values, s = refs.values, np.asarray(result.extra["statistic"])
    np.testing.assert_allclose(values, np.stack([sima_np(images, g) for g in gains]), rtol=1e-5)
    np.testing.assert_allclose(s, sima_np(images, 1.0), rtol=1e-5)
    moments = []
    for mask in (is_in, ~is_in):
        kept = [values[mask[:, n], n] for n in range(4)]
        mean = np.array([v.mean() for v in kept])
        pooled = np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in kept) / sum(v.size - 1 for v in kept))
        own = np.array([v.std(ddof=1) for v in kept])
        moments.append((mean, np.full(4, pooled) if global_variance else own))
    (mu_in, sd_in), (mu_out, sd_out) = moments
    expected = (-0.5 * ((s - mu_in) / sd_in) ** 2 - np.log(sd_in)) - (
        -0.5 * ((s - mu_out) / sd_out) ** 2 - np.log(sd_out)
    )
    np.testing.assert_allclose(result.scores, expected, rtol=1e-9)
    assert sorted(result.extra) == ["reference_mean", "reference_mean_in", "statistic"]
    np.testing.assert_allclose(result.extra["reference_mean"], mu_out, rtol=1e-12)
    np.testing.assert_allclose(result.extra["reference_mean_in"], mu_in, rtol=1e-12)
    # offline references cannot calibrate the online attack, nor online ones the offline attack
    offline = reference_statistics(
        cfg, [(scaled(g), schedule) for g in gains], images, ids, attack="lira_online"
    )
    with pytest.raises(ValueError, match="other mode"):
        build_attack("lira_online", cfg).with_references(offline)
    with pytest.raises(ValueError, match="other mode"):
        build_attack("lira", AttackConfig(lira=LiraConfig(statistic="sima"), sima=cfg.sima)).with_references(
            refs
        )


def test_online_statistics_need_every_candidate_in_and_out():
    with pytest.raises(
        ValueError,
        match=r"^reference statistics: online LiRA needs every candidate IN and OUT of some models$",
    ):
        ReferenceStatistics(
            np.array([1, 2]), np.zeros((2, 2)), statistic="loss", is_in=np.array([[1, 0], [1, 1]])
        )


def test_reference_statistics_store_int64_ids_and_boolean_membership():
    refs = ReferenceStatistics(
        np.array([7, 3], dtype=np.int32),
        SHADOW_VALUES[:, :2],
        statistic="loss",
        is_in=IS_IN[:, :2].astype(int),
    )
    assert refs.sample_ids.dtype == np.int64 and refs.is_in.dtype == bool
    np.testing.assert_array_equal(refs.is_in, IS_IN[:, :2])
    as_bool = ReferenceStatistics(
        np.array([7, 3]), SHADOW_VALUES[:, :2], statistic="loss", is_in=IS_IN[:, :2]
    )
    for got, want in zip(
        refs.in_out_distributions(np.array([3, 7]), False),
        as_bool.in_out_distributions(np.array([3, 7]), False),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)


def test_online_membership_is_checked_per_candidate():
    with pytest.raises(ValueError, match=r"^reference statistics: membership \(2, 3\) for values \(2, 2\)$"):
        ReferenceStatistics(np.array([1, 2]), np.zeros((2, 2)), "loss", is_in=np.ones((2, 3), bool))
    # candidate 2 is OUT of both models: IN somewhere else does not make up for it
    with pytest.raises(ValueError, match="needs every candidate IN and OUT"):
        ReferenceStatistics(np.array([1, 2]), np.zeros((2, 2)), "loss", is_in=np.array([[1, 0], [0, 0]]))


# Five shadow models, two candidates: candidate 1 is IN three times, candidate 2 OUT three times.
THREE_VALUES = np.array([[1.0, 1.0], [2.0, 1.0], [6.0, 4.0], [0.0, 5.0], [2.0, 7.0]])
THREE_IN = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)


@pytest.mark.parametrize("global_variance", [True, False], ids=["pooled", "per-candidate"])
def test_online_gaussians_of_three_statistics_divide_by_two(global_variance):
    """Candidate 1: IN {1, 2, 6} (mean 3, squared deviations 14, over 3 - 1), OUT {0, 2} (mean 1, 2 over 1);
    candidate 2: IN {5, 7} (mean 6, 2 over 1), OUT {1, 1, 4} (mean 2, 6 over 2)."""
    refs = ReferenceStatistics(np.array([1, 2]), THREE_VALUES, statistic="loss", is_in=THREE_IN)
    mean_in, std_in, mean_out, std_out = refs.in_out_distributions(np.array([1, 2]), global_variance)
    np.testing.assert_allclose(mean_in, [3.0, 6.0])
    np.testing.assert_allclose(mean_out, [1.0, 2.0])
    if global_variance:
        np.testing.assert_allclose(std_in, np.sqrt([16 / 3] * 2))
        np.testing.assert_allclose(std_out, np.sqrt([8 / 3] * 2))
    else:
        np.testing.assert_allclose(std_in, np.sqrt([7.0, 2.0]))
        np.testing.assert_allclose(std_out, np.sqrt([2.0, 3.0]))


def test_a_single_in_or_out_statistic_is_pooled_but_has_no_variance_of_its_own():
    """Candidate 1: IN {1} alone, OUT {0, 2}; candidate 2: IN {3, 5}, OUT {4} alone. Pooled: IN 2 / 1, OUT 2 / 1."""
    values, is_in = np.array([[1.0, 3.0], [0.0, 5.0], [2.0, 4.0]]), np.array([[1, 1], [0, 1], [0, 0]], bool)
    refs = ReferenceStatistics(np.array([1, 2]), values, statistic="loss", is_in=is_in)
    mean_in, std_in, mean_out, std_out = refs.in_out_distributions(np.array([1, 2]), global_variance=True)
    np.testing.assert_allclose(mean_in, [1.0, 4.0])
    np.testing.assert_allclose(mean_out, [1.0, 4.0])
    np.testing.assert_allclose(std_in, np.sqrt([2.0, 2.0]))
    np.testing.assert_allclose(std_out, np.sqrt([2.0, 2.0]))
    with pytest.raises(
        ValueError,
        match=r"^lira: a per-candidate variance needs two IN and two OUT statistics per candidate$",
    ):
        refs.in_out_distributions(np.array([1, 2]), global_variance=False)


def test_online_refuses_identical_statistics_counting_the_candidates():
    """Per-candidate IN deviations 0, sqrt(1 / 8) and sqrt(8): one candidate cannot be calibrated."""
    values = np.array([[1.0, 0.0, 0.0], [1.0, 0.5, 4.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    is_in = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0]], bool)
    refs = ReferenceStatistics(np.array([1, 2, 3]), values, statistic="loss", is_in=is_in)
    with pytest.raises(
        ValueError,
        match=r"^lira: the reference models give identical statistics for 1 candidate\(s\), so they cannot "
        r"calibrate them \(are they copies of one model\?\)$",
    ):
        refs.in_out_distributions(np.array([1, 2, 3]), global_variance=False)


def test_online_distributions_need_membership_and_known_candidates():
    offline = ReferenceStatistics(np.array([1, 2]), SHADOW_VALUES[:, :2], statistic="loss")
    with pytest.raises(
        ValueError, match=r"^lira: online LiRA needs which shadow model trained on which candidate \(is_in\)$"
    ):
        offline.in_out_distributions(np.array([1]), global_variance=True)
    refs = ReferenceStatistics(np.array([10, 20, 30]), SHADOW_VALUES, statistic="loss", is_in=IS_IN)
    with pytest.raises(
        ValueError, match=r"^lira: no reference statistic for sample ids \[1, 2, 3, 4, 5\] \(of 6\)$"
    ):
        refs.in_out_distributions(np.array([10, 1, 2, 3, 4, 5, 6]), global_variance=True)
    assert all(a.size == 0 for a in refs.in_out_distributions(np.array([], dtype=np.int64), True))


def test_lira_section_is_the_names_own_and_refuses_another_kind():
    cfg = AttackConfig(lira=LiraConfig(num_reference=3), lira_online=LiraConfig(mode="online"))
    assert lira_section(cfg) is cfg.lira
    assert lira_section(cfg, "lira_online") is cfg.lira_online
    with pytest.raises(ValueError, match=r"^'gsa' is not a LiRA attack \(its section is 'gsa'\)$"):
        lira_section(cfg, "gsa")


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_lira_scores_on_the_images_device(mode, schedule):
    """Images on "meta" (standing in for a GPU): the reference moments are moved beside the statistic."""
    images, ids, _ = images_and_ids(3)
    is_in = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 0]], bool) if mode == "online" else None
    refs = ReferenceStatistics(ids, np.arange(12.0).reshape(4, 3) ** 1.5, "loss", is_in=is_in)
    cfg = AttackConfig(loss=LossAttackConfig(timesteps=(40,)), lira=LiraConfig(mode=mode))
    lira = build_attack("lira", cfg).with_references(refs)
    scores, extra = lira.score_batch(scaled(1.0), schedule, images.to("meta"), ids)
    assert scores.device.type == "meta" and scores.shape == (3,)
    assert {v.device.type for v in extra.values()} == {"meta"}
