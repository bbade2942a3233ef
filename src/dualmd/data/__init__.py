"""Datasets as uint8 (N, C, H, W) arrays and the member / non-member split with its halves D1, D2."""

from dualmd.data.datasets import (
    DatasetError,
    DatasetNotFoundError,
    images_sha256,
    load_dataset,
    load_images,
    save_images,
    to_model_range,
)
from dualmd.data.splits import (
    SUBSETS,
    Split,
    SplitError,
    load_split,
    make_split,
    save_split,
    split_sha256,
    subset_sha256,
)

__all__ = [
    "SUBSETS",
    "DatasetError",
    "DatasetNotFoundError",
    "Split",
    "SplitError",
    "images_sha256",
    "load_dataset",
    "load_images",
    "load_split",
    "make_split",
    "save_images",
    "save_split",
    "split_sha256",
    "subset_sha256",
    "to_model_range",
]
