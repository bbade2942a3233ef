"""Offline LiRA: a candidate's statistic calibrated against reference models that never saw it.

Carlini et al., "Membership Inference Attacks From First Principles" (IEEE S&P 2022), offline variant; Carlini
et al. used the same reference-model calibration against diffusion models ("Extracting Training Data from
Diffusion Models", USENIX Security 2023). K reference models are trained with the baseline's recipe, each on a
random half of a population of dataset images outside the split (`dualmd.data.splits`, subsets ``ref<k>``), so
every candidate is *out* for all of them. With s(x) the candidate's statistic on the attacked model — the score of
another attack (`attack.lira.statistic`: minus the denoising loss, minus the PIA distance, ...), higher = member
— and s_1(x) .. s_K(x) its statistic on the references:

    score(x) = (s(x) - mean_k s_k(x)) / sigma(x)

the z-score of the one-sided test against the candidate's out-distribution N(mean_k s_k(x), sigma(x)^2); Carlini
et al.'s offline Lambda = Pr[Z < s(x)] is a monotone function of it, so both rank candidates alike. sigma(x) is
the candidate's own standard deviation over the references (`global_variance: false`, ddof 1) or, the default,
the pooled within-candidate standard deviation sqrt(mean_x var_k s_k(x)) over every candidate the references
scored: with a handful of references a per-candidate variance is too noisy (Carlini et al.'s "fixed variance").

The calibration removes what makes an image easy or hard for *any* model of this recipe, leaving what is specific
to the attacked model: the reason it beats uncalibrated thresholds at low false-positive rates. Reference
statistics use the same per-sample noise as the attacked model's (the seed and sample id), so they differ only
by the model. Cost: the statistic's cost once per reference model, shared by every attacked target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks import loss, pia, sima  # noqa: F401  (registers what it calibrates)
from dualmd.attacks.base import ATTACKS, ModelAttack, register
from dualmd.config.attacks import AttackConfig
from dualmd.models.adapter import NoisePredictor, Schedule


@dataclass(frozen=True)
class ReferenceStatistics:
    """A statistic of every candidate on each reference model.

    Attributes:
        sample_ids: (N,) distinct ids of the candidates.
        values: (K, N) float64, the statistic of candidate n on reference model k.
        statistic: the attack whose score is the statistic.
    """

    sample_ids: np.ndarray
    values: np.ndarray
    statistic: str

    def __post_init__(self) -> None:
        ids, values = np.asarray(self.sample_ids, dtype=np.int64), np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != ids.size or values.shape[0] < 2:
            raise ValueError(
                f"reference statistics: expected (K >= 2, {ids.size}) values, got {values.shape}; LiRA needs "
                "at least two reference models"
            )
        if len(np.unique(ids)) != ids.size:
            raise ValueError("reference statistics: duplicate sample ids")
        if not np.isfinite(values).all():
            raise ValueError("reference statistics: non-finite values")
        object.__setattr__(self, "sample_ids", ids)
        object.__setattr__(self, "values", values)

    @cached_property
    def pooled_std(self) -> float:
        """sqrt(mean over candidates of the variance over references), ddof 1 (computed once)."""
        return float(np.sqrt(self.values.var(axis=0, ddof=1).mean()))

    @cached_property
    def _position(self) -> dict[int, int]:
        return {int(i): n for n, i in enumerate(self.sample_ids)}

    def out_distribution(
        self, sample_ids: np.ndarray, global_variance: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (each (b,)) of the out-distribution of candidates `sample_ids`.

        Raises:
            ValueError: a candidate the references did not score.
        """
        position = self._position
        missing = [int(i) for i in sample_ids if int(i) not in position]
        if missing:
            raise ValueError(f"lira: no reference statistic for sample ids {missing[:5]} (of {len(missing)})")
        columns = self.values[:, [position[int(i)] for i in sample_ids]]
        std = np.full(columns.shape[1], self.pooled_std) if global_variance else columns.std(axis=0, ddof=1)
        if not (std > 0).all():
            raise ValueError(
                f"lira: the reference models give identical statistics for {int((std <= 0).sum())} candidate(s), "
                "so they cannot calibrate them (are they copies of one model?)"
            )
        return columns.mean(axis=0), std


def offline_lira(statistic: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(statistic - mean) / std per candidate, all (b,); std > 0 (`ReferenceStatistics.out_distribution`)."""
    return (statistic - mean) / std


def reference_statistics(
    cfg: AttackConfig,
    references: Sequence[tuple[NoisePredictor, Schedule]],
    images: Tensor,
    sample_ids: np.ndarray,
) -> ReferenceStatistics:
    """The statistic `cfg.lira.statistic` of every candidate on each reference model.

    Args:
        references: (predictor, schedule) of each reference model.
        images: (N, C, H, W) in [-1, 1], every candidate of every target the references will calibrate.
        sample_ids: (N,) their distinct ids (they seed the statistic's noise, as for the attacked model).
    """
    name = cfg.lira.statistic
    statistic = ATTACKS[name](cfg=cfg)
    values = [statistic.score(predictor, schedule, images, sample_ids) for predictor, schedule in references]
    return ReferenceStatistics(np.asarray(sample_ids), np.stack(values), statistic=name)


@register("lira")
class Lira(ModelAttack):
    """Offline LiRA over the statistic of `attack.lira.statistic`; needs `with_references` before scoring."""

    references: ReferenceStatistics | None = None
    statistic: ModelAttack | None = None  # the attack whose score is calibrated, built once

    def with_references(self, references: ReferenceStatistics) -> Lira:
        """This attack calibrated by `references` (which must hold the configured statistic)."""
        if references.statistic != self.cfg.lira.statistic:
            raise ValueError(
                f"lira: reference statistics of {references.statistic!r}, but attack.lira.statistic is "
                f"{self.cfg.lira.statistic!r}"
            )
        calibrated = Lira(cfg=self.cfg)
        calibrated.references = references
        calibrated.statistic = ATTACKS[self.cfg.lira.statistic](cfg=self.cfg)
        return calibrated

    def score_batch(self, model, schedule, images, sample_ids):
        if self.references is None or self.statistic is None:
            raise ValueError(
                "lira needs the statistics of its reference models (dualmd.attacks.lira.reference_statistics)"
            )
        statistic, _ = self.statistic.score_batch(model, schedule, images, sample_ids)
        mean, std = self.references.out_distribution(sample_ids, self.cfg.lira.global_variance)
        statistic = statistic.double()
        mean_t, std_t = (torch.from_numpy(a).to(statistic) for a in (mean, std))
        return offline_lira(statistic, mean_t, std_t), {"statistic": statistic, "reference_mean": mean_t}
