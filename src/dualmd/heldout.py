"""Held-out denoising loss: how well a model denoises images it never saw, the utility axis of the frontier.

For every non-member x_0 and every timestep t of a fixed grid, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t)
eps with noise eps drawn from the image's own generator (`dualmd.noise.per_sample_noise` with the timestep as
stream, so the number does not depend on batch size or order), and the loss is the per-pixel mean of
(eps - eps_theta(x_t, t))^2, averaged over the grid. Its mean over the non-members is the model's utility (lower
is better; the training objective evaluated on unseen data), with a 95 % percentile bootstrap interval over
the non-members.

The grid spans the whole diffusion, t_k = floor((k + 1/2) T / K) for k < K, unlike the attacks' few small
timesteps, so that a model is judged on the denoising that sampling needs. DualMD alternates two models and
has no single eps_theta: its held-out loss is not defined (its utility is its samplers' FID and KID).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dualmd.models.adapter import NoisePredictor, Schedule
from dualmd.noise import per_sample_noise


def timestep_grid(num_train_timesteps: int, num: int) -> tuple[int, ...]:
    """`num` evenly spaced timesteps in [0, num_train_timesteps): the midpoints of `num` equal bins."""
    if not 1 <= num <= num_train_timesteps:
        raise ValueError(f"heldout.num_timesteps={num} must be in [1, {num_train_timesteps}]")
    return tuple(int((k + 0.5) * num_train_timesteps / num) for k in range(num))


def per_sample_loss(
    model: NoisePredictor,
    schedule: Schedule,
    images: Tensor,
    sample_ids: np.ndarray,
    timesteps: tuple[int, ...],
    *,
    seed: int,
    batch_size: int = 256,
) -> np.ndarray:
    """Per-image held-out loss (N,) float64: per-pixel eps-MSE averaged over `timesteps` (see module docstring).

    Args:
        images: (N, C, H, W) in [-1, 1], the images the model did not train on.
        sample_ids: (N,) dataset indices; they seed each image's noise.
    """
    if len(images) != len(sample_ids):
        raise ValueError(f"{len(images)} images but {len(sample_ids)} sample ids")
    shape = tuple(images.shape[1:])
    losses = torch.zeros(len(images), dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x_0, ids = images[start : start + batch_size], sample_ids[start : start + batch_size]
            for t in timesteps:
                eps = per_sample_noise(seed, ids, shape, t)
                steps = torch.full((len(x_0),), t, dtype=torch.long)
                pred = model(schedule.q_sample(x_0, steps, eps), steps).float()
                losses[start : start + len(x_0)] += ((pred - eps).double() ** 2).flatten(1).mean(dim=1)
    return (losses / len(timesteps)).numpy()


def mean_interval(values: np.ndarray, num_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean of `values` over `num_bootstrap` resamples with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"need at least two values, got shape {values.shape}")
    if num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (num_bootstrap, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)
