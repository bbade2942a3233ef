"""DP-SGD (Abadi et al. 2016) for the training loop, through Opacus: the DP-SGD baseline control.

A DP-SGD run is the baseline's recipe (same UNet, steps, Adam, warm-up, EMA) with three changes, which together
make the released weights (epsilon, delta)-differentially private with respect to the training images:

* batches are Poisson samples (`dualmd.train.loop.PoissonBatches`): each image enters each batch
  independently with probability q = batch_size / N, so the batch size varies around batch_size;
* each image's gradient is clipped to norm C (`train.grad_clip_norm`, which bounds the global gradient norm
  in ordinary training) -- Opacus' `GradSampleModule` computes the per-sample gradients;
* Gaussian noise of standard deviation sigma * C is added to the sum of clipped gradients, which is then
  divided by the expected batch size (Opacus' `DPOptimizer` wrapping the run's Adam).

sigma is the smallest noise multiplier whose RDP accounting over all steps gives epsilon at delta = 1 / N
(`DPSpec.calibrate`, Opacus' `get_noise_multiplier`); `DPSpec.spent_epsilon` recomputes the epsilon the run
actually spends from (sigma, q, steps). The EMA of the weights is post-processing and spends no budget.

Opacus' validator finds nothing to replace in the diffusers `UNet2DModel` used here (GroupNorm, not
BatchNorm). Its per-layer hook rules, however, return all-zero per-sample gradients for the weights of the two
convolutions of the ResNet block after the mid-block attention (Opacus 1.6), while the batch gradient is not
zero; the clipped sum would then silently drop those layers. Every layer therefore uses Opacus' functorch rule
(`force_functorch=True`: `torch.func.vmap` over each layer's own gradient), the documented equivalent for
layers without a trusted rule. `tests/integration/test_dp.py` compares each image's gradient from the wrapped
UNet with that image's gradient computed alone, parameter by parameter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

#: Privacy accountant of the noise calibration and of the reported epsilon.
ACCOUNTANT = "rdp"


@dataclass(frozen=True)
class DPSpec:
    """The privacy parameters of one DP-SGD run."""

    epsilon: float  # target budget
    delta: float
    max_grad_norm: float  # per-sample clipping bound C
    sample_rate: float  # Poisson sampling rate q
    num_steps: int
    noise_multiplier: float  # sigma: noise std / C

    @classmethod
    def calibrate(
        cls, *, epsilon: float, num_examples: int, batch_size: int, num_steps: int, max_grad_norm: float
    ) -> DPSpec:
        """The noise multiplier that spends `epsilon` at delta = 1 / num_examples over `num_steps` Poisson
        batches of expected size `batch_size`."""
        from opacus.accountants.utils import get_noise_multiplier

        if batch_size >= num_examples:
            raise ValueError(
                f"DP-SGD needs batch_size ({batch_size}) below the number of training images ({num_examples}): "
                "Poisson sampling with rate 1 gives no privacy amplification"
            )
        rate = batch_size / num_examples
        delta = 1.0 / num_examples
        sigma = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=rate,
            steps=num_steps,
            accountant=ACCOUNTANT,
        )
        return cls(epsilon, delta, max_grad_norm, rate, num_steps, float(sigma))

    def spent_epsilon(self) -> float:
        """epsilon at `delta` of `num_steps` steps with this noise multiplier and sampling rate (RDP)."""
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, self.num_steps)]
        return float(accountant.get_epsilon(self.delta))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accountant": ACCOUNTANT, "spent_epsilon": self.spent_epsilon()}


def make_private(
    unet: torch.nn.Module, optimizer: torch.optim.Optimizer, spec: DPSpec, expected_batch_size: int
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Wrap `unet` for per-sample gradients and `optimizer` for clipping and noise.

    The loss the loop minimises is a mean over the batch, so both use ``loss_reduction="mean"``; the noise is
    drawn from torch's global generator, which the loop's checkpoints save and restore.
    """
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(unet, strict=False)
    if problems:
        raise ValueError(f"Opacus cannot compute per-sample gradients of this model: {problems}")
    private = GradSampleModule(unet, loss_reduction="mean", force_functorch=True)  # see the module docstring
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=spec.noise_multiplier,
        max_grad_norm=spec.max_grad_norm,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
    )
    return private, dp_optimizer


def release(module: torch.nn.Module) -> None:
    """Remove the per-sample gradient hooks and buffers, leaving the plain model (`unwrap(module)`)."""
    close = getattr(module, "_close", None)
    if close is not None:
        close()
