"""One experiment: the run dimension and the optional controls, every section together with the checks that
relate two of them, and `load_config`, which reads an experiment (or a stage) config file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dualmd import catalog
from dualmd.config.attacks import AttackConfig
from dualmd.config.base import ConfigError, Section, plain, require
from dualmd.config.evaluation import (
    DatasetInferenceConfig,
    HeldoutConfig,
    MemorizationConfig,
    MetricsConfig,
    SetInferenceConfig,
    UtilityConfig,
)
from dualmd.config.sections import (
    DatasetConfig,
    DiffusionConfig,
    DistillConfig,
    ModelConfig,
    SampleConfig,
    SplitConfig,
    TrainConfig,
)
from dualmd.config.text2image import Text2ImageConfig


@dataclass(frozen=True)
class RunsConfig(Section):
    """The run dimension: independent replicates of the whole experiment under one workflow call."""

    SECTION = "runs"
    replicates: int = (
        1  # replicate r (paths .../rep<r>/...) adds r to split.seed, split.half_seed, train.seed
    )

    def _validate(self, prefix: str) -> None:
        require(self.replicates >= 1, f"{prefix}.replicates", "must be >= 1")


@dataclass(frozen=True)
class ControlsConfig(Section):
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
            require(
                0 < r <= 1 and abs(100 * r - round(100 * r)) < 1e-9,
                f"{prefix}.overlaps[{i}]",
                f"{r} is not a whole percentage in (0, 1]",
            )
        require(
            len(set(self.overlap_percents)) == len(self.overlaps), f"{prefix}.overlaps", "holds duplicates"
        )
        for i, e in enumerate(self.dp_epsilons):
            try:
                catalog.dp_target(e)
            except ValueError as err:
                raise ConfigError(f"{prefix}.dp_epsilons[{i}]: {err}") from None
        require(
            len(set(self.dp_epsilons)) == len(self.dp_epsilons), f"{prefix}.dp_epsilons", "holds duplicates"
        )


SECTIONS: dict[str, type[Section]] = {
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
    "dataset_inference": DatasetInferenceConfig,
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
    dataset_inference: DatasetInferenceConfig = field(default_factory=DatasetInferenceConfig)
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
            built[name] = section_cls.from_mapping(raw[name])
        experiment = cls(**built)
        experiment._validate_across(set(built))
        return experiment

    @classmethod
    def resolve(cls, raw: Mapping[str, Any] | None) -> ExperimentConfig:
        """The whole experiment from a user's config: absent sections take their defaults and every check across
        sections applies (`from_mapping` reads a stage config, which holds only the sections its stage reads)."""
        return cls.from_mapping({**dict.fromkeys(SECTIONS), **(raw or {})})

    def _validate_across(self, given: set[str]) -> None:
        """Checks that relate two sections, applied when both were given (a stage config holds only its own)."""
        num_t = self.diffusion.num_train_timesteps
        if "diffusion" in given and "train" in given:
            for i, t in enumerate(self.train.probe_timesteps):
                require(0 <= t < num_t, f"train.probe_timesteps[{i}]", f"{t} is not in [0, {num_t})")
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
                    require(0 <= t < num_t, key, f"{t} is not in [0, {num_t})")
            require(a.secmi.t_sec < num_t, "attack.secmi.t_sec", f"{a.secmi.t_sec} is not below {num_t}")
        if "diffusion" in given and "sample" in given:
            require(
                self.sample.num_inference_steps <= num_t,
                "sample.num_inference_steps",
                f"must be <= diffusion.num_train_timesteps ({num_t})",
            )
        if "sample" in given and "utility" in given:
            require(
                self.utility.num_images <= self.sample.num_images,
                "utility.num_images",
                f"{self.utility.num_images} exceeds the {self.sample.num_images} images each sampler generates "
                "(sample.num_images)",
            )
        if "sample" in given and "attack" in given:
            require(
                self.attack.nn_distance.k <= self.sample.num_images,
                "attack.nn_distance.k",
                f"exceeds the {self.sample.num_images} generated images (sample.num_images)",
            )
        if "train" in given and "controls" in given:
            require(
                not (self.train.compile and self.controls.dp_epsilons),
                "train.compile",
                "cannot combine with DP-SGD (controls.dp_epsilons): Opacus' per-sample gradient hooks do not run "
                "under torch.compile; set train.compile: false or drop the DP-SGD controls",
            )
            require(
                not (self.train.channels_last and self.train.fused_adam and self.controls.dp_epsilons),
                "train.fused_adam",
                "cannot combine with train.channels_last under DP-SGD (controls.dp_epsilons): Opacus writes NCHW "
                "gradients for NHWC weights and the fused kernel assumes one layout; turn one of them off",
            )
        if "dataset" in given and "model" in given:
            levels = len(self.model.block_out_channels)
            require(
                self.dataset.image_size % 2 ** (levels - 1) == 0,
                "dataset.image_size",
                f"{self.dataset.image_size} is not divisible by 2**{levels - 1}, which the "
                f"{levels}-level UNet (model.block_out_channels) needs",
            )

        if "dataset" in given and "split" in given and self.split.source == "lists":
            require(
                self.dataset.name == "image_folder",
                "split.source",
                "'lists' names files of an image folder: set dataset.name to image_folder",
            )
        if "train" in given and "text2image" in given:
            steps = self.text2image.gradient_accumulation_steps
            require(
                self.train.batch_size % steps == 0,
                "text2image.gradient_accumulation_steps",
                f"train.batch_size {self.train.batch_size} (the effective batch) is not divisible by {steps}",
            )
        if "dataset" in given and "text2image" in given and self.text2image.enabled:
            require(
                self.dataset.name in ("digits", "image_folder"),
                "dataset.name",
                "text2image needs captions: digits (template captions) or image_folder (metadata.jsonl)",
            )
            require(
                self.dataset.image_size % 8 == 0,
                "dataset.image_size",
                f"{self.dataset.image_size} is not a multiple of 8 (4x VAE downsampling, then a 2-level UNet)",
            )
            require(
                self.dataset.name == "digits" or not self.text2image.unique_captions,
                "text2image.unique_captions",
                "tags the digits' template captions; an image folder's metadata.jsonl has captions of its own",
            )
        if "attack" in given and "text2image" in given and self.text2image.enabled:
            other = [a for a in self.attack.names if a not in catalog.TEXT2IMAGE_ATTACKS]
            require(
                not other,
                "attack.names",
                f"{other} do not run on text-to-image models; known: {list(catalog.TEXT2IMAGE_ATTACKS)}",
            )
        if (
            "attack" in given and "metrics" in given
        ):  # the run's attacks (an attack's stage config names it alone)
            # a tuned variant reads its a-priori attack's scores and is reported beside them, never instead
            names = self.attack.names
            alone = [n for n in names if (base := catalog.attack(n).tunes) and base not in names]
            require(not alone, "attack.names", f"{alone} need the attack(s) they tune in the same list")
        if "attack" in given and "text2image" in given and not self.text2image.enabled:
            prompted = [a for a in self.attack.names if catalog.attack(a).access == "prompts"]
            require(
                not prompted,
                "attack.names",
                f"{prompted} attack text-to-image samplers only (text2image.enabled is false)",
            )
        if "utility" in given and "text2image" in given and not self.text2image.enabled:
            require(
                self.utility.clip_path is None,
                "utility.clip_path",
                "the CLIP score compares images with their prompts (text2image.enabled is false)",
            )
        if "sample" in given and "text2image" in given and self.text2image.enabled:
            require(
                self.sample.scheduler == "ddim",
                "sample.scheduler",
                "text2image samples with DDIM (the sampler of Stable Diffusion pipelines and of DualMD's)",
            )
            steps = self.sample.num_inference_steps
            for key, value in (
                ("mitigation.num_steps", self.text2image.mitigation.num_steps),
                ("prompt_detection.num_steps", self.text2image.prompt_detection.num_steps),
            ):
                require(
                    value is None or value <= steps,
                    f"text2image.{key}",
                    f"{value} is more than the {steps} DDIM steps of sample.num_inference_steps",
                )
        if "attack" in given and "text2image" in given and not self.text2image.enabled:
            require(
                self.attack.pia.guidance_scale == 1.0,
                "attack.pia.guidance_scale",
                "classifier-free guidance needs a text-conditional model (text2image.enabled is false)",
            )
        if "memorization" in given and "text2image" in given and not self.text2image.enabled:
            for key in ("copy_descriptor", "clip_path"):
                require(
                    getattr(self.memorization, key) is None,
                    f"memorization.{key}",
                    "Table 5's scores are computed by the text-to-image memorization stage (text2image.enabled "
                    "is false)",
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain-YAML form of every section with every key (also those `SplitConfig.to_dict` omits)."""
        return plain(asdict(self))


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
