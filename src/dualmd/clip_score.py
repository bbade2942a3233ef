"""CLIP score of generated images against the prompts that made them (Hessel et al. 2021), as torchmetrics'
``clip_score`` computes it: both are embedded by a CLIP model (transformers' ``CLIPModel`` with its processor),
the embeddings are L2-normalised, and the score is 100 x the mean cosine over the image-prompt pairs, clipped at
0: max(100 mean_i cos(E_I_i, E_C_i), 0). torchmetrics' docstring writes the clip per pair, its code clips the
mean; this follows the code. Higher is better (prompt alignment, the paper's Table 5 column).

The model is read from a local folder only (``utility.clip_path``, ``local_files_only``): nothing is downloaded.
torchmetrics' default is ``openai/clip-vit-large-patch14``; ``standin`` names the tiny run's stand-in CLIP
(`dualmd.text2image.standin_scorers`), whose score is labelled as a stand-in's. Images in [-1, 1] are quantised to
uint8 as saving them would (`dualmd.utility.to_pixel_range`) and handed to the processor, which resizes and
normalises them as CLIP expects; prompts are padded and truncated to the text model's positions (torchmetrics
cuts the token ids instead, which for prompts longer than 77 tokens also drops the end token; the Pokemon captions
are short).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dualmd.config.evaluation import STANDIN, STANDIN_CLIP_LABEL, UtilityConfig, scorer_path

#: Why the score is absent when no folder is configured.
NO_CLIP_REASON = (
    "no CLIP model: utility.clip_path is not set (a local CLIPModel folder; nothing is downloaded)"
)


def load_clip(folder: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """(CLIPModel in eval mode, CLIPProcessor) from a local folder; FileNotFoundError without a model there."""
    from transformers import CLIPModel, CLIPProcessor

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"utility.clip_path: {folder} holds no model (no config.json)")
    model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
    return model, CLIPProcessor.from_pretrained(folder, local_files_only=True)


def clip_pixels(images: Tensor, processor: Any) -> Tensor:
    """Images (N, 1|3, H, W) in [-1, 1] (or uint8) as the CLIP image tower sees them: quantised to uint8 as saving
    them would, then resized, cropped and normalised by the processor. Returns (N, 3, S, S) pixel_values."""
    from dualmd.utility import to_pixel_range

    pixels = to_pixel_range(images).to(torch.uint8)
    rgb = list(pixels.permute(0, 2, 3, 1).numpy())  # (H, W, 3) uint8 each, as an image file holds
    return processor(images=rgb, return_tensors="pt")["pixel_values"]


def clip_model_name(clip_path: str, model: Any) -> str:
    """The report's name of the CLIP model of a scorer key: its folder's name, or the stand-in's label, with the
    image size and projection width."""
    name = STANDIN_CLIP_LABEL if clip_path == STANDIN else Path(clip_path).name
    return f"{name} ({model.config.vision_config.image_size} px, projection {model.config.projection_dim}-d)"


def _embedding(output: Tensor | Any) -> Tensor:
    """The projected embedding of `get_image_features` / `get_text_features` (a tensor, or an output whose
    pooler_output holds it, depending on the transformers version)."""
    return output if isinstance(output, Tensor) else output.pooler_output


@torch.no_grad()
def clip_cosines(
    images: Tensor,
    prompts: Sequence[str],
    model: Any,
    processor: Any,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Cosine similarity of each image's CLIP embedding with its prompt's.

    Args:
        images: (N, 1|3, H, W) float in [-1, 1] (or uint8).
        prompts: N prompts, prompts[i] made images[i].
        model, processor: from `load_clip`.
    Returns:
        (N,) float64 cosines in [-1, 1].
    """
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
    max_length = model.config.text_config.max_position_embeddings
    out = []
    for start in range(0, len(images), batch_size):
        pixel_values = clip_pixels(images[start : start + batch_size], processor)
        text_in = processor(
            text=list(prompts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        image_emb = _embedding(model.get_image_features(pixel_values=pixel_values.to(device)))
        text_emb = _embedding(
            model.get_text_features(
                input_ids=text_in["input_ids"].to(device), attention_mask=text_in["attention_mask"].to(device)
            )
        )
        cos = torch.nn.functional.cosine_similarity(image_emb.double(), text_emb.double(), dim=-1)
        out.append(cos.cpu().numpy())
    return np.concatenate(out)


def clip_score(cosines: np.ndarray) -> float:
    """max(100 x mean cosine, 0) over the pairs (torchmetrics' `clip_score`). cosines: (N,)."""
    return max(100.0 * float(np.mean(cosines)), 0.0)


def clip_score_interval(cosines: np.ndarray, num_bootstrap: int, seed: int) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of `clip_score` over resamples (with replacement) of the pairs."""
    cosines = np.asarray(cosines, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(cosines), size=(num_bootstrap, len(cosines)))
    values = np.maximum(100.0 * cosines[idx].mean(axis=1), 0.0)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def compute_clip_score(
    images: Tensor,
    prompts: Sequence[str],
    cfg: UtilityConfig,
    *,
    device: str | torch.device = "cpu",
    standin: str | Path | None = None,
) -> dict[str, Any]:
    """The CLIP score of the first `cfg.num_images` images against their prompts, or the reason it is absent.

    Args:
        images: (N, C, H, W) in [-1, 1], N >= cfg.num_images; prompts: N prompts (prompts[i] made images[i]).
        cfg: clip_path (None: absent; "standin": `standin`), num_images, batch size, num_bootstrap and seed of the
            interval.
        standin: the stand-in CLIP folder, where cfg.clip_path is "standin".
    Returns:
        {"clip_score", "clip_score_low", "clip_score_high", "clip_model", "clip_absent_reason"}: the score and
        its 95 % bootstrap interval (None when absent), the model's name (`clip_model_name`: the stand-in's says
        so), and None or why it is absent.
    """
    if cfg.clip_path is None:
        return {
            "clip_score": None,
            "clip_score_low": None,
            "clip_score_high": None,
            "clip_model": None,
            "clip_absent_reason": NO_CLIP_REASON,
        }
    if len(images) < cfg.num_images or len(prompts) < cfg.num_images:
        raise ValueError(
            f"{len(images)} images and {len(prompts)} prompts for utility.num_images={cfg.num_images}"
        )
    model, processor = load_clip(scorer_path(cfg.clip_path, standin, "utility.clip_path"), device)
    cosines = clip_cosines(
        images[: cfg.num_images],
        list(prompts[: cfg.num_images]),
        model,
        processor,
        batch_size=cfg.batch_size,
        device=device,
    )
    low, high = clip_score_interval(cosines, cfg.num_bootstrap, cfg.seed)
    return {
        "clip_score": clip_score(cosines),
        "clip_score_low": low,
        "clip_score_high": high,
        "clip_model": clip_model_name(cfg.clip_path, model),
        "clip_absent_reason": None,
    }
