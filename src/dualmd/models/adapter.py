"""The one interface through which attacks, samplers and distillation see a model.

`NoisePredictor` is anything that maps (x_t, t) to the predicted noise eps in
x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps. A diffusers UNet, a fake in tests and the
DualMD pair all satisfy it. The noise schedule travels separately as a `Schedule`.

Gradient-based attacks need the parameters behind a predictor: `eps_network` gives them as an `nn.Module` with
the same (x_t, t) -> eps signature, for `torch.func.functional_call`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel


class NoisePredictor(Protocol):
    """Predicts eps. Shapes: x_t (B, C, H, W) float, t (B,) long -> (B, C, H, W)."""

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Schedule:
    """The DDPM noise schedule as a value object (0-indexed: alpha_bar[0] = 1 - beta_0, as in SecMI/PIA).

    Attributes:
        alphas_cumprod: (T,) float64 tensor of alpha_bar_t on the CPU.
    """

    alphas_cumprod: Tensor

    @classmethod
    def from_scheduler(cls, scheduler: DDPMScheduler) -> Schedule:
        return cls(scheduler.alphas_cumprod.detach().to(torch.float64).cpu())

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        """alpha_bar at integer timesteps `t` (B,), shaped (B, 1, 1, 1) with `like`'s dtype and device."""
        a = self.alphas_cumprod.to(like.device)[t.to(like.device).long()]
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x_0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM Eq. 4). Shapes (B, C, H, W)."""
        a = self.alpha_bar(t, x_0)
        return a.sqrt() * x_0 + (1 - a).sqrt() * eps


class UNetPredictor:
    """Adapts a diffusers `UNet2DModel` to `NoisePredictor` (no gradient, eval mode).

    Two fast paths of the forward (config keys ``compile`` and ``mixed_precision`` of sample/attack, and
    ``train.compile`` for distillation teachers): `compile` runs it through `torch.compile` (the first call of
    each batch shape compiles), `mixed_precision="bf16"` under bf16 autocast. The prediction is returned in
    float32 either way; `unet` itself is left uncompiled (gradient attacks use it through `eps_network`).
    """

    def __init__(self, unet: UNet2DModel, *, compile: bool = False, mixed_precision: str = "no"):
        if mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision: {mixed_precision!r} is not one of ['no', 'bf16']")
        self.unet = unet.eval()
        self.autocast = mixed_precision == "bf16"
        self._forward = torch.compile(unet) if compile else unet

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        dev = self.device
        # nullcontext, not autocast(enabled=False): a caller's autocast (the training loop's) must stay in force
        precision = (
            torch.autocast(dev.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        )
        with precision:
            eps = self._forward(x_t.to(dev), t.to(dev)).sample
        return eps.float().to(x_t.device)


class EpsNetwork(nn.Module):
    """A diffusers UNet as a module (x_t, t) -> eps (its `.sample`); its parameters are named "unet.<name>"."""

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.unet(x_t, t).sample


def eps_network(predictor: NoisePredictor) -> nn.Module:
    """The differentiable module behind `predictor`: a `UNetPredictor`'s UNet, or the predictor itself when it is
    an `nn.Module` (e.g. a test fake). Anything else (the DualMD pair, a wrapper without weights) raises TypeError.
    """
    if isinstance(predictor, UNetPredictor):
        return EpsNetwork(predictor.unet)
    if isinstance(predictor, nn.Module):
        return predictor
    raise TypeError(
        f"{type(predictor).__name__} exposes no network parameters: a gradient attack needs a UNetPredictor "
        "or an nn.Module noise predictor"
    )
