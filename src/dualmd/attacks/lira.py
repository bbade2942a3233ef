"""LiRA: a candidate's statistic calibrated against reference models, offline or online.

Carlini et al., "Membership Inference Attacks From First Principles" (IEEE S&P 2022); Carlini et al. used the
same reference-model calibration against diffusion models ("Extracting Training Data from Diffusion Models",
USENIX Security 2023). s(x) is the candidate's statistic on the attacked model — the score of another attack
(`statistic`: minus the denoising loss, minus the PIA distance, ...), higher = member — and s_1(x) .. s_K(x) its
statistic, from the same per-sample noise, on K reference models.

**Offline** (`mode: offline`): the reference models never saw a candidate (`dualmd.data.splits`, subsets
``ref<k>``: halves of dataset images outside the split), and

    score(x) = (s(x) - mean_k s_k(x)) / sigma(x)

the z-score of the one-sided test against the candidate's out-distribution; Carlini et al.'s offline
Lambda = Pr[Z < s(x)] is a monotone function of it, so both rank candidates alike.

**Online** (`mode: online`): K shadow models each train on a random half of the candidates (subsets
``shadow<k>``, every candidate IN for K / 2 of them). Per candidate, Gaussians N(mu_in, sd_in^2) and
N(mu_out, sd_out^2) are fitted to its statistic on the shadow models that trained on it and on those that did not:

    score(x) = log N(s(x); mu_in(x), sd_in(x)) - log N(s(x); mu_out(x), sd_out(x))

In both modes a standard deviation is the candidate's own over its reference statistics (`global_variance:
false`, ddof 1) or, the default, pooled over every candidate the references scored (for IN and OUT separately
online): sqrt of the sum of squared deviations from each candidate's mean over the sum of (count - 1). With a
handful of references a per-candidate variance is too noisy (Carlini et al.'s "fixed variance").

Which models calibrate a target (the baseline's recipe, or built like the target: `recipe`, in either mode) is the
catalog's `lira_references`, and online which of them trained on which candidate is `dualmd.data.members.
shadow_membership`; this module only sees their statistics. The calibration removes what makes an image easy or hard
for *any* model of the recipe, leaving what is specific to the attacked model. Cost: the statistic once per
reference model, shared by every target the same reference models calibrate.

The attacks `lira`, `lira_online`, `lira_target` and `lira_online_target` are this one class, each configured by its
own section (`attack.lira`, ...): the same keys with other defaults, so that one run reports the variants side by
side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from dualmd.attacks import loss, pia, sima  # noqa: F401  (registers what it calibrates)
from dualmd.attacks.base import ATTACKS, ModelAttack, own_section, register
from dualmd.config.attacks import AttackConfig, LiraConfig
from dualmd.models.adapter import NoisePredictor, Schedule


@dataclass(frozen=True)
class ReferenceStatistics:
    """A statistic of every candidate on each reference model.

    Attributes:
        sample_ids: (N,) distinct ids of the candidates.
        values: (K, N) float64, the statistic of candidate n on reference model k.
        statistic: the attack whose score is the statistic.
        is_in: online only, (K, N) bool, whether reference (shadow) model k trained on candidate n; None offline
            (no reference model trained on any candidate).
    """

    sample_ids: np.ndarray
    values: np.ndarray
    statistic: str
    is_in: np.ndarray | None = None

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
        if self.is_in is not None:
            is_in = np.asarray(self.is_in, dtype=bool)
            if is_in.shape != values.shape:
                raise ValueError(f"reference statistics: membership {is_in.shape} for values {values.shape}")
            if not (is_in.any(axis=0) & (~is_in).any(axis=0)).all():
                raise ValueError(
                    "reference statistics: online LiRA needs every candidate IN and OUT of some models"
                )
            object.__setattr__(self, "is_in", is_in)

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

    def in_out_distributions(
        self, sample_ids: np.ndarray, global_variance: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Online: mean and standard deviation of the IN, then of the OUT distribution (each (b,)) of candidates
        `sample_ids`; a pooled deviation pools over every candidate of these statistics.

        Raises:
            ValueError: offline statistics, a candidate the references did not score, or a zero deviation.
        """
        if self.is_in is None:
            raise ValueError("lira: online LiRA needs which shadow model trained on which candidate (is_in)")
        columns = self._columns(sample_ids)
        moments = []
        for mask in (self.is_in, ~self.is_in):
            count, mean, squares = _masked_moments(self.values, mask)
            pooled = np.sqrt(squares.sum() / (count - 1).sum())
            own = np.sqrt(squares / np.maximum(count - 1, 1))[columns]
            std = np.full(columns.size, pooled) if global_variance else own
            if not global_variance and (count[columns] < 2).any():
                raise ValueError(
                    "lira: a per-candidate variance needs two IN and two OUT statistics per candidate"
                )
            moments += [mean[columns], _positive(std)]
        return tuple(moments)  # type: ignore[return-value]

    def _columns(self, sample_ids: np.ndarray) -> np.ndarray:
        position = self._position
        missing = [int(i) for i in sample_ids if int(i) not in position]
        if missing:
            raise ValueError(f"lira: no reference statistic for sample ids {missing[:5]} (of {len(missing)})")
        return np.array([position[int(i)] for i in sample_ids], dtype=np.int64)


