"""Wen et al.'s inference-time mitigation of memorization ("Detecting, Explaining, and Mitigating Memorization in
Diffusion Models", ICLR 2024, §4.2; their `LocalStableDiffusionPipeline.aug_prompt`), a sampler option of
`DualMDStableDiffusionPipeline` (`text2image.mitigation`).

A memorized prompt has a large text-conditional noise magnitude ||eps(x_t, c) - eps(x_t, "")||_2 (the detector of
`dualmd.text2image.prompt_memorization`). At the first DDIM steps the mitigation lowers it by gradient descent on
the prompt's text states c, (L, D) per generation, every token but the first (the start token, which Wen et al.
keep fixed): AdamW (torch's defaults, weight decay 0.01; Wen et al.'s lr 0.05) for at most `max_iterations` steps,
a generation's states frozen as soon as its magnitude is at most `target_loss`. The chain then goes on with the
optimised states as its condition, with classifier-free guidance as usual.

Deviation: Wen et al. optimise one set of states per prompt for its 4 generations together (the norm taken over
all four). Here each generation has its own states and its own magnitude, so that a generation does not depend on
the others in its batch (the package's per-image seeding).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dualmd.config.text2image import MitigationConfig


def text_noise_magnitude(eps_uncond: Tensor, eps_cond: Tensor) -> Tensor:
    """||eps_cond - eps_uncond||_2 of each sample over all its entries: (B, ...) x 2 -> (B,), differentiable."""
    return torch.linalg.vector_norm((eps_cond.float() - eps_uncond.float()).flatten(1), dim=1)


def mitigate_states(
    unet, x_in: Tensor, t: int | Tensor, uncond: Tensor, cond: Tensor, cfg: MitigationConfig
) -> tuple[Tensor, Tensor]:
    """Text states that lower the text-conditional noise magnitude of each generation at x_in and t.

    Args:
        unet: the conditional UNet of this step (called as unet(x, t, encoder_hidden_states=...).sample).
        x_in: (b, 4, h, w) the scaled latents the UNet sees at this step.
        t: the step's timestep.
        uncond: (b, L, D) states of the empty prompt; cond: (b, L, D) the prompts' states.
        cfg: learning rate, iterations and the target magnitude.
    Returns:
        The optimised states (b, L, D), detached, in cond's dtype (the first token unchanged), and the number of
        optimiser steps each generation took (b,) int64 (0: already at or below the target).
    """
    if not len(x_in) == len(uncond) == len(cond):
        raise ValueError(f"{len(x_in)} latents, {len(uncond)} empty-prompt and {len(cond)} prompt states")
    x_in = x_in.detach()
    with torch.no_grad():
        eps_uncond = unet(x_in, t, encoder_hidden_states=uncond).sample.float()
    head = cond[:, :1].detach()
    tail = (
        cond[:, 1:].detach().float().clone().requires_grad_(True)
    )  # the optimised tokens, in fp32 for AdamW
    optimizer = torch.optim.AdamW([tail], lr=cfg.lr)
    done = torch.zeros(len(cond), dtype=torch.bool, device=cond.device)
    steps = torch.zeros(len(cond), dtype=torch.long)
    with torch.enable_grad():  # the pipeline samples under no_grad
        for _ in range(cfg.max_iterations):
            states = torch.cat([head, tail.to(cond.dtype)], dim=1)
            eps_cond = unet(x_in, t, encoder_hidden_states=states).sample
            magnitude = text_noise_magnitude(eps_uncond, eps_cond)
            if cfg.target_loss is not None:
                done |= magnitude.detach() <= cfg.target_loss  # once at the target, a generation stays frozen
            if done.all():
                break
            # a sum of per-generation terms: each generation's tokens get the gradient of its own magnitude
            (grad,) = torch.autograd.grad(magnitude[~done].sum(), [tail])
            before = tail.detach().clone()
            tail.grad = grad
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                tail[done] = before[done]  # AdamW's momentum and weight decay would move them too
            steps += (~done).long().cpu()
    return torch.cat([head, tail.detach().to(cond.dtype)], dim=1), steps
