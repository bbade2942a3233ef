"""Loss attack: members have the lower denoising error (Matsumoto et al. 2023; Hu & Pang 2023; PIA's "NA").

For each timestep t in `attack.loss.timesteps`, fresh Gaussian noise eps (seeded by the sample id and t) gives
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps and the loss ||eps - eps_theta(x_t, t)||^2 (summed over
pixels). The score is minus the mean loss over the timesteps; the per-timestep scores go to `extra` ("t50", ...).
One UNet call per image and timestep.
"""

from __future__ import annotations

import torch

from dualmd.attacks.base import ModelAttack, check_timesteps, per_sample_noise, per_sample_sum, register


@register("loss")
class LossAttack(ModelAttack):
    """Naive denoising-loss threshold attack."""

    def score_batch(self, model, schedule, images, sample_ids):
        timesteps = self.cfg.loss.timesteps
        check_timesteps(timesteps, schedule, "attack.loss.timesteps")
        per_t = {}
        for t in timesteps:
            # The timestep is part of the noise stream, so each timestep gets independent noise.
            eps = per_sample_noise(self.cfg.seed, sample_ids, tuple(images.shape[1:]), t).to(images.device)
            steps = torch.full((len(images),), t, dtype=torch.long, device=images.device)
            x_t = schedule.q_sample(images, steps, eps)
            loss = per_sample_sum((eps - model(x_t, steps).float()).double() ** 2)
            per_t[f"t{t}"] = -loss  # negated: members have the lower loss, scores are "higher = member"
        return torch.stack(list(per_t.values())).mean(dim=0), per_t
