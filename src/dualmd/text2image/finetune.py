"""Training the conditional UNet in latent space through the package's one loop (`dualmd.train.loop.fit`).

Three runs share `train_conditional`, differing only in the batch source, the target and the starting UNet:

* pretraining (`dualmd.text2image.pretrain`): a random UNet, the population outside the private set, eps target;
* fine-tuning (`finetune_unet`): the baseline on all members or a teacher on one half, starting from the
  pretrained UNet, eps target (full-UNet fine-tuning; VAE and text encoder frozen, as SD's text-to-image example);
* DistillMD (`distill_unet`): a student starting from the pretrained UNet (as the authors' SD student), batches
  alternating between the halves D1 and D2, and the target of a D1 batch is teacher 2's caption-conditioned
  prediction (teacher 1's for D2), Algorithm 2 with the caption as condition.

A batch is `Conditioned`: latents z_0 = scaling_factor * (mu + sigma * n) drawn from the frozen VAE's posterior of
each image (as SD training samples its latents), and the text states of the caption the `CaptionSampler` picks for
(seed, step, image id), with caption dropout to the empty prompt for classifier-free guidance. Text states come
from a `CaptionBank` encoded once, since the text encoder is frozen.

Every fine-tuned model is written as a `StableDiffusionPipeline` folder (`save_pipeline`) whose ``unet/`` holds
the EMA weights; ``unet_raw/`` holds the raw weights and ``metadata.json`` the provenance.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from accelerate import Accelerator
from diffusers import UNet2DConditionModel
from torch import Tensor

from dualmd.config import TrainConfig
from dualmd.defense.distill import CrossTeacherTargets
from dualmd.models.adapter import Schedule
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import Components, encode_images, encode_prompts, save_pipeline
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import (
    BatchSource,
    Conditioned,
    FitResult,
    TargetFn,
    fit,
    make_accelerator,
    noise_target,
)

RAW_UNET_DIR = "unet_raw"
METADATA = "metadata.json"


@dataclass(frozen=True)
class CaptionBank:
    """Frozen text-encoder states of a fixed set of captions (the empty prompt included)."""

    index: dict[str, int]
    states: Tensor  # (num_captions, L, D)

    @classmethod
    def encode(cls, parts: Components, captions: Sequence[Sequence[str]]) -> CaptionBank:
        """Encode every distinct caption of `captions` (per image, its captions) and the empty prompt."""
        texts = list(dict.fromkeys(["", *(c for per_image in captions for c in per_image)]))
        states = torch.cat([encode_prompts(parts, texts[i : i + 256]) for i in range(0, len(texts), 256)])
        return cls(index={t: i for i, t in enumerate(texts)}, states=states.cpu())

    def __call__(self, prompts: Sequence[str]) -> Tensor:
        """States (B, L, D) of the prompts; a prompt outside the bank raises KeyError naming it."""
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise KeyError(f"prompt {missing[0]!r} is not in the caption bank")
        return self.states[[self.index[p] for p in prompts]]


@dataclass(frozen=True)
class CaptionedLatents:
    """`BatchSource` of conditional latents: `batch_size` images drawn uniformly with replacement, their latents
    sampled from the VAE posterior and their captions from `sampler` (dataset ids `image_ids`)."""

    mean: Tensor  # (N, 4, h, w) posterior mean, unscaled
    std: Tensor  # (N, 4, h, w)
    scaling_factor: float
    image_ids: Tensor  # (N,) long, dataset ids (seed the caption draws)
    sampler: CaptionSampler
    bank: CaptionBank
    batch_size: int

    def __call__(self, step: int, generator: torch.Generator) -> Conditioned:
        idx = torch.randint(len(self.mean), (self.batch_size,), generator=generator)
        noise = torch.randn(self.mean[idx].shape, generator=generator)
        z_0 = (self.mean[idx] + self.std[idx] * noise) * self.scaling_factor
        prompts = self.sampler(step, self.image_ids[idx].tolist())
        return Conditioned(x_0=z_0, encoder_hidden_states=self.bank(prompts))


@dataclass(frozen=True)
class AlternatingSources:
    """Algorithm 2's data order for any batch sources: even iterations draw from `half1`, odd from `half2`."""

    half1: BatchSource
    half2: BatchSource

    def __call__(self, step: int, generator: torch.Generator) -> Tensor | Conditioned:
        return (self.half1 if step % 2 == 0 else self.half2)(step, generator)


