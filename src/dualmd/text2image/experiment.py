"""What every text-to-image stage reads from its config: the validated experiment, the run's captions (a
memorized-prompt selection's images with their prompt first), the caption sampler of a target's training, and the
images outside the split.

Captions come from the dataset config (`dualmd.text2image.captions.dataset_captions`: digit templates or an image
folder's metadata.jsonl), in the order of the dataset array; with `text2image.unique_captions` each digit's
original caption is made its own (`dualmd.text2image.captions.with_unique_captions`). A target named "<name>_pd"
(`catalog.PD_SUFFIX`) is trained with prompt diversification, any other on each image's first caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dualmd import catalog
from dualmd.config.experiment import ExperimentConfig, load_config

if TYPE_CHECKING:
    import torch

    from dualmd.text2image.memorized import MemorizedPrompts


def population(num_dataset_images: int, *taken: np.ndarray) -> np.ndarray:
    """The dataset indices in none of the `taken` index arrays (the images outside the split), sorted."""
    return np.setdiff1d(np.arange(num_dataset_images), np.concatenate(taken)).astype(np.int64)


def text2image_config(path: Path) -> ExperimentConfig:
    """The validated config at `path`; raises ValueError unless it runs the text-to-image experiment."""
    cfg = load_config(path)
    if not cfg.text2image.enabled:
        raise ValueError(
            f"{path}: text2image.enabled is false; these stages run the text-to-image experiment"
        )
    return cfg


def experiment_captions(cfg: ExperimentConfig) -> list[tuple[str, ...]]:
    """The captions of every dataset image, with unique original captions when `text2image.unique_captions`."""
    from dualmd.text2image.captions import dataset_captions, with_unique_captions

    captions = dataset_captions(cfg.dataset)
    if cfg.text2image.unique_captions:
        return with_unique_captions(captions, cfg.text2image.caption_seed)
    return captions


def run_captions_of(
    cfg: ExperimentConfig, selection: MemorizedPrompts | None = None
) -> list[tuple[str, ...]]:
    """The captions of the run: the dataset's, a memorized-prompt selection's images with their prompt first."""
    from dualmd.text2image.memorized import run_captions

    return run_captions(experiment_captions(cfg), selection)


def caption_sampler(cfg: ExperimentConfig, target: catalog.Target, selection: MemorizedPrompts | None = None):
    """Captions of training: with prompt diversification for a "<name>_pd" target (catalog.PD_SUFFIX), whatever
    the config's `text2image.prompt_diversification` (the variants the workflow builds)."""
    from dualmd.text2image.captions import CaptionSampler

    return CaptionSampler(
        captions=run_captions_of(cfg, selection),
        seed=cfg.train.seed,
        diversify=target.prompt_diversification,
        dropout=cfg.text2image.caption_dropout,
    )


def model_range(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) as the model's float range [-1, 1]."""
    from dualmd.data.datasets import to_model_range

    return to_model_range(images)
