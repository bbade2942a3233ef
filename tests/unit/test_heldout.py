"""Held-out denoising loss: the timestep grid, per-image losses by hand, the interval, the stage's file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from helpers.models import tiny_model_dir

from dualmd.data.datasets import save_images
from dualmd.data.splits import Split, save_split
from dualmd.heldout import mean_interval, per_sample_loss, timestep_grid
from dualmd.models.adapter import Schedule
from dualmd.models.directory import load_predictor, provenance
from dualmd.noise import per_sample_noise
from dualmd.stages.heldout import heldout_loss

SCHEDULE = Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=20))


def test_timestep_grid_is_the_bin_midpoints():
    assert timestep_grid(1000, 10) == (50, 150, 250, 350, 450, 550, 650, 750, 850, 950)
    assert timestep_grid(20, 3) == (3, 10, 16)  # floor(10/3), floor(30/3), floor(50/3)
    assert timestep_grid(20, 20) == tuple(range(20))
    with pytest.raises(ValueError, match="heldout.num_timesteps=21"):
        timestep_grid(20, 21)


def images_and_ids(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g) * 2 - 1, np.array([9, 2, 40, 7, 13][:n])


def test_loss_of_a_zero_predictor_is_the_mean_square_of_each_images_noise():
    images, ids = images_and_ids()
    timesteps = (3, 10)
    losses = per_sample_loss(lambda x, t: torch.zeros_like(x), SCHEDULE, images, ids, timesteps, seed=4)
    expected = np.mean(
        [(per_sample_noise(4, ids, (1, 4, 4), t).double() ** 2).mean(dim=(1, 2, 3)) for t in timesteps], 0
    )
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_loss_of_the_oracle_is_zero_and_of_x_t_is_worked_by_hand():
    """The oracle returns the noise that was added (loss 0); eps_theta(x_t) = x_t leaves the error
    x_t - eps = sqrt(a) x_0 + (sqrt(1 - a) - 1) eps, squared and averaged over the pixels."""
    images, ids = images_and_ids()

    def oracle(x_t, t):
        a = SCHEDULE.alpha_bar(t, x_t)
        return (x_t - a.sqrt() * images) / (1 - a).sqrt()

    assert per_sample_loss(oracle, SCHEDULE, images, ids, (3, 10), seed=0) == pytest.approx(0.0, abs=1e-10)
    a = float(SCHEDULE.alphas_cumprod[10])
    eps = per_sample_noise(0, ids, (1, 4, 4), 10).double()
    by_hand = ((a**0.5 * images.double() + ((1 - a) ** 0.5 - 1) * eps) ** 2).mean(dim=(1, 2, 3))
    losses = per_sample_loss(lambda x, t: x, SCHEDULE, images, ids, (10,), seed=0)
    np.testing.assert_allclose(losses, by_hand.numpy(), rtol=1e-5)


def test_loss_of_an_image_does_not_depend_on_batch_or_order():
    images, ids = images_and_ids()
    model = lambda x, t: 0.5 * x  # noqa: E731
    full = per_sample_loss(model, SCHEDULE, images, ids, (3, 10), seed=1, batch_size=5)
    order = np.array([3, 0, 4, 1, 2])
    shuffled = per_sample_loss(model, SCHEDULE, images[order], ids[order], (3, 10), seed=1, batch_size=2)
    np.testing.assert_array_equal(shuffled, full[order])


def test_mean_interval_by_brute_force_and_degenerate_for_constant_values():
    values = np.array([0.1, 0.4, 0.2, 0.9, 0.3, 0.5])
    rng = np.random.default_rng(3)
    means = [values[rng.integers(0, 6, 6)].mean() for _ in range(200)]
    mean, low, high = mean_interval(values, 200, seed=3)
    assert mean == pytest.approx(0.4, rel=1e-12)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)
    assert mean_interval(np.full(5, 0.25), 50, seed=0) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError, match="at least two"):
        mean_interval(np.array([1.0]), 10, seed=0)


MEMBERS, NONMEMBERS, HALF1, HALF2 = [2, 5, 7, 8], [0, 1, 3, 4, 6, 9], [5, 8], [2, 7]


@pytest.fixture
def stage_inputs(tmp_path):
    rng = np.random.default_rng(0)
    save_images(tmp_path / "images.npz", rng.integers(0, 256, size=(10, 1, 8, 8), dtype=np.uint8))
    split = Split(MEMBERS, NONMEMBERS, HALF1, HALF2, meta={"num_dataset_images": 10})
    save_split(split, tmp_path / "split.npz", tmp_path / "split.json")
    config = {"heldout": {"num_timesteps": 2, "num_bootstrap": 30, "batch_size": 4}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    paths = {
        "config": tmp_path / "config.yaml",
        "images": tmp_path / "images.npz",
        "split": tmp_path / "split.npz",
        "split_meta": tmp_path / "split.json",
    }
    return split, paths


def model_dirs(tmp_path, split, trained_on):
    dirs = {}
    for seed, (name, subset) in enumerate(trained_on.items()):
        dirs[name] = tiny_model_dir(tmp_path / "models" / name, seed)
        (dirs[name] / "metadata.json").write_text(json.dumps(provenance(split, name, subset)))
    return dirs


def test_stage_writes_each_models_loss_on_the_nonmembers(tmp_path, stage_inputs):
    split, paths = stage_inputs
    targets = model_dirs(tmp_path, split, {"baseline": "members", "teacher1": "half1"})
    heldout_loss(targets=targets, out=tmp_path / "heldout.json", **paths)
    out = json.loads((tmp_path / "heldout.json").read_text())
    assert out["sample_ids"] == NONMEMBERS and out["timesteps"] == [5, 15] and out["weights"] == "ema"
    assert set(out["models"]) == {"baseline", "teacher1"}
    images = torch.from_numpy(np.load(paths["images"])["images"][NONMEMBERS]).float() / 127.5 - 1
    for name, path in targets.items():
        predictor, schedule = load_predictor(path, "ema")
        expected = per_sample_loss(predictor, schedule, images, np.array(NONMEMBERS), (5, 15), seed=0)
        row = out["models"][name]
        np.testing.assert_allclose(row["per_sample"], expected, rtol=1e-6)
        assert row["mean"] == pytest.approx(expected.mean()) and row["low"] <= row["mean"] <= row["high"]
    assert out["models"]["baseline"]["mean"] != out["models"]["teacher1"]["mean"]  # two different models


def test_stage_refuses_a_model_trained_on_another_subset(tmp_path, stage_inputs):
    split, paths = stage_inputs
    targets = model_dirs(tmp_path, split, {"teacher1": "members"})
    with pytest.raises(ValueError, match="half1"):
        heldout_loss(targets=targets, out=tmp_path / "heldout.json", **paths)
    assert not (tmp_path / "heldout.json").exists()
