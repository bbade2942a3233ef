"""Batch sources of conditional latents for the training loop (`dualmd.train.loop.BatchSource`).

A batch is `Conditioned`: latents z_0 = scaling_factor * (mu + sigma * n) drawn from the frozen VAE's posterior of
each image (as SD training samples its latents), and the text states of the caption the `CaptionSampler` picks for
(seed, step, image id), with caption dropout to the empty prompt for classifier-free guidance. Text states come
from a `CaptionBank` encoded once, since the text encoder is frozen; where the text encoder trains with the UNet
(the stand-in's pretraining, `dualmd.text2image.pretrain`), a `CaptionTokens` gives token ids instead. The VAE posterior is also computed once;
both can be kept in a `DiskCache` shared by the jobs of a run (`dualmd.text2image.levers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import Components, encode_images, encode_prompts
from dualmd.text2image.levers import DiskCache, module_digest, module_dtype
from dualmd.train.checkpoint import tensor_sha256
from dualmd.train.loop import BatchSource, Conditioned


@dataclass(frozen=True)
class CaptionBank:
    """Frozen text-encoder states of a fixed set of captions (the empty prompt included)."""

    index: dict[str, int]
    states: Tensor  # (num_captions, L, D)

    @classmethod
    def encode(
        cls, parts: Components, captions: Sequence[Sequence[str]], *, cache: DiskCache | None = None
    ) -> CaptionBank:
        """Encode every distinct caption of `captions` (per image, its captions) and the empty prompt, 256 per
        text-encoder pass on its device; with `cache`, once per (captions, text encoder weights and dtype)."""
        texts = list(dict.fromkeys(["", *(c for per_image in captions for c in per_image)]))

        def compute() -> dict[str, Tensor]:
            chunks = [encode_prompts(parts, texts[i : i + 256]) for i in range(0, len(texts), 256)]
            return {"states": torch.cat(chunks).float().cpu()}

        if cache is None:
            states = compute()["states"]
        else:
            encoder = parts.text_encoder
            key = {"texts": texts, "encoder": module_digest(encoder), "dtype": str(module_dtype(encoder))}
            states = cache.get("captions", key, compute)["states"]
        return cls(index={t: i for i, t in enumerate(texts)}, states=states)

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """States (B, L, D) of the prompts; a prompt outside the bank raises KeyError naming it."""
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise KeyError(f"prompt {missing[0]!r} is not in the caption bank")
        return self.states[[self.index[p] for p in prompts]]


@dataclass(frozen=True)
class CaptionTokens:
    """Token ids of a fixed set of captions (the empty prompt included), padded as `encode_prompts` pads them: the
    condition of batches whose model encodes the text itself (`dualmd.text2image.pretrain.TextConditionedUNet`)."""

    index: dict[str, int]
    ids: Tensor  # (num_captions, L) long

    @classmethod
    def tokenize(cls, tokenizer: Any, captions: Sequence[Sequence[str]]) -> CaptionTokens:
        """Tokenize every distinct caption of `captions` (per image, its captions) and the empty prompt."""
        texts = list(dict.fromkeys(["", *(c for per_image in captions for c in per_image)]))
        ids = tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return cls(index={t: i for i, t in enumerate(texts)}, ids=ids)

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """Token ids (B, L) of the prompts; a prompt outside the set raises KeyError naming it."""
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise KeyError(f"prompt {missing[0]!r} is not among the tokenized captions")
        return self.ids[[self.index[p] for p in prompts]]


@dataclass(frozen=True)
class CaptionedLatents:
    """`BatchSource` of conditional latents: `batch_size` images drawn uniformly with replacement, their latents
    sampled from the VAE posterior and their captions from `sampler` (dataset ids `image_ids`)."""

    mean: Tensor  # (N, 4, h, w) posterior mean, unscaled
    std: Tensor  # (N, 4, h, w)
    scaling_factor: float
    image_ids: Tensor  # (N,) long, dataset ids (seed the caption draws)
    sampler: CaptionSampler
    bank: CaptionBank | CaptionTokens  # states of a frozen text encoder, or token ids of a trained one
    batch_size: int

    def __call__(self, step: int, generator: torch.Generator) -> Conditioned:
        idx = torch.randint(len(self.mean), (self.batch_size,), generator=generator)
        noise = torch.randn(self.mean[idx].shape, generator=generator)
        z_0 = (self.mean[idx] + self.std[idx] * noise) * self.scaling_factor
        prompts = self.sampler(step, self.image_ids[idx].tolist())
        return Conditioned(x_0=z_0, encoder_hidden_states=self.bank(prompts))


@dataclass(frozen=True)
class AlternatingSources:
    """Algorithm 2's data order for any batch sources: even iterations draw from `half1`, odd from `half2`."""

    half1: BatchSource
    half2: BatchSource

    def __call__(self, step: int, generator: torch.Generator) -> Tensor | Conditioned:
        return (self.half1 if step % 2 == 0 else self.half2)(step, generator)


def latent_source(
    parts: Components,
    images: Tensor,
    image_ids: Sequence[int],
    sampler: CaptionSampler,
    *,
    batch_size: int,
    bank: CaptionBank | CaptionTokens | None = None,
    cache: DiskCache | None = None,
    encode_batch_size: int = 64,
) -> CaptionedLatents:
    """The batch source of `images` (N, C, H, W) in [-1, 1] with dataset ids `image_ids` (N,).

    The VAE posterior is computed once, on the VAE's device in its dtype, `encode_batch_size` images per pass
    (with `cache`: once per images, VAE weights, dtype and batch size, across jobs); `bank` (default: the
    captions of these images only, since the states of a real text encoder are large: SD's are 77 x 768 floats
    per caption) holds the text states, or their token ids (a `CaptionTokens`) for a text encoder in training.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    mean, std = posterior(parts, images, batch_size=encode_batch_size, cache=cache)
    return CaptionedLatents(
        mean=mean,
        std=std,
        scaling_factor=float(parts.vae.config.scaling_factor),
        image_ids=torch.as_tensor(list(image_ids), dtype=torch.long),
        sampler=sampler,
        bank=bank
        if bank is not None
        else CaptionBank.encode(parts, [sampler.captions[i] for i in image_ids], cache=cache),
        batch_size=batch_size,
    )


def posterior(
    parts: Components, images: Tensor, *, batch_size: int = 64, cache: DiskCache | None = None
) -> tuple[Tensor, Tensor]:
    """Mean and std (N, 4, h, w) fp32 of the VAE posterior of `images` (N, C, H, W); with `cache`, read from it
    when these images were encoded before by the same VAE weights in the same dtype and batch size."""

    def compute() -> dict[str, Tensor]:
        mean, std = encode_images(parts.vae, images, batch_size=batch_size)
        return {"mean": mean, "std": std}

    if cache is None:
        out = compute()
    else:
        key = {
            "images": tensor_sha256(images),
            "vae": module_digest(parts.vae),
            "dtype": str(module_dtype(parts.vae)),
            "batch_size": batch_size,
        }
        out = cache.get("latents", key, compute)
    return out["mean"], out["std"]
