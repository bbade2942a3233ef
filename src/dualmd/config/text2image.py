"""The text-to-image section (`dualmd.text2image`), its nested sections on memorization (memorized prompts, Wen et
al.'s mitigation, the prompt-list detection, the stand-in scorers of Table 5) and the resources its workflow jobs
request (`text2image.resources`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from dualmd.config.base import ConfigError, Section, require


@dataclass(frozen=True)
class MemorizedPromptsConfig(Section):
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
        require(self.num_images >= 0, f"{prefix}.num_images", "must be >= 0 (0: off)")
        require(self.repeats >= 1, f"{prefix}.repeats", "must be >= 1")
        require(self.prompt_caption >= 0, f"{prefix}.prompt_caption", "must be >= 0")
        require(self.num_generations >= 1, f"{prefix}.num_generations", "must be >= 1")


@dataclass(frozen=True)
class MitigationConfig(Section):
    """Wen et al.'s inference-time mitigation ("Detecting, Explaining, and Mitigating Memorization in Diffusion
    Models", ICLR 2024, §4.2), a sampler option (`dualmd.text2image.mitigation`): at each of the first `num_steps`
    DDIM steps, AdamW optimises the prompt's text states (every token but the first) to lower the text-conditional
    noise magnitude ||eps(x_t, c) - eps(x_t, "")||, for at most `max_iterations` steps or until it is at most
    `target_loss`; the chain then goes on with the optimised states. The memorization-on-prompts stage scores the
    undefended models' generations with it as rows of their own (Table 5's "Wen et al." row)."""

    SECTION = "text2image.mitigation"
    # add the mitigated rows (the undefended models, each variant) to the memorization-on-prompts table (which
    # exists with memorized_prompts on)
    enabled: bool = False
    num_steps: int = 1  # first DDIM steps at which the states are optimised (Wen et al.: the first, step 0)
    max_iterations: int = 10  # optimiser steps per DDIM step (Wen et al.'s optim_iters)
    lr: float = 0.05  # AdamW learning rate (Wen et al.'s optim_lr; torch's default weight decay 0.01)
    # stop a generation's optimisation once its magnitude is at most this (Wen et al.'s optim_target_loss); None:
    # always run max_iterations steps
    target_loss: float | None = None

    def _validate(self, prefix: str) -> None:
        require(self.num_steps >= 1, f"{prefix}.num_steps", "must be >= 1")
        require(self.max_iterations >= 1, f"{prefix}.max_iterations", "must be >= 1")
        require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        require(self.target_loss is None or self.target_loss >= 0, f"{prefix}.target_loss", "must be >= 0")


@dataclass(frozen=True)
class PromptDetectionConfig(Section):
    """Memorized-prompt detection on the pretrained pipeline (the paper's Fig. 3 setting: SD v1.5 before
    fine-tuning, Webster's memorized prompts against ordinary ones), scored by Wen et al.'s detector
    (`dualmd.text2image.prompt_detection`). On when both lists are set."""

    SECTION = "text2image.prompt_detection"
    memorized_list: str | None = None  # text file, one memorized prompt per line
    ordinary_list: str | None = None  # text file, one ordinary prompt per line
    num_generations: int = 4  # guided DDIM generations per prompt (Wen et al.: 4)
    # the detector averages the first this many DDIM steps of `sample.num_inference_steps` (None: every step;
    # fewer steps stop the chains early)
    num_steps: int | None = None

    @property
    def enabled(self) -> bool:
        return self.memorized_list is not None and self.ordinary_list is not None

    def _validate(self, prefix: str) -> None:
        require(
            (self.memorized_list is None) == (self.ordinary_list is None),
            prefix,
            "memorized_list and ordinary_list go together: set both or neither",
        )
        require(self.num_generations >= 1, f"{prefix}.num_generations", "must be >= 1")
        require(self.num_steps is None or self.num_steps >= 1, f"{prefix}.num_steps", "must be >= 1 or null")


@dataclass(frozen=True)
class StandinScorersConfig(Section):
    """Training of the tiny run's stand-in CLIP (`dualmd.text2image.standin_scorers`), the network behind the CLIP
    score where `memorization.clip_path` or `utility.clip_path` is "standin": a tiny `CLIPModel` trained
    contrastively on the images outside the split and their captions. The stand-in copy descriptor
    (`memorization.copy_descriptor: standin`) is fixed and has no keys."""

    SECTION = "text2image.standin_scorers"
    num_steps: int = 300  # optimiser steps of CLIP's symmetric InfoNCE
    batch_size: int = 64  # image-caption pairs per step (each one's caption drawn among the image's captions)
    lr: float = 1e-3  # AdamW learning rate
    # images of the population held out of training: the record's held-out loss and pair accuracy
    num_heldout_images: int = 128
    seed: int = 0  # initialisation, held-out draw, batches and caption draws

    def _validate(self, prefix: str) -> None:
        require(self.num_steps >= 1, f"{prefix}.num_steps", "must be >= 1")
        require(self.batch_size >= 2, f"{prefix}.batch_size", "must be >= 2 (in-batch negatives)")
        require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        require(
            self.num_heldout_images >= 2, f"{prefix}.num_heldout_images", "must be >= 2 (pairs to compare)"
        )


@dataclass(frozen=True)
class JobResources(Section):
    """What one kind of text-to-image job asks the scheduler for: Snakemake's `gpu`, `mem_mb` and `runtime`
    resources (SLURM: `--gpus`, `--mem` and `--time`; locally `--resources gpu=N` keeps jobs of `gpu: 1` from
    sharing a device). The defaults suit the tiny stand-in on the CPU."""

    SECTION = "text2image.resources.<kind>"
    gpu: int = 0  # GPUs of the job (0: CPU only); training with gpu > 0 runs under `accelerate launch`
    mem_mb: int = 4000  # host memory in MB (not GPU memory)
    runtime: int = 60  # wall-clock limit in minutes

    def _validate(self, prefix: str) -> None:
        require(self.gpu >= 0, f"{prefix}.gpu", "must be >= 0 (0: CPU only)")
        require(self.mem_mb >= 1, f"{prefix}.mem_mb", "must be >= 1")
        require(self.runtime >= 1, f"{prefix}.runtime", "must be >= 1 (minutes)")


@dataclass(frozen=True)
class Text2ImageResourcesConfig(Section):
    """Resources of the text-to-image jobs, by kind of job (each kind names its rules in workflow/rules). No stage
    reads this section: changing it reruns nothing."""

    SECTION = "text2image.resources"
    # pretrain_t2i_pipeline (tiny stand-in only) and train_t2i_standin_scorers
    pretrain: JobResources = field(default_factory=JobResources)
    finetune: JobResources = field(default_factory=JobResources)  # finetune_t2i_model: baseline and teachers
    distill: JobResources = field(default_factory=JobResources)  # distill_t2i_model: the DistillMD student
    sample: JobResources = field(default_factory=JobResources)  # sample_t2i_images: one sampler's images
    attack: JobResources = field(default_factory=JobResources)  # score_t2i_attack: white-box, every model
    blackbox: JobResources = field(default_factory=JobResources)  # score_t2i_blackbox: generations + encoder
    memorization: JobResources = field(default_factory=JobResources)  # score_prompt_memorization
    utility: JobResources = field(default_factory=JobResources)  # reference_t2i_features, score_t2i_utility
    # metrics, tables, plots and the memorized-prompt selection: evaluate_t2i_attack, make_t2i_*report,
    # select_memorized_prompts (CPU only)
    report: JobResources = field(default_factory=JobResources)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> Text2ImageResourcesConfig:
        """Each kind's resources built (and checked) from its mapping; unknown kinds or keys raise ConfigError."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{prefix}: unknown job kind(s) {unknown}; known: {sorted(names)}")
        for kind, value in raw.items():
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}.{kind}: expected a mapping, got {value!r}")
        return cls(**{k: JobResources.from_mapping(v, prefix=f"{prefix}.{k}") for k, v in raw.items()})


