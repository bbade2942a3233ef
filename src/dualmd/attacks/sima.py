"""SimA: the norm of the predicted noise on the clean image (Rao, Qu & Moyer, "Score-based Membership Inference
on Diffusion Models", arXiv 2509.25003, 2025).

The model is queried once per image, on the clean image itself at a small timestep t (no noise is added: SimA's
DDPM code calls the denoiser on x_0 at t, unlike the Monte-Carlo "Epsilon" variant that first noises x_0):

    norm_t(x_0) = sum_i |eps_theta(x_0, t)_i|^p                  (p = 4, as SimA's code)

A trained denoiser's output points from x towards a kernel-weighted mean of nearby training images, so it is
small on a training image and larger elsewhere: members have the smaller norm, and the score is its negative. The
score is taken at one timestep fixed a priori (`attack.sima.timestep`); the sweep over
`attack.sima.sweep_timesteps` goes to `extra` ("t0", "t10", ...) and is reported apart, as PIA's, so no timestep
is chosen on the evaluation data (SimA's paper reports the best timestep). One UNet call per image and distinct
timestep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dualmd.attacks.base import ModelAttack, check_timesteps, per_sample_sum, register


@register("sima")
class SimA(ModelAttack):
    """Score-norm attack: minus the lp norm (to the p-th power) of eps_theta(x_0, t)."""

    def score_batch(self, model, schedule, images, sample_ids):
        cfg = self.cfg.sima
        check_timesteps((cfg.timestep, *cfg.sweep_timesteps), schedule, "attack.sima")
        by_t: dict[int, Tensor] = {}
        for t in dict.fromkeys((cfg.timestep, *cfg.sweep_timesteps)):  # distinct, attack timestep first
            steps = torch.full((len(images),), t, dtype=torch.long, device=images.device)
            norm = per_sample_sum(model(images, steps).double().abs() ** cfg.lp)
            by_t[t] = -norm  # negated: members have the smaller predicted noise, scores are "higher = member"
        return by_t[cfg.timestep], {f"t{t}": by_t[t] for t in cfg.sweep_timesteps}
