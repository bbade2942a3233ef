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


def test_timestep_grid_refuses_an_empty_grid_and_accepts_a_single_midpoint():
    with pytest.raises(ValueError, match=r"heldout.num_timesteps=0 must be in \[1, 20\]"):
        timestep_grid(20, 0)
    assert timestep_grid(20, 1) == (10,)
    assert timestep_grid(7, 2) == (1, 5)  # floor(1.75), floor(5.25): midpoints of [0, 3.5) and [3.5, 7)


def test_per_sample_loss_refuses_ids_that_do_not_match_the_images():
    images, ids = images_and_ids()
    with pytest.raises(ValueError, match="5 images but 4 sample ids"):
        per_sample_loss(lambda x, t: x, SCHEDULE, images, ids[:4], (3,), seed=0)


def test_losses_are_double_precision_means_over_the_timesteps():
    """A predictor that answers in float64 still gives the float32 error squared in float64, averaged (not
    summed) over the grid; the result is float64."""
    images, ids = images_and_ids()
    timesteps = (3, 10, 17)
    model = lambda x, t: (0.3 * x).double()  # noqa: E731
    losses = per_sample_loss(model, SCHEDULE, images, ids, timesteps, seed=2, batch_size=2)
    assert losses.dtype == np.float64 and losses.shape == (5,)
    expected = np.zeros(5)
    for t in timesteps:
        eps = per_sample_noise(2, ids, (1, 4, 4), t)
        steps = torch.full((5,), t, dtype=torch.long)
        pred = (0.3 * SCHEDULE.q_sample(images, steps, eps)).double().float()
        expected += ((pred - eps).double() ** 2).flatten(1).mean(dim=1).numpy()
    np.testing.assert_allclose(losses, expected / 3, rtol=1e-12)


def test_mean_interval_refuses_bad_inputs_and_accepts_the_smallest_ones():
    with pytest.raises(ValueError, match=r"need at least two values, got shape \(2, 2\)"):
        mean_interval(np.ones((2, 2)), 10, seed=0)
    with pytest.raises(ValueError, match="num_bootstrap must be >= 1, got 0"):
        mean_interval(np.array([1.0, 2.0]), 0, seed=0)
    mean, low, high = mean_interval(np.array([1.0, 3.0]), 1, seed=0)  # two values, one resample
    assert mean == 2.0 and low == high and low in (1.0, 2.0, 3.0)
    values = [1, 2, 4, 8]  # integers are averaged as floats
    rng = np.random.default_rng(9)
    means = np.array(values, dtype=np.float64)[rng.integers(0, 4, (500, 4))].mean(axis=1)
    assert mean_interval(values, 500, seed=9) == (3.75, *np.percentile(means, [2.5, 97.5]))


def test_mean_interval_percentiles_of_distinct_means_computed_in_double_precision():
    """Ten distinct single-precision losses: the bootstrap means are (nearly) all different, so the 2.5th and
    97.5th percentiles are pinned down; mean and means are computed in float64 from the float32 values."""
    values = np.random.default_rng(1).random(10).astype(np.float32)
    x = values.astype(np.float64)
    rng = np.random.default_rng(5)
    means = x[rng.integers(0, 10, (300, 10))].mean(axis=1)
    mean, low, high = mean_interval(values, 300, seed=5)
    assert mean == x.mean() and mean != float(values.mean())
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=1e-12)
    assert low != pytest.approx(np.percentile(means, 3.5), rel=1e-9)
    assert high != pytest.approx(np.percentile(means, 96.5), rel=1e-9)
