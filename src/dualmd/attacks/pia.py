"""PIA and PIAN: proximal initialization attack (Kong et al., ICLR 2024, arXiv 2305.18355).

The model's own output at t = 0 on the clean image is used as the noise of a deterministic forward point:

    eps^ = eps_theta(x_0, 0)                                   (PIAN: eps^ * sqrt(2/pi) / mean|eps^| per sample)
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps^
    distance_t = sum_i |eps^ - eps_theta(x_t, t)|_i^p           (p = 4)

Members have the smaller distance. The score is taken at one timestep fixed a priori (`attack.pia.timestep`);
the sweep over `attack.pia.sweep_timesteps` goes to `extra` ("t20", ...), reported separately so no timestep is
chosen on the evaluation data. Cost: 1 + (number of distinct timesteps) UNet calls per image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dualmd.attacks.base import ModelAttack, check_timesteps, per_sample_sum, register


class _ProximalInitialization(ModelAttack):
    """PIA with or without PIAN's rescaling of eps^."""

    normalize: bool = False

    def proximal_noise(self, model, images: Tensor) -> Tensor:
        """eps^ = eps_theta(x_0, 0), (B, C, H, W); PIAN rescales it to the mean |.| of a standard normal."""
        eps = model(images, torch.zeros(len(images), dtype=torch.long, device=images.device)).float()
        if self.normalize:
            mean_abs = eps.abs().flatten(1).mean(dim=1).view(-1, *([1] * (eps.dim() - 1)))
            eps = eps * math.sqrt(2.0 / math.pi) / mean_abs
        return eps

    def score_batch(self, model, schedule, images, sample_ids):
        cfg = self.cfg.pia
        check_timesteps((cfg.timestep, *cfg.sweep_timesteps), schedule, "attack.pia")
        eps = self.proximal_noise(model, images)
        by_t: dict[int, Tensor] = {}
        for t in dict.fromkeys((cfg.timestep, *cfg.sweep_timesteps)):  # distinct, attack timestep first
            steps = torch.full((len(images),), t, dtype=torch.long, device=images.device)
            x_t = schedule.q_sample(images, steps, eps)
            distance = per_sample_sum((eps - model(x_t, steps).float()).abs().double() ** cfg.lp)
            by_t[
                t
            ] = -distance  # negated: members are closer to their own trajectory, scores are "higher = member"
        return by_t[cfg.timestep], {f"t{t}": by_t[t] for t in cfg.sweep_timesteps}


@register("pia")
class PIA(_ProximalInitialization):
    """PIA: eps_theta(x_0, 0) used as is."""

    normalize = False


@register("pian")
class PIAN(_ProximalInitialization):
    """PIAN: eps_theta(x_0, 0) rescaled per sample to look like standard-normal noise."""

    normalize = True