class ConditionalTeacher:
    """A frozen conditional UNet as the `CrossTeacherTargets` callable (x_t, t, encoder_hidden_states) -> eps."""

    def __init__(self, unet: UNet2DConditionModel):
        self.unet = unet.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, *, encoder_hidden_states: Tensor) -> Tensor:
        return self.unet(x_t, t, encoder_hidden_states=encoder_hidden_states).sample


def latent_source(
    parts: Components,
    images: Tensor,
    image_ids: Sequence[int],
    sampler: CaptionSampler,
    *,
    batch_size: int,
    bank: CaptionBank | None = None,
) -> CaptionedLatents:
    """The batch source of `images` (N, C, H, W) in [-1, 1] with dataset ids `image_ids` (N,).

    The VAE posterior is computed once; `bank` (default: every caption of `sampler`) holds the text states.
    """
    if len(images) != len(image_ids):
        raise ValueError(f"{len(images)} images but {len(image_ids)} image ids")
    mean, std = encode_images(parts.vae, images)
    return CaptionedLatents(
        mean=mean,
        std=std,
        scaling_factor=float(parts.vae.config.scaling_factor),
        image_ids=torch.as_tensor(list(image_ids), dtype=torch.long),
        sampler=sampler,
        bank=bank if bank is not None else CaptionBank.encode(parts, sampler.captions),
        batch_size=batch_size,
    )


def train_conditional(
    *,
    parts: Components,
    unet: UNet2DConditionModel,
    batches: BatchSource,
    target_fn: TargetFn,
    train_cfg: TrainConfig,
    state_dir: Path,
    description: dict[str, Any],
    accelerator: Accelerator | None = None,
) -> FitResult:
    """Train `unet` in place with `fit` (VAE and text encoder stay frozen; they are not optimised).

    `description` identifies the run (data hashes, config): it enters the run hash that decides whether a saved
    state under `state_dir` may be resumed.
    """
    parts.vae.requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    unet.train()
    return fit(
        unet=unet,
        schedule=Schedule.from_scheduler(parts.scheduler),
        batches=batches,
        target_fn=target_fn,
        cfg=train_cfg,
        accelerator=accelerator or make_accelerator(train_cfg),
        state_dir=state_dir,
        run_hash=run_hash({"train": train_cfg.to_dict(), **description}),
    )


