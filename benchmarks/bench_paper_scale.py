"""Throughput of the paper's CIFAR-10 setting (config/paper-cifar10.yaml), its fraction of peak, and GPU-hours.

With the config's fast paths (train.channels_last, compile, fused_adam, ema_lerp, data_on_device,
mixed_precision; sample.compile, mixed_precision) it measures, printing each figure as soon as it has it:

* the device's dense bf16 peak: the spec (table below, or --peak-tflops) and a measured bf16 matmul;
* the UNet's FLOPs per image, fwd+bwd and fwd (torch.utils.flop_counter.FlopCounterMode, eager);
* training through the project's own loop (`dualmd.train.loop.fit`, EMA, clipping, accelerate): ms per step,
  images/s, achieved TFLOP/s, fraction of peak, peak memory; the same for the DistillMD teacher forward;
* the sampling forward at the largest batch that fits (doubling from sample.batch_size until out of memory,
  --max-sample-batch or --budget-s; searched eagerly, then compiled once at the best batch): the same figures;
* the projected GPU-hours of the paper run: 3 trained models + the student (train step + one teacher forward)
  x train.num_train_steps, and 5 samplers x sample.num_images x sample.num_inference_steps forwards.
  Attacks and FID are left out (minutes at these rates).

Compilation happens before the timed window. `--tiny` swaps in a small UNet, small batches and few steps, so the
same code runs on a CPU in minutes (its figures say nothing about the paper's cost):

    python benchmarks/bench_paper_scale.py            # on the GPU to be used (<= 8 minutes)
    python benchmarks/bench_paper_scale.py --tiny     # anywhere
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dualmd.config.experiment import ExperimentConfig, load_config
from dualmd.config.sections import ModelConfig
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet
from dualmd.train.checkpoint import run_hash
from dualmd.train.loop import RandomBatches, StepInfo, fit, make_accelerator, noise_target

ROOT = Path(__file__).parents[1]
#: Dense (no sparsity) bf16 tensor-core peak in TFLOP/s from the vendors' data sheets, by device-name fragment.
DENSE_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
}
IMAGE_SHAPE = (3, 32, 32)
TINY_MODEL = ModelConfig(
    block_out_channels=(32, 64), layers_per_block=1, attention_levels=(1,), norm_num_groups=8
)


def say(line: str) -> None:
    print(line, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def spec_tflops(name: str, override: float | None) -> float | None:
    """The dense bf16 spec of the device: --peak-tflops, else the table's longest matching fragment."""
    if override is not None:
        return override
    matches = [k for k in DENSE_BF16_TFLOPS if k in name]
    return DENSE_BF16_TFLOPS[max(matches, key=len)] if matches else None


def measured_matmul_tflops(device: torch.device, n: int, seconds: float = 2.0) -> float:
    """Best TFLOP/s of an n x n x n bf16 matmul (2 n^3 flops), repeated for about `seconds`."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    a @ b
    sync(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return best


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process so far)"


def flops_per_image(model: ModelConfig, device: torch.device, batch: int = 2) -> tuple[float, float]:
    """(fwd+bwd, fwd) FLOPs per image of the eager UNet, counted by FlopCounterMode (matmul, conv, attention)."""
    unet = create_unet(model=model, image_size=IMAGE_SHAPE[1], channels=IMAGE_SHAPE[0]).to(device)
    x, t = torch.randn(batch, *IMAGE_SHAPE, device=device), torch.full((batch,), 500, device=device)
    with FlopCounterMode(display=False) as train_count:
        F.mse_loss(unet(x, t).sample, x).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as fwd_count:
        unet(x, t)
    return train_count.get_total_flops() / batch, fwd_count.get_total_flops() / batch


def fractions(tflops: float, spec: float | None, matmul: float) -> str:
    spec_part = f"{100 * tflops / spec:.1f} % of the {spec:.0f} TFLOP/s dense bf16 spec, " if spec else ""
    return f"{spec_part}{100 * tflops / matmul:.1f} % of the measured bf16 matmul peak ({matmul:.3g} TFLOP/s)"


def time_training(cfg: ExperimentConfig, *, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per optimiser step of the real loop with the config's fast paths, after `warmup` steps
    (compilation included there). Only the window's ends synchronise, so the loop runs ahead as in training."""
    train = replace(
        cfg.train, num_train_steps=warmup + steps, checkpoint_every_steps=10**9, log_every_steps=10**9
    )
    images = torch.rand(1024, *IMAGE_SHAPE) * 2 - 1
    marks: dict[int, float] = {}

    def on_step(info: StepInfo) -> None:
        if info.step + 1 in (warmup, warmup + steps):
            sync(device)
            marks[info.step + 1] = time.perf_counter()
            if info.step + 1 == warmup:
                reset_peak_memory(device)

    with tempfile.TemporaryDirectory() as state_dir:
        fit(
            unet=create_unet(model=cfg.model, image_size=IMAGE_SHAPE[1], channels=IMAGE_SHAPE[0]),
            schedule=Schedule.from_scheduler(create_scheduler(cfg.diffusion)),
            batches=RandomBatches(images=images, batch_size=train.batch_size, hflip=train.hflip),
            target_fn=noise_target,
            cfg=train,
            accelerator=make_accelerator(train),
            state_dir=Path(state_dir),
            run_hash=run_hash({"bench": "paper_scale"}),
            on_step=on_step,
        )
    return (marks[warmup + steps] - marks[warmup]) / steps


