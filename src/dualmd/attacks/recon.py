"""Recon: black-box reconstruction attack on a sampler (the idea of ReDiffuse: Li, Dong, He & Zhang, "Towards
Black-Box Membership Inference Attack for Diffusion Models", ICML 2025, arXiv 2405.20771; noising then
denoising as in SDEdit, Meng et al., ICLR 2022).

The attacker hands the sampler a noisy image and receives the denoised output (an image-to-image variation
endpoint), never a UNet output. A model denoises its own training images back closer to themselves. For a
candidate x_0, a timestep t and queries j = 1..Q with noise eps_j = `per_sample_noise`(seed, id, stream (t, j)):

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps_j
    x^_0 = the sampler's deterministic DDIM chain s_0 = t > s_1 > ... > s_{K-1} > clean (K = num_steps),
           clipped to [-1, 1] as the sampler returns images
    score_{t,Q}(x_0) = -(1/Q) sum_j ||x^_0 - x_0||_2     (negated: members are reconstructed closer)

Deviation from ReDiffuse, which averages the Q reconstructions and measures one distance: the distances are
averaged, so that Q = 1 and Q > 1 measure the same quantity. The predictor of each step is the sampler's own
choice (`dualmd.sample.PredictorSelector`): one model at every step, or DualMD's two teachers alternating
exactly as its sampler alternates them (`dualmd.defense.dualmd.AlternatingTeachers`).

t and Q come from small grids (`attack.recon.timesteps`, `attack.recon.num_queries`): the setting with the highest
AUC on the labelled slice (the first `train_fraction` of members and of non-members, the protocol of secmi_nn and
gsa) is used, and only the remaining samples are scored. The score at each t with all queries goes to `extra`
("t50", ...), a sweep evaluated on the scored part. Cost: len(timesteps) * max(num_queries) * num_steps sampler
steps per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks.base import (
    Attack,
    AttackResult,
    batch_slices,
    check_inputs,
    check_labels,
    check_timesteps,
    model_device,
    per_sample_noise,
    register,
    train_test_split,
)
from dualmd.metrics import auc
from dualmd.models.adapter import NoisePredictor, Schedule
from dualmd.sample import PredictorSelector, as_selector


def chain_timesteps(t: int, num_steps: int) -> list[int]:
    """The K = num_steps timesteps of the denoising chain from t, evenly spaced: t - floor(i t / K), i < K."""
    return [t - (i * t) // num_steps for i in range(num_steps)]


def reconstruct(
    sampler: NoisePredictor | PredictorSelector, schedule: Schedule, x_t: Tensor, t: int, num_steps: int
) -> Tensor:
    """Deterministic DDIM (eta = 0) from x_t at timestep t to the clean image, one predictor query per step.

    Each step s -> s': eps = eps(x_s, s), x^_0 = (x_s - sqrt(1 - a_s) eps) / sqrt(a_s),
    x_s' = sqrt(a_s') x^_0 + sqrt(1 - a_s') eps, with a = 1 after the last step (diffusers' final alpha).

    Args:
        sampler: a predictor, or a selector choosing the predictor of each step (DualMD's teachers).
        x_t: (B, C, H, W) noisy images.
        t, num_steps: start timestep and number of steps (chain_timesteps).
    Returns:
        (B, C, H, W) float64 reconstructions clipped to [-1, 1].
    """
    chain = chain_timesteps(t, num_steps)
    alphas = [float(schedule.alphas_cumprod[s]) for s in chain] + [1.0]
    x = x_t.double()
    for i, predictor in enumerate(as_selector(sampler).assign(chain)):
        steps = torch.full((len(x),), chain[i], dtype=torch.long, device=x.device)
        eps = predictor(x.float(), steps).double()
        x0_hat = (x - (1.0 - alphas[i]) ** 0.5 * eps) / alphas[i] ** 0.5
        x = alphas[i + 1] ** 0.5 * x0_hat + (1.0 - alphas[i + 1]) ** 0.5 * eps
    return x.clamp(-1.0, 1.0)


def choose_setting(scores: dict[tuple[int, int], np.ndarray], is_member: np.ndarray) -> tuple[int, int]:
    """The (t, Q) whose scores (n,) have the highest AUC against is_member (n,); ties go to the first key."""
    aucs = {key: auc(values, is_member) for key, values in scores.items()}
    return max(aucs, key=aucs.__getitem__)  # max keeps the first of equal values


@register("recon")
class Recon(Attack):
    """Reconstruction distance through the sampler; `run` scores the held-out (1 - train_fraction)."""

    requires = "sampler"

    def distances(
        self,
        sampler: NoisePredictor | PredictorSelector,
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
    ) -> np.ndarray:
        """||x^_0 - x_0||_2 of every timestep, query and image: (len(timesteps), max(num_queries), N) float64."""
        cfg = self.cfg.recon
        check_timesteps(cfg.timesteps, schedule, "attack.recon.timesteps")
        device = model_device(as_selector(sampler).assign([cfg.timesteps[0]])[0], images.device)
        shape = tuple(images.shape[1:])
        out = np.zeros((len(cfg.timesteps), max(cfg.num_queries), len(images)))
        for sl in batch_slices(len(images), self.cfg.batch_size):
            x_0 = images[sl].to(device).double()
            for i, t in enumerate(cfg.timesteps):
                steps = torch.full((len(x_0),), t, dtype=torch.long, device=device)
                for j in range(out.shape[1]):
                    eps = per_sample_noise(self.cfg.seed, sample_ids[sl], shape, t, j).to(device).double()
                    with torch.no_grad():
                        x_hat = reconstruct(
                            sampler, schedule, schedule.q_sample(x_0, steps, eps), t, cfg.num_steps
                        )
                    out[i, j, sl] = (x_hat - x_0).flatten(1).norm(dim=1).cpu().numpy()
        return out

    def run(
        self,
        sampler: NoisePredictor | PredictorSelector,
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
        is_member: np.ndarray,
    ) -> AttackResult:
        """Choose (t, Q) on the leading slice by AUC, score the rest with it (higher = member)."""
        cfg = self.cfg.recon
        ids = check_inputs(images, sample_ids)
        is_member = check_labels(is_member, len(images))
        train, test = train_test_split(is_member, cfg.train_fraction, self.name)
        dist = self.distances(sampler, schedule, images, ids)
        # Negated: members are reconstructed closer, scores are "higher = member".
        scores = {
            (t, q): -dist[i, :q].mean(axis=0)
            for i, t in enumerate(cfg.timesteps)
            for q in sorted(set(cfg.num_queries))
        }
        t, q = choose_setting({k: v[train] for k, v in scores.items()}, is_member[train])
        extra = {f"t{t_i}": -dist[i].mean(axis=0)[test] for i, t_i in enumerate(cfg.timesteps)}
        extra |= {"timestep": np.full(len(test), float(t)), "num_queries": np.full(len(test), float(q))}
        return AttackResult(ids[test], is_member[test], scores[(t, q)][test], extra, attack=self.name)
