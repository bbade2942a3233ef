"""Recon: black-box reconstruction attack on a sampler (the idea of ReDiffuse: Li, Dong, He & Zhang, "Towards
Black-Box Membership Inference Attack for Diffusion Models", ICML 2025, arXiv 2405.20771; noising then
denoising as in SDEdit, Meng et al., ICLR 2022).

A model denoises its own training images back closer to themselves. The attacker never sees a UNet output; what
it submits and receives depends on the query interface (`attack.recon.interface`):

* ``chain`` (default): the attacker submits a noisy image x_t and a timestep t and receives the output of a
  deterministic DDIM chain of K = num_steps steps s_0 = t > s_1 > ... > s_{K-1} > clean, each step taken by the
  predictor the sampler would use (`dualmd.sample.PredictorSelector`). For query j the attacker noises x_0 itself,
  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps_j with eps_j = `per_sample_noise`(seed, id, stream (t, j)).
  The chain is the attack's own, not the sampler's: with DualMD's 4 steps, teacher 2 always takes the last one.
* ``deployed``: the image-to-image endpoint of the deployed sampler (`dualmd.sample.DeployedSampler`, the
  `sample` section: 50-step DDIM by default, the paper's 1000-step ancestral sampler in config/paper-cifar10.yaml).
  The attacker submits a clean image x_0 and a strength s in (0, 1] and receives one generated image. The sampler
  runs the last k = int(s N) steps of its N-step grid (`dualmd.sample.img2img_start`): it noises x_0 to the grid
  timestep t of step N - k with eps_j = `per_sample_noise`(seed, id, stream (t, j)) and denoises through the
  remaining grid steps as generation does, each step by the model generation gives it (DualMD's teachers
  alternate as in generation); the ancestral sampler draws fresh step noise from a generator seeded per sample,
  `per_sample_generators`(seed, id, stream (t, j, 1)). The attacker controls neither noise: the streams stand for
  the service's randomness, fixed per sample so that scores are reproducible.

Either way the output is clipped to [-1, 1] as the sampler returns images, and

    score(x_0) = -(1/Q) sum_j ||x^_0,j - x_0||_2     (negated: members are reconstructed closer)

Deviation from ReDiffuse, which averages the Q reconstructions and measures one distance: the distances are
averaged, so that Q = 1 and Q > 1 measure the same quantity.

The setting, (t, Q) or (s, Q), comes from small grids (`timesteps` or `strengths`, and `num_queries`): the one with
the highest AUC on the labelled slice (the first `train_fraction` of members and of non-members, the protocol of
secmi_nn and gsa) is used, and only the remaining samples are scored. The sweep, evaluated on the scored part, goes
to `extra`: chain, the score at each t with all queries ("t50", ...); deployed, the score of every strength and
number of queries ("s0.1_q2", `dualmd.scores.strength_key`). Cost per image: chain, len(timesteps) *
max(num_queries) * num_steps predictor calls; deployed, sum_s int(s N) * max(num_queries).
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
    per_sample_generators,
    per_sample_noise,
    register,
    train_test_split,
)
from dualmd.metrics import auc
from dualmd.models.adapter import NoisePredictor, Schedule
from dualmd.sample import DeployedSampler, PredictorSelector, as_selector
from dualmd.scores import strength_key

#: Stream tag of the ancestral sampler's step noise, after (t, j): apart from the initial noise's stream (t, j).
STEP_NOISE_STREAM = 1


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


def deployed_starts(sampler: DeployedSampler, strengths: tuple[float, ...]) -> list[tuple[int, int]]:
    """(grid step, timestep) where a query at each strength starts; strengths that run no step or start at the
    same step are refused, naming `attack.recon.strengths`."""
    try:
        starts = [sampler.start(s) for s in strengths]
    except ValueError as err:
        raise ValueError(f"attack.recon.strengths: {err}") from err
    first = {}
    for s, (step, t) in zip(strengths, starts, strict=True):
        if step in first:
            raise ValueError(
                f"attack.recon.strengths: {first[step]} and {s} both start at step {step} (timestep {t}) of the "
                f"{sampler.num_inference_steps}-step grid; keep one"
            )
        first[step] = s
    return starts


def choose_setting(scores: dict[tuple, np.ndarray], is_member: np.ndarray) -> tuple:
    """The setting ((t, Q) or (s, Q)) whose scores (n,) have the highest AUC against is_member (n,); ties go to
    the first key."""
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
        """Chain interface: ||x^_0 - x_0||_2 of every timestep, query and image, (len(timesteps),
        max(num_queries), N) float64."""
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

    def deployed_distances(
        self, sampler: DeployedSampler, images: Tensor, sample_ids: np.ndarray
    ) -> np.ndarray:
        """Deployed interface: ||x^_0 - x_0||_2 of every strength, query and image through the sampler's
        image-to-image query, (len(strengths), max(num_queries), N) float64."""
        cfg = self.cfg.recon
        starts = deployed_starts(sampler, cfg.strengths)
        grid = sampler.grid()
        device = model_device(as_selector(sampler.selector).assign(grid)[0], images.device)
        shape = tuple(images.shape[1:])
        out = np.zeros((len(cfg.strengths), max(cfg.num_queries), len(images)))
        for sl in batch_slices(len(images), self.cfg.batch_size):
            ids, x_0 = sample_ids[sl], images[sl]
            for i, (strength, (_, t)) in enumerate(zip(cfg.strengths, starts, strict=True)):
                for j in range(out.shape[1]):
                    eps = per_sample_noise(self.cfg.seed, ids, shape, t, j)
                    gens = per_sample_generators(self.cfg.seed, ids, t, j, STEP_NOISE_STREAM)
                    x_hat = sampler.img2img(x_0.to(device), strength, eps, gens)
                    out[i, j, sl] = (x_hat.double() - x_0.double().cpu()).flatten(1).norm(dim=1).numpy()
        return out

    def run(
        self,
        sampler: NoisePredictor | PredictorSelector | DeployedSampler,
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
        is_member: np.ndarray,
    ) -> AttackResult:
        """Choose the setting on the leading slice by AUC, score the rest with it (higher = member).

        Args:
            sampler: the deployed sampler (`DeployedSampler`, needed by the deployed interface), or for the chain
                interface its predictor or selector alone.
            schedule, images, sample_ids, is_member: as every attack's.
        """
        cfg = self.cfg.recon
        ids = check_inputs(images, sample_ids)
        is_member = check_labels(is_member, len(images))
        train, test = train_test_split(is_member, cfg.train_fraction, self.name)
        queries = sorted(set(cfg.num_queries))
        if cfg.interface == "deployed":
            if not isinstance(sampler, DeployedSampler):
                raise ValueError(
                    "attack.recon.interface: 'deployed' queries the sampler on its own step grid; pass a "
                    f"dualmd.sample.DeployedSampler, got {type(sampler).__name__}"
                )
            dist = self.deployed_distances(sampler, images, ids)
            settings = list(cfg.strengths)
        else:
            selector = sampler.selector if isinstance(sampler, DeployedSampler) else sampler
            dist = self.distances(selector, schedule, images, ids)
            settings = list(cfg.timesteps)
        # Negated: members are reconstructed closer, scores are "higher = member".
        scores = {(v, q): -dist[i, :q].mean(axis=0) for i, v in enumerate(settings) for q in queries}
        chosen, q = choose_setting({k: v[train] for k, v in scores.items()}, is_member[train])
        if cfg.interface == "deployed":  # every (s, Q); the chosen s, its start timestep and Q
            extra = {strength_key(s, n): values[test] for (s, n), values in scores.items()}
            chosen_setting = {"strength": chosen, "timestep": sampler.start(chosen)[1], "num_queries": q}
        else:  # every t with all queries; the chosen t and Q
            extra = {f"t{t}": -dist[i].mean(axis=0)[test] for i, t in enumerate(settings)}
            chosen_setting = {"timestep": chosen, "num_queries": q}
        extra |= {key: np.full(len(test), float(value)) for key, value in chosen_setting.items()}
        return AttackResult(ids[test], is_member[test], scores[(chosen, q)][test], extra, attack=self.name)
