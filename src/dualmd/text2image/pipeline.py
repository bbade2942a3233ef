"""DualMD for text-to-image: two fine-tuned UNets alternate at every DDIM step (paper §3.4 with SD, §4.2).

The teachers, fine-tuned from the same pretrained pipeline on the disjoint halves D1 and D2, share the VAE, the
text encoder, the tokenizer and the scheduler. At step i of the chain one UNet -- teacher 1 or teacher 2, as
`dualmd.defense.dualmd.teacher_sequence` says (default "step_index": i even -> 1, i odd -> 2, the rule of the
authors' SD code) -- gives both the conditional and the unconditional prediction, combined by classifier-free
guidance eps = eps(x, t, "") + s (eps(x, t, prompt) - eps(x, t, "")); the two UNets are never averaged.

Randomness is per image: image i draws its initial latent and its DDIM noise (eta > 0) from a CPU generator
seeded with seed + i, as every sampler of the package, or with seeds[i] when the caller gives one seed per image
(the black-box attack seeds each generation by candidate id).

A caller may watch the two noise predictions of every step (`on_step`, a `StepCallback`): Wen et al.'s (ICLR
2024) memorization detector measures their difference (`dualmd.text2image.prompt_memorization`), and may stop the
chains after their first steps (`stop_after`) when it needs no image. Wen et al.'s inference-time mitigation
(`mitigation`, `dualmd.text2image.mitigation`) optimises each generation's text states at the first steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from PIL import Image
from torch import Tensor

from dualmd.config.text2image import MitigationConfig
from dualmd.defense.dualmd import Alternation, teacher_sequence, to_pil
from dualmd.text2image.mitigation import mitigate_states

#: Called at every denoising step of every batch with (index of the batch's first prompt, step index,
#: eps(x_t, t, "") (b, 4, h, w), eps(x_t, t, prompt) (b, 4, h, w)), before guidance combines them.
StepCallback = Callable[[int, int, Tensor, Tensor], None]


class DualMDStableDiffusionPipeline(DiffusionPipeline):
    """DualMD sampling for Stable-Diffusion-shaped models; saved and loaded with ``save_pretrained`` /
    ``DualMDStableDiffusionPipeline.from_pretrained``.

    Example:
        >>> pipe = DualMDStableDiffusionPipeline.from_teachers("models/teacher1", "models/teacher2")
        >>> images = pipe(["a handwritten digit two"] * 4, num_inference_steps=50, seed=0)  # (4, C, H, W)
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder,
        tokenizer,
        unet1: UNet2DConditionModel,
        unet2: UNet2DConditionModel,
        scheduler: DDIMScheduler,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet1=unet1,
            unet2=unet2,
            scheduler=scheduler,
        )

    @classmethod
    def from_teachers(
        cls, teacher1: str | Path, teacher2: str | Path, *, unet_subfolder: str = "unet"
    ) -> DualMDStableDiffusionPipeline:
        """The pair of two fine-tuned pipeline folders; VAE, text encoder, tokenizer and scheduler come from
        `teacher1`, and must equal `teacher2`'s (ValueError otherwise: the teachers were not fine-tuned from the
        same pretrained pipeline)."""
        from dualmd.text2image.components import load_components

        first, second = load_components(teacher1), load_components(teacher2)
        for name in ("vae", "text_encoder"):
            a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
            if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
                raise ValueError(
                    f"the teachers' {name} weights differ: {teacher1} and {teacher2} do not share it"
                )
        return cls(
            vae=first.vae,
            text_encoder=first.text_encoder,
            tokenizer=first.tokenizer,
            unet1=UNet2DConditionModel.from_pretrained(Path(teacher1) / unet_subfolder).eval(),
            unet2=UNet2DConditionModel.from_pretrained(Path(teacher2) / unet_subfolder).eval(),
            scheduler=DDIMScheduler.from_pretrained(Path(teacher1) / "scheduler"),
        )

    def teacher_sequence(self, num_inference_steps: int, alternation: Alternation = "step_index") -> str:
        """The UNet (1 or 2) of each step of a call with these settings, e.g. "12121"."""
        self.scheduler.set_timesteps(num_inference_steps)
        steps = [int(t) for t in self.scheduler.timesteps]
        return "".join(str(k) for k in teacher_sequence(steps, alternation))

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> Tensor:
        """Text states (B, L, D) of the prompts, padded to the tokenizer's length."""
        ids = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.device))[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        *,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        eta: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        alternation: Alternation = "step_index",
        output_type: Literal["pt", "pil", "latent"] = "pt",
        seeds: Sequence[int] | None = None,
        on_step: StepCallback | None = None,
        mitigation: MitigationConfig | None = None,
        stop_after: int | None = None,
    ) -> Tensor | list[Image.Image]:
        """Generate one image per prompt, the two UNets alternating at every DDIM step.

        Args:
            prompt: a prompt or a list of B prompts.
            num_inference_steps: DDIM steps.
            guidance_scale: classifier-free guidance scale s (1 = no guidance, only the conditional prediction).
            eta: DDIM noise scale (0 = deterministic).
            seed: image i uses a generator seeded with seed + i.
            seeds: one seed per prompt instead (then `seed` is unused); e.g. derived from a sample id.
            batch_size: images per denoising pass (does not change the images).
            alternation: "step_index" or "timestep_parity" (`dualmd.defense.dualmd`).
            output_type: "pt" -> (B, C, H, W) float32 CPU tensor in [-1, 1]; "pil" -> B PIL images;
                "latent" -> the final latents (B, 4, h, w), scaled as the UNet sees them.
            on_step: called with both noise predictions of every step (see `StepCallback`); the unconditional
                one is computed for it even without guidance (scale 1 then gives the conditional prediction).
            mitigation: Wen et al.'s mitigation (`dualmd.text2image.mitigation`): each image's text states are
                optimised at the first `mitigation.num_steps` steps and condition the rest of its chain.
            stop_after: run only the first `stop_after` steps (output_type "latent" only: the latents then are
                those of an unfinished chain), for a caller that needs only the first steps' predictions.
        """
        if output_type not in ("pt", "pil", "latent"):
            raise ValueError(f"unknown output_type {output_type!r}; use 'pt', 'pil' or 'latent'")
        if stop_after is not None and (output_type != "latent" or stop_after < 1):
            raise ValueError("stop_after needs output_type='latent' and at least one step")
        if mitigation is not None and mitigation.num_steps > num_inference_steps:
            raise ValueError(
                f"the mitigation's {mitigation.num_steps} steps exceed the chain's {num_inference_steps}"
            )
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seeds = [seed + i for i in range(len(prompts))] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = [int(t) for t in self.scheduler.timesteps]
        plan = teacher_sequence(timesteps, alternation)
        if stop_after is not None:
            timesteps, plan = timesteps[:stop_after], plan[:stop_after]
        latents = torch.cat(
            [
                self._denoise(
                    prompts[i : i + batch_size],
                    seeds[i : i + batch_size],
                    plan,
                    timesteps,
                    guidance_scale,
                    eta,
                    on_step=None if on_step is None else _offset(on_step, i),
                    mitigation=mitigation,
                )
                for i in range(0, len(prompts), batch_size)
            ]
        )
        if output_type == "latent":
            return latents
        images = torch.cat(
            [
                self.vae.decode(z.to(self.device) / self.vae.config.scaling_factor).sample.float().cpu()
                for z in latents.split(batch_size)
            ]
        ).clamp(-1, 1)
        return images if output_type == "pt" else to_pil(images)

    def _denoise(
        self,
        prompts: list[str],
        seeds: list[int],
        plan: list[int],
        timesteps: list[int],
        guidance_scale: float,
        eta: float,
        on_step: Callable[[int, Tensor, Tensor], None] | None = None,
        mitigation: MitigationConfig | None = None,
    ) -> Tensor:
        """The final latents (b, 4, h, w) on the CPU of b prompts, image j drawn from a generator seeded seeds[j];
        `on_step(step index, eps_uncond, eps_cond)` sees both predictions of every step; `mitigation` optimises
        the prompts' states at its first steps."""
        guided = guidance_scale > 1.0 or on_step is not None or mitigation is not None
        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt([""] * len(prompts)) if guided else None
        states = torch.cat([uncond, cond]) if guided else cond
        config = self.unet1.config
        shape = (1, config.in_channels, config.sample_size, config.sample_size)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        # Drawn image by image on the CPU: an image's noise depends on its seed only, not on batch or device.
        latents = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(self.device)
        latents = latents * self.scheduler.init_noise_sigma
        unets = {1: self.unet1, 2: self.unet2}
        for step, (k, t) in enumerate(zip(plan, timesteps, strict=True)):
            if mitigation is not None and step < mitigation.num_steps:
                scaled = self.scheduler.scale_model_input(latents, t)
                cond, _ = mitigate_states(unets[k], scaled, t, uncond, cond, mitigation)
                states = torch.cat([uncond, cond])
            x_in = torch.cat([latents] * 2) if guided else latents
            x_in = self.scheduler.scale_model_input(x_in, t)
            eps = unets[k](x_in, t, encoder_hidden_states=states).sample
            if guided:
                eps_uncond, eps_cond = eps.chunk(2)
                if on_step is not None:
                    on_step(step, eps_uncond, eps_cond)
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            latents = self.scheduler.step(eps, t, latents, eta=eta, generator=generators).prev_sample
        return latents.float().cpu()


def _offset(on_step: StepCallback, start: int) -> Callable[[int, Tensor, Tensor], None]:
    """`on_step` bound to the batch whose first prompt is number `start`."""
    return lambda step, eps_uncond, eps_cond: on_step(start, step, eps_uncond, eps_cond)


__all__ = ["DualMDStableDiffusionPipeline", "StepCallback"]
