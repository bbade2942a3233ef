"""White-box attacks on a text-to-image model: SecMI, PIA/PIAN and the loss attack on latents, with each image's
caption as the condition.

The attacks are the package's own (`dualmd.attacks`), unchanged: they see a `NoisePredictor` (x_t, t) -> eps and
a `Schedule`. What changes is what they are given:

* the "images" are the latents z_0 = scaling_factor * mu(x_0) of the frozen VAE (the posterior mean, so a score
  does not depend on a latent draw), the space in which the UNet was trained and in which SecMI-LDM and PIA's
  Stable Diffusion code attack;
* the predictor is a `CaptionedPredictor`: the conditional UNet with the text states of the images' captions
  bound to it, one batch at a time (the attack's batches are cut here, so each batch gets its own captions).

The score convention, the per-sample noise (seeded by sample id, so scores do not depend on the batch size) and
the `AttackResult` are those of every other attack, so metrics and reports treat both settings alike.

PIA and PIAN query classifier-free-guided predictions, eps_u + w (eps_c - eps_u) with the empty prompt's eps_u,
when `attack.pia.guidance_scale` w is above 1 (the authors' SD PIA: 7.5). SecMI-NN computes SecMI's error maps of
every latent (each batch with its captions) and trains its classifier on the labelled slice of them, scoring the
rest (`dualmd.attacks.secmi_nn`). GSA, which needs per-sample gradients, is not offered here.

`caption_t_error` is SecMI's statistic alone (the paper's memorization loss, Eq. 8) for pairs of an image and a
prompt, as the memorization-on-prompts stage needs it (`dualmd.text2image.prompt_memorization`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from torch import Tensor

from dualmd import catalog
from dualmd.attacks.base import Attack, ModelAttack, batch_slices, check_labels, train_test_split
from dualmd.attacks.run import build_attack
from dualmd.attacks.secmi import t_error_batch
from dualmd.config.attacks import AttackConfig, SecMIConfig
from dualmd.models.adapter import Schedule
from dualmd.scores import AttackResult
from dualmd.text2image.components import Components, encode_images, encode_prompts
from dualmd.text2image.levers import bf16_autocast

#: The white-box attacks that run on a text-to-image model (kept in the torch-free catalog for the workflow).
WHITEBOX_ATTACKS = catalog.TEXT2IMAGE_WHITEBOX_ATTACKS


class CaptionedPredictor:
    """A conditional UNet as a `NoisePredictor` for one batch: every call uses the bound text states (B, L, D),
    so x_t must hold exactly those B samples, in the same order. With `guidance_scale` w > 1 and the empty
    prompt's states `uncond_states` (B, L, D), the prediction is classifier-free guided: eps_u + w (eps_c - eps_u).
    `mixed_precision="bf16"` runs the UNet under bf16 autocast (refused on a device without bf16); the prediction
    is returned in fp32."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        encoder_hidden_states: Tensor,
        *,
        mixed_precision: str = "no",
        guidance_scale: float = 1.0,
        uncond_states: Tensor | None = None,
    ):
        if mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision: {mixed_precision!r} is not one of ['no', 'bf16']")
        if guidance_scale != 1.0 and (
            uncond_states is None or uncond_states.shape != encoder_hidden_states.shape
        ):
            raise ValueError("a guided prediction needs the empty prompt's states, one per bound caption")
        self.unet = unet.eval()
        self.states = encoder_hidden_states.to(self.device)
        self.autocast = mixed_precision == "bf16"
        self.guidance_scale = guidance_scale
        if guidance_scale != 1.0:  # one UNet call on (empty prompt, caption) pairs, as SD pipelines guide
            self.states = torch.cat([uncond_states.to(self.device), self.states])  # type: ignore[union-attr]

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        guided = self.guidance_scale != 1.0
        bound = len(self.states) // 2 if guided else len(self.states)
        if len(x_t) != bound:
            raise ValueError(f"{len(x_t)} samples but captions bound for {bound}")
        x, steps = x_t.to(self.device), t.to(self.device)
        if guided:
            x, steps = torch.cat([x, x]), torch.cat([steps, steps])
        with bf16_autocast(self.device, self.autocast):  # attack.mixed_precision; eps returned in fp32
            eps = self.unet(x, steps, encoder_hidden_states=self.states).sample.float()
        if guided:
            eps_uncond, eps_cond = eps.chunk(2)
            eps = eps_uncond + self.guidance_scale * (eps_cond - eps_uncond)
        return eps.to(x_t.device)


@torch.no_grad()
def encode_latents(parts: Components, images: Tensor) -> Tensor:
    """Latents (N, 4, H/4, W/4) the UNet sees for images (N, C, H, W) in [-1, 1]: scaled posterior means."""
    mean, _ = encode_images(parts.vae, images)
    return mean * float(parts.vae.config.scaling_factor)


