"""SecMI overhead: time per image of the secmi_stat attack / time of the UNet forwards it needs.

The attack's only real work is its UNet calls (11 per image at t_sec = 100, k = 10: inversion at t = 0, 10, ..., 80,
then 90 up and 100 down); everything else (float64 DDIM arithmetic, batching, numpy conversion) is overhead.
Goal: ratio <= 1.10. Runs on the default model architecture (ModelConfig(), random init) at 1x8x8.

    python benchmarks/bench_secmi.py --threads 1 --num-images 512
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig
from dualmd.config.sections import DiffusionConfig, ModelConfig
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet


class CountingPredictor:
    """Wraps a predictor and counts its calls (to know how many forwards the attack needs)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, x_t, t):
        self.calls += 1
        return self.inner(x_t, t)


def best_of(fn, repeats: int) -> float:
    """Minimum wall time of `repeats` runs of fn() (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--num-images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    device = torch.device(args.device)
    predictor = UNetPredictor(create_unet(model=ModelConfig(), image_size=8, channels=1).to(device))
    schedule = Schedule.from_scheduler(create_scheduler(DiffusionConfig()))
    images = torch.rand(args.num_images, 1, 8, 8) * 2 - 1
    ids = np.arange(args.num_images)
    attack = build_attack("secmi_stat", AttackConfig(batch_size=args.batch_size))

    counter = CountingPredictor(predictor)
    attack.score(counter, schedule, images, ids)  # warm-up, and count the forwards
    num_batches = -(-args.num_images // args.batch_size)
    calls_per_batch = counter.calls // num_batches

    def forwards_only() -> None:
        for start in range(0, args.num_images, args.batch_size):
            x = images[start : start + args.batch_size].to(device)
            t = torch.full((len(x),), 50, dtype=torch.long, device=device)
            for _ in range(calls_per_batch):
                predictor(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def attack_only() -> None:
        attack.score(predictor, schedule, images, ids)
        if device.type == "cuda":
            torch.cuda.synchronize()

    forwards_only()  # warm-up
    t_fwd = best_of(forwards_only, args.repeats)
    t_att = best_of(attack_only, args.repeats)
    print(f"device={device} threads={args.threads} images={args.num_images} batch={args.batch_size}")
    print(f"UNet calls per image: {calls_per_batch}")
    print(f"secmi_stat: {1e3 * t_att / args.num_images:.3f} ms/image; forwards alone: "
          f"{1e3 * t_fwd / args.num_images:.3f} ms/image")  # fmt: skip
    print(f"ratio attack / forwards = {t_att / t_fwd:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
