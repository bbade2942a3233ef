"""Compute of the paper's Stable Diffusion v1.5 experiment, per stage, and the GPU hours it implies.

Builds SD v1.5's UNet (860 M parameters) and VAE with random weights on PyTorch's meta device (no memory, no
weights, no download), counts the floating-point operations of one image through each with
`torch.utils.flop_counter.FlopCounterMode`, and multiplies by the work of each stage in the authors' setting
(`../shared/reference/paper.md`: 512x512 Pokemon-BLIP, 416 members / 417 non-members, 20,000 iterations at
batch 16, DDIM 50 steps with classifier-free guidance). GPU time = FLOPs / (dense bf16 peak x utilization); the
utilization is an assumption (`--utilization`), so every hour printed is an **estimate**, not a measurement:

    python benchmarks/t2i_cost.py --peak-tflops 989 --utilization 0.4
"""

from __future__ import annotations

import argparse

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

MEMBERS, NONMEMBERS = 416, 417
STEPS, BATCH = 20_000, 16  # the paper's fine-tuning iterations and batch size, every model alike
DDIM_STEPS, GENERATIONS = 50, 3  # Pang & Wang's black-box attack: 3 images per caption, DDIM 50, guidance 7.5
SECMI_QUERIES, PIA_QUERIES = 12, 2  # UNet calls per candidate: SecMI (t_sec 100, k 10), PIA (x_0 at 0 and t)


def sd_unet() -> UNet2DConditionModel:
    """SD v1.5's UNet configuration (64x64x4 latents, CLIP ViT-L/14 text states of width 768)."""
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )


def sd_vae() -> AutoencoderKL:
    """SD v1.5's VAE configuration (512x512x3 <-> 64x64x4)."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        sample_size=512,
    )


def flops(fn) -> float:
    """FLOPs of `fn()` as counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def per_image_gflop() -> dict[str, float]:
    """GFLOP of one image: UNet forward, UNet forward + backward, VAE encode, VAE decode."""
    with torch.device("meta"):
        unet, vae = sd_unet(), sd_vae()
        latents, t, text = torch.randn(1, 4, 64, 64), torch.tensor([500]), torch.randn(1, 77, 768)
        image = torch.randn(1, 3, 512, 512)
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters (SD v1.5 shape, meta)")
    costs = {
        "unet_forward": flops(lambda: unet(latents, t, encoder_hidden_states=text).sample),
        "unet_train": flops(lambda: unet(latents, t, encoder_hidden_states=text).sample.sum().backward()),
        "vae_encode": flops(lambda: vae.encode(image).latent_dist.mean),
        "vae_decode": flops(lambda: vae.decode(latents).sample),
    }
    return {k: v / 1e9 for k, v in costs.items()}


def stage_tflop(g: dict[str, float], variants: int) -> dict[str, float]:
    """TFLOP of each stage, for `variants` prompt-diversification settings (1 or 2)."""
    candidates = MEMBERS + NONMEMBERS
    fine_tune = STEPS * BATCH * g["unet_train"]  # latents encoded once per image and cached
    sample_one = DDIM_STEPS * 2 * g["unet_forward"] + g["vae_decode"]  # guidance: conditional + unconditional
    return {
        "encode the images once (VAE)": candidates * g["vae_encode"] / 1e3,
        "fine-tune baseline + 2 teachers": variants * 3 * fine_tune / 1e3,
        "distil the student (+ teacher forward)": variants
        * STEPS
        * BATCH
        * (g["unet_train"] + g["unet_forward"])
        / 1e3,
        "black-box attack: 3 images per candidate, 3 samplers": variants
        * 3
        * candidates
        * GENERATIONS
        * sample_one
        / 1e3,
        "white-box attacks (SecMI, PIA) on 4 models": variants
        * 4
        * candidates
        * (SECMI_QUERIES + PIA_QUERIES)
        * g["unet_forward"]
        / 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H200/H100 SXM: 989)"
    )
    parser.add_argument(
        "--utilization", type=float, default=0.4, help="assumed fraction of the peak achieved"
    )
    parser.add_argument("--variants", type=int, default=2, choices=(1, 2), help="without / with prompt div.")
    args = parser.parse_args()
    g = per_image_gflop()
    print(
        f"per image: UNet forward {g['unet_forward']:.0f} GFLOP, forward + backward {g['unet_train']:.0f}, "
        f"VAE encode {g['vae_encode']:.0f}, VAE decode {g['vae_decode']:.0f}"
    )
    rate = args.peak_tflops * args.utilization  # TFLOP/s
    print(
        f"ESTIMATE at {args.utilization:.0%} of {args.peak_tflops:g} TFLOP/s ({rate:.0f} TFLOP/s achieved):"
    )
    total = 0.0
    for stage, tflop in stage_tflop(g, args.variants).items():
        hours = tflop / rate / 3600
        total += hours
        print(f"  {stage:<55} {tflop:>12,.0f} TFLOP  {hours:7.2f} GPU-h")
    print(f"  {'total':<55} {'':>12}        {total:7.2f} GPU-h (estimate)")


if __name__ == "__main__":
    main()