def attack_text2image(
    name: str,
    cfg: AttackConfig,
    *,
    parts: Components,
    images: Tensor,
    captions: Sequence[str],
    sample_ids: np.ndarray,
    is_member: np.ndarray,
    unet: UNet2DConditionModel | None = None,
) -> AttackResult:
    """Run white-box attack `name` on the conditional UNet `unet` (default `parts.unet`).

    Args:
        name: one of WHITEBOX_ATTACKS.
        cfg: the attack section (batch_size, seed and the attack's own parameters).
        parts: the model's VAE, text encoder, tokenizer and training scheduler.
        images: (N, C, H, W) float in [-1, 1]; captions: (N,) the prompt each image is attacked with (the
            original caption: the one a member was trained with, under prompt diversification one of several).
        sample_ids: (N,) distinct non-negative ints seeding per-sample noise; is_member: (N,) bool.
    Returns:
        Per-sample scores, higher = more likely a member, with the attack's extra arrays (secmi_nn: of the
        samples outside its labelled training slice only).
    """
    attack = _text2image_attack(name, cfg)
    ids = np.asarray(sample_ids, dtype=np.int64)
    if not (len(images) == len(captions) == len(ids)):
        raise ValueError(f"{len(images)} images, {len(captions)} captions and {len(ids)} sample ids")
    if len(np.unique(ids)) != len(ids) or (ids < 0).any():
        raise ValueError("sample_ids must be distinct non-negative integers (they seed per-sample noise)")
    labels = check_labels(is_member, len(images))
    unet = unet if unet is not None else parts.unet
    schedule = Schedule.from_scheduler(parts.scheduler)
    latents = encode_latents(parts, images)
    guidance = cfg.pia.guidance_scale if "pia" in catalog.attack(name).reads else 1.0

    def predictor_of(sl: slice) -> CaptionedPredictor:
        """The UNet bound to the captions of batch `sl` (and to the empty prompt, for a guided attack)."""
        uncond = encode_prompts(parts, [""] * len(ids[sl])) if guidance != 1.0 else None
        states = encode_prompts(parts, list(captions[sl]))
        return CaptionedPredictor(
            unet, states, mixed_precision=cfg.mixed_precision, guidance_scale=guidance, uncond_states=uncond
        )

    if not isinstance(attack, ModelAttack):  # secmi_nn: a classifier on the error maps of every latent
        from dualmd.attacks.secmi_nn import error_maps

        train_test_split(labels, cfg.secmi_nn.train_fraction, name)  # refuse before the model runs
        maps = []
        for sl in batch_slices(len(ids), cfg.batch_size):
            predictor = predictor_of(sl)
            batch = latents[sl].to(predictor.device)
            maps.append(error_maps(predictor, schedule, batch, cfg.secmi, len(batch)))
        return attack.classify(torch.cat(maps), ids, labels)  # type: ignore[attr-defined]
    scores, extras = [], []
    for sl in batch_slices(len(ids), cfg.batch_size):
        predictor = predictor_of(sl)
        with torch.no_grad():
            score, extra = attack.score_batch(predictor, schedule, latents[sl].to(predictor.device), ids[sl])
        scores.append(score.double().cpu())
        extras.append({k: v.double().cpu() for k, v in extra.items()})
    extra = {k: torch.cat([e[k] for e in extras]).numpy() for k in extras[0]}
    return AttackResult(ids, labels, torch.cat(scores).numpy(), extra, attack=name)


@torch.no_grad()
def caption_t_error(
    parts: Components,
    images: Tensor,
    captions: Sequence[str],
    cfg: SecMIConfig,
    *,
    batch_size: int,
    unet: UNet2DConditionModel | None = None,
) -> np.ndarray:
    """SecMI's t-error (paper Eq. 8, the paper's memorization loss) of each image's latent with its caption as
    the condition: the `secmi_stat` statistic through a `CaptionedPredictor`.

    Args:
        parts: VAE, text encoder and training scheduler of the model; unet: its UNet (default `parts.unet`).
        images: (N, C, H, W) in [-1, 1]; captions: (N,) the prompt of each.
        cfg: t_sec and the DDIM stride k.
        batch_size: latents per UNet call (each batch binds its captions).
    Returns:
        (N,) float64, positive; lower = the pair (image, caption) is better memorized. Deterministic.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    unet = unet if unet is not None else parts.unet
    schedule = Schedule.from_scheduler(parts.scheduler)
    latents = encode_latents(parts, images)
    errors = []
    for sl in batch_slices(len(images), batch_size):
        predictor = CaptionedPredictor(unet, encode_prompts(parts, list(captions[sl])))
        errors.append(t_error_batch(predictor, schedule, latents[sl].to(predictor.device), cfg).cpu())
    return torch.cat(errors).numpy()


def _text2image_attack(name: str, cfg: AttackConfig) -> Attack:
    if name not in WHITEBOX_ATTACKS:
        raise ValueError(f"{name!r} is not a white-box text-to-image attack; known: {list(WHITEBOX_ATTACKS)}")
    attack = build_attack(name, cfg)
    # every name above is a batched white-box attack but secmi_nn, which classifies the maps of all samples
    assert isinstance(attack, ModelAttack) or hasattr(attack, "classify")
    return attack
