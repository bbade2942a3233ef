"""Stand-ins for Table 5's two scorers in the tiny text-to-image run, where SSCD and OpenAI's CLIP cannot be read
(nothing is downloaded). Both are labelled as stand-ins wherever a score of theirs is reported
(`dualmd.config.evaluation.STANDIN_*_LABEL`); neither is comparable with the paper's numbers.

* **CLIP** (`train_standin_clip`): a tiny transformers `CLIPModel` (two-layer vision and text transformers of
  width 64, the tiny pipeline's tokenizer, a `CLIPImageProcessor` at the dataset's image size) trained with
  CLIP's symmetric InfoNCE and learnable temperature (Radford et al. 2021; `CLIPModel(return_loss=True)`) on the
  images outside the split, each step pairing an image with one of its captions drawn uniformly, the
  population the tiny pipeline is pretrained on. No member or non-member is ever shown to it
  (`check_outside_split`), so its CLIP score cannot reward memorization. A held-out part of the population
  measures what it learnt: its contrastive loss and the rate at which an image's own caption beats another
  image's, before and after training (the record). It measures prompt alignment as the tiny captions allow:
  the digit's name, stroke and position; the unique captions' tags carry no image content.
* **Copy descriptor** (`CentredPixels`, `write_copy_descriptor`): a fixed TorchScript module that averages the
  224 x 224 input `dualmd.text2image.copy_score` feeds it into a GRID x GRID grey image and subtracts its mean,
  so that a pair's descriptor cosine is the Pearson correlation of the two images' pixels: 1 for a copy, whatever
  brightness and contrast the decoder gives it, lower for any other image. It needs no training, so it has seen no
  image. A descriptor from the stand-in CLIP's image tower would measure likeness of content instead: it is
  trained to agree with captions that name the digit, its stroke and its position, so two different "bold twos at
  the top left" are alike to it, where SSCD is trained to tell images apart (instance discrimination under
  augmentations). `benchmarks/t2i_standin_descriptor.py` measures both on copies of 200 of the 1,797 digits:
  retrieving each copy's source among all digits, centred pixels at GRID = 14 find it for every VAE round trip
  and every contrast-and-noise copy and for 56 % of one-pixel shifts (GRID 7: 34 %; 28: 57 %, with four times the
  cells), the CLIP tower for every round trip but for only 7 % of the shifts and 13 % of the contrast-and-noise
  copies. The scale is not SSCD's: a copy scores 1, and the closest other digit 0.96 on average, as the digits
  are alike.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dualmd.config.text2image import StandinScorersConfig
from dualmd.data.splits import Split

#: Side of the copy descriptor's grey grid (see the module docstring).
GRID = 14
#: Provenance file of the stand-in CLIP folder, and the extra file of the descriptor's TorchScript archive.
RECORD = "standin.json"
#: Width of both towers and of the projection; transformer layers per tower.
WIDTH, LAYERS = 64, 2


def check_outside_split(image_ids: Sequence[int], split: Split) -> None:
    """Refuse training images of the split: a scorer that saw a member could reward its copies.

    Raises:
        ValueError: naming the members and non-members among `image_ids`.
    """
    ids = np.asarray(image_ids, dtype=np.int64)
    leaks = {
        name: sorted(set(ids.tolist()) & set(split.subset(name).tolist()))
        for name in ("members", "nonmembers")
    }
    found = {name: leaked for name, leaked in leaks.items() if leaked}
    if found:
        listed = "; ".join(f"{len(v)} {name} {v[:10]}" for name, v in found.items())
        raise ValueError(f"the stand-in scorers train only on images outside the split, got {listed}")


def tiny_clip(*, image_size: int, seed: int = 0) -> tuple[Any, Any]:
    """A seeded tiny `CLIPModel` and its `CLIPProcessor` (the tiny pipeline's tokenizer; images kept at
    `image_size`, patches of image_size / 4)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from dualmd.text2image.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    tower = {"hidden_size": WIDTH, "intermediate_size": 2 * WIDTH, "num_hidden_layers": LAYERS}
    config = CLIPConfig(
        text_config={
            **tower,
            "num_attention_heads": 4,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": tokenizer.model_max_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **tower,
            "num_attention_heads": 4,
            "image_size": image_size,
            "patch_size": image_size // 4,
        },
        projection_dim=WIDTH,
    )
    torch.manual_seed(seed)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tokenizer,
    )
    return CLIPModel(config), processor


def _tokens(processor: Any, captions: Sequence[str]) -> dict[str, Tensor]:
    return processor.tokenizer(list(captions), padding="max_length", truncation=True, return_tensors="pt")


