"""Train one diffusion model from tensors and write its model directory (weights, scheduler, metadata).

`train_model` serves the baseline and both teachers (paper Algorithm 1); `dualmd.defense.distill` drives the
same `run_and_save` with another batch source and target (Algorithm 2). The loop itself lives in
`dualmd.train.loop`, the resumable state in `dualmd.train.checkpoint`.
The model directory it writes is described in `dualmd.models.directory`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import accelerate
import diffusers
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import UNet2DModel
from torch import Tensor

from dualmd.config.sections import DiffusionConfig, ModelConfig, TrainConfig
from dualmd.models.adapter import NoisePredictor, Schedule, UNetPredictor
from dualmd.models.directory import write_model_dir
from dualmd.models.unet import create_scheduler, create_unet
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import (
    BatchSource,
    PoissonBatches,
    RandomBatches,
    StepInfo,
    TargetFn,
    fit,
    make_accelerator,
    noise_target,
    snapshot_path,
)

if TYPE_CHECKING:
    from dualmd.train.dp import DPSpec

#: Seed of the probe noise: image i always gets the noise of seed PROBE_SEED + i, in every model.
PROBE_SEED = 0


def train_model(
    *,
    images: Tensor,
    probe_members: Tensor,
    probe_nonmembers: Tensor,
    model_cfg: ModelConfig,
    diffusion_cfg: DiffusionConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
    on_step: Callable[[StepInfo], None] | None = None,
    snapshot_steps: tuple[int, ...] = (),
    dp_epsilon: float | None = None,
) -> dict[str, Any]:
    """Train a DDPM from scratch on `images` (Algorithm 1) and write the model directory `out_dir`.

    Args:
        images: (N, C, H, W) float32 in [-1, 1], the training subset (members, D1 or D2).
        probe_members: (M, C, H, W) training images whose denoising loss is probed (at most
            `train_cfg.probe_num_images` are used); probe_nonmembers likewise for held-out images.
        model_cfg, diffusion_cfg, train_cfg: resolved config sections.
        out_dir: model directory to create; it appears atomically when everything is written.
        state_dir: resumable training state (resumed when its run hash matches).
        metadata: caller's provenance (model_id, subset, subset_sha256, split_fingerprint, ...).
        on_step: test hook called after every iteration.
        snapshot_steps: steps after which the weights are kept as ``checkpoints/<step>`` (`run_and_save`).
        dp_epsilon: train with DP-SGD (`dualmd.train.dp`) for (dp_epsilon, 1 / len(images))-DP: Poisson batches
            of expected size train_cfg.batch_size, per-sample clipping at train_cfg.grad_clip_norm.
    Returns:
        The metadata written to `out_dir/metadata.json` (with ``dp``, the privacy parameters, for DP-SGD).
    """
    batches: BatchSource = RandomBatches(
        images=images, batch_size=train_cfg.batch_size, hflip=train_cfg.hflip
    )
    dp = None
    if dp_epsilon is not None:
        from dualmd.train.dp import DPSpec

        dp = DPSpec.calibrate(
            epsilon=dp_epsilon,
            num_examples=len(images),
            batch_size=train_cfg.batch_size,
            num_steps=train_cfg.num_train_steps,
            max_grad_norm=train_cfg.grad_clip_norm,
        )
        batches = PoissonBatches(images=images, sample_rate=dp.sample_rate, hflip=train_cfg.hflip)
    return run_and_save(
        batches=batches,
        target_fn=noise_target,
        image_shape=tuple(images.shape[1:]),
        data={"images_sha256": tensor_sha256(images)},
        probe_members=probe_members,
        probe_nonmembers=probe_nonmembers,
        model_cfg=model_cfg,
        diffusion_cfg=diffusion_cfg,
        train_cfg=train_cfg,
        config={},
        out_dir=out_dir,
        state_dir=state_dir,
        metadata=metadata,
        accelerator=make_accelerator(train_cfg),
        on_step=on_step,
        snapshot_steps=snapshot_steps,
        dp=dp,
    )


def run_and_save(
    *,
    batches: BatchSource,
    target_fn: TargetFn,
    image_shape: tuple[int, ...],
    data: dict[str, Any],
    probe_members: Tensor,
    probe_nonmembers: Tensor,
    model_cfg: ModelConfig,
    diffusion_cfg: DiffusionConfig,
    train_cfg: TrainConfig,
    config: dict[str, Any],
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
    accelerator: Accelerator,
    on_step: Callable[[StepInfo], None] | None = None,
    snapshot_steps: tuple[int, ...] = (),
    dp: DPSpec | None = None,
) -> dict[str, Any]:
    """Train a fresh UNet with `batches`/`target_fn`, probe it and write the model directory.

    `data` identifies the training data (hashes) and `config` holds extra resolved sections (e.g. distill);
    both enter the run hash that decides whether a saved state may be resumed. The weights after each step in
    `snapshot_steps` go to ``checkpoints/<step>/`` of the model directory, each a model directory of its own
    (same provenance, ``checkpoint_step`` and ``num_train_steps`` = that step, no probe or loss curve).
    With `dp` the steps are DP-SGD steps (`dualmd.train.loop.fit`) and the metadata records ``dp``.
    """
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    _check_probe_timesteps(train_cfg.probe_timesteps, diffusion_cfg.num_train_timesteps)
    config = {
        "model": model_cfg.to_dict(),
        "diffusion": diffusion_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        **config,
    }
    set_seed(train_cfg.seed)  # the UNet's random initialisation
    unet = create_unet(model=model_cfg, image_size=height, channels=channels)
    scheduler = create_scheduler(diffusion_cfg)
    description = {"config": _training_relevant(config), "data": data}
    if (
        snapshot_steps
    ):  # a state without the snapshots of its earlier steps cannot serve a run that keeps them
        description["snapshots"] = list(snapshot_steps)
    dp_record = dp.to_dict() if dp is not None else None  # the privacy parameters and the epsilon spent
    if dp_record is not None:
        description["dp"] = dp_record
    hashed = run_hash(description)
    result = fit(
        unet=unet,
        schedule=Schedule.from_scheduler(scheduler),
        batches=batches,
        target_fn=target_fn,
        cfg=train_cfg,
        accelerator=accelerator,
        state_dir=state_dir,
        run_hash=hashed,
        on_step=on_step,
        snapshot_steps=snapshot_steps,
        dp=dp,
    )
    probe = probe_losses(
        UNetPredictor(result.ema_unet),
        Schedule.from_scheduler(scheduler),
        probe_members[: train_cfg.probe_num_images],
        probe_nonmembers[: train_cfg.probe_num_images],
        train_cfg.probe_timesteps,
    )
    meta = {
        **metadata,
        "num_train_steps": train_cfg.num_train_steps,
        "seed": train_cfg.seed,
        "config": config,
        "data": data,
        "loss_curve": result.loss_curve,
        "probe": probe,
        "resumed_from_step": result.start_step,
        **({"dp": dp_record} if dp_record is not None else {}),
        "wall_time_s": round(result.train_time_s, 2),
        "images_per_s": round(result.images_per_s, 1),
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "num_parameters": sum(p.numel() for p in result.unet.parameters()),
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "accelerate": accelerate.__version__,
        },
    }
    if accelerator.is_main_process:
        checkpoints = {}
        for step in snapshot_steps:
            path = snapshot_path(state_dir, hashed, step)
            if not (path / "unet_ema").is_dir():
                raise FileNotFoundError(
                    f"the weights kept after step {step} are missing from {path}; delete {state_dir} to retrain"
                )
            checkpoints[step] = {
                "unet": UNet2DModel.from_pretrained(path / "unet"),
                "ema_unet": UNet2DModel.from_pretrained(path / "unet_ema"),
                "metadata": {
                    **{k: v for k, v in meta.items() if k not in ("loss_curve", "probe", "wall_time_s")},
                    "num_train_steps": step,
                    "checkpoint_step": step,
                    "loss_curve": [p for p in result.loss_curve if p[0] <= step],
                },
            }
        write_model_dir(
            out_dir,
            unet=result.unet,
            ema_unet=result.ema_unet,
            scheduler=scheduler,
            metadata=meta,
            checkpoints=checkpoints,
        )
    accelerator.wait_for_everyone()
    return meta


# Keys that change neither the weights nor the data order: editing them must not invalidate a saved state.
_BOOKKEEPING_KEYS = ("log_every_steps", "checkpoint_every_steps", "probe_timesteps", "probe_num_images")
# The fast paths change the weights by float rounding only, and the state is the same with or without them:
# a run interrupted without them may resume with them (e.g. on another device).
_FAST_PATH_KEYS = ("channels_last", "compile", "fused_adam", "ema_lerp", "data_on_device")


def _training_relevant(config: dict[str, Any]) -> dict[str, Any]:
    ignored = _BOOKKEEPING_KEYS + _FAST_PATH_KEYS
    train = {k: v for k, v in config["train"].items() if k not in ignored}
    return {**config, "train": train}


def _check_probe_timesteps(timesteps: tuple[int, ...], num_train_timesteps: int) -> None:
    bad = [t for t in timesteps if not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(
            f"train.probe_timesteps {bad} are outside [0, {num_train_timesteps}) "
            "(diffusion.num_train_timesteps)"
        )


def fixed_noise(num_images: int, shape: tuple[int, ...], *, seed: int = PROBE_SEED) -> Tensor:
    """Noise (num_images, *shape) where image i's noise depends only on seed + i (not on num_images)."""
    return (
        torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(num_images)]
        )
        if num_images
        else torch.empty(0, *shape)
    )


