"""The black-box attack of Pang & Wang (2023) on a text-to-image sampler: generate from each candidate's caption,
embed, compare (`dualmd.attacks.pang_wang` holds the features and the classifier).

Generation: every sampler (one fine-tuned model, or DualMD's alternating teachers) runs the loop of
`DualMDStableDiffusionPipeline` (DDIM, classifier-free guidance) with `attack.pang_wang`'s steps and guidance.
Generation k of candidate i starts from a generator seeded `sample_seed(attack.seed, i, k)`: a candidate's images
depend on its id only, not on the batch or on the other candidates.

The G generations of a chunk of `attack.batch_size` candidates go through the pipeline in one call (B x G
prompts, denoised `attack.batch_size` at a time) and are embedded together; each candidate is embedded once.

Encoders (`attack.pang_wang.encoder`), each (N, C, H, W) images in [-1, 1] -> embeddings:

* ``inception``: the FID Inception-v3 of `dualmd.utility` (pooled 2048-d, offline, clean-fid preprocessing) fed
  `encoder_image_size` pixels per side (299 as FID; a smaller input averages the last map globally, see
  `dualmd.utility`); features: the product of the L2-normalised embeddings;
* ``deit``: a DeiT model and its image processor loaded with transformers from the local folder
  `encoder_path` only (the authors used ``facebook/deit-base-distilled-patch16-384``); its last_hidden_state
  (T tokens x D) per image, features: per-dimension cosine similarity over the tokens, as the authors' code;
* ``pixels``: 3x8x8 area-averaged pixels (tests and quick runs), features as for inception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks.pang_wang import Similarity, similarity_features
from dualmd.attacks.run import build_attack
from dualmd.config.attacks import AttackConfig, PangWangConfig
from dualmd.config.evaluation import UtilityConfig
from dualmd.config.sections import SampleConfig
from dualmd.noise import sample_seed
from dualmd.scores import AttackResult
from dualmd.text2image.levers import bf16_autocast
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageEncoder:
    """An image encoder of the attack: (N, C, H, W) in [-1, 1] -> (N, D) or (N, T, D) float64 embeddings."""

    name: str
    similarity: Similarity
    embed: Callable[[Tensor], np.ndarray]


def load_encoder(
    cfg: PangWangConfig, *, batch_size: int = 32, device: str | torch.device = "cpu"
) -> ImageEncoder:
    """The encoder `cfg.encoder` names (see the module docstring); nothing is downloaded."""
    if cfg.encoder in ("inception", "pixels"):
        from dualmd.utility import compute_features, feature_net_name

        utility = UtilityConfig(feature_net=cfg.encoder, batch_size=batch_size)
        size = cfg.encoder_image_size
        return ImageEncoder(
            name=feature_net_name(utility, device, input_size=size),
            similarity="product",
            embed=lambda images: compute_features(images, utility, device, input_size=size),
        )
    if cfg.encoder == "deit":
        return _deit_encoder(Path(str(cfg.encoder_path)), batch_size=batch_size, device=device)
    raise ValueError(f"unknown encoder {cfg.encoder!r}; use 'inception', 'deit' or 'pixels'")


def _deit_encoder(folder: Path, *, batch_size: int, device: str | torch.device) -> ImageEncoder:
    """DeiT's last_hidden_state (N, T, D) from a local folder holding the model and its image processor."""
    from transformers import AutoImageProcessor, AutoModel

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"attack.pang_wang.encoder_path: {folder} holds no model (no config.json)")
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()

    @torch.no_grad()
    def embed(images: Tensor) -> np.ndarray:
        out = []
        for start in range(0, len(images), batch_size):
            pixels = ((images[start : start + batch_size].float() + 1) * 127.5).round().clamp(0, 255)
            rgb = pixels.expand(-1, 3, -1, -1).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (b, H, W, 3)
            inputs = processor(images=list(rgb), return_tensors="pt").to(device)
            out.append(model(**inputs).last_hidden_state.double().cpu().numpy())
        return np.concatenate(out)

    return ImageEncoder(name=f"deit ({folder.name})", similarity="token_cosine", embed=embed)


