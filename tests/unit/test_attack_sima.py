"""SimA recomputed by hand: score_t = -sum_i |eps_theta(x_0, t)_i|^lp, queried on the clean image, with a
predictor whose output depends on both x and t."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, SimAConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def images_and_ids(num: int = 4):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(num, 1, 4, 4, generator=gen) * 2 - 1
    return images, np.arange(num) * 4 + 1, np.arange(num) % 2 == 0


def expected(images, t, lp):
    x = images.double().numpy()
    return -(np.abs(affine_eps_np(x, t)) ** lp).reshape(len(x), -1).sum(axis=1)


def test_sima_score_at_the_attack_timestep_outside_the_sweep(schedule):
    images, ids, is_member = images_and_ids()
    cfg = AttackConfig(sima=SimAConfig(timestep=30, sweep_timesteps=(0, 300), lp=3.0))
    model = CheckingPredictor()
    result = build_attack("sima", cfg).run(model, schedule, images, ids, is_member)
    np.testing.assert_allclose(result.scores, expected(images, 30, 3.0), rtol=1e-5)
    assert sorted(result.extra) == ["t0", "t300"]
    for t in (0, 300):
        np.testing.assert_allclose(result.extra[f"t{t}"], expected(images, t, 3.0), rtol=1e-5)
    assert [int(t[0]) for _, t in model.calls] == [30, 0, 300]


def test_sima_exponent_follows_the_lp_option(schedule):
    images, ids, is_member = images_and_ids()
    scores = {}
    for lp in (1.0, 2.0, 4.0):
        cfg = AttackConfig(sima=SimAConfig(timestep=50, sweep_timesteps=(), lp=lp))
        scores[lp] = (
            build_attack("sima", cfg).run(CheckingPredictor(), schedule, images, ids, is_member).scores
        )
        np.testing.assert_allclose(scores[lp], expected(images, 50, lp), rtol=1e-5)
    assert not np.allclose(scores[1.0], scores[2.0]) and not np.allclose(scores[2.0], scores[4.0])


def test_sima_queries_a_repeated_timestep_once(schedule):
    images, ids, is_member = images_and_ids(2)
    cfg = AttackConfig(sima=SimAConfig(timestep=20, sweep_timesteps=(20, 5, 5)))
    model = CheckingPredictor()
    result = build_attack("sima", cfg).run(model, schedule, images, ids, is_member)
    assert [int(t[0]) for _, t in model.calls] == [20, 5]
    np.testing.assert_array_equal(result.scores, result.extra["t20"])


def test_sima_computes_on_the_images_device(schedule):
    images, ids, _ = images_and_ids(2)
    attack = build_attack("sima", AttackConfig(sima=SimAConfig(timestep=10, sweep_timesteps=(10, 40))))
    scores, extra = attack.score_batch(CheckingPredictor(), schedule, images.to("meta"), ids)
    assert scores.device.type == "meta" and scores.shape == (2,) and extra["t40"].device.type == "meta"


def test_sima_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images, ids, is_member = images_and_ids(2)
    for sima in (
        SimAConfig(timestep=1000, sweep_timesteps=()),
        SimAConfig(timestep=1, sweep_timesteps=(1000,)),
    ):
        with pytest.raises(ValueError, match=r"^attack\.sima: timesteps \[1000\] outside \[0, 1000\)"):
            build_attack("sima", AttackConfig(sima=sima)).run(
                CheckingPredictor(), schedule, images, ids, is_member
            )
