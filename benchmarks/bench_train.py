"""Training-loop overhead benchmark (prints figures; not a test).

For the default model (ModelConfig()) on digits (1x8x8, from scikit-learn, no download) at batch 64:
  * throughput of the training loop (images/s),
  * loop step time / bare UNet step time (forward + MSE + backward + Adam on fixed tensors; goal <= 1.10),
  * DistillMD step time / plain training step time (goal <= 1.40; the teacher forward is the extra cost),
  * with --fast KEY ...: the loop step with those boolean `train` fast paths on (e.g. fused_adam ema_lerp),
    measured interleaved with the plain loop, and its ratio to it.
Usage: OMP_NUM_THREADS=1 python benchmarks/bench_train.py --threads 1 --steps 40 [--fast fused_adam ema_lerp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from dualmd.config.sections import DiffusionConfig, ModelConfig, TrainConfig
from dualmd.defense.distill import AlternatingBatches, CrossTeacherTargets
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet
from dualmd.train.checkpoint import run_hash
from dualmd.train.loop import RandomBatches, StepInfo, fit, make_accelerator, noise_target

WARMUP_STEPS = 5


def digits() -> torch.Tensor:
    """The 1,797 scikit-learn digits as (N, 1, 8, 8) float32 in [-1, 1]."""
    return torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8.0 - 1.0


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a step's time is its own (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step_times(model: ModelConfig, cfg: TrainConfig, num_steps: int) -> list[float]:
    """Seconds per step of the irreducible work: UNet forward, MSE, backward and Adam, on fixed tensors."""
    device = make_accelerator(cfg).device
    unet = create_unet(model=model, image_size=8, channels=1).to(device)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr)
    x_t, eps = (
        torch.randn(cfg.batch_size, 1, 8, 8, device=device),
        torch.randn(cfg.batch_size, 1, 8, 8, device=device),
    )
    t = torch.randint(1000, (cfg.batch_size,), device=device)
    times = []
    for _ in range(num_steps + WARMUP_STEPS):
        t0 = time.perf_counter()
        F.mse_loss(unet(x_t, t).sample, eps).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times[WARMUP_STEPS:]


def loop_step_times(model: ModelConfig, cfg: TrainConfig, num_steps: int, *, distill: bool) -> list[float]:
    """Seconds per iteration of `fit` (plain training or DistillMD with two default-size teachers)."""
    images = digits()
    scheduler = create_scheduler(DiffusionConfig())
    if distill:
        device = make_accelerator(cfg).device
        teachers = [
            UNetPredictor(create_unet(model=model, image_size=8, channels=1).to(device)) for _ in range(2)
        ]
        batches = AlternatingBatches(half1=images[:64], half2=images[64:128], batch_size=cfg.batch_size)
        target_fn = CrossTeacherTargets(teacher1=teachers[0], teacher2=teachers[1])
    else:
        batches, target_fn = RandomBatches(images=images[:128], batch_size=cfg.batch_size), noise_target
    stamps: list[float] = []

    def on_step(info: StepInfo) -> None:
        sync(info.loss.device)
        stamps.append(time.perf_counter())

    cfg = replace(cfg, num_train_steps=num_steps + WARMUP_STEPS + 1)
    with tempfile.TemporaryDirectory() as state_dir:
        fit(
            unet=create_unet(model=model, image_size=8, channels=1),
            schedule=Schedule.from_scheduler(scheduler),
            batches=batches,
            target_fn=target_fn,
            cfg=cfg,
            accelerator=make_accelerator(cfg),
            state_dir=Path(state_dir),
            run_hash=run_hash({"bench": distill}),
            on_step=on_step,
        )
    # The last interval holds the final checkpoint; the first ones warm up.
    kept = stamps[WARMUP_STEPS:-1]
    return [b - a for a, b in zip(kept, kept[1:], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (robust to load)")
    parser.add_argument("--fast", nargs="*", default=[], help="boolean train keys to turn on in a 4th timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = ModelConfig()
    cfg = TrainConfig(batch_size=64, checkpoint_every_steps=10**9, log_every_steps=10**9)
    fast_cfg = TrainConfig.from_mapping({**cfg.to_dict(), **dict.fromkeys(args.fast, True)})
    bare, plain, distill, fast = [], [], [], []
    for _ in range(args.rounds):  # interleaved so that a busy neighbour slows all of them alike
        bare += bare_step_times(model, cfg, args.steps)
        plain += loop_step_times(model, cfg, args.steps, distill=False)
        distill += loop_step_times(model, cfg, args.steps, distill=True)
        if args.fast:
            fast += loop_step_times(model, fast_cfg, args.steps, distill=False)
    b, p, d = (statistics.median(x) for x in (bare, plain, distill))
    params = sum(p.numel() for p in create_unet(model=model, image_size=8, channels=1).parameters())
    print(
        f"model {model.block_out_channels}, {params / 1e3:.0f}k parameters, batch {cfg.batch_size}, "
        f"threads {args.threads}, device {make_accelerator(cfg).device}, median of {len(plain)} steps"
    )
    print(f"bare UNet step        {b * 1e3:7.1f} ms")
    print(
        f"training loop step    {p * 1e3:7.1f} ms  -> {cfg.batch_size / p:7.0f} images/s, "
        f"{1 / p:5.1f} steps/s"
    )
    print(f"DistillMD loop step   {d * 1e3:7.1f} ms  -> {cfg.batch_size / d:7.0f} images/s")
    print(f"loop / bare ratio       {p / b:5.3f}  (goal <= 1.10)")
    print(f"DistillMD / plain ratio {d / p:5.3f}  (goal <= 1.40)")
    if args.fast:
        f = statistics.median(fast)
        print(f"loop step with {'+'.join(args.fast)}  {f * 1e3:7.1f} ms  -> fast / plain ratio {f / p:5.3f}")


if __name__ == "__main__":
    main()