@dataclass(frozen=True)
class Text2ImageConfig(Section):
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
    # tiny stand-in only (like the steps above, unused with `pretrained`): train the text encoder with the UNet
    # during pretraining (on the captions of the images outside the split), then freeze it; false keeps it at its
    # seeded random initialisation
    pretrain_text_encoder: bool = False
    # digits only: each image's original caption becomes its own (first template + a seeded three-word tag,
    # dualmd.text2image.captions.with_unique_captions); the templates stay as prompt diversification's alternatives
    unique_captions: bool = False
    caption_seed: int = 0  # seed of the unique captions' tags
    # Memory and precision levers of fine-tuning and distillation, named as in diffusers' train_text_to_image.py
    # (dualmd.text2image.levers). All off by default: the tiny CPU run's numbers do not depend on them.
    gradient_checkpointing: bool = (
        False  # UNet.enable_gradient_checkpointing(): recompute activations in backward
    )
    # micro-batches per optimiser step; train.batch_size stays the effective batch (divisible by this)
    gradient_accumulation_steps: int = 1
    adam_weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: the package's Adam; authors: 1e-2)
    use_8bit_adam: bool = False  # bitsandbytes' AdamW8bit (CUDA and bitsandbytes needed; refused otherwise)
    # dtype of the frozen modules: VAE, text encoder and DistillMD's teachers (fp16: CUDA only)
    weight_dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    allow_tf32: bool = False  # TF32 matmuls and convolutions on Ampere+ GPUs (training, sampling, attacks)
    encode_batch_size: int = 64  # images / captions per VAE / text-encoder pass when latents are cached
    memorized_prompts: MemorizedPromptsConfig = field(default_factory=MemorizedPromptsConfig)
    mitigation: MitigationConfig = field(default_factory=MitigationConfig)  # Wen et al.'s, a row of Table 5
    prompt_detection: PromptDetectionConfig = field(default_factory=PromptDetectionConfig)  # Fig. 3's setting
    # the stand-in CLIP's training, used where a scorer key is "standin" (memorization, utility)
    standin_scorers: StandinScorersConfig = field(default_factory=StandinScorersConfig)
    # gpu, mem_mb and runtime of each kind of text-to-image job (the workflow's rules read them; no stage does)
    resources: Text2ImageResourcesConfig = field(default_factory=Text2ImageResourcesConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> Text2ImageConfig:
        """As every section, with the nested sections (`memorized_prompts`, `mitigation`, `prompt_detection`,
        `standin_scorers`, `resources`) built (and checked) first."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION
        nested = {}
        for key, section_cls in (
            ("memorized_prompts", MemorizedPromptsConfig),
            ("mitigation", MitigationConfig),
            ("prompt_detection", PromptDetectionConfig),
            ("standin_scorers", StandinScorersConfig),
            ("resources", Text2ImageResourcesConfig),
        ):
            value = raw.pop(key, None)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}.{key}: expected a mapping, got {value!r}")
            nested[key] = section_cls.from_mapping(value, prefix=f"{prefix}.{key}")
        section = replace(super().from_mapping(raw, prefix=prefix), **nested)
        section._validate(prefix)  # again, now with the nested section in place
        return section

    def _validate(self, prefix: str) -> None:
        require(0.0 <= self.caption_dropout < 1.0, f"{prefix}.caption_dropout", "must be in [0, 1)")
        require(self.guidance_scale >= 1.0, f"{prefix}.guidance_scale", "must be >= 1 (1: no guidance)")
        require(self.pretrain_vae_steps >= 1, f"{prefix}.pretrain_vae_steps", "must be >= 1")
        require(self.pretrain_unet_steps >= 1, f"{prefix}.pretrain_unet_steps", "must be >= 1")
        require(
            self.gradient_accumulation_steps >= 1, f"{prefix}.gradient_accumulation_steps", "must be >= 1"
        )
        require(self.adam_weight_decay >= 0.0, f"{prefix}.adam_weight_decay", "must be >= 0")
        require(self.encode_batch_size >= 1, f"{prefix}.encode_batch_size", "must be >= 1")
        require(
            self.enabled or not self.memorized_prompts.enabled,
            f"{prefix}.memorized_prompts.num_images",
            "memorized prompts belong to the text-to-image experiment: set text2image.enabled or num_images: 0",
        )
        require(
            self.enabled or not self.prompt_detection.enabled,
            f"{prefix}.prompt_detection",
            "prompt detection belongs to the text-to-image experiment: set text2image.enabled",
        )
        variants = self.variants
        require(len(variants) >= 1, f"{prefix}.prompt_diversification", "must name at least one variant")
        require(len(set(variants)) == len(variants), f"{prefix}.prompt_diversification", "holds duplicates")

    @property
    def variants(self) -> tuple[bool, ...]:
        """The prompt-diversification variants to build, in report order (a single bool is one variant)."""
        pd = self.prompt_diversification
        return (pd,) if isinstance(pd, bool) else tuple(pd)
