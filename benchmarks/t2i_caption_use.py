"""How much a finished text-to-image run's models use the caption: the text encoder's states and the UNet's noise.

Two figures per run folder (the root of a run of config/text2image-tiny.yaml, or any text-to-image config):

* **Text states.** Mean relative change ||s(a) - s(b)|| / ||s(a)|| of the pretrained pipeline's text-encoder
  states between an image's original caption a and the same caption with its tag swapped for another image's, its
  digit name changed, or its tag dropped (unique captions only); the seeded random initialisation of the tiny
  encoder beside it. A text encoder whose states barely move gives the UNet nothing to key on.
* **Noise predictions.** For 64 members and 64 non-members, the posterior-mean latents noised at each timestep with
  seeded noise, and eps predicted with the original caption c, the first template caption w (the original
  without its tag) and the empty prompt: mean ||eps(c) - eps(empty)|| / ||eps(c)|| and the denoising MSE under
  each condition. A model that memorized its members by their captions has a lower MSE with c than with w on
  members, not on non-members.

    python benchmarks/t2i_caption_use.py /tmp/t2i-run --models pretrained,baseline --timesteps 100,500,900
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from dualmd.text2image.captions import DIGIT_NAMES, TAG_LENGTH

NUM_IMAGES = 64


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over rows of ||a - b|| / ||a|| for tensors (N, ...)."""
    return float(((a - b).flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)).mean())


def variants(
    captions: list[tuple[str, ...]], num: int = 200, seed: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """(original, changed) caption pairs of `num` random images: tag swapped, digit name changed, tag dropped."""
    rng = random.Random(seed)
    pairs: dict[str, list[tuple[str, str]]] = {"swap tag": [], "swap digit name": [], "drop tag": []}
    for i in rng.sample(range(len(captions)), min(num, len(captions))):
        words = captions[i][0].split()
        other = captions[rng.randrange(len(captions))][0].split()[-TAG_LENGTH:]
        pairs["swap tag"].append((captions[i][0], " ".join(words[:-TAG_LENGTH] + other)))
        renamed = [DIGIT_NAMES[(DIGIT_NAMES.index(w) + 1) % 10] if w in DIGIT_NAMES else w for w in words]
        pairs["swap digit name"].append((captions[i][0], " ".join(renamed)))
        pairs["drop tag"].append((captions[i][0], " ".join(words[:-TAG_LENGTH])))
    return pairs


@torch.no_grad()
def noise_use(unet, parts, z_0: torch.Tensor, prompts: dict[str, list[str]], t: int, seed: int = 0) -> dict:
    """Relative eps change caption vs empty prompt, and the denoising MSE under each prompt set, at timestep t."""
    from dualmd.text2image.components import encode_prompts

    eps = torch.randn(z_0.shape, generator=torch.Generator().manual_seed(seed + t))
    alpha_bar = parts.scheduler.alphas_cumprod[t]
    x_t = alpha_bar.sqrt() * z_0 + (1 - alpha_bar).sqrt() * eps
    steps = torch.full((len(z_0),), t)
    pred = {
        k: unet(x_t, steps, encoder_hidden_states=encode_prompts(parts, p)).sample for k, p in prompts.items()
    }
    out = {"change": relative_change(pred["caption"], pred["empty"])}
    out.update({f"mse_{k}": float(((v - eps) ** 2).mean()) for k, v in pred.items()})
    return out


def main() -> None:
    from dualmd.config.experiment import load_config
    from dualmd.data.splits import load_split
    from dualmd.text2image.components import encode_images, encode_prompts, load_components, tiny_components
    from dualmd.text2image.experiment import model_range, run_captions_of
    from dualmd.text2image.finetune import load_finetuned_unet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="root of a finished run (holds results/ and the config)")
    parser.add_argument("--config", type=Path, default=Path("config/text2image-tiny.yaml"))
    parser.add_argument("--models", default="pretrained,baseline,baseline_pd")
    parser.add_argument("--timesteps", default="100,500,900")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = args.run
    cfg = load_config(root / args.config)
    split = load_split(root / "results/split/rep0/split.npz", root / "results/split/rep0/split.json")
    images = np.load(root / "results/data/images.npz")["images"]
    captions = run_captions_of(cfg)
    parts = load_components(root / "results/t2i_models/rep0/pretrained")
    if cfg.text2image.unique_captions:
        init = tiny_components(seed=cfg.train.seed)
        for name, pairs in variants(captions).items():
            changes = [
                relative_change(
                    encode_prompts(p, [a for a, _ in pairs]), encode_prompts(p, [b for _, b in pairs])
                )
                for p in (parts, init)
            ]
            print(f"text states, {name}: pretrained {changes[0]:.3f}, random initialisation {changes[1]:.3f}")
    for model in args.models.split(","):
        folder = root / "results/t2i_models/rep0" / model
        unet = parts.unet if model == "pretrained" else load_finetuned_unet(folder)
        for group, ids in (("members", split.member_idx), ("non-members", split.nonmember_idx)):
            ids = ids[:NUM_IMAGES]
            mean, _ = encode_images(parts.vae, model_range(images[ids]))
            prompts = {
                "caption": [captions[i][0] for i in ids],
                "template": [captions[i][min(1, len(captions[i]) - 1)] for i in ids],
                "empty": [""] * len(ids),
            }
            for t in (int(v) for v in args.timesteps.split(",")):
                r = noise_use(unet, parts, mean * parts.vae.config.scaling_factor, prompts, t)
                print(
                    f"{model} {group} t={t}: |eps(c) - eps(empty)|/|eps(c)| {r['change']:.3f}; MSE caption "
                    f"{r['mse_caption']:.4f}, template {r['mse_template']:.4f}, empty {r['mse_empty']:.4f}"
                )


if __name__ == "__main__":
    main()