def _masked_moments(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate over the models in `mask` (both (K, N)): count, mean and sum of squared deviations, (N,)."""
    count = mask.sum(axis=0)
    mean = np.where(mask, values, 0.0).sum(axis=0) / count
    return count, mean, np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0)


def _positive(std: np.ndarray) -> np.ndarray:
    if not (std > 0).all():
        raise ValueError(
            f"lira: the reference models give identical statistics for {int((std <= 0).sum())} candidate(s), "
            "so they cannot calibrate them (are they copies of one model?)"
        )
    return std


def online_lira(
    statistic: Tensor, mean_in: Tensor, std_in: Tensor, mean_out: Tensor, std_out: Tensor
) -> Tensor:
    """log N(statistic; mean_in, std_in^2) - log N(statistic; mean_out, std_out^2) per candidate, all (b,)."""

    def log_density(mean: Tensor, std: Tensor) -> Tensor:  # the 1/sqrt(2 pi) cancels in the ratio
        return -0.5 * ((statistic - mean) / std) ** 2 - torch.log(std)

    return log_density(mean_in, std_in) - log_density(mean_out, std_out)


def offline_lira(statistic: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(statistic - mean) / std per candidate, all (b,); std > 0 (`ReferenceStatistics.out_distribution`)."""
    return (statistic - mean) / std


def lira_section(cfg: AttackConfig, attack: str = "lira") -> LiraConfig:
    """The section of LiRA attack `attack` ("lira", "lira_online", ...): its catalog entry's own."""
    return own_section(cfg, attack, LiraConfig, "LiRA")


def reference_statistics(
    cfg: AttackConfig,
    references: Sequence[tuple[NoisePredictor, Schedule]],
    images: Tensor,
    sample_ids: np.ndarray,
    *,
    attack: str = "lira",
    is_in: np.ndarray | None = None,
) -> ReferenceStatistics:
    """The statistic of LiRA attack `attack` (its section's `statistic`) of every candidate on each reference model.

    Args:
        references: (predictor, schedule) of each reference model.
        images: (N, C, H, W) in [-1, 1], every candidate of every target the references will calibrate.
        sample_ids: (N,) their distinct ids (they seed the statistic's noise, as for the attacked model).
        is_in: online, (K, N) bool: whether reference model k trained on candidate n.
    """
    name = lira_section(cfg, attack).statistic
    statistic = ATTACKS[name](cfg=cfg)
    values = [statistic.score(predictor, schedule, images, sample_ids) for predictor, schedule in references]
    return ReferenceStatistics(np.asarray(sample_ids), np.stack(values), statistic=name, is_in=is_in)


@register("lira")
class Lira(ModelAttack):
    """LiRA over the statistic of its section's `statistic`, offline or online by its `mode`; needs
    `with_references` before scoring."""

    references: ReferenceStatistics | None = None
    statistic: ModelAttack | None = None  # the attack whose score is calibrated, built once

    @property
    def section(self) -> LiraConfig:
        """This attack's own section (`attack.lira`, `attack.lira_online`, ...)."""
        return lira_section(self.cfg, self.name)

    def with_references(self, references: ReferenceStatistics) -> Lira:
        """This attack calibrated by `references` (which must hold the configured statistic)."""
        section = self.section
        if references.statistic != section.statistic:
            raise ValueError(
                f"{self.name}: reference statistics of {references.statistic!r}, but {section.SECTION}.statistic "
                f"is {section.statistic!r}"
            )
        if (references.is_in is not None) != (section.mode == "online"):
            raise ValueError(
                f"{self.name}: {section.mode} LiRA got the reference statistics of the other mode"
            )
        calibrated = type(self)(cfg=self.cfg)
        calibrated.references = references
        calibrated.statistic = ATTACKS[section.statistic](cfg=self.cfg)
        return calibrated

    def score_batch(self, model, schedule, images, sample_ids):
        if self.references is None or self.statistic is None:
            raise ValueError(
                f"{self.name} needs the statistics of its reference models "
                "(dualmd.attacks.lira.reference_statistics)"
            )
        section = self.section
        statistic, _ = self.statistic.score_batch(model, schedule, images, sample_ids)
        statistic = statistic.double()
        if section.mode == "online":
            moments = self.references.in_out_distributions(sample_ids, section.global_variance)
            mean_in, std_in, mean_out, std_out = (torch.from_numpy(a).to(statistic) for a in moments)
            score = online_lira(statistic, mean_in, std_in, mean_out, std_out)
            return score, {"statistic": statistic, "reference_mean": mean_out, "reference_mean_in": mean_in}
        mean, std = self.references.out_distribution(sample_ids, section.global_variance)
        mean_t, std_t = (torch.from_numpy(a).to(statistic) for a in (mean, std))
        return offline_lira(statistic, mean_t, std_t), {"statistic": statistic, "reference_mean": mean_t}


@register("lira_online")
class LiraOnline(Lira):
    """`lira` configured by `attack.lira_online` (online by default)."""


@register("lira_target")
class LiraTarget(Lira):
    """`lira` configured by `attack.lira_target` (reference models built like the target by default)."""


@register("lira_online_target")
class LiraOnlineTarget(Lira):
    """`lira` configured by `attack.lira_online_target` (online, shadow models built like the target by default)."""
