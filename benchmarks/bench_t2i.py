"""Step time and peak memory of text-to-image training with an SD-v1.5-shaped UNet, on the device at hand.

Builds `UNet2DConditionModel` from SD v1.5's UNet config (written below; random weights, nothing downloaded) and
times training steps at batch 16 on 64x64x4 latents with 77x768 text states, for

* fine-tuning: one trained UNet (AdamW, optional gradient checkpointing, autocast);
* DistillMD: the trained student plus two frozen teachers in `--weight-dtype`, whose predictions are the targets.

It runs the package's own pieces (`dualmd.text2image.levers`: gradient checkpointing, the frozen teachers' dtype,
TF32, the optimiser). Peak memory is `torch.cuda.max_memory_allocated` on a GPU, the process's peak RSS on the
CPU. `--tiny` runs the same code with a tiny UNet on the CPU (a smoke test, not a measurement of SD):

    python benchmarks/bench_t2i.py --gradient-checkpointing --mixed-precision bf16 --weight-dtype bf16 --allow-tf32
    python benchmarks/bench_t2i.py --tiny
"""

from __future__ import annotations

import argparse
import copy
import resource
import time

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from dualmd.config.text2image import Text2ImageConfig
from dualmd.text2image.finetune import ConditionalTeacher
from dualmd.text2image.levers import apply_tf32, freeze, optimizer_factory, prepare_unet, weight_dtype

#: SD v1.5's unet/config.json (the keys that shape the network); 859.5 M parameters.
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
#: The same code path on the CPU in seconds (8x8 latents, text states 16 x 32).
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 1,
    "block_out_channels": (32, 64),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TEXT_SHAPE = {"sd": (77, 768), "tiny": (16, 32)}


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated since the last reset, or the process's peak RSS on the CPU (GB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def train_steps(
    unet: UNet2DConditionModel,
    *,
    teachers: list[ConditionalTeacher],
    levers: Text2ImageConfig,
    batch: int,
    text: tuple[int, int],
    steps: int,
    warmup: int,
    mixed_precision: str,
    device: torch.device,
) -> float:
    """Seconds per optimiser step (after `warmup` steps) of MSE training of `unet`: against the noise, or, with
    teachers, against their predictions (alternating, as DistillMD's D1 / D2 batches)."""
    opt = (optimizer_factory(levers, lr=1e-5, device=device) or _adamw)(list(unet.parameters()))
    size = unet.config.sample_size
    dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    micro = batch // levers.gradient_accumulation_steps
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            t0 = time.perf_counter()
        for _ in range(levers.gradient_accumulation_steps):
            x_t = torch.randn(micro, 4, size, size, device=device)
            t = torch.randint(1000, (micro,), device=device)
            states = torch.randn(micro, *text, device=device)
            if teachers:
                target = teachers[step % 2](x_t, t, encoder_hidden_states=states)
            else:
                target = torch.randn_like(x_t)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                pred = unet(x_t, t, encoder_hidden_states=states).sample
            loss = F.mse_loss(pred.float(), target.float()) / levers.gradient_accumulation_steps
            loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(device)
    elapsed = time.perf_counter() - t0
    return elapsed / steps


def _adamw(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny UNet on the CPU (smoke test)")
    parser.add_argument("--batch-size", type=int, default=16, help="effective batch (the paper's 16)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--use-8bit-adam", action="store_true")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--weight-dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="teachers")
    parser.add_argument("--allow-tf32", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    shape = "tiny" if args.tiny else "sd"
    levers = Text2ImageConfig(
        gradient_checkpointing=args.gradient_checkpointing,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        use_8bit_adam=args.use_8bit_adam,
        weight_dtype=args.weight_dtype,
        allow_tf32=args.allow_tf32,
    )
    apply_tf32(levers.allow_tf32)
    torch.manual_seed(0)
    base = UNet2DConditionModel(**(TINY_UNET if args.tiny else SD15_UNET))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {name}; UNet {sum(p.numel() for p in base.parameters()) / 1e6:.1f} M parameters ({shape}); "
        f"batch {args.batch_size}; {vars(args)}"
    )
    common = {
        "levers": levers,
        "batch": args.batch_size,
        "text": TEXT_SHAPE[shape],
        "steps": 2 if args.tiny else args.steps,
        "warmup": 1 if args.tiny else 2,
        "mixed_precision": args.mixed_precision,
        "device": device,
    }
    for run in ("fine-tune", "distill"):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        student = prepare_unet(copy.deepcopy(base), levers).to(device).train()
        teachers = []
        if run == "distill":
            dtype = weight_dtype(levers.weight_dtype, device)
            teachers = [ConditionalTeacher(freeze(copy.deepcopy(base), device, dtype)) for _ in range(2)]
        step_s = train_steps(student, teachers=teachers, **common)
        print(
            f"{run:<9}: {step_s:8.3f} s/step, {args.batch_size / step_s:8.1f} images/s, "
            f"peak memory {peak_memory_gb(device):6.2f} GB"
        )
        del student, teachers


if __name__ == "__main__":
    main()
