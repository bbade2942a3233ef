"""Which copy descriptor tells a copy of a tiny digit from every other digit: the stand-in's centred pixels
(`dualmd.text2image.standin_scorers.CentredPixels`, at several grid sizes) against the stand-in CLIP's image tower.

For 200 seeded digits of the run's dataset, three kinds of copy: the pretrained pipeline's VAE round trip (what a
generation that memorized the image would be at best), the image shifted by one pixel (of 32), and a lower
contrast, brighter version with Gaussian noise (sigma 0.05). Each copy is embedded through the copy-score code
(`dualmd.text2image.copy_score.descriptors`; CLIP through `dualmd.clip_score.clip_pixels`) and compared with every
digit of the dataset: the rate at which its source is the nearest (top-1 retrieval), the mean cosine with its
source and the mean of the largest cosine with any other digit.

    python benchmarks/t2i_standin_descriptor.py /tmp/t2i-run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

NUM_COPIES = 200


def copies(images: torch.Tensor, source: torch.Tensor, vae) -> dict[str, torch.Tensor]:
    """The three kinds of copy of images[source] (each (S, C, H, W) in [-1, 1])."""
    from dualmd.text2image.components import encode_images

    x = images[source]
    with torch.no_grad():
        mean, _ = encode_images(vae, x)
        round_trip = vae.decode(mean).sample.clamp(-1, 1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return {
        "VAE round trip": round_trip,
        "shift 1 px": torch.roll(x, shifts=(1, 1), dims=(2, 3)),
        "contrast + noise": (0.8 * x + 0.1 + 0.05 * noise).clamp(-1, 1),
    }


def retrieval(embed, images: torch.Tensor, source: torch.Tensor, copied: torch.Tensor) -> str:
    """Top-1 retrieval rate of the source, mean cosine with it, mean best cosine with another image."""
    similarity = embed(copied) @ embed(images).T  # (S, N)
    rows = torch.arange(len(source))
    own = similarity[rows, source]
    similarity[rows, source] = -2.0
    top1 = (own > similarity.max(dim=1).values).double().mean()
    return f"{top1:.2f} / {own.mean():.3f} / {similarity.max(dim=1).values.mean():.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="root of a finished run of config/text2image-tiny.yaml")
    parser.add_argument(
        "--clip", default="results/t2i_scorers/rep0/clip", help="stand-in CLIP, under the run"
    )
    args = parser.parse_args()

    from dualmd.clip_score import clip_pixels, load_clip
    from dualmd.config.experiment import load_config
    from dualmd.data.datasets import load_dataset, to_model_range
    from dualmd.text2image.components import load_components
    from dualmd.text2image.copy_score import descriptors
    from dualmd.text2image.standin_scorers import CentredPixels

    torch.manual_seed(0)
    images = to_model_range(load_dataset(load_config(args.run / "config/text2image-tiny.yaml").dataset))
    source = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:NUM_COPIES]
    kinds = copies(images, source, load_components(args.run / "results/t2i_models/rep0/pretrained").vae)
    model, processor = load_clip(args.run / args.clip)

    def clip_tower(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = model.get_image_features(pixel_values=clip_pixels(x, processor))
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return torch.nn.functional.normalize(out.double(), dim=1)

    embeds = {f"centred pixels, grid {g}": torch.jit.script(CentredPixels(g)) for g in (7, 14, 28)}
    print(
        f"{len(images)} digits; per copy kind: top-1 retrieval / cosine with source / best cosine with another"
    )
    print("| descriptor | " + " | ".join(kinds) + " |\n|:--|" + ":--|" * len(kinds))
    for name, module in embeds.items():
        cells = [
            retrieval(lambda x, m=module: descriptors(m, x, batch_size=256), images, source, c)
            for c in kinds.values()
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "| stand-in CLIP image tower | "
        + " | ".join(retrieval(clip_tower, images, source, c) for c in kinds.values())
        + " |"
    )


if __name__ == "__main__":
    main()
