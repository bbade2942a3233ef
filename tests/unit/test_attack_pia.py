"""PIA and PIAN recomputed by hand with a predictor whose output depends on both x and t:

eps^ = eps_theta(x_0, 0)   (PIAN: eps^ sqrt(2 / pi) / mean|eps^| per image)
x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps^,   score_t = -sum_i |eps^ - eps_theta(x_t, t)|_i^lp
"""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, PIAConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def images_and_ids(num: int = 4):
    gen = torch.Generator().manual_seed(7)
    images = torch.rand(num, 1, 4, 4, generator=gen) * 2 - 1
    return images, np.arange(num) * 3 + 1, np.arange(num) % 2 == 0


def expected_scores(schedule, images, timesteps, lp, normalize):
    """score_t per timestep, in float64 numpy, for `affine_eps`."""
    x_0 = images.double().numpy()
    eps = affine_eps_np(x_0, 0)
    if normalize:
        eps = (
            eps * math.sqrt(2 / math.pi) / np.abs(eps).reshape(len(x_0), -1).mean(axis=1)[:, None, None, None]
        )
    out = {}
    for t in timesteps:
        a = float(schedule.alphas_cumprod[t])
        x_t = a**0.5 * x_0 + (1 - a) ** 0.5 * eps
        out[t] = -(np.abs(eps - affine_eps_np(x_t, t)) ** lp).reshape(len(x_0), -1).sum(axis=1)
    return out


@pytest.mark.parametrize("name", ["pia", "pian"])
def test_pia_score_matches_the_formula_at_the_attack_timestep_and_the_sweep(name, schedule):
    """The score is taken at attack.pia.timestep (here outside the sweep), the sweep goes to extra; lp = 3."""
    images, ids, is_member = images_and_ids()
    cfg = AttackConfig(pia=PIAConfig(timestep=150, sweep_timesteps=(20, 600), lp=3.0))
    model = CheckingPredictor()
    result = build_attack(name, cfg).run(model, schedule, images, ids, is_member)
    expected = expected_scores(schedule, images, (150, 20, 600), 3.0, normalize=name == "pian")
    np.testing.assert_allclose(result.scores, expected[150], rtol=1e-5)
    assert sorted(result.extra) == ["t20", "t600"]
    for t in (20, 600):
        np.testing.assert_allclose(result.extra[f"t{t}"], expected[t], rtol=1e-5)
    # eps^ from the clean image at t = 0, then one query per distinct timestep, the attack timestep first
    assert [int(t[0]) for _, t in model.calls] == [0, 150, 20, 600]
    torch.testing.assert_close(model.calls[0][0], images)


def test_pia_exponent_follows_the_lp_option(schedule):
    images, ids, is_member = images_and_ids()
    scores = {}
    for lp in (1.0, 2.0, 4.0):
        cfg = AttackConfig(pia=PIAConfig(timestep=300, sweep_timesteps=(), lp=lp))
        scores[lp] = (
            build_attack("pia", cfg).run(CheckingPredictor(), schedule, images, ids, is_member).scores
        )
        np.testing.assert_allclose(
            scores[lp], expected_scores(schedule, images, (300,), lp, False)[300], rtol=1e-5
        )
    assert not np.allclose(scores[1.0], scores[2.0]) and not np.allclose(scores[2.0], scores[4.0])


def test_pia_queries_a_repeated_timestep_once(schedule):
    images, ids, is_member = images_and_ids(2)
    cfg = AttackConfig(pia=PIAConfig(timestep=100, sweep_timesteps=(40, 100, 40)))
    model = CheckingPredictor()
    result = build_attack("pia", cfg).run(model, schedule, images, ids, is_member)
    assert [int(t[0]) for _, t in model.calls] == [0, 100, 40]
    np.testing.assert_array_equal(result.scores, result.extra["t100"])


def test_pian_noise_is_rescaled_per_image():
    """Two images whose raw eps^ differ by a factor 10 get the same rescaled eps^ up to that factor."""
    attack = build_attack("pian", AttackConfig())
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 0.5
    images = torch.cat([x, 10 * x])
    eps = attack.proximal_noise(lambda x, t: x.clone(), images)
    torch.testing.assert_close(eps[0], eps[1])
    torch.testing.assert_close(eps[0], x[0] * math.sqrt(2 / math.pi) / x.abs().mean())


def test_pia_computes_on_the_images_device(schedule):
    """eps^'s timestep and every query follow the images to their device ("meta" stands in for a GPU)."""
    images, ids, _ = images_and_ids(2)
    for name in ("pia", "pian"):
        attack = build_attack(name, AttackConfig(pia=PIAConfig(timestep=50, sweep_timesteps=(10,))))
        scores, extra = attack.score_batch(CheckingPredictor(), schedule, images.to("meta"), ids)
        assert scores.device.type == "meta" and scores.shape == (2,) and extra["t10"].device.type == "meta"


def test_pia_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images, ids, is_member = images_and_ids(2)
    for pia in (
        PIAConfig(timestep=1000, sweep_timesteps=(10,)),
        PIAConfig(timestep=10, sweep_timesteps=(1000,)),
    ):
        with pytest.raises(ValueError, match=r"^attack\.pia: timesteps \[1000\] outside \[0, 1000\)"):
            build_attack("pia", AttackConfig(pia=pia)).run(
                CheckingPredictor(), schedule, images, ids, is_member
            )
