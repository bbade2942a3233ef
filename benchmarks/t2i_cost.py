"""Compute of the paper's Stable Diffusion v1.5 experiment, per stage, and the GPU hours it implies.

Builds SD v1.5's UNet (860 M parameters) and VAE with random weights on PyTorch's meta device (no memory, no
weights, no download), counts the floating-point operations of one image through each with
`torch.utils.flop_counter.FlopCounterMode`, and multiplies by the work of each stage in the authors' setting
(`../shared/reference/paper.md`: 512x512 Pokemon-BLIP, 416 members / 417 non-members, 20,000 iterations at
batch 16, DDIM 50 steps with classifier-free guidance). GPU time = FLOPs / (peak x utilization), where the peak
is the one of the precision each stage runs in under `--config` (default config/paper-pokemon.yaml):

* fine-tuning and distillation: `train.mixed_precision` fp16/bf16 -> the dense 16-bit peak, else fp32 (TF32
  with `text2image.allow_tf32`); the frozen teachers' forward in DistillMD follows `text2image.weight_dtype`;
* the black-box attack's generations and the white-box attacks: `attack.mixed_precision` bf16 -> the 16-bit
  peak, else TF32 with `text2image.allow_tf32`, else plain fp32 (the CUDA-core peak, ~15x lower on an H100/H200:
  what those stages ran at before the levers existed); PIA with `attack.pia.guidance_scale` > 1 queries the UNet
  twice per prediction (caption and empty prompt);
* memorization on prompts (Table 5, with `text2image.memorized_prompts` on: every model and DualMD pair generates
  from the chosen prompts, plus the mitigated generations of Wen et al. on the undefended models, an optimiser step
  costing about a forward and backward pass) and the prompt-list detection (Fig. 3, with
  `text2image.prompt_detection` on: `DETECTION_PROMPTS` prompts, the chains stopped after `num_steps`) run in fp32
  (TF32 with `text2image.allow_tf32`).

The utilization is an assumption (`--utilization`), so every hour printed is an **estimate**, not a measurement:

    python benchmarks/t2i_cost.py --config config/paper-pokemon.yaml --utilization 0.4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

MEMBERS, NONMEMBERS = 416, 417
STEPS, BATCH = 20_000, 16  # the paper's fine-tuning iterations and batch size, every model alike
DDIM_STEPS, GENERATIONS = 50, 3  # Pang & Wang's black-box attack: 3 images per caption, DDIM 50, guidance 7.5
SECMI_QUERIES, PIA_QUERIES = 12, 2  # UNet calls per candidate: SecMI (t_sec 100, k 10), PIA (x_0 at 0 and t)
DETECTION_PROMPTS = (
    500 + 500
)  # Fig. 3: Webster's memorized prompts and as many ordinary ones (the lists' length)
#: Dense peaks of an H100/H200 SXM (TFLOP/s): bf16/fp16 tensor cores, TF32 tensor cores, fp32 CUDA cores.
PEAKS = {"16-bit": 989.0, "tf32": 494.7, "fp32": 66.9}
ROOT = Path(__file__).parents[1]


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


def precisions(cfg) -> dict[str, str]:
    """The arithmetic each kind of stage runs in under experiment config `cfg` (a key of PEAKS)."""
    t2i = cfg.text2image
    fp32 = "tf32" if t2i.allow_tf32 else "fp32"
    train = "16-bit" if cfg.train.mixed_precision != "no" else fp32
    return {
        "encode": "16-bit" if t2i.weight_dtype != "fp32" else fp32,
        "train": train,
        "teacher": "16-bit" if t2i.weight_dtype != "fp32" or train == "16-bit" else fp32,
        "attack": "16-bit" if cfg.attack.mixed_precision == "bf16" else fp32,
        "memorization": fp32,
    }


def stage_tflop(
    g: dict[str, float], variants: int, kinds: dict[str, str], cfg=None
) -> dict[str, dict[str, float]]:
    """TFLOP of each stage by precision, for `variants` prompt-diversification settings (1 or 2); `kinds` maps
    "encode", "train", "teacher" and "attack" to a key of PEAKS. With the experiment config `cfg`, PIA's guidance
    and the memorization stages it turns on are counted too."""
    candidates = MEMBERS + NONMEMBERS
    pia_queries = PIA_QUERIES * (2 if cfg is not None and cfg.attack.pia.guidance_scale > 1 else 1)
    fine_tune = STEPS * BATCH * g["unet_train"]  # latents encoded once per image and cached
    guided = DDIM_STEPS * 2 * g["unet_forward"]  # guidance: conditional + unconditional
    stages: dict[str, dict[str, float]] = {
        "encode the images once (VAE)": {kinds["encode"]: candidates * g["vae_encode"]},
        "fine-tune baseline + 2 teachers": {kinds["train"]: variants * 3 * fine_tune},
        "distil the student (+ teacher forward)": {kinds["train"]: variants * fine_tune},
        "black-box attack: 3 images per candidate, 3 samplers": {
            kinds["attack"]: variants * 3 * candidates * GENERATIONS * (guided + g["vae_decode"])
        },
        "white-box attacks (SecMI, PIA) on 4 models": {
            kinds["attack"]: variants * 4 * candidates * (SECMI_QUERIES + pia_queries) * g["unet_forward"]
        },
    }
    if cfg is not None:
        stages |= memorization_tflop(g, variants, cfg, kinds["memorization"])
    teacher = stages["distil the student (+ teacher forward)"]
    teacher[kinds["teacher"]] = (
        teacher.get(kinds["teacher"], 0.0) + variants * STEPS * BATCH * g["unet_forward"]
    )
    return {name: {k: v / 1e3 for k, v in parts.items()} for name, parts in stages.items()}


def memorization_tflop(g: dict[str, float], variants: int, cfg, kind: str) -> dict[str, dict[str, float]]:
    """GFLOP of Table 5's generations (and t-errors) and of Fig. 3's detection, where `cfg` turns them on."""
    t2i, steps = cfg.text2image, cfg.sample.num_inference_steps
    guided = steps * 2 * g["unet_forward"]
    stages: dict[str, dict[str, float]] = {}
    if t2i.memorized_prompts.enabled:
        generations = 2 * t2i.memorized_prompts.num_images * t2i.memorized_prompts.num_generations
        targets = variants * (4 + 1)  # 4 models and the DualMD pair
        work = targets * generations * (guided + g["vae_decode"])
        work += variants * 4 * 2 * t2i.memorized_prompts.num_images * SECMI_QUERIES * g["unet_forward"]
        if t2i.mitigation.enabled:  # the undefended models again, with the optimiser steps at the first steps
            mitigation = t2i.mitigation.num_steps * t2i.mitigation.max_iterations * g["unet_train"]
            work += variants * generations * (guided + g["vae_decode"] + mitigation)
        stages["memorization on prompts (Table 5)"] = {kind: work}
    if t2i.prompt_detection.enabled:
        first = t2i.prompt_detection.num_steps or steps
        stages["prompt-list detection on SD v1.5 (Fig. 3)"] = {
            kind: DETECTION_PROMPTS * t2i.prompt_detection.num_generations * first * 2 * g["unet_forward"]
        }
    return stages


def main() -> None:
    from dualmd.config.experiment import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config/paper-pokemon.yaml", help="precisions")
    parser.add_argument("--peak-16bit", type=float, default=PEAKS["16-bit"], help="dense bf16/fp16 TFLOP/s")
    parser.add_argument("--peak-tf32", type=float, default=PEAKS["tf32"], help="dense TF32 TFLOP/s")
    parser.add_argument("--peak-fp32", type=float, default=PEAKS["fp32"], help="fp32 (CUDA-core) TFLOP/s")
    parser.add_argument(
        "--utilization", type=float, default=0.4, help="assumed fraction of the peak achieved"
    )
    parser.add_argument("--variants", type=int, default=2, choices=(1, 2), help="without / with prompt div.")
    args = parser.parse_args()
    peaks = {"16-bit": args.peak_16bit, "tf32": args.peak_tf32, "fp32": args.peak_fp32}
    cfg = load_config(args.config)
    kinds = precisions(cfg)
    g = per_image_gflop()
    print(
        f"per image: UNet forward {g['unet_forward']:.0f} GFLOP, forward + backward {g['unet_train']:.0f}, "
        f"VAE encode {g['vae_encode']:.0f}, VAE decode {g['vae_decode']:.0f}"
    )
    print(f"precision assumed from {args.config}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print(
        f"ESTIMATE at {args.utilization:.0%} of the peak of each precision "
        + ", ".join(f"{k} {v:g}" for k, v in peaks.items())
        + " TFLOP/s:"
    )
    total = 0.0
    for stage, parts in stage_tflop(g, args.variants, kinds, cfg).items():
        hours = sum(tflop / (peaks[k] * args.utilization) for k, tflop in parts.items()) / 3600
        total += hours
        label = "+".join(parts)
        print(f"  {stage:<55} {sum(parts.values()):>12,.0f} TFLOP  {label:<12} {hours:7.2f} GPU-h")
    print(f"  {'total':<55} {'':>12}        {'':<12} {total:7.2f} GPU-h (estimate)")


if __name__ == "__main__":
    main()
