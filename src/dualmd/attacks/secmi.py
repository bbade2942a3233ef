"""SecMI: step-wise error comparing membership inference (Duan et al., ICML 2023, arXiv 2302.01316).

The t-error (paper Eq. 8, also DualMD's memorization score): invert x_0 deterministically with DDIM to
x~_t (t = t_sec - k), take one more inversion step to t_sec and one deterministic denoising step back, and
measure how far the round trip lands from x~_t:

    x~_t = Phi(x_0, t)            DDIM inversion 0 -> k -> 2k -> ... -> t   (first call eps(x_0, 0))
    x^_t = psi(phi(x~_t, t), t+k)  one inversion step t -> t+k, one denoising step t+k -> t
    t_error = ||x^_t - x~_t||^2    summed over pixels; members have the lower error

With the defaults t_sec = 100, k = 10 this is 11 UNet calls per image (t = 0, 10, ..., 80 for the inversion,
then 90 and 100), exactly as SecMI's `get_intermediate_results`. alpha_bar is 0-indexed
(alpha_bar[0] = 1 - beta_0), the convention of SecMI and PIA (see `Schedule`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks.base import ModelAttack, batch_slices, model_device, per_sample_sum, register
from dualmd.config.attacks import SecMIConfig
from dualmd.models.adapter import NoisePredictor, Schedule


def ddim_step(model: NoisePredictor, schedule: Schedule, x_s: Tensor, s: int, t: int) -> Tensor:
    """Deterministic DDIM map from timestep s to t (inversion when s < t, denoising when s > t).

    eps = eps_theta(x_s, s); x^_0 = (x_s - sqrt(1 - a_s) eps) / sqrt(a_s); x_t = sqrt(a_t) x^_0 + sqrt(1 - a_t) eps.

    Args:
        model: noise predictor, queried once in float32.
        schedule: 0-indexed alpha_bar.
        x_s: (B, C, H, W); the arithmetic is done in float64 so tiny round-trip errors are not rounding noise.
        s, t: integer timesteps in [0, T).
    Returns:
        x_t (B, C, H, W) float64.
    """
    a_s, a_t = (float(schedule.alphas_cumprod[i]) for i in (s, t))
    steps = torch.full((len(x_s),), s, dtype=torch.long, device=x_s.device)
    eps = model(x_s.float(), steps).double()
    x0_hat = (x_s.double() - (1.0 - a_s) ** 0.5 * eps) / a_s**0.5
    return a_t**0.5 * x0_hat + (1.0 - a_t) ** 0.5 * eps


def round_trip(
    model: NoisePredictor, schedule: Schedule, x_0: Tensor, cfg: SecMIConfig
) -> tuple[Tensor, Tensor]:
    """SecMI's deterministic inversion and round trip.

    Args:
        x_0: (B, C, H, W) clean images in [-1, 1].
        cfg: t_sec and the DDIM stride k (t_sec a multiple of k, t_sec < T).
    Returns:
        (x~_t, x^_t), both (B, C, H, W) float64 at t = t_sec - k.
    """
    if cfg.t_sec >= schedule.num_train_timesteps:
        raise ValueError(
            f"attack.secmi.t_sec={cfg.t_sec} must be < the model's {schedule.num_train_timesteps} steps"
        )
    t = cfg.t_sec - cfg.k
    x, current = x_0.double(), 0
    for target in range(cfg.k, t + 1, cfg.k):  # 0 -> k -> ... -> t; the first call is eps(x_0, 0)
        x, current = ddim_step(model, schedule, x, current, target), target
    x_up = ddim_step(model, schedule, x, t, t + cfg.k)
    x_back = ddim_step(model, schedule, x_up, t + cfg.k, t)
    return x, x_back


def t_error_batch(model: NoisePredictor, schedule: Schedule, x_0: Tensor, cfg: SecMIConfig) -> Tensor:
    """Per-sample t-error ||x^_t - x~_t||^2 (B,) float64, positive; members tend to have the lower error."""
    x_tilde, x_hat = round_trip(model, schedule, x_0, cfg)
    return per_sample_sum((x_hat - x_tilde) ** 2)


def t_error(
    model: NoisePredictor, schedule: Schedule, images: Tensor, cfg: SecMIConfig, batch_size: int
) -> np.ndarray:
    """t-error (paper Eq. 8) of every image, computed in batches on the model's device.

    Args:
        images: (N, C, H, W) in [-1, 1].
    Returns:
        (N,) float64, positive, deterministic (no randomness involved).
    """
    device = model_device(model, images.device)
    with torch.no_grad():
        parts = [
            t_error_batch(model, schedule, images[sl].to(device), cfg)
            for sl in batch_slices(len(images), batch_size)
        ]
    return torch.cat(parts).cpu().numpy()


@register("secmi_stat")
class SecMIStat(ModelAttack):
    """SecMI_stat: the negated t-error is the score (threshold attack)."""

    def score_batch(self, model, schedule, images, sample_ids):
        err = t_error_batch(model, schedule, images, self.cfg.secmi)
        # Negated: members have the lower round-trip error, and scores are "higher = member".
        return -err, {"t_error": err}
