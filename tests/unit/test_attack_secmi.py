"""SecMI's t-error recomputed by hand with a predictor whose output depends on both x and t (a constant one would
round-trip exactly and hide every step): DDIM inversion 0 -> k -> ... -> t, one step up to t + k and back."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.run import build_attack
from dualmd.attacks.secmi import ddim_step, round_trip, t_error, t_error_batch
from dualmd.config.attacks import AttackConfig, SecMIConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def images_and_ids(num: int = 4):
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(num, 1, 4, 4, generator=gen) * 2 - 1
    return images, np.arange(num) * 2 + 9, np.arange(num) % 2 == 0


def ddim_np(schedule, x, s, t):
    a_s, a_t = float(schedule.alphas_cumprod[s]), float(schedule.alphas_cumprod[t])
    eps = affine_eps_np(x, s)
    return a_t**0.5 * (x - (1 - a_s) ** 0.5 * eps) / a_s**0.5 + (1 - a_t) ** 0.5 * eps


def round_trip_np(schedule, x_0, t_sec, k):
    x, current = x_0, 0
    for target in range(k, t_sec - k + 1, k):
        x, current = ddim_np(schedule, x, current, target), target
    x_up = ddim_np(schedule, x, t_sec - k, t_sec)
    return x, ddim_np(schedule, x_up, t_sec, t_sec - k)


def test_round_trip_inverts_steps_up_and_back_as_the_formula(schedule):
    """t_sec = 40, k = 10: inversion 0 -> 10 -> 20 -> 30, up 30 -> 40, back 40 -> 30; five queries in float32."""
    images, _, _ = images_and_ids()
    model = CheckingPredictor()
    x_tilde, x_hat = round_trip(model, schedule, images, SecMIConfig(t_sec=40, k=10))
    want_tilde, want_hat = round_trip_np(schedule, images.double().numpy(), 40, 10)
    np.testing.assert_allclose(x_tilde.numpy(), want_tilde, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_hat.numpy(), want_hat, rtol=1e-5, atol=1e-6)
    assert x_tilde.dtype == x_hat.dtype == torch.float64
    assert [int(t[0]) for _, t in model.calls] == [0, 10, 20, 30, 40]
    assert all(x.dtype == torch.float32 for x, _ in model.calls)  # the model is queried in float32
    torch.testing.assert_close(model.calls[0][0], images)


def test_ddim_step_uses_eps_at_the_source_point_and_both_alphas(schedule):
    x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(1)).double() * 2 - 1
    for s, t in ((0, 15), (15, 400), (400, 15)):
        out = ddim_step(CheckingPredictor(), schedule, x, s, t)
        np.testing.assert_allclose(out.numpy(), ddim_np(schedule, x.numpy(), s, t), rtol=1e-6, atol=1e-7)


def test_secmi_stat_is_minus_the_squared_round_trip_error_and_t_error_agrees_in_batches(schedule):
    images, ids, is_member = images_and_ids(5)
    cfg = AttackConfig(batch_size=2, secmi=SecMIConfig(t_sec=60, k=20))
    want_tilde, want_hat = round_trip_np(schedule, images.double().numpy(), 60, 20)
    expected = ((want_hat - want_tilde) ** 2).reshape(5, -1).sum(axis=1)
    assert (expected > 1e-6).all()  # the predictor changes with t: a visible round-trip error
    result = build_attack("secmi_stat", cfg).run(CheckingPredictor(), schedule, images, ids, is_member)
    np.testing.assert_allclose(result.extra["t_error"], expected, rtol=1e-4)
    np.testing.assert_allclose(result.scores, -expected, rtol=1e-4)
    for batch_size in (2, 5):
        errors = t_error(CheckingPredictor(), schedule, images, cfg.secmi, batch_size)
        assert errors.shape == (5,) and errors.dtype == np.float64
        np.testing.assert_allclose(errors, expected, rtol=1e-4)
    np.testing.assert_allclose(
        t_error_batch(CheckingPredictor(), schedule, images, cfg.secmi).numpy(), expected, rtol=1e-4
    )


def test_secmi_settings_change_the_error_as_the_formula_says(schedule):
    images, ids, is_member = images_and_ids()
    for t_sec, k in ((100, 10), (100, 50), (300, 100)):
        cfg = AttackConfig(secmi=SecMIConfig(t_sec=t_sec, k=k))
        result = build_attack("secmi_stat", cfg).run(CheckingPredictor(), schedule, images, ids, is_member)
        tilde, hat = round_trip_np(schedule, images.double().numpy(), t_sec, k)
        np.testing.assert_allclose(
            result.extra["t_error"], ((hat - tilde) ** 2).reshape(4, -1).sum(1), rtol=1e-4
        )


def test_secmi_computes_on_the_images_device(schedule):
    """Every query's timesteps follow the images to their device ("meta" stands in for a GPU)."""
    images, ids, _ = images_and_ids(2)
    attack = build_attack("secmi_stat", AttackConfig(secmi=SecMIConfig(t_sec=30, k=10)))
    scores, extra = attack.score_batch(CheckingPredictor(), schedule, images.to("meta"), ids)
    assert scores.device.type == "meta" and scores.shape == (2,) and extra["t_error"].device.type == "meta"


def test_secmi_t_sec_must_lie_inside_the_schedule(schedule):
    small = Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=40))
    images, _, _ = images_and_ids(2)
    with pytest.raises(ValueError, match=r"^attack\.secmi\.t_sec=40 must be < the model's 40 steps"):
        round_trip(CheckingPredictor(), small, images, SecMIConfig(t_sec=40, k=10))
    model = CheckingPredictor()
    round_trip(model, small, images, SecMIConfig(t_sec=39, k=13))  # the last timestep is allowed
    assert [int(t[0]) for _, t in model.calls] == [0, 13, 26, 39]


def test_secmi_with_a_stride_of_one_inverts_to_t_sec_minus_one(schedule):
    """k = 1, t_sec = 3: inversion 0 -> 1 -> 2, up 2 -> 3, back 3 -> 2."""
    images, _, _ = images_and_ids(2)
    model = CheckingPredictor()
    x_tilde, x_hat = round_trip(model, schedule, images, SecMIConfig(t_sec=3, k=1))
    assert [int(t[0]) for _, t in model.calls] == [0, 1, 2, 3]
    want_tilde, want_hat = round_trip_np(schedule, images.double().numpy(), 3, 1)
    np.testing.assert_allclose(x_tilde.numpy(), want_tilde, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_hat.numpy(), want_hat, rtol=1e-5, atol=1e-6)


class OnMeta(CheckingPredictor):
    """A predictor that lives on the "meta" device (standing in for a GPU) and records where it is queried."""

    device = "meta"


def test_t_error_queries_the_model_on_its_own_device(schedule):
    images, _, _ = images_and_ids(3)
    model = OnMeta()
    with pytest.raises((NotImplementedError, RuntimeError)):  # a meta tensor holds no numbers to return
        t_error(model, schedule, images, SecMIConfig(t_sec=20, k=10), batch_size=2)
    assert model.calls and all(x.device.type == "meta" for x, _ in model.calls)