def forward_timer(cfg: ExperimentConfig, device: torch.device, *, compile: bool, precision: str):
    """A function batch -> seconds per UNet forward (no grad), through the `UNetPredictor` samplers use."""
    unet = create_unet(model=cfg.model, image_size=IMAGE_SHAPE[1], channels=IMAGE_SHAPE[0]).to(device)
    predictor = UNetPredictor(unet, compile=compile, mixed_precision=precision)

    def seconds(batch: int, repeats: int = 5) -> float:
        x, t = torch.randn(batch, *IMAGE_SHAPE, device=device), torch.full((batch,), 500, device=device)
        predictor(x, t)  # compiles this shape
        sync(device)
        reset_peak_memory(device)
        start = time.perf_counter()
        for _ in range(repeats):
            predictor(x, t)
        sync(device)
        return (time.perf_counter() - start) / repeats

    return seconds


def largest_batch(seconds: Callable[[int], float], first: int, limit: int, deadline: float, device) -> tuple:
    """Double the batch from `first` until out of memory, `limit` or `deadline`; return the best
    (images/s, batch, s/forward, peak memory) and print each try."""
    best, batch = None, first
    while batch <= limit and time.perf_counter() < deadline:
        try:
            s = seconds(batch)
        except torch.OutOfMemoryError:
            say(f"  batch {batch}: out of memory")
            break
        say(f"  batch {batch}: {s * 1e3:.1f} ms per forward, {batch / s:.0f} images/s, {peak_memory(device)}")
        if best is None or batch / s > best[0]:
            best = (batch / s, batch, s, peak_memory(device))
        batch *= 2
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return best


def tiny(cfg: ExperimentConfig) -> tuple[ExperimentConfig, dict]:
    """The paper config with a small UNet and small batches; the fast paths stay as configured."""
    small = replace(
        cfg,
        model=TINY_MODEL,
        train=replace(cfg.train, batch_size=16),
        sample=replace(cfg.sample, batch_size=16),
    )
    return small, {"warmup": 3, "steps": 10, "max_sample_batch": 64, "matmul_n": 1024}


def say_fraction(what: str, tflops: float, spec: float | None, matmul: float) -> None:
    """The `fraction of peak: N %` line: of the spec when known, else of the measured matmul peak."""
    say(
        f"fraction of peak: {100 * tflops / (spec or matmul):.1f} % ({what}; {fractions(tflops, spec, matmul)})"
    )


def report_training(
    cfg: ExperimentConfig, opts: dict, device: torch.device, peaks: tuple, flops: float
) -> tuple[float, float]:
    """Print the training figures; return (s per step, s per teacher forward at the training batch)."""
    t = cfg.train
    keys = ("channels_last", "compile", "fused_adam", "ema_lerp", "data_on_device")
    fast = [k for k in keys if getattr(t, k)]
    say(f"training: batch {t.batch_size}, mixed_precision {t.mixed_precision}, fast paths {fast or 'none'}")
    step_s = time_training(cfg, warmup=opts["warmup"], steps=opts["steps"], device=device)
    tflops = flops * t.batch_size / step_s / 1e12
    say(
        f"training: {step_s * 1e3:.1f} ms/step, {t.batch_size / step_s:.0f} images/s, "
        f"{tflops:.3g} TFLOP/s achieved, {peak_memory(device)}"
    )
    say_fraction("training", tflops, *peaks)
    # the teacher's forward in distillation: the training precision and compile setting, at the training batch
    precision = "bf16" if t.mixed_precision == "bf16" else "no"
    teacher_s = forward_timer(cfg, device, compile=t.compile, precision=precision)(t.batch_size)
    say(
        f"distillation: + {teacher_s * 1e3:.1f} ms teacher forward per step -> "
        f"{(step_s + teacher_s) * 1e3:.1f} ms/step"
    )
    return step_s, teacher_s


