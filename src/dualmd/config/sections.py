"""The sections of the pipeline's main path: the dataset and its split, the UNet, the noise schedule, training,
DistillMD's distillation and sampling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dualmd.config.base import Section, Weights, require

DatasetName = Literal["digits", "fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder"]


@dataclass(frozen=True)
class DatasetConfig(Section):
    """Which images the experiment uses and how they are shaped."""

    SECTION = "dataset"
    name: DatasetName = "digits"
    root: str | None = None  # local folder of cifar10/cifar100/stl10/fashion_mnist or the image_folder tree
    download: bool = False  # torchvision datasets only: fetch into `root` when missing
    image_size: int = 8  # pixels per side after resize/crop
    channels: int = 1  # 1 (grayscale) or 3 (RGB)
    max_images: int | None = None  # keep the first N images of the dataset (None: all)

    def _validate(self, prefix: str) -> None:
        require(self.image_size >= 4, f"{prefix}.image_size", "must be >= 4")
        require(self.channels in (1, 3), f"{prefix}.channels", "must be 1 or 3")
        require(self.max_images is None or self.max_images >= 4, f"{prefix}.max_images", "must be >= 4")
        if self.name in ("cifar10", "cifar100", "stl10", "image_folder"):
            require(
                self.root is not None, f"{prefix}.root", f"dataset {self.name!r} needs a local root folder"
            )


@dataclass(frozen=True)
class SplitConfig(Section):
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

    def _validate(self, prefix: str) -> None:
        require(0.0 < self.member_fraction < 1.0, f"{prefix}.member_fraction", "must be in (0, 1)")
        require(self.num_images is None or self.num_images >= 4, f"{prefix}.num_images", "must be >= 4")
        if self.source == "secmi":
            require(self.secmi_file is not None, f"{prefix}.secmi_file", "required when source is 'secmi'")
        for key in ("member_list", "nonmember_list"):
            if self.source == "lists":
                require(getattr(self, key) is not None, f"{prefix}.{key}", "required when source is 'lists'")


@dataclass(frozen=True)
class ModelConfig(Section):
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
        require(len(self.block_out_channels) >= 1, f"{prefix}.block_out_channels", "needs at least one level")
        for c in self.block_out_channels:
            require(
                c % self.norm_num_groups == 0,
                f"{prefix}.norm_num_groups",
                f"{self.norm_num_groups} does not divide block_out_channels entry {c}",
            )
        for lvl in self.attention_levels:
            require(
                0 <= lvl < len(self.block_out_channels),
                f"{prefix}.attention_levels",
                f"level {lvl} does not exist",
            )
        require(self.layers_per_block >= 1, f"{prefix}.layers_per_block", "must be >= 1")
        require(0.0 <= self.dropout < 1.0, f"{prefix}.dropout", "must be in [0, 1)")


@dataclass(frozen=True)
class DiffusionConfig(Section):
    """Forward process (DDPM noise schedule); prediction type is always epsilon."""

    SECTION = "diffusion"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"

    def _validate(self, prefix: str) -> None:
        require(self.num_train_timesteps >= 10, f"{prefix}.num_train_timesteps", "must be >= 10")
        require(
            0.0 < self.beta_start < self.beta_end < 1.0,
            f"{prefix}.beta_start",
            "need 0 < beta_start < beta_end < 1",
        )


@dataclass(frozen=True)
class TrainConfig(Section):
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
    # a model with checkpoints (dualmd.catalog) keeps its weights at these fractions of its steps; the early ones
    # reach the utility of the weakest defended model, so that the undefended curve brackets every defense
    snapshot_fractions: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5)

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """Steps at which checkpoints are kept: round(fraction * num_train_steps), distinct, in (0, steps)."""
        steps = {round(f * self.num_train_steps) for f in self.snapshot_fractions}
        return tuple(sorted(s for s in steps if 0 < s < self.num_train_steps))

    def _validate(self, prefix: str) -> None:
        require(self.num_train_steps >= 1, f"{prefix}.num_train_steps", "must be >= 1")
        for i, f in enumerate(self.snapshot_fractions):
            require(0.0 < f < 1.0, f"{prefix}.snapshot_fractions[{i}]", f"{f} is not in (0, 1)")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        require(self.warmup_steps >= 0, f"{prefix}.warmup_steps", "must be >= 0")
        require(self.grad_clip_norm > 0, f"{prefix}.grad_clip_norm", "must be > 0")
        require(0.0 <= self.ema_decay < 1.0, f"{prefix}.ema_decay", "must be in [0, 1)")
        require(self.checkpoint_every_steps >= 1, f"{prefix}.checkpoint_every_steps", "must be >= 1")
        require(self.log_every_steps >= 1, f"{prefix}.log_every_steps", "must be >= 1")
        require(self.probe_num_images >= 1, f"{prefix}.probe_num_images", "must be >= 1")
        require(len(self.probe_timesteps) >= 1, f"{prefix}.probe_timesteps", "needs at least one timestep")


@dataclass(frozen=True)
class DistillConfig(Section):
    """DistillMD (Algorithm 2): what differs from plain training."""

    SECTION = "distill"
    teacher_weights: Weights = "raw"  # teacher weights giving the targets; the authors' code uses raw


@dataclass(frozen=True)
class SampleConfig(Section):
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
        require(self.num_images >= 1, f"{prefix}.num_images", "must be >= 1")
        require(self.num_inference_steps >= 1, f"{prefix}.num_inference_steps", "must be >= 1")
        require(0.0 <= self.eta <= 1.0, f"{prefix}.eta", "must be in [0, 1]")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
