"""The loss attack recomputed by hand: -||eps - eps_theta(sqrt(a_t) x_0 + sqrt(1 - a_t) eps, t)||^2, averaged
over the configured timesteps, with a predictor whose output depends on both x_t and t."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.base import per_sample_noise
from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, LossAttackConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def images_and_ids(num: int = 4):
    gen = torch.Generator().manual_seed(11)
    images = torch.rand(num, 1, 4, 4, generator=gen) * 2 - 1
    return images, np.arange(num) * 5 + 2, np.arange(num) % 2 == 0


def expected_losses(schedule, images, ids, seed, timesteps):
    """Per timestep, sum_i (eps - c(t) x_t - d(t))_i^2 with the attack's per-sample noise, in float64."""
    x_0 = images.double().numpy()
    out = {}
    for t in timesteps:
        eps = per_sample_noise(seed, ids, tuple(images.shape[1:]), t).double().numpy()
        a = float(schedule.alphas_cumprod[t])
        x_t = a**0.5 * x_0 + (1 - a) ** 0.5 * eps
        out[t] = ((eps - affine_eps_np(x_t, t)) ** 2).reshape(len(x_0), -1).sum(axis=1)
    return out


def test_loss_score_is_minus_the_mean_squared_error_at_the_noised_point(schedule):
    """Each timestep's extra value is minus the summed squared error at x_t; the score is their mean."""
    images, ids, is_member = images_and_ids()
    cfg = AttackConfig(seed=3, loss=LossAttackConfig(timesteps=(30, 400, 900)))
    model = CheckingPredictor()
    result = build_attack("loss", cfg).run(model, schedule, images, ids, is_member)
    losses = expected_losses(schedule, images, ids, 3, (30, 400, 900))
    assert sorted(result.extra) == ["t30", "t400", "t900"]
    for t, value in losses.items():
        np.testing.assert_allclose(result.extra[f"t{t}"], -value, rtol=1e-5)
    np.testing.assert_allclose(result.scores, -np.mean(list(losses.values()), axis=0), rtol=1e-5)
    # one query per timestep, at that timestep, on the noised image (never on the clean one)
    assert [int(t[0]) for _, t in model.calls] == [30, 400, 900]
    for x, _ in model.calls:
        assert not torch.allclose(x, images)


def test_loss_noise_follows_the_configured_seed(schedule):
    images, ids, is_member = images_and_ids()
    scores = [
        build_attack("loss", AttackConfig(seed=s, loss=LossAttackConfig(timesteps=(100,))))
        .run(CheckingPredictor(), schedule, images, ids, is_member)
        .scores
        for s in (0, 1)
    ]
    np.testing.assert_allclose(scores[1], -expected_losses(schedule, images, ids, 1, (100,))[100], rtol=1e-5)
    assert not np.allclose(scores[0], scores[1])


def test_loss_computes_on_the_images_device(schedule):
    """Noise and timesteps follow the images to their device ("meta" stands in for an accelerator here)."""
    images, ids, _ = images_and_ids(2)
    attack = build_attack("loss", AttackConfig(loss=LossAttackConfig(timesteps=(10, 20))))
    scores, extra = attack.score_batch(CheckingPredictor(), schedule, images.to("meta"), ids)
    assert scores.device.type == "meta" and scores.shape == (2,)
    assert all(v.device.type == "meta" for v in extra.values())


def test_loss_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images, ids, is_member = images_and_ids(2)
    cfg = AttackConfig(loss=LossAttackConfig(timesteps=(5, 1000)))
    with pytest.raises(ValueError, match=r"^attack\.loss\.timesteps: timesteps \[1000\] outside \[0, 1000\)"):
        build_attack("loss", cfg).run(CheckingPredictor(), schedule, images, ids, is_member)