def report_sampling(
    cfg: ExperimentConfig, opts: dict, device: torch.device, peaks: tuple, flops: float, deadline: float
) -> tuple[int, float]:
    """Print the sampling forward's figures at the largest batch that fits; return (batch, s per forward).

    The batch search runs eagerly (a compiled forward recompiles for every new batch shape); with
    sample.compile the chosen batch is then compiled once and timed again.
    """
    s = cfg.sample
    say(f"sampling forward: mixed_precision {s.mixed_precision}; largest batch that fits (eager):")
    eager = forward_timer(cfg, device, compile=False, precision=s.mixed_precision)
    best = largest_batch(eager, s.batch_size, opts["max_sample_batch"], deadline, device)
    if best is None:
        raise SystemExit(f"sample.batch_size {s.batch_size} does not fit (or no time was left): lower it")
    rate, batch, fwd_s, memory = best
    if s.compile:
        fwd_s = forward_timer(cfg, device, compile=True, precision=s.mixed_precision)(batch)
        rate, memory = batch / fwd_s, peak_memory(device)
    tflops = flops * rate / 1e12
    say(
        f"sampling: batch {batch}{' compiled' if s.compile else ''}: {fwd_s * 1e3:.1f} ms per forward, "
        f"{rate:.0f} images/s, {tflops:.3g} TFLOP/s achieved, {memory}"
    )
    say_fraction("sampling", tflops, *peaks)
    return batch, fwd_s


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/paper-cifar10.yaml")
    parser.add_argument(
        "--tiny", action="store_true", help="small UNet and batches: runs on a CPU in minutes"
    )
    parser.add_argument("--steps", type=int, default=100, help="timed training steps (after warm-up)")
    parser.add_argument(
        "--warmup", type=int, default=15, help="untimed steps (compilation, cudnn autotuning)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="dense bf16 spec, if not in the table"
    )
    parser.add_argument("--max-sample-batch", type=int, default=16384)
    parser.add_argument(
        "--budget-s", type=float, default=420, help="the batch search stops at this elapsed time"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # dynamo's notes on diffusers' lru_cache-wrapped version checks are noise here
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._dynamo")
    t_start = time.perf_counter()
    cfg = load_config(args.config)
    opts = {"warmup": args.warmup, "steps": args.steps, "max_sample_batch": args.max_sample_batch}
    opts["matmul_n"] = 8192
    if args.tiny:
        cfg, opts = tiny(cfg)
    device = make_accelerator(cfg.train).device
    name = device_name(device)
    spec = spec_tflops(name, args.peak_tflops)
    say(f"config: {args.config.name}{' (--tiny: small UNet and batches)' if args.tiny else ''}")
    say(
        f"device: {name}; dense bf16 spec {f'{spec:.0f} TFLOP/s' if spec else 'unknown (pass --peak-tflops)'}"
    )
    matmul = measured_matmul_tflops(device, opts["matmul_n"])
    say(f"measured bf16 matmul peak: {matmul:.3g} TFLOP/s ({opts['matmul_n']}^3)")
    params = sum(p.numel() for p in create_unet(model=cfg.model, image_size=32, channels=3).parameters())
    train_flops, fwd_flops = flops_per_image(cfg.model, device)
    say(
        f"UNet: {params / 1e6:.2f} M parameters; {train_flops / 1e9:.2f} GFLOP/image fwd+bwd, "
        f"{fwd_flops / 1e9:.2f} GFLOP/image fwd (FlopCounterMode, {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[2]})"
    )
    step_s, teacher_s = report_training(cfg, opts, device, (spec, matmul), train_flops)
    deadline = t_start + args.budget_s
    batch, fwd_s = report_sampling(cfg, opts, device, (spec, matmul), fwd_flops, deadline)

    t, s = cfg.train, cfg.sample
    train_h = t.num_train_steps * step_s / 3600
    student_h = t.num_train_steps * (step_s + teacher_s) / 3600
    sampler_h = math.ceil(s.num_images / batch) * s.num_inference_steps * fwd_s / 3600
    total = 3 * train_h + student_h + 5 * sampler_h
    say(
        f"projection: 3 models x {train_h:.1f} h + student {student_h:.1f} h + 5 samplers x {sampler_h:.2f} h "
        f"= {total:.1f} GPU-hours on this device{' (tiny model: not the paper cost)' if args.tiny else ''}"
    )
    say(f"benchmark wall time: {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
