"""The one training loop: baseline and teachers (paper Algorithm 1) and the DistillMD student (Algorithm 2).

What differs between the two algorithms is pluggable: a `BatchSource` gives the clean images x_0 of
iteration i, and a `TargetFn` gives the regression target for (x_t, t, eps) -- eps itself for plain DDPM
training (Eq. 3), a teacher's prediction for distillation (Eq. 7). Everything else (optimiser, warm-up,
clipping, EMA, checkpoints, accelerate) is shared.

A conditional model (a text-to-image UNet) trains through the same loop: its batch source returns a
`Conditioned` batch, and the condition (the text encoder's states) is passed to the UNet and to the target as
``encoder_hidden_states``; unconditional batch sources return plain tensors and see no change.

Every random draw of the loop (batch indices, flips, timesteps, noise) comes from ONE CPU generator whose
state is checkpointed, so a resumed run reproduces an uninterrupted one exactly, and every process of a
multi-GPU run draws the same global batch and trains on its own slice of it (results do not depend on the
number of processes).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from torch import Tensor
from tqdm.auto import tqdm

from dualmd.config.sections import TrainConfig
from dualmd.models.adapter import Schedule
from dualmd.train.checkpoint import load_state, save_state

if TYPE_CHECKING:
    from dualmd.train.dp import DPSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conditioned:
    """A batch of a conditional model: clean samples x_0 (B, C, H, W) (images or latents) and the condition
    (B, L, D) the UNet is called with as ``encoder_hidden_states``."""

    x_0: Tensor
    encoder_hidden_states: Tensor


class BatchSource(Protocol):
    """Clean images x_0 (B, C, H, W) in [-1, 1] for iteration `step`, drawn with `generator` only; a conditional
    source returns a `Conditioned` batch instead."""

    def __call__(self, step: int, generator: torch.Generator) -> Tensor | Conditioned: ...


#: (step, x_t, t, eps) -> regression target (B, C, H, W); called without gradient (the stopgrad of Eq. 7).
#: With conditional batches it is also given the condition as the keyword ``encoder_hidden_states``.
TargetFn = Callable[..., Tensor]


def noise_target(step: int, x_t: Tensor, t: Tensor, eps: Tensor, **condition: Tensor) -> Tensor:
    """Plain DDPM training (Algorithm 1): the target is the true noise eps (whatever the condition)."""
    return eps


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """`x` (drawn on the CPU) on `device`, without a host synchronisation: a copy from pageable memory makes
    CUDA wait for the queued kernels, a copy from pinned memory with non_blocking=True does not."""
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def random_hflip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image (B, C, H, W) left-right with probability 1/2 (the draw is on the CPU, like every draw)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(to_device(flip, x.device).view(-1, 1, 1, 1), x.flip(-1), x)


@dataclass(frozen=True)
class RandomBatches:
    """Batches of `batch_size` images drawn uniformly with replacement from `images` (N, C, H, W)."""

    images: Tensor
    batch_size: int
    hflip: bool = False

    def __call__(self, step: int, generator: torch.Generator) -> Tensor:
        idx = torch.randint(len(self.images), (self.batch_size,), generator=generator)
        x_0 = self.images[to_device(idx, self.images.device)]
        return random_hflip(x_0, generator) if self.hflip else x_0

    def to(self, device: torch.device) -> RandomBatches:
        """The same batches, gathered from a copy of the images on `device` (train.data_on_device)."""
        return replace(self, images=self.images.to(device))


@dataclass(frozen=True)
class PoissonBatches:
    """Batches in which each of `images` (N, C, H, W) appears independently with probability `sample_rate`."""

    images: Tensor
    sample_rate: float
    hflip: bool = False

    def __call__(self, step: int, generator: torch.Generator) -> Tensor:
        chosen = torch.rand(len(self.images), generator=generator) < self.sample_rate
        if not chosen.any():
            # Probability (1 - q)^N, about exp(-batch_size): negligible at the default batch of 64, but a batch
            # size of 1 allows it, so it is checked rather than assumed.
            raise RuntimeError(
                f"step {step}: the Poisson batch is empty (rate {self.sample_rate}, {len(self.images)} images); "
                "raise train.batch_size"
            )
        # indices rather than a mask: a mask on the device would need a host sync to size the batch
        x_0 = self.images[to_device(chosen.nonzero().squeeze(1), self.images.device)]
        return random_hflip(x_0, generator) if self.hflip else x_0

    def to(self, device: torch.device) -> PoissonBatches:
        """The same batches, gathered from a copy of the images on `device` (train.data_on_device)."""
        return replace(self, images=self.images.to(device))


@dataclass(frozen=True)
class StepInfo:
    """What one iteration saw (this process's slice of the batch); handed to the `on_step` test hook."""

    step: int
    x_0: Tensor  # (b, C, H, W)
    t: Tensor  # (b,)
    eps: Tensor  # (b, C, H, W)
    target: Tensor  # (b, C, H, W)
    loss: Tensor  # () fp32


@dataclass
class FitResult:
    unet: UNet2DModel  # raw weights, unwrapped
    ema_unet: UNet2DModel  # EMA weights
    loss_curve: list[list[float]]  # [[step, mean loss over the preceding log window], ...]
    start_step: int  # 0, or the step a saved state was resumed at
    train_time_s: float  # all sessions of the run together
    images_per_s: float  # this session


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    """The Accelerator of a run. bf16 autocast applies on the CPU too; fp16 (with its loss scaling) needs CUDA
    and is refused on the CPU rather than silently dropped."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("train.mixed_precision: fp16 needs a CUDA device; use bf16 or 'no' on the CPU")
    return Accelerator(mixed_precision=cfg.mixed_precision)


def fit(
    *,
    unet: UNet2DModel,
    schedule: Schedule,
    batches: BatchSource,
    target_fn: TargetFn,
    cfg: TrainConfig,
    accelerator: Accelerator,
    state_dir: Path,
    run_hash: str,
    on_step: Callable[[StepInfo], None] | None = None,
    snapshot_steps: tuple[int, ...] = (),
    dp: DPSpec | None = None,
    accumulation_steps: int = 1,
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer] | None = None,
) -> FitResult:
    """Run `cfg.num_train_steps` optimiser steps of min ||target - eps_theta(x_t, t)||^2, resuming if possible.

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with t ~ U{0..T-1}, eps ~ N(0, I) (DDPM Eq. 4).
    A state is saved under `state_dir` every `cfg.checkpoint_every_steps` steps and at the end. After each step
    in `snapshot_steps` the raw and EMA weights are saved under `snapshot_path(state_dir, run_hash, step)`,
    where a resumed run finds the snapshots of its earlier sessions.

    `unet` is a `UNet2DModel`, or a `UNet2DConditionModel` when `batches` yields `Conditioned` batches.
    With `dp`, the step is DP-SGD (`dualmd.train.dp`): per-sample clipping at dp.max_grad_norm and Gaussian
    noise replace the global gradient clipping; `batches` should then be Poisson batches of that rate.
    With `accumulation_steps` k > 1 each process's slice of the batch runs forward and backward in k micro-batches
    whose losses are weighted by their share of it, so the gradient, the step and every draw are those of the one
    big batch (to float rounding) at 1/k of its activation memory. `make_optimizer` builds the optimiser from the
    parameters (default: Adam at cfg.lr, the paper's).

    The fast paths of `cfg` (channels_last, compile, fused_adam, ema_lerp, data_on_device) change speed only.
    Whatever they are, a step does not wait for the device: draws reach it through pinned non-blocking copies
    and the loss is summed there, read on the host only at logging steps (fp16's loss scaler excepted).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    # Adam as in the paper (AdamW without weight decay is the same thing); linear warm-up, then constant.
    if make_optimizer is None:
        opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr, fused=cfg.fused_adam or None)
    else:
        opt = make_optimizer(list(unet.parameters()))
    if accumulation_steps < 1:
        raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
    if dp is not None:
        if accumulation_steps > 1:
            raise ValueError(
                "gradient accumulation cannot combine with DP-SGD (per-sample clipping per step)"
            )
        from dualmd.train import dp as dpsgd

        if cfg.compile:
            raise ValueError("train.compile cannot combine with DP-SGD (Opacus' per-sample gradient hooks)")
        if cfg.channels_last and cfg.fused_adam:
            # Opacus writes NCHW gradients for NHWC weights; the fused kernel would pair the wrong elements.
            raise ValueError("train.fused_adam cannot combine with train.channels_last under DP-SGD")
        if accelerator.num_processes > 1:
            raise ValueError(
                "DP-SGD runs in one process (its Poisson batches are not split across processes)"
            )
        unet, opt = dpsgd.make_private(unet, opt, dp, expected_batch_size=cfg.batch_size)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    # The lr schedule is NOT prepared: accelerate would step it once per process, and our step is global.
    unet, opt = accelerator.prepare(unet, opt)
    raw = accelerator.unwrap_model(unet)
    raw = getattr(raw, "_module", raw)  # DP-SGD: the UNet inside Opacus' GradSampleModule
    ema = make_ema(raw, cfg)
    params = list(raw.parameters())
    forward = torch.compile(unet) if cfg.compile else unet  # shares the weights; `unet` stays uncompiled
    if cfg.data_on_device:
        batches = _on_device(batches, accelerator.device)
    run = _Progress(loss_curve=[], window_sum=0.0, window_count=0, elapsed_s=0.0)
    start = _restore(load_state(state_dir, run_hash), raw, ema, opt, lr_sched, gen, run, accelerator.device)
    window = torch.tensor(run.window_sum, device=accelerator.device)
    bar = tqdm(
        total=cfg.num_train_steps,
        initial=start,
        mininterval=30,
        ascii=True,
        file=sys.stderr,
        disable=not accelerator.is_local_main_process,
    )
    session_t0 = time.perf_counter()
    for step in range(start, cfg.num_train_steps):
        x_0, t, eps, condition = _draw(batches, step, gen, schedule.num_train_timesteps, accelerator)
        x_t = schedule.q_sample(x_0, t, eps)
        if cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with accelerator.accumulate(unet), accelerator.autocast():
            with torch.no_grad():
                target = target_fn(step, x_t, t, eps, **condition)
            if accumulation_steps == 1:
                # loss in fp32 under autocast
                loss = F.mse_loss(forward(x_t, t, **condition).sample.float(), target.float())
                accelerator.backward(loss)
            else:
                loss = _accumulate(forward, unet, accelerator, x_t, t, target, condition, accumulation_steps)
            if accelerator.sync_gradients and dp is None:
                accelerator.clip_grad_norm_(unet.parameters(), cfg.grad_clip_norm)
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
        ema_step(ema, params, lerp=cfg.ema_lerp)
        window += loss.detach()  # on the device: no host sync outside logging steps
        run.window_count += 1
        done = step + 1
        bar.update(1)
        if done % cfg.log_every_steps == 0 or done == cfg.num_train_steps:
            _log_window(run, window, done, accelerator, bar)
        if done % cfg.checkpoint_every_steps == 0 or done == cfg.num_train_steps:
            run.window_sum = float(window)
            _checkpoint(state_dir, run_hash, done, raw, ema, opt, lr_sched, gen, run, session_t0, accelerator)
        if done in snapshot_steps and accelerator.is_main_process:
            _snapshot(snapshot_path(state_dir, run_hash, done), raw, ema)
        if on_step is not None:
            on_step(StepInfo(step, x_0, t, eps, target, loss.detach()))
    bar.close()
    if dp is not None:
        dpsgd.release(accelerator.unwrap_model(unet))
    session_s = time.perf_counter() - session_t0
    raw.to(memory_format=torch.contiguous_format)  # the returned models are ordinary NCHW modules
    ema_unet = copy.deepcopy(raw)
    ema.copy_to(ema_unet.parameters())
    steps_run = cfg.num_train_steps - start
    return FitResult(
        unet=raw,
        ema_unet=ema_unet,
        loss_curve=run.loss_curve,
        start_step=start,
        train_time_s=run.elapsed_s + session_s,
        images_per_s=steps_run * cfg.batch_size / session_s if steps_run else 0.0,
    )


def _accumulate(
    forward: Callable[..., Any],
    unet: Any,
    accelerator: Accelerator,
    x_t: Tensor,
    t: Tensor,
    target: Tensor,
    condition: dict[str, Tensor],
    num_micro: int,
) -> Tensor:
    """Forward and backward of x_t (b, C, H, W) in `num_micro` micro-batches; returns the loss of the whole slice.

    The MSE of the slice is the mean over its elements, so micro-batch j's mean loss is weighted by its share of
    the slice (n_j / b) before backward: the summed gradients are those of the whole slice. Only the last
    backward synchronises the processes' gradients (DDP's no_sync before it).
    """
    if len(x_t) % num_micro:
        raise ValueError(f"the batch slice of {len(x_t)} is not divisible into {num_micro} micro-batches")
    total = torch.zeros((), device=x_t.device)
    for j, part in enumerate(torch.arange(len(x_t)).chunk(num_micro)):
        part = part.to(x_t.device)
        cond = {k: v[part] for k, v in condition.items()}
        sync = contextlib.nullcontext() if j == num_micro - 1 else accelerator.no_sync(unet)
        with sync:
            pred = forward(x_t[part], t[part], **cond).sample.float()
            loss = F.mse_loss(pred, target[part].float()) * (len(part) / len(x_t))
            accelerator.backward(loss)
        total = total + loss.detach()
    return total


def make_ema(unet: UNet2DModel, cfg: TrainConfig) -> EMAModel:
    """diffusers' `EMAModel` of `unet`'s parameters with the decay schedule `cfg.ema_schedule`.

    "ramp" is `EMAModel`'s default: update k uses decay 0 for k = 1 (a copy of the weights), then
    min(ema_decay, k / (9 + k)).
    "constant" applies ema_decay from the first step, as the authors' code (an EMA initialised with the
    starting weights): `update_after_step=-1` makes the first update count as step 1 and `min_decay` pins the
    decay.
    """
    if cfg.ema_schedule == "constant":
        return EMAModel(
            unet.parameters(),
            decay=cfg.ema_decay,
            min_decay=cfg.ema_decay,
            update_after_step=-1,
            foreach=True,
        )
    return EMAModel(unet.parameters(), decay=cfg.ema_decay, foreach=True)


@torch.no_grad()
def ema_step(ema: EMAModel, params: list[Tensor], *, lerp: bool) -> None:
    """One EMA update of `ema` towards `params`: shadow <- shadow + (1 - decay) (param - shadow).

    lerp=False is diffusers' `EMAModel.step` (two foreach kernels and a temporary per step); lerp=True the same
    update as one `torch._foreach_lerp_`, with the decay of `EMAModel.get_decay` and the same step count, so
    its state dict is interchangeable (equal to float rounding: lerp may use a fused multiply-add).
    """
    if not lerp:
        ema.step(params)
        return
    ema.optimization_step += 1
    decay = ema.get_decay(ema.optimization_step)
    ema.cur_decay_value = decay
    torch._foreach_lerp_(ema.shadow_params, params, 1.0 - decay)


def _on_device(batches: BatchSource, device: torch.device) -> BatchSource:
    """`batches` drawing from images kept on `device`; a source without a `to(device)` method is refused."""
    move = getattr(batches, "to", None)
    if move is None:
        raise ValueError(
            f"train.data_on_device: the batch source {type(batches).__name__} cannot move its images; "
            "give it a to(device) method or turn the option off"
        )
    return move(device)


def snapshot_path(state_dir: Path, run_hash: str, step: int) -> Path:
    """Folder of the weights a run kept after `step` (unet/ and unet_ema/), beside its resumable state."""
    return Path(state_dir) / f"snapshots-{run_hash[:16]}" / str(step)


def _snapshot(path: Path, raw: UNet2DModel, ema: EMAModel) -> None:
    ema_unet = copy.deepcopy(raw)
    ema.copy_to(ema_unet.parameters())
    tmp = path.parent / f".{path.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    raw.save_pretrained(tmp / "unet")
    ema_unet.save_pretrained(tmp / "unet_ema")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


@dataclass
class _Progress:
    """The bookkeeping of a run that must survive a restart."""

    loss_curve: list[list[float]]
    window_sum: float  # loss summed over the current log window (before the last log line)
    window_count: int
    elapsed_s: float  # training time of earlier sessions


def _draw(
    batches: BatchSource, step: int, gen: torch.Generator, num_timesteps: int, accelerator: Accelerator
) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
    """The global batch's x_0, t, eps and condition keywords, then this process's slice of them, on its device."""
    batch = batches(step, gen)
    x_0, condition = batch, {}
    if isinstance(batch, Conditioned):
        x_0, condition = batch.x_0, {"encoder_hidden_states": batch.encoder_hidden_states}
    t = torch.randint(num_timesteps, (x_0.shape[0],), generator=gen)
    eps = torch.randn(x_0.shape, generator=gen)
    n, rank = accelerator.num_processes, accelerator.process_index
    if x_0.shape[0] % n:
        raise ValueError(f"batch size {x_0.shape[0]} is not divisible by the {n} processes")
    part = slice(rank * x_0.shape[0] // n, (rank + 1) * x_0.shape[0] // n)
    dev = accelerator.device
    condition = {k: to_device(v[part], dev) for k, v in condition.items()}
    return to_device(x_0[part], dev), to_device(t[part], dev), to_device(eps[part], dev), condition


def _log_window(run: _Progress, window: Tensor, done: int, accelerator: Accelerator, bar: tqdm) -> None:
    mean = float(accelerator.reduce(window, reduction="mean")) / run.window_count
    run.loss_curve.append([done, mean])
    window.zero_()
    run.window_count = 0
    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
    log.info("step %d: loss %.5f", done, mean)


def _checkpoint(
    state_dir: Path,
    run_hash: str,
    step: int,
    raw: UNet2DModel,
    ema: EMAModel,
    opt: Any,
    lr_sched: Any,
    gen: torch.Generator,
    run: _Progress,
    session_t0: float,
    accelerator: Accelerator,
) -> None:
    if accelerator.is_main_process:
        save_state(
            state_dir,
            {
                "run_hash": run_hash,
                "step": step,
                "model": raw.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_scheduler": lr_sched.state_dict(),
                "generator": gen.get_state(),
                # Global RNGs matter only for dropout; saved anyway so that dropout > 0 resumes exactly too.
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "loss_curve": run.loss_curve,
                "window_sum": run.window_sum,
                "window_count": run.window_count,
                "elapsed_s": run.elapsed_s + time.perf_counter() - session_t0,
            },
        )
    accelerator.wait_for_everyone()


def _restore(
    state: dict[str, Any] | None,
    raw: UNet2DModel,
    ema: EMAModel,
    opt: Any,
    lr_sched: Any,
    gen: torch.Generator,
    run: _Progress,
    device: torch.device,
) -> int:
    """Load a saved state into the run's objects; return the step to continue from (0 without a state)."""
    if state is None:
        return 0
    raw.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    ema.to(device)
    opt.load_state_dict(state["optimizer"])
    lr_sched.load_state_dict(state["lr_scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.loss_curve = state["loss_curve"]
    run.window_sum, run.window_count = state["window_sum"], state["window_count"]
    run.elapsed_s = state["elapsed_s"]
    return int(state["step"])
