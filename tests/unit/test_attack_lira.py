"""Offline LiRA by hand: (s(x) - mean_k s_k(x)) / sigma(x) with sigma per candidate (ddof 1) or pooled over every
candidate, from reference statistics scored with the attacked model's own noise; and their checks."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import affine_eps, affine_eps_np

from dualmd.attacks.lira import Lira, ReferenceStatistics, reference_statistics
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
        ValueError, match=r"^lira: the reference models give identical statistics for 3 candidate\(s\)"
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
    with pytest.raises(ValueError, match="^lira needs the statistics of its reference models"):
        lira.score_batch(scaled(1.0), schedule, images, ids)
    calibrated = Lira(cfg=AttackConfig(lira=LiraConfig(statistic="pia"))).with_references(refs)
    assert calibrated.references is refs and calibrated.statistic.name == "pia"
    assert lira.references is None  # calibrating returns a new attack
