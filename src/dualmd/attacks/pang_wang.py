"""Black-box membership inference against fine-tuned text-to-image models (Pang & Wang 2023, "Black-box
Membership Inference Attacks against Fine-tuned Diffusion Models"), as run by Tran et al. (Table 4).

The attacker prompts the sampler under attack with a candidate's caption, receives G images (the paper: 3, DDIM
50 steps, guidance 7.5) and compares them with the candidate in the embedding space of an image encoder: a
member's caption makes a model that memorized it generate images close to the member. Per candidate the
attack builds one similarity vector (`similarity_features`, the mean over the G generations), then a
classifier: a Gaussian per class, fitted on a labelled slice of the candidates after standardisation, scores
every other candidate by the log-likelihood ratio log p(f | member) - log p(f | non-member) (the authors'
"distribution" method; `gaussian_llr`). The labelled slice is the first `fit_fraction` of the members and of the
non-members in candidate order (`train_test_split`); only the rest is scored.

This module holds the numbers: features and the classifier, on arrays. Generating the images and embedding
them is `dualmd.text2image.blackbox`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from dualmd.attacks.base import Attack, AttackResult, Requires, check_labels, register, train_test_split

#: How generated and candidate embeddings are compared:
#: "product": pooled embeddings (N, D), the product of the L2-normalised vectors per dimension (summed over D
#: it is their cosine similarity); "token_cosine": token embeddings (N, T, D), per dimension the cosine
#: similarity of the two T-vectors (the authors' DeiT features: `cosine_similarity` over the token axis).
Similarity = Literal["product", "token_cosine"]


def similarity_features(generated: np.ndarray, candidate: np.ndarray, similarity: Similarity) -> np.ndarray:
    """Per-dimension similarity of each candidate to its generations, averaged over the generations.

    Args:
        generated: (N, G, D) pooled or (N, G, T, D) token embeddings of the G images generated per candidate.
        candidate: (N, D) or (N, T, D) embeddings of the candidates themselves.
        similarity: see `Similarity`.
    Returns:
        (N, D) float64 features.
    """
    gen, cand = np.asarray(generated, np.float64), np.asarray(candidate, np.float64)[:, None]  # (N, 1, ...)
    if gen.shape[0] != cand.shape[0] or gen.shape[2:] != cand.shape[2:]:
        raise ValueError(
            f"generated {gen.shape} and candidate {cand.shape[:1] + cand.shape[2:]} do not match"
        )
    if similarity == "product":
        if gen.ndim != 3:
            raise ValueError(f"'product' needs pooled embeddings (N, G, D), got {gen.shape}")
        axis = -1
    elif similarity == "token_cosine":
        if gen.ndim != 4:
            raise ValueError(f"'token_cosine' needs token embeddings (N, G, T, D), got {gen.shape}")
        axis = -2
    else:
        raise ValueError(f"unknown similarity {similarity!r}; use 'product' or 'token_cosine'")
    eps = 1e-12  # as torch's cosine_similarity: a zero vector has similarity 0, not NaN
    u = gen / np.maximum(np.linalg.norm(gen, axis=axis, keepdims=True), eps)
    v = cand / np.maximum(np.linalg.norm(cand, axis=axis, keepdims=True), eps)
    per_generation = u * v if similarity == "product" else (u * v).sum(axis=axis)  # (N, G, D)
    return per_generation.mean(axis=1)


def _gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """log N(x; mean, cov) per row of x (M, D), through the Cholesky factor of cov (D, D)."""
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mean).T)  # (D, M): L^-1 (x - mu)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * ((z**2).sum(axis=0) + log_det + x.shape[1] * np.log(2 * np.pi))


def gaussian_llr(
    fit_features: np.ndarray, fit_is_member: np.ndarray, features: np.ndarray, *, ridge: float = 1e-5
) -> np.ndarray:
    """log p(f | member) - log p(f | non-member) under Gaussians fitted to a labelled set.

    The features are standardised with the mean and (population) standard deviation of the whole labelled set
    (scikit-learn's StandardScaler), then each class gets its sample mean and sample covariance
    (N - 1 normalised) plus `ridge` on the diagonal.

    Args:
        fit_features: (M, D) features of the labelled candidates; fit_is_member: (M,) bool, both classes with
            at least two candidates each.
        features: (K, D) features to score.
        ridge: added to each class covariance's diagonal.
    Returns:
        (K,) float64 log-likelihood ratios, higher = more likely a member.
    """
    from sklearn.preprocessing import StandardScaler

    fit = np.asarray(fit_features, np.float64)
    labels = np.asarray(fit_is_member, bool)
    if min(labels.sum(), (~labels).sum()) < 2:
        raise ValueError(
            f"need >= 2 labelled members and non-members, got {labels.sum()} and {(~labels).sum()}"
        )
    scaler = StandardScaler().fit(fit)
    fit, x = scaler.transform(fit), scaler.transform(np.asarray(features, np.float64))
    log_p = {}
    for cls in (True, False):
        group = fit[labels == cls]
        cov = np.atleast_2d(np.cov(group, rowvar=False)) + ridge * np.eye(fit.shape[1])
        log_p[cls] = _gaussian_log_pdf(x, group.mean(axis=0), cov)
    return log_p[True] - log_p[False]


@register("pang_wang")
class PangWang(Attack):
    """Fit the two Gaussians on the labelled slice of the candidates, score the others by their LLR."""

    requires: ClassVar[Requires] = "prompts"

    def run(self, features: np.ndarray, sample_ids: np.ndarray, is_member: np.ndarray) -> AttackResult:
        """Scores of the held-out candidates.

        Args:
            features: (N, D) `similarity_features` of every candidate.
            sample_ids: (N,) candidate ids; is_member: (N,) bool.
        Returns:
            Scores (higher = member) of the candidates outside the labelled slice only.
        """
        ids = np.asarray(sample_ids, np.int64)
        labels = check_labels(is_member, len(ids))
        if len(features) != len(ids):
            raise ValueError(f"{len(features)} feature rows for {len(ids)} candidates")
        fit, test = train_test_split(labels, self.cfg.pang_wang.fit_fraction, self.name)
        scores = gaussian_llr(
            features[fit], labels[fit], features[test], ridge=self.cfg.pang_wang.covariance_ridge
        )
        return AttackResult(ids[test], labels[test], scores, {}, attack=self.name)
