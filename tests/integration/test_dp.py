"""DP-SGD: per-sample gradients of the UNet, the clipped and noised step, Poisson batches, the privacy
accounting, and a DP training run that resumes exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers.models import tiny_unet
from helpers.training import TRAIN, Interrupt, interrupt_at, load_weights, run

from dualmd.train.checkpoint import STATE_FILE
from dualmd.train.dp import DPSpec, make_private
from dualmd.train.loop import PoissonBatches


def per_image_loss(unet, x, t, eps):
    """The loop's loss for a batch: mean squared error over every pixel of every image."""
    return F.mse_loss(unet(x, t).sample, eps)


def batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 1, 8, 8, generator=g),
        torch.randint(0, 20, (n,), generator=g),
        torch.randn(n, 1, 8, 8, generator=g),
    )


def one_by_one(unet, x, t, eps) -> list[list[torch.Tensor]]:
    """Each image's gradient on its own, by autograd."""
    grads = []
    for i in range(len(x)):
        unet.zero_grad()
        per_image_loss(unet, x[i : i + 1], t[i : i + 1], eps[i : i + 1]).backward()
        grads.append([p.grad.detach().clone() for p in unet.parameters()])
    return grads


def test_opacus_per_sample_gradients_of_the_unet_equal_each_image_alone():
    x, t, eps = batch(5)
    expected = one_by_one(tiny_unet(0), x, t, eps)
    spec = DPSpec(
        epsilon=1.0, delta=0.1, max_grad_norm=1.0, sample_rate=0.5, num_steps=1, noise_multiplier=0.0
    )
    unet = tiny_unet(0)
    private, _ = make_private(unet, torch.optim.SGD(unet.parameters(), lr=0.1), spec, expected_batch_size=5)
    per_image_loss(private, x, t, eps).backward()
    for k, p in enumerate(unet.parameters()):
        got = p.grad_sample
        assert got.shape == (5, *p.shape)
        for i in range(5):
            assert torch.allclose(got[i], expected[i][k], atol=1e-5, rtol=1e-4), (k, i)


def test_dp_step_is_the_mean_of_clipped_per_sample_gradients_plus_noise():
    x, t, eps = batch(4, seed=1)
    expected_batch = 8  # the Poisson batch's expected size, not the drawn one, divides the sum
    max_norm = 0.05  # far below the gradient norms here, so every image is clipped
    grads = one_by_one(tiny_unet(0), x, t, eps)
    norms = [torch.sqrt(sum(g.pow(2).sum() for g in gs)) for gs in grads]
    assert min(norms) > 2 * max_norm
    clipped = [
        sum(gs[k] * min(1.0, max_norm / (float(n) + 1e-6)) for gs, n in zip(grads, norms, strict=True))
        for k in range(len(grads[0]))
    ]

    def step_grads(sigma: float, seed: int) -> list[torch.Tensor]:
        unet = tiny_unet(0)
        spec = DPSpec(1.0, 0.1, max_norm, 0.5, 1, sigma)
        private, opt = make_private(unet, torch.optim.SGD(unet.parameters(), lr=0.1), spec, expected_batch)
        per_image_loss(private, x, t, eps).backward()
        torch.manual_seed(seed)
        assert opt.pre_step()  # clip, sum, add noise, scale: what step() does before SGD's update
        return [p.grad.detach().clone() for p in unet.parameters()]

    exact = step_grads(0.0, seed=0)
    for got, want in zip(exact, clipped, strict=True):
        assert torch.allclose(got, want / expected_batch, atol=1e-7, rtol=1e-4)
    noisy = step_grads(2.0, seed=0)
    noise = torch.cat([(a - b).flatten() for a, b in zip(noisy, exact, strict=True)]) * expected_batch
    # N(0, (sigma C)^2) per coordinate, over ~10k coordinates
    assert noise.std().item() == pytest.approx(2.0 * max_norm, rel=0.05)
    assert torch.equal(
        torch.cat([g.flatten() for g in step_grads(2.0, seed=0)]), torch.cat([g.flatten() for g in noisy])
    )


def test_poisson_batches():
    images = torch.arange(200, dtype=torch.float32).view(200, 1, 1, 1)
    source = PoissonBatches(images=images, sample_rate=0.25)
    sizes = [len(source(s, torch.Generator().manual_seed(s))) for s in range(200)]
    assert len(set(sizes)) > 5  # the batch size varies
    assert sum(sizes) / len(sizes) == pytest.approx(50, rel=0.05)
    a, b = (source(0, torch.Generator().manual_seed(7)) for _ in range(2))
    assert torch.equal(a, b) and len(torch.unique(a)) == len(a)  # no image twice in one batch
    with pytest.raises(RuntimeError, match="Poisson batch is empty"):
        PoissonBatches(images=images[:1], sample_rate=1e-9)(3, torch.Generator())


def test_calibration_spends_the_budget():
    loose, tight = (
        DPSpec.calibrate(epsilon=e, num_examples=128, batch_size=32, num_steps=200, max_grad_norm=1.0)
        for e in (50.0, 2.0)
    )
    assert tight.noise_multiplier > loose.noise_multiplier > 0
    for spec in (loose, tight):
        assert spec.delta == 1 / 128 and spec.sample_rate == 0.25
        assert 0.95 * spec.epsilon <= spec.spent_epsilon() <= spec.epsilon * 1.001
    with pytest.raises(ValueError, match="below the number of training images"):
        DPSpec.calibrate(epsilon=1.0, num_examples=16, batch_size=16, num_steps=10, max_grad_norm=1.0)


def test_dp_training_records_its_budget_and_resumes_exactly(tmp_path):
    cfg = replace(TRAIN, hflip=True)
    full = run(tmp_path, "full", cfg, dp_epsilon=8.0)
    dp = full["dp"]
    assert dp["epsilon"] == 8.0 and dp["delta"] == 1 / 32 and dp["max_grad_norm"] == cfg.grad_clip_norm
    assert dp["sample_rate"] == cfg.batch_size / 32 and dp["noise_multiplier"] > 0
    assert dp["spent_epsilon"] <= 8.0 * 1.001 and dp["accountant"] == "rdp"

    with pytest.raises(Interrupt):
        run(tmp_path, "resumed", cfg, dp_epsilon=8.0, on_step=interrupt_at(7))
    assert torch.load(tmp_path / "state_resumed" / STATE_FILE, weights_only=False)["step"] == 5
    resumed = run(tmp_path, "resumed", cfg, dp_epsilon=8.0)
    assert resumed["resumed_from_step"] == 5 and resumed["loss_curve"] == full["loss_curve"]
    for sub in ("unet", "unet_ema"):
        a, b = load_weights(tmp_path / "full", sub), load_weights(tmp_path / "resumed", sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub
        assert not any(k.startswith("_module") for k in a)  # saved as a plain UNet

    run(tmp_path, "plain", cfg)  # the same recipe without DP-SGD
    plain, private = load_weights(tmp_path / "plain", "unet"), load_weights(tmp_path / "full", "unet")
    assert plain.keys() == private.keys()
    assert not any(torch.equal(plain[k], private[k]) for k in plain if k.endswith("weight"))
