"""Recon recomputed by hand with a predictor that depends on x and t: the DDIM chain from x_t to the clean image
(clipped to [-1, 1]), the distances of every timestep and query, and the setting chosen on the labelled slice,
which here differs from the one the scored part would pick."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor, affine_eps_np

from dualmd.attacks.base import per_sample_noise, train_test_split
from dualmd.attacks.recon import chain_timesteps, choose_setting, reconstruct
from dualmd.attacks.run import attack_sampler
from dualmd.config.attacks import AttackConfig, ReconConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def reconstruct_np(schedule, x, t, num_steps):
    chain = [t - (i * t) // num_steps for i in range(num_steps)]
    alphas = [float(schedule.alphas_cumprod[s]) for s in chain] + [1.0]
    for i, s in enumerate(chain):
        eps = affine_eps_np(x, s)
        x0_hat = (x - (1 - alphas[i]) ** 0.5 * eps) / alphas[i] ** 0.5
        x = alphas[i + 1] ** 0.5 * x0_hat + (1 - alphas[i + 1]) ** 0.5 * eps
    return np.clip(x, -1, 1)


def test_reconstruct_runs_the_ddim_chain_and_clips(schedule):
    x_t = torch.linspace(-3, 3, 32, dtype=torch.float64).view(2, 1, 4, 4)
    model = CheckingPredictor()
    out = reconstruct(model, schedule, x_t, 90, 3)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(
        out.numpy(), reconstruct_np(schedule, x_t.numpy(), 90, 3), rtol=1e-5, atol=1e-6
    )
    assert (out == 1).any() and (out == -1).any() and ((out > -1) & (out < 1)).any()  # the clipping shows
    assert [int(t[0]) for _, t in model.calls] == [90, 60, 30]
    assert all(x.dtype == torch.float32 for x, _ in model.calls)


def test_chain_timesteps_floor_the_even_spacing():
    assert chain_timesteps(10, 3) == [10, 7, 4]
    assert chain_timesteps(9, 9) == list(range(9, 0, -1))


def test_choose_setting_takes_the_highest_auc_anywhere_in_the_grid():
    is_member = np.array([True, False, True, False])
    scores = {
        (10, 1): np.array([0.2, 0.1, 0.3, 0.4]),  # AUC 0.5
        (10, 2): np.array([0.9, 0.1, 0.8, 0.2]),  # AUC 1
        (20, 1): np.array([0.1, 0.9, 0.2, 0.8]),  # AUC 0
    }
    assert choose_setting(scores, is_member) == (10, 2)


def test_recon_scores_the_rest_with_the_setting_that_wins_on_the_labelled_slice(schedule):
    gen = torch.Generator().manual_seed(16)
    images = torch.rand(12, 1, 4, 4, generator=gen) * 1.6 - 0.8
    ids = np.arange(12) * 5 + 1
    is_member = np.array([True, False] * 6)
    recon = ReconConfig(timesteps=(30, 200), num_queries=(3, 1, 3), num_steps=2, train_fraction=0.5)
    cfg = AttackConfig(seed=16, batch_size=5, recon=recon)
    result = attack_sampler(
        "recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=images, sample_ids=ids,
        is_member=is_member,
    )  # fmt: skip
    x_0 = images.double().numpy()
    dist = np.zeros((2, 3, 12))
    for i, t in enumerate((30, 200)):
        a = float(schedule.alphas_cumprod[t])
        for j in range(3):
            eps = per_sample_noise(16, ids, (1, 4, 4), t, j).double().numpy()
            x_hat = reconstruct_np(schedule, a**0.5 * x_0 + (1 - a) ** 0.5 * eps, t, 2)
            dist[i, j] = np.linalg.norm((x_hat - x_0).reshape(12, -1), axis=1)
    scores = {(t, q): -dist[i, :q].mean(axis=0) for i, t in enumerate((30, 200)) for q in (1, 3)}
    train, test = train_test_split(is_member, 0.5, "recon")
    assert choose_setting({k: v[train] for k, v in scores.items()}, is_member[train]) == (30, 3)
    assert choose_setting({k: v[test] for k, v in scores.items()}, is_member[test]) == (
        30,
        1,
    )  # not the slice's
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_array_equal(result.is_member, is_member[test])
    np.testing.assert_allclose(result.scores, scores[(30, 3)][test], rtol=1e-5)
    assert set(result.extra["timestep"]) == {30.0} and set(result.extra["num_queries"]) == {3.0}
    assert sorted(result.extra) == ["num_queries", "t200", "t30", "timestep"]
    for i, t in enumerate((30, 200)):
        np.testing.assert_allclose(result.extra[f"t{t}"], -dist[i].mean(axis=0)[test], rtol=1e-5)


def test_recon_refuses_timesteps_outside_the_schedule_naming_its_key(schedule):
    images = torch.zeros(4, 1, 4, 4)
    cfg = AttackConfig(recon=ReconConfig(timesteps=(10, 1000), num_steps=2, train_fraction=0.5))
    with pytest.raises(
        ValueError, match=r"^attack\.recon\.timesteps: timesteps \[1000\] outside \[0, 1000\)"
    ):
        attack_sampler("recon", cfg, sampler=CheckingPredictor(), schedule=schedule, images=images,
                       sample_ids=np.arange(4), is_member=np.array([1, 0, 1, 0]))  # fmt: skip