def generation_seeds(seed: int, sample_ids: Sequence[int], generation: int) -> list[int]:
    """The seed of generation `generation` of each candidate: `sample_seed(seed, id, generation)`."""
    return [sample_seed(seed, int(i), generation) for i in sample_ids]


def pang_wang_features(
    pipe: DualMDStableDiffusionPipeline,
    encoder: ImageEncoder,
    *,
    images: Tensor,
    prompts: Sequence[str],
    sample_ids: np.ndarray,
    cfg: AttackConfig,
    sample: SampleConfig,
) -> np.ndarray:
    """Similarity features of every candidate: G generations from its caption against the candidate itself.

    Args:
        pipe: the sampler under attack.
        encoder: the image encoder.
        images: (N, C, H, W) candidates in [-1, 1]; prompts: (N,) their captions; sample_ids: (N,) their ids.
        cfg: the attack section (batch_size: candidates per pass; seed; mixed_precision of the generations;
            pang_wang: generations, steps, guidance).
        sample: eta and the DualMD alternation rule of the sampler under attack.
    Returns:
        (N, D) float64 features (`similarity_features`).
    """
    pw = cfg.pang_wang
    if not len(images) == len(prompts) == len(sample_ids):
        raise ValueError(f"{len(images)} images, {len(prompts)} prompts and {len(sample_ids)} ids")
    features = []
    num_gen = pw.num_generations
    for start in range(0, len(images), cfg.batch_size):
        ids = np.asarray(sample_ids[start : start + cfg.batch_size])
        chunk_prompts = list(prompts[start : start + cfg.batch_size])
        # generation-major: rows k * b .. (k + 1) * b - 1 are generation k of the chunk's b candidates
        # attack.mixed_precision: bf16 autocast of the generations (the sampler's own forward)
        with bf16_autocast(pipe.device, cfg.mixed_precision == "bf16"):
            generated = pipe(
                chunk_prompts * num_gen,
                num_inference_steps=pw.num_inference_steps,
                guidance_scale=pw.guidance_scale,
                eta=sample.eta,
                seeds=[s for k in range(num_gen) for s in generation_seeds(cfg.seed, ids, k)],
                batch_size=cfg.batch_size,
                alternation=sample.dualmd_alternation,
            )
        embedded = encoder.embed(generated)  # (G * b, ...)
        per_candidate = np.swapaxes(embedded.reshape(num_gen, len(ids), *embedded.shape[1:]), 0, 1)
        candidate = encoder.embed(images[start : start + cfg.batch_size])
        features.append(similarity_features(per_candidate, candidate, encoder.similarity))
    return np.concatenate(features)


def attack_sampler_blackbox(
    pipe: DualMDStableDiffusionPipeline,
    cfg: AttackConfig,
    sample: SampleConfig,
    *,
    images: Tensor,
    prompts: Sequence[str],
    sample_ids: np.ndarray,
    is_member: np.ndarray,
    encoder: ImageEncoder | None = None,
    device: str | torch.device = "cpu",
) -> AttackResult:
    """Pang & Wang's attack on one sampler: features of every candidate, the Gaussians fitted on the first
    `fit_fraction` of the members and of the non-members, the LLR of the others (higher = member).

    Args:
        pipe, cfg, sample, images, prompts, sample_ids: as `pang_wang_features`; is_member: (N,) bool.
        encoder: default `load_encoder(cfg.pang_wang)`.
    Returns:
        Scores of the held-out candidates only.
    """
    encoder = encoder or load_encoder(cfg.pang_wang, device=device)
    log.info("encoder: %s", encoder.name)
    features = pang_wang_features(
        pipe, encoder, images=images, prompts=prompts, sample_ids=sample_ids, cfg=cfg, sample=sample
    )
    return build_attack("pang_wang", cfg).run(features, sample_ids, is_member)
