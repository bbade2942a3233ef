"""Memorization: model-side t-error (DualMD paper Sec. 3.6, Eq. 8) and copy detection on generated images.

t-error: SecMI's deterministic round-trip error (`dualmd.attacks.secmi`), positive, lower for memorized
images; its separation of members from non-members is reported as an AUC.

Copy detection (Carlini et al. 2023's relative l2 distance, as in the public CIFAR-10 re-implementation that
includes the nearest neighbour in the mean): for a generated image g with member distances
d_1 <= d_2 <= ... (flattened pixels),

    ratio(g) = d_1 / ((1/k) * sum_{j=1..k} d_j)        in [0, 1]

An exact copy of a member has ratio 0 (defined as 0 also when all k distances are 0, i.e. duplicated
members); an image equidistant from its k nearest members has ratio 1. g counts as a copy when
ratio < threshold (default 1/3: d_1 below a third of the mean, i.e. with k = 5, d_1 < 2/7 of the mean of
d_2..d_5). Dividing by the local neighbour distance makes the rule scale-free and ignores images that are
merely in a dense region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dualmd.metrics import auc

if TYPE_CHECKING:
    from torch import Tensor

    from dualmd.config import SecMIConfig
    from dualmd.models.adapter import NoisePredictor, Schedule


def t_error(
    model: NoisePredictor, schedule: Schedule, images: Tensor, cfg: SecMIConfig, batch_size: int
) -> np.ndarray:
    """Per-image t-error ||x^_t - x~_t||^2 (positive; lower = more memorized).

    Args:
        model, schedule: the model under test.
        images: (N, C, H, W) in [-1, 1].
        cfg: SecMI's t_sec and DDIM stride k.
        batch_size: images per forward pass.
    Returns:
        (N,) float64.
    """
    from dualmd.attacks.secmi import t_error as secmi_t_error

    return secmi_t_error(model, schedule, images, cfg, batch_size)


def t_error_separation(t_err_members: np.ndarray, t_err_nonmembers: np.ndarray) -> float:
    """AUC with which the t-error tells members from non-members (members positive, scored by -t_error).

    1.0: every member has a lower t-error than every non-member; 0.5: no separation.
    """
    scores = -np.r_[np.asarray(t_err_members, float), np.asarray(t_err_nonmembers, float)]
    is_member = np.r_[np.ones(len(t_err_members), bool), np.zeros(len(t_err_nonmembers), bool)]
    return auc(scores, is_member)


def copy_detection(
    generated: Tensor, members: Tensor, *, k_nearest: int, threshold: float = 1.0 / 3.0, batch_size: int = 256
) -> dict[str, np.ndarray | float]:
    """Flag generated images that copy a member (see the module docstring for the ratio).

    Args:
        generated: (N_gen, C, H, W) generated images in [-1, 1].
        members: (N_mem, C, H, W) training images of the model, same scale, N_mem >= k_nearest.
        k_nearest: neighbours in the denominator (>= 2; with 1 the ratio is always 1).
        threshold: ratio under which an image is a copy.
    Returns:
        ratio (N_gen,) float64, nearest_distance (N_gen,) float64, nearest_member (N_gen,) int64 (index into
        `members`), is_copy (N_gen,) bool, memorization_rate (float, fraction of copies), threshold, k_nearest.
    """
    if k_nearest < 2:
        raise ValueError(
            f"k_nearest must be >= 2 (the nearest distance is divided by the mean of k), got {k_nearest}"
        )
    from dualmd.attacks.nn_distance import knn_distances

    dist, idx = knn_distances(generated, members, k_nearest, batch_size)
    dist = dist.numpy()
    mean_k = dist.mean(axis=1)
    # 0/0 (the k nearest members are all identical to the image) is still an exact copy: ratio 0.
    ratio = np.divide(dist[:, 0], mean_k, out=np.zeros_like(mean_k), where=mean_k > 0)
    is_copy = ratio < threshold
    return {
        "ratio": ratio,
        "nearest_distance": dist[:, 0],
        "nearest_member": idx[:, 0].numpy().astype(np.int64),
        "is_copy": is_copy,
        "memorization_rate": float(is_copy.mean()),
        "threshold": float(threshold),
        "k_nearest": int(k_nearest),
    }


def closest_pairs(result: dict, num_pairs: int) -> np.ndarray:
    """The `num_pairs` generated/member pairs with the smallest l2 distance, closest first.

    Args:
        result: output of `copy_detection`.
    Returns:
        (P, 2) int64 rows (generated index, member index), P = min(num_pairs, N_gen); ties keep generated order.
    """
    order = np.argsort(result["nearest_distance"], kind="stable")[:num_pairs]
    return np.stack([order, result["nearest_member"][order]], axis=1).astype(np.int64)
