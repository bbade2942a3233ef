"""DualMD sampling overhead benchmark (prints figures; not a test).

For the default model (ModelConfig(), randomly initialised, 1x8x8 images), DDIM:
  * DualMD sampling time / single-model sampling time (goal <= 1.05: one UNet call per step either way),
  * single-model sampling time / bare UNet forwards (the loop's own overhead: noise, scheduler steps).
Runs alternate (single, DualMD, single, ...) and the median of --repeats runs is reported, which evens out
load from other processes.
Usage: OMP_NUM_THREADS=1 python benchmarks/bench_dualmd.py --threads 1 --num-images 256 --steps 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from dualmd.config.sections import DiffusionConfig, ModelConfig
from dualmd.defense.dualmd import AlternatingTeachers
from dualmd.models.adapter import UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet
from dualmd.sample import build_scheduler, run_sampler


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.no_grad()
def bare_forwards(unet: torch.nn.Module, num_images: int, steps: int, batch_size: int) -> None:
    """The irreducible work: `steps` UNet forwards per batch on fixed tensors."""
    x, t = torch.randn(batch_size, 1, 8, 8), torch.full((batch_size,), 500)
    for _ in range(0, num_images, batch_size):
        for _ in range(steps):
            unet(x, t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    unets = [create_unet(model=ModelConfig(), image_size=8, channels=1).eval() for _ in range(2)]
    teacher1, teacher2 = (UNetPredictor(u) for u in unets)
    scheduler = build_scheduler("ddim", create_scheduler(DiffusionConfig()))
    run = {
        "num_images": args.num_images,
        "image_shape": (1, 8, 8),
        "num_inference_steps": args.steps,
        "batch_size": args.batch_size,
        "eta": 0.0,
    }
    single = partial(run_sampler, teacher1, scheduler, **run)
    dual = partial(run_sampler, AlternatingTeachers(teacher1=teacher1, teacher2=teacher2), scheduler, **run)
    bare = partial(bare_forwards, unets[0], args.num_images, args.steps, args.batch_size)

    timed(single), timed(dual)  # warm-up (allocator, first-call overheads)
    times: dict[str, list[float]] = {"single": [], "dualmd": [], "bare": []}
    for _ in range(args.repeats):
        times["single"].append(timed(single))
        times["dualmd"].append(timed(dual))
        times["bare"].append(timed(bare))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(
        f"default model {ModelConfig().block_out_channels}, 1x8x8, {args.num_images} images, DDIM {args.steps} "
        f"steps, batch {args.batch_size}, {args.threads} thread(s), median of {args.repeats}"
    )
    print(f"single model : {med['single']:.3f} s  ({args.num_images / med['single']:.1f} img/s)")
    print(f"DualMD       : {med['dualmd']:.3f} s  ({args.num_images / med['dualmd']:.1f} img/s)")
    print(f"bare forwards: {med['bare']:.3f} s")
    print(f"ratio DualMD / single = {med['dualmd'] / med['single']:.3f}   (goal <= 1.05)")
    print(f"ratio single / bare   = {med['single'] / med['bare']:.3f}   (sampling-loop overhead)")


if __name__ == "__main__":
    main()