def finetune_unet(
    *,
    parts: Components,
    images: Tensor,
    image_ids: Sequence[int],
    sampler: CaptionSampler,
    train_cfg: TrainConfig,
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Fine-tune a copy of the pretrained `parts.unet` on `images` (baseline: all members; teacher: one half).

    Args:
        parts: the pretrained pipeline's components (not modified).
        images: (N, C, H, W) float32 in [-1, 1]; image_ids: their (N,) dataset ids.
        sampler: captions of the dataset by id, with the prompt-diversification and caption-dropout settings.
        train_cfg: steps, batch size, learning rate, EMA, seed.
        out_dir: the pipeline folder written; state_dir: resumable training state.
        metadata: provenance (model_id, subset, subset_sha256, ...), stored in out_dir/metadata.json.
    Returns:
        The metadata written.
    """
    batches = latent_source(parts, images, image_ids, sampler, batch_size=train_cfg.batch_size)
    data = {"images_sha256": tensor_sha256(images), "captions": _sampler_record(sampler)}
    unet = copy.deepcopy(parts.unet)
    result = train_conditional(
        parts=parts,
        unet=unet,
        batches=batches,
        target_fn=noise_target,
        train_cfg=train_cfg,
        state_dir=state_dir,
        description={"data": data, "init": "pretrained"},
    )
    return write_finetuned(out_dir, parts, result, {**metadata, "data": data}, train_cfg)


def distill_unet(
    *,
    parts: Components,
    half1: Tensor,
    half1_ids: Sequence[int],
    half2: Tensor,
    half2_ids: Sequence[int],
    teacher1: UNet2DConditionModel,
    teacher2: UNet2DConditionModel,
    sampler: CaptionSampler,
    train_cfg: TrainConfig,
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Distil a DistillMD student from the pretrained UNet: on a D1 batch the target is teacher 2's prediction
    for the same noisy latent and caption, on a D2 batch teacher 1's (Algorithm 2; no ground-truth noise).

    Args:
        half1, half2: (N1, C, H, W), (N2, C, H, W) images of D1 and D2; half1_ids, half2_ids: their dataset ids.
        teacher1, teacher2: the UNets fine-tuned on D1 and on D2 (the caller checks their provenance).
        Other arguments as `finetune_unet`; the student gets the same number of steps as the baseline.
    Returns:
        The metadata written.
    """
    bank = CaptionBank.encode(parts, sampler.captions)
    batches = AlternatingSources(
        half1=latent_source(parts, half1, half1_ids, sampler, batch_size=train_cfg.batch_size, bank=bank),
        half2=latent_source(parts, half2, half2_ids, sampler, batch_size=train_cfg.batch_size, bank=bank),
    )
    accelerator = make_accelerator(train_cfg)
    teachers = [ConditionalTeacher(t.to(accelerator.device)) for t in (teacher1, teacher2)]
    targets = CrossTeacherTargets(teacher1=teachers[0], teacher2=teachers[1])
    data = {
        "half1_sha256": tensor_sha256(half1),
        "half2_sha256": tensor_sha256(half2),
        "teacher1_sha256": _weights_sha256(teacher1),
        "teacher2_sha256": _weights_sha256(teacher2),
        "captions": _sampler_record(sampler),
    }
    result = train_conditional(
        parts=parts,
        unet=copy.deepcopy(parts.unet),
        batches=batches,
        target_fn=targets,
        train_cfg=train_cfg,
        state_dir=state_dir,
        description={"data": data, "init": "pretrained", "distill": True},
        accelerator=accelerator,
    )
    return write_finetuned(out_dir, parts, result, {**metadata, "data": data}, train_cfg)


def write_finetuned(
    out_dir: Path, parts: Components, result: FitResult, metadata: dict[str, Any], train_cfg: TrainConfig
) -> dict[str, Any]:
    """Write the pipeline folder (EMA UNet in unet/), the raw UNet in unet_raw/ and metadata.json."""
    meta = {
        **metadata,
        "num_train_steps": train_cfg.num_train_steps,
        "train": train_cfg.to_dict(),
        "loss_curve": result.loss_curve,
        "wall_time_s": round(result.train_time_s, 2),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
    }
    out_dir = Path(out_dir)
    save_pipeline(out_dir, parts, unet=result.ema_unet)
    result.unet.save_pretrained(out_dir / RAW_UNET_DIR)
    (out_dir / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load_finetuned_unet(folder: str | Path, weights: Literal["raw", "ema"] = "ema") -> UNet2DConditionModel:
    """The EMA (unet/) or raw (unet_raw/) UNet of a folder written by `write_finetuned`."""
    sub = "unet" if weights == "ema" else RAW_UNET_DIR
    return UNet2DConditionModel.from_pretrained(Path(folder) / sub).eval()


def _sampler_record(sampler: CaptionSampler) -> dict[str, Any]:
    return {
        "seed": sampler.seed,
        "diversify": sampler.diversify,
        "dropout": sampler.dropout,
        "sha256": run_hash({"captions": [list(c) for c in sampler.captions]}),
    }


def _weights_sha256(unet: UNet2DConditionModel) -> str:
    return run_hash({k: tensor_sha256(v) for k, v in unet.state_dict().items()})
