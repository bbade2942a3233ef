"""Memorization: model-side t-error (DualMD paper Sec. 3.6, Eq. 8) and copy detection on generated images.

t-error: SecMI's deterministic round-trip error (`dualmd.attacks.secmi`), positive, lower for memorized
images; its separation of members from non-members is reported as an AUC.

Copy detection: for a generated image g with member distances d_1 <= d_2 <= ... (flattened pixels), g counts as
a copy when ratio(g) < threshold, under one of three rules (`COPY_RULES`, config ``memorization.copy_rule``):

* ``mean_k_ratio`` (default): ratio = d_1 / ((1/k) sum_{j=1..k} d_j), in [0, 1]. With threshold 1/3 and k = 5,
  d_1 must be below 2/7 of the mean of d_2..d_5.
* ``second_nearest_ratio``: ratio = d_1 / d_2 (the nearest / second-nearest rule of DiffMemorize, Gu et al.;
  threshold 1/3 there).
* ``carlini``: ratio = d_1 / (alpha (1/n) sum_{j=1..n} d_j) with n = k nearest members and alpha = 0.5, Carlini
  et al. 2023's relative l2 distance as the public CIFAR-10 re-implementation computes it (n = 50 there, the
  nearest member included in the mean). The paper's threshold was not found in the retrieved sources, so the
  threshold stays the user's choice. It equals ``mean_k_ratio`` / alpha: the same ordering, a doubled ratio.

An exact copy has ratio 0 (also when every distance is 0, i.e. duplicated members). Dividing by a local
neighbour distance makes each rule scale-free and ignores images that merely lie in a dense region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dualmd.metrics import auc

if TYPE_CHECKING:
    from torch import Tensor

    from dualmd.config.attacks import SecMIConfig
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


#: Copy rules: name -> what the ratio divides the nearest member distance d_1 by.
COPY_RULES = {
    "mean_k_ratio": "the mean distance to the k nearest members",
    "second_nearest_ratio": "the distance to the second-nearest member",
    "carlini": "alpha times the mean distance to the k nearest members (Carlini et al. 2023)",
}
CARLINI_ALPHA = 0.5


def copy_detection(
    generated: Tensor,
    members: Tensor,
    *,
    k_nearest: int,
    threshold: float = 1.0 / 3.0,
    rule: str = "mean_k_ratio",
    batch_size: int = 256,
) -> dict[str, np.ndarray | float]:
    """Flag generated images that copy a member (see the module docstring for the rules).

    Args:
        generated: (N_gen, C, H, W) generated images in [-1, 1].
        members: (N_mem, C, H, W) training images of the model, same scale, N_mem >= k_nearest.
        k_nearest: neighbours in the denominator (>= 2; with 1 the mean-of-k ratio is always 1); the
            second-nearest rule needs only 2.
        threshold: ratio under which an image is a copy.
        rule: a key of `COPY_RULES`.
    Returns:
        ratio (N_gen,) float64, nearest_distance (N_gen,) float64, nearest_member (N_gen,) int64 (index into
        `members`), is_copy (N_gen,) bool, memorization_rate (float, fraction of copies), threshold, k_nearest,
        rule (str).
    """
    if rule not in COPY_RULES:
        raise ValueError(f"unknown copy rule {rule!r}; known: {list(COPY_RULES)}")
    if k_nearest < 2:
        raise ValueError(
            f"k_nearest must be >= 2 (the nearest distance is divided by the mean of k), got {k_nearest}"
        )
    from dualmd.attacks.nn_distance import knn_distances

    dist, idx = knn_distances(generated, members, k_nearest, batch_size)
    dist = dist.numpy()
    denominator = {
        "mean_k_ratio": lambda: dist.mean(axis=1),
        "second_nearest_ratio": lambda: dist[:, 1],
        "carlini": lambda: CARLINI_ALPHA * dist.mean(axis=1),
    }[rule]()
    # 0/0 (the nearest members are all identical to the image) is still an exact copy: ratio 0.
    ratio = np.divide(dist[:, 0], denominator, out=np.zeros_like(denominator), where=denominator > 0)
    is_copy = ratio < threshold
    return {
        "ratio": ratio,
        "nearest_distance": dist[:, 0],
        "nearest_member": idx[:, 0].numpy().astype(np.int64),
        "is_copy": is_copy,
        "memorization_rate": float(is_copy.mean()),
        "threshold": float(threshold),
        "k_nearest": int(k_nearest),
        "rule": rule,
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


def pair_labels(result: dict, pairs: np.ndarray) -> list[str]:
    """The text printed under each closest pair: its nearest-member distance d, its copy ratio and whether the
    copy rule flags it.

    Args:
        result: output of `copy_detection`.
        pairs: (P, 2) rows (generated index, member index), as `closest_pairs` returns.
    Returns:
        P strings of two or three lines, e.g. "d = 0.100\\nratio = 0.020\\ncopy" (3 decimals each; the third
        line only for a copy).
    """
    labels = []
    for g in pairs[:, 0]:
        lines = [f"d = {result['nearest_distance'][g]:.3f}", f"ratio = {result['ratio'][g]:.3f}"]
        if result["is_copy"][g]:
            lines.append("copy")
        labels.append("\n".join(lines))
    return labels


def pairs_caption(result: dict) -> str:
    """What the numbers of `pair_labels` are, in one sentence per number, for the figure of the closest pairs.

    Args:
        result: output of `copy_detection` (its rule, k_nearest and threshold are named).
    """
    return (
        "Closest pairs first. d: Euclidean (l2) distance between the generated image and its nearest member, "
        "over all pixels with values in [-1, 1]. "
        f"ratio: d / {COPY_RULES[result['rule']]} (rule {result['rule']}, k = {result['k_nearest']}); "
        f"a copy when ratio < {result['threshold']:.3g}."
    )
