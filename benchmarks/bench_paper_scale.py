"""Throughput of the paper's CIFAR-10 setting (config/paper-cifar10.yaml) and the GPU hours it implies.

Trains the paper's UNet for a few steps through the project's own training loop on random 32x32x3 data, times
the denoising forward pass used by sampling at the configured sampling batch size, and extrapolates to
780k steps x 4 models and 25,000 DDPM-1000 samples x 5 samplers. Run it on the GPU you plan to use:

    python benchmarks/bench_paper_scale.py --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from dualmd.config import load_config
from dualmd.models.unet import create_unet
from dualmd.train import train_model

ROOT = Path(__file__).parents[1]


def time_training(cfg, steps: int) -> float:
    """Seconds per optimiser step of the real loop (EMA, clipping, accelerate), after warm-up."""
    train_cfg = replace(
        cfg.train,
        num_train_steps=steps,
        checkpoint_every_steps=steps,
        log_every_steps=max(1, steps // 3),
        probe_timesteps=(100,),
        probe_num_images=8,
        warmup_steps=1,
    )
    images = torch.rand(512, 3, 32, 32) * 2 - 1
    with tempfile.TemporaryDirectory() as tmp:
        meta = train_model(
            images=images,
            probe_members=images[:8],
            probe_nonmembers=images[8:16],
            model_cfg=cfg.model,
            diffusion_cfg=cfg.diffusion,
            train_cfg=train_cfg,
            out_dir=Path(tmp) / "m",
            state_dir=Path(tmp) / "s",
            metadata={"model_id": "bench"},
        )
    return cfg.train.batch_size / meta["images_per_s"]


@torch.no_grad()
def time_forward(cfg, batch: int, device: torch.device, repeats: int = 5) -> float:
    """Seconds per UNet forward at the sampling batch size (one denoising step of one batch)."""
    unet = create_unet(model=cfg.model, image_size=32, channels=3).to(device).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    x = torch.randn(batch, 3, 32, 32, device=device)
    t = torch.full((batch,), 500, device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        unet(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            unet(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/paper-cifar10.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sample-batch", type=int, default=None)
    args = parser.parse_args()
    cfg = load_config(args.config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = sum(p.numel() for p in create_unet(model=cfg.model, image_size=32, channels=3).parameters())
    step_s = time_training(cfg, args.steps)
    batch = args.sample_batch or cfg.sample.batch_size
    fwd_s = time_forward(cfg, batch, device)
    train_h = cfg.train.num_train_steps * step_s / 3600
    sample_h = cfg.sample.num_images / batch * cfg.sample.num_inference_steps * fwd_s / 3600
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    print(f"UNet parameters: {params / 1e6:.2f} M")
    print(
        f"training: {step_s * 1000:.1f} ms/step at batch {cfg.train.batch_size} "
        f"({cfg.train.mixed_precision}); {cfg.train.num_train_steps} steps = {train_h:.1f} h per model"
    )
    print(
        f"sampling: {fwd_s * 1000:.1f} ms per forward at batch {batch}; {cfg.sample.num_images} images x "
        f"{cfg.sample.num_inference_steps} steps = {sample_h:.2f} h per sampler"
    )
    print(
        f"total: 4 models x {train_h:.1f} h (student ~1.3x) + 5 samplers x {sample_h:.2f} h "
        f"~= {3 * train_h + 1.3 * train_h + 5 * sample_h:.0f} GPU-hours on this device"
    )


if __name__ == "__main__":
    main()