def _heldout_metrics(model: Any, processor: Any, pixels: Tensor, captions: Sequence[str]) -> dict[str, float]:
    """On held-out pairs (image i, its caption i): CLIP's loss over them as one batch, and the rate at which an
    image's cosine with its own caption beats that with another image's different caption (0.5: chance)."""
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=pixels, **_tokens(processor, captions), return_loss=True)
    model.train()
    similarity = out.logits_per_image.double()  # (N, N), row i: image i against every caption
    differs = torch.tensor([[a != b for b in captions] for a in captions])
    wins = (similarity.diag()[:, None] > similarity) & differs
    return {"loss": float(out.loss), "pair_accuracy": float(wins.sum() / differs.sum())}


def train_standin_clip(
    images: Tensor,
    image_ids: Sequence[int],
    captions: Sequence[Sequence[str]],
    split: Split,
    cfg: StandinScorersConfig,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train the stand-in CLIP on images outside the split and their captions.

    Args:
        images: (N, C, H, W) in [-1, 1], the population; image_ids: their (N,) dataset ids.
        captions: per dataset id, its captions (one is drawn uniformly for each use of an image).
        split: the run's split; an image of it among `image_ids` raises ValueError (`check_outside_split`).
        cfg: steps, batch size, learning rate, held-out images and seed.
    Returns:
        (CLIPModel in eval mode, CLIPProcessor, record): the record holds the population's size, the training
        loss curve, the held-out metrics before and after training (`_heldout_metrics`, each held-out image with
        its first caption), the learnt logit scale and the wall time.
    """
    from dualmd.clip_score import clip_pixels

    check_outside_split(image_ids, split)
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images for {len(image_ids)} ids")
    if len(images) < cfg.num_heldout_images + cfg.batch_size:
        raise ValueError(
            f"{len(images)} images outside the split: fewer than num_heldout_images ({cfg.num_heldout_images}) "
            f"+ batch_size ({cfg.batch_size})"
        )
    t0 = time.perf_counter()
    model, processor = tiny_clip(image_size=images.shape[-1], seed=cfg.seed)
    pixels = clip_pixels(images, processor)  # (N, 3, S, S), as the CLIP score prepares images
    ids = [int(i) for i in image_ids]
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(ids), generator=gen)
    heldout, train = order[: cfg.num_heldout_images], order[cfg.num_heldout_images :]
    heldout_captions = [captions[ids[i]][0] for i in heldout.tolist()]
    before = _heldout_metrics(model, processor, pixels[heldout], heldout_captions)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model.train()
    curve = []
    for step in range(cfg.num_steps):
        batch = train[torch.randperm(len(train), generator=gen)[: cfg.batch_size]].tolist()
        drawn = [
            captions[ids[i]][int(torch.randint(len(captions[ids[i]]), (1,), generator=gen))] for i in batch
        ]
        loss = model(pixel_values=pixels[batch], **_tokens(processor, drawn), return_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP clips its temperature at 100 (Radford et al. 2021, §2.5)
            model.logit_scale.clamp_(0.0, math.log(100.0))
        if (step + 1) % max(1, cfg.num_steps // 10) == 0:
            curve.append([step + 1, round(loss.item(), 5)])
    after = _heldout_metrics(model, processor, pixels[heldout], heldout_captions)
    record = {
        "population_size": len(ids),
        "num_heldout_images": cfg.num_heldout_images,
        "config": cfg.to_dict(),
        "loss_curve": curve,
        "heldout_before": before,
        "heldout_after": after,
        "logit_scale": float(model.logit_scale.detach().exp()),
        "wall_time_s": round(time.perf_counter() - t0, 2),
    }
    return model.eval(), processor, record


def save_standin_clip(folder: str | Path, model: Any, processor: Any, record: dict[str, Any]) -> None:
    """`save_pretrained` of model and processor into `folder` (what `dualmd.clip_score.load_clip` reads), with the
    record as RECORD."""
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / RECORD).write_text(json.dumps(record, indent=1) + "\n")


class CentredPixels(torch.nn.Module):
    """The stand-in copy descriptor: (N, 3, 224, 224) in [-1, 1] -> (N, grid * grid), the grey image averaged
    into grid x grid cells, minus its mean (cosines of these are Pearson correlations of the pixels)."""

    def __init__(self, grid: int = GRID):
        super().__init__()
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        grey = x.mean(dim=1, keepdim=True)  # (N, 1, H, W)
        cells = torch.nn.functional.adaptive_avg_pool2d(grey, self.grid).flatten(1)  # (N, grid * grid)
        return cells - cells.mean(dim=1, keepdim=True)


def write_copy_descriptor(path: str | Path, grid: int = GRID) -> None:
    """The stand-in descriptor as a TorchScript file (what `memorization.copy_descriptor` reads), its description
    inside the archive as the extra file RECORD."""
    description = {"descriptor": "CentredPixels", "grid": grid, "trained": False}
    torch.jit.save(
        torch.jit.script(CentredPixels(grid)), str(path), _extra_files={RECORD: json.dumps(description)}
    )
