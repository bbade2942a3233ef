"""GSA overhead: time per image of GSA's gradient features / (plain forward + backward per image x timesteps).

GSA's work is one forward and one backward pass per image and timestep (GSA1 batches the K timesteps of an image
into one loss; GSA2 takes K gradients); per-sample gradients through `torch.func.vmap` cost more than one batched
backward pass because every image keeps its own weight gradient. The reference is a plain training-style step
of the same batch at one timestep (forward, MSE, `backward()` into summed `.grad`), per image, times the number
of timesteps. Goal: ratio <= 1.5. Runs on the default model architecture (ModelConfig(), random init) at 1x8x8.
The classifier is not timed (it sees L numbers per image: a second or two per model).

    python benchmarks/bench_gsa.py --threads 1 --num-images 256
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from bench_secmi import best_of  # benchmarks/ is on the path of a script run from it

from dualmd.attacks.gsa import gradient_features
from dualmd.config.attacks import GSAConfig
from dualmd.config.sections import DiffusionConfig, ModelConfig
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument(
        "--batch-size", type=int, default=GSAConfig().batch_size, help="attack.gsa.batch_size"
    )
    parser.add_argument("--variant", choices=["gsa1", "gsa2"], default=GSAConfig().variant)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", message=".*batching rule.*")  # only if a kernel lacks one

    device = torch.device(args.device)
    unet = create_unet(model=ModelConfig(), image_size=8, channels=1).to(device)
    predictor = UNetPredictor(unet)
    schedule = Schedule.from_scheduler(create_scheduler(DiffusionConfig()))
    cfg = GSAConfig(variant=args.variant, batch_size=args.batch_size)
    num_t = len(cfg.timesteps)
    images = torch.rand(args.num_images, 1, 8, 8) * 2 - 1
    ids = np.arange(args.num_images)
    noise = torch.randn_like(images)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain_steps() -> None:
        """One forward + backward of each batch at one timestep (the reference unit of work)."""
        for start in range(0, args.num_images, args.batch_size):
            x_0, eps = (
                images[start : start + args.batch_size].to(device),
                noise[start : start + args.batch_size],
            )
            t = torch.full(
                (len(x_0),), cfg.timesteps[len(cfg.timesteps) // 2], dtype=torch.long, device=device
            )
            x_t = schedule.q_sample(x_0, t, eps.to(device))
            unet.zero_grad(set_to_none=True)
            (unet(x_t, t).sample - eps.to(device)).square().mean().backward()
        sync()

    def attack_features() -> None:
        gradient_features(predictor, schedule, images, ids, cfg, seed=0)
        sync()

    plain_steps()  # warm-up
    attack_features()
    t_plain = best_of(plain_steps, args.repeats)
    t_gsa = best_of(attack_features, args.repeats)
    per_image_plain = t_plain / args.num_images
    per_image_gsa = t_gsa / args.num_images
    print(f"device={device} threads={args.threads} images={args.num_images} batch={args.batch_size} "
          f"variant={args.variant} timesteps={num_t} parameter tensors={len(list(unet.parameters()))}")  # fmt: skip
    print(f"gsa features: {1e3 * per_image_gsa:.3f} ms/image; plain forward+backward: "
          f"{1e3 * per_image_plain:.3f} ms/image per timestep")  # fmt: skip
    print(
        f"ratio gsa / (plain x {num_t} timesteps) = {per_image_gsa / (per_image_plain * num_t):.3f} (goal <= 1.5)"
    )


if __name__ == "__main__":
    main()