@torch.no_grad()
def denoising_loss(
    model: NoisePredictor, schedule: Schedule, images: Tensor, t: int, noise: Tensor, *, batch_size: int = 256
) -> float:
    """Mean ||eps - eps_theta(x_t, t)||^2 per pixel over `images` (N, C, H, W) with the given `noise`."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        x_0, eps = images[start : start + batch_size], noise[start : start + batch_size]
        ts = torch.full((len(x_0),), t, dtype=torch.long)
        pred = model(schedule.q_sample(x_0, ts, eps), ts)
        total += float(((pred.float() - eps) ** 2).mean(dim=(1, 2, 3)).sum())
    return total / len(images)


def probe_losses(
    model: NoisePredictor, schedule: Schedule, members: Tensor, nonmembers: Tensor, timesteps: tuple[int, ...]
) -> dict[str, Any]:
    """Overfitting probe: denoising loss of members vs non-members at fixed timesteps and fixed noise.

    Args:
        model: the model probed (the EMA weights in `run_and_save`).
        members, nonmembers: (M, C, H, W) and (K, C, H, W) images in [-1, 1].
        timesteps: 0-indexed diffusion timesteps.
    Returns:
        {timesteps, member_loss, nonmember_loss, gap (= nonmember - member, > 0 when the model overfits),
         mean_gap}; lists are per timestep.
    """
    shape = tuple(members.shape[1:])
    noise_m, noise_n = fixed_noise(len(members), shape), fixed_noise(len(nonmembers), shape)
    member = [denoising_loss(model, schedule, members, t, noise_m) for t in timesteps]
    nonmember = [denoising_loss(model, schedule, nonmembers, t, noise_n) for t in timesteps]
    gap = [n - m for m, n in zip(member, nonmember, strict=True)]
    return {
        "timesteps": list(timesteps),
        "member_loss": member,
        "nonmember_loss": nonmember,
        "gap": gap,
        "mean_gap": sum(gap) / len(gap) if gap else 0.0,
    }
