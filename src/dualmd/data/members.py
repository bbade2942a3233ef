"""Which images a stage sees: the dataset checked against its split, one subset's images, a target's
evaluation set, which candidates each online shadow model trained on, the images GSA's shadow protocol features on
a reference model.

A target's members are the split subset `dualmd.catalog` names for it (a teacher: its own half; every other
model and the DualMD sampler: every member); non-members are always the split's non-member set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dualmd import catalog
from dualmd.data.datasets import load_images, to_model_range
from dualmd.data.splits import Split


def load_split_images(images_path: str | Path, split: Split) -> np.ndarray:
    """The dataset array, checked against the size the split was made for (a split from another dataset fails)."""
    images = load_images(images_path)
    expected = split.meta.get("num_dataset_images")
    if expected is not None and len(images) != expected:
        raise ValueError(
            f"{images_path} holds {len(images)} images but the split was made for {expected}: "
            "images and split come from different runs"
        )
    return images


def subset_images(data: np.ndarray, split: Split, subset: str, limit: int | None = None) -> torch.Tensor:
    """The first `limit` (default: all) images of one split subset of `data`, (N, C, H, W) in [-1, 1]."""
    return to_model_range(data[split.subset(subset)[:limit]])


def evaluation_set(
    data: np.ndarray, split: Split, target: str
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Members of `target` followed by the non-members.

    Returns:
        images (M + K, C, H, W) float in [-1, 1], sample_ids (M + K,) dataset indices, is_member (M + K,) bool.
    """
    members, nonmembers = split.subset(catalog.member_subset(target)), split.subset("nonmembers")
    if len(members) == 0 or len(nonmembers) == 0:
        raise ValueError(f"{target}: empty member ({len(members)}) or non-member ({len(nonmembers)}) set")
    ids = np.concatenate([members, nonmembers]).astype(np.int64)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    return to_model_range(data[ids]), ids, is_member


def shadow_membership(split: Split, models: Sequence[str], sample_ids: np.ndarray) -> np.ndarray:
    """Whether each online shadow model trained on each candidate, from its split subset in the catalog: a shadow
    model of the baseline's recipe or a shadow student, ``shadow<k>`` (the student learnt every image of both
    halves, each from the teacher that did not see it); a shadow teacher, its half ``shadow<k>_half<1|2>``.

    Args:
        models: the K shadow models (names as `dualmd.catalog.lira_references` gives them).
        sample_ids: (N,) dataset indices of the candidates.

    Returns:
        (K, N) bool, row k the membership of the candidates in model k's training set.
    """
    return np.stack([np.isin(sample_ids, split.subset(catalog.member_subset(m))) for m in models])


def shadow_in_out(split: Split, model: str) -> tuple[np.ndarray, np.ndarray]:
    """The images GSA's shadow protocol features on offline reference model `model`: those it trained on (IN, its
    split subset) and as many it did not (OUT), all from the reference population outside the split, which the
    attacker holds; neither holds a member or a non-member.

    OUT images are the population's images outside ``ref<k>``, the training set of the model's whole reference set
    k, so that no model of that set saw one (as no model of the target's recipe saw a non-member): the first |IN|
    of them in the population's seeded order.

    Returns:
        (in_ids, out_ids): int64 dataset indices, equal in size.
    Raises:
        ValueError: `model` is no offline reference model, or the population holds fewer OUT images than IN.
    """
    trained = split.subset(catalog.member_subset(model))
    population = split.reference_population()
    unseen = population[~np.isin(population, split.subset(f"ref{catalog.reference_set(model)}"))]
    if unseen.size < trained.size:
        raise ValueError(
            f"{model}: {trained.size} training images but only {unseen.size} reference-population images "
            "outside its reference set to contrast them with"
        )
    return np.asarray(trained, dtype=np.int64), unseen[: trained.size].astype(np.int64)
