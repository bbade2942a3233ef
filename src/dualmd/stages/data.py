"""Stages of `workflow/rules/split.smk`: the dataset as one array, and the member split with its halves."""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.data.datasets import image_folder_names, load_dataset, load_images, save_images
from dualmd.data.splits import make_split, save_split
from dualmd.files import write_json
from dualmd.stage import stage

log = logging.getLogger(__name__)


@stage("prepare-data", config="data", sections=("dataset",))
def prepare_data(*, config: Path, out: Path, meta: Path) -> None:
    """The configured dataset as a uint8 (N, C, H, W) .npz, and a sidecar naming its source and SHA-256."""
    cfg = load_config(config).dataset
    images = load_dataset(cfg)
    sha = save_images(out, images)
    write_json(meta, {"dataset": cfg.to_dict(), "shape": list(images.shape), "sha256": sha})
    log.info("dataset %s: %s images of shape %s", cfg.name, images.shape[0], images.shape[1:])


@stage("split", config="split", sections=("split",))
def split(*, config: Path, images: Path, out: Path, meta: Path) -> None:
    """Members / non-members and the two disjoint member halves, with the hash of every subset (source "lists":
    the config's dataset section locates the image folder the lists name files of)."""
    experiment = load_config(config)
    names = None
    if experiment.split.source == "lists":  # the lists name files of the image folder
        names = image_folder_names(str(experiment.dataset.root), experiment.dataset.max_images)
    result = make_split(len(load_images(images)), experiment.split, image_names=names)
    save_split(result, out, meta)
    log.info(
        "split: %d members (%d + %d), %d non-members",
        len(result.member_idx),
        len(result.half1_idx),
        len(result.half2_idx),
        len(result.nonmember_idx),
    )
