"""Training the conditional UNet in latent space through the package's one loop (`dualmd.train.loop.fit`).

Three runs share `train_conditional`, differing only in the batch source, the target and the starting UNet:

* pretraining (`dualmd.text2image.pretrain`): a random UNet, the population outside the private set, eps target;
* fine-tuning (`finetune_unet`): the baseline on all members or a teacher on one half, starting from the
  pretrained UNet, eps target (full-UNet fine-tuning; VAE and text encoder frozen, as SD's text-to-image example);
* DistillMD (`distill_unet`): a student starting from the pretrained UNet (as the authors' SD student), batches
  alternating between the halves D1 and D2, and the target of a D1 batch is teacher 2's caption-conditioned
  prediction (teacher 1's for D2), Algorithm 2 with the caption as condition.

Batches come from `dualmd.text2image.batches` (latents sampled from the frozen VAE's posterior, the states of the
caption drawn for (seed, step, image id), caption dropout).

Every fine-tuned model is written as a `StableDiffusionPipeline` folder (`save_pipeline`) whose ``unet/`` holds
the EMA weights; ``unet_raw/`` holds the raw weights and ``metadata.json`` the provenance.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from accelerate import Accelerator
from diffusers import UNet2DConditionModel
from torch import Tensor

from dualmd.config.sections import TrainConfig
from dualmd.config.text2image import Text2ImageConfig
from dualmd.defense.distill import CrossTeacherTargets, check_teachers
from dualmd.models.adapter import Schedule
from dualmd.text2image.batches import AlternatingSources, CaptionBank, latent_source
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import METADATA, Components, save_pipeline
from dualmd.text2image.levers import (
    LEVER_KEYS,
    DiskCache,
    apply_tf32,
    freeze,
    module_dtype,
    optimizer_factory,
    prepare_unet,
    weight_dtype,
)
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import BatchSource, FitResult, TargetFn, fit, make_accelerator, noise_target

RAW_UNET_DIR = "unet_raw"


class ConditionalTeacher:
    """A frozen conditional UNet as the `CrossTeacherTargets` callable (x_t, t, encoder_hidden_states) -> eps."""

    def __init__(self, unet: UNet2DConditionModel):
        self.unet = unet.eval().requires_grad_(False)
        self.dtype = module_dtype(self.unet)

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t: Tensor, *, encoder_hidden_states: Tensor) -> Tensor:
        # the inputs in the teacher's dtype (text2image.weight_dtype), the prediction in x_t's
        states = encoder_hidden_states.to(self.dtype)
        return self.unet(x_t.to(self.dtype), t, encoder_hidden_states=states).sample.to(x_t.dtype)


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
    levers: Text2ImageConfig | None = None,
) -> FitResult:
    """Train `unet` in place with `fit` (VAE and text encoder stay frozen; they are not optimised).

    `description` identifies the run (data hashes, config): it enters the run hash that decides whether a saved
    state under `state_dir` may be resumed. `levers` (default: all off) gives gradient checkpointing, gradient
    accumulation and the optimiser (`dualmd.text2image.levers`).
    """
    levers = levers or Text2ImageConfig()
    accelerator = accelerator or make_accelerator(train_cfg)
    parts.vae.requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    prepare_unet(unet, levers).train()
    return fit(
        unet=unet,
        schedule=Schedule.from_scheduler(parts.scheduler),
        batches=batches,
        target_fn=target_fn,
        cfg=train_cfg,
        accelerator=accelerator,
        state_dir=state_dir,
        run_hash=run_hash({"train": train_cfg.to_dict(), **description}),
        accumulation_steps=levers.gradient_accumulation_steps,
        make_optimizer=optimizer_factory(levers, lr=train_cfg.lr, device=accelerator.device),
    )


def frozen_parts(parts: Components, levers: Text2ImageConfig, device: torch.device) -> Components:
    """`parts` with copies of the VAE and the text encoder on `device` in `levers.weight_dtype`, frozen (the
    originals stay as they are: they are saved with the fine-tuned UNet). Also applies `levers.allow_tf32`."""
    apply_tf32(levers.allow_tf32)
    dtype = weight_dtype(levers.weight_dtype, device)
    return replace(
        parts,
        vae=freeze(copy.deepcopy(parts.vae), device, dtype),
        text_encoder=freeze(copy.deepcopy(parts.text_encoder), device, dtype),
    )


def _levers_record(levers: Text2ImageConfig) -> dict[str, Any]:
    """The levers of a run as they enter its run hash and metadata."""
    return {k: getattr(levers, k) for k in LEVER_KEYS}


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
    levers: Text2ImageConfig | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune a copy of the pretrained `parts.unet` on `images` (baseline: all members; teacher: one half).

    Args:
        parts: the pretrained pipeline's components (not modified).
        images: (N, C, H, W) float32 in [-1, 1]; image_ids: their (N,) dataset ids.
        sampler: captions of the dataset by id, with the prompt-diversification and caption-dropout settings.
        train_cfg: steps, batch size, learning rate, EMA, seed.
        out_dir: the pipeline folder written; state_dir: resumable training state.
        metadata: provenance (model_id, subset, subset_sha256, ...), stored in out_dir/metadata.json.
        levers: memory and precision levers (`dualmd.text2image.levers`; default: all off).
        cache_dir: where latents and caption states are cached across jobs (None: computed, not kept).
    Returns:
        The metadata written.
    """
    levers = levers or Text2ImageConfig()
    accelerator = make_accelerator(train_cfg)
    frozen = frozen_parts(parts, levers, accelerator.device)
    batches = latent_source(
        frozen,
        images,
        image_ids,
        sampler,
        batch_size=train_cfg.batch_size,
        cache=DiskCache(cache_dir) if cache_dir is not None else None,
        encode_batch_size=levers.encode_batch_size,
    )
    del frozen  # latents and caption states are on the host now: the frozen modules leave the device
    data = {"images_sha256": tensor_sha256(images), "captions": _sampler_record(sampler)}
    init = pretrained_record(parts)
    unet = copy.deepcopy(parts.unet)
    result = train_conditional(
        parts=parts,
        unet=unet,
        batches=batches,
        target_fn=noise_target,
        train_cfg=train_cfg,
        state_dir=state_dir,
        description={"data": data, "init": init, "levers": _levers_record(levers)},
        accelerator=accelerator,
        levers=levers,
    )
    meta = {**metadata, "data": data, "init": init, "levers": _levers_record(levers)}
    return write_finetuned(out_dir, parts, result, meta, train_cfg)


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
    levers: Text2ImageConfig | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Distil a DistillMD student from the pretrained UNet: on a D1 batch the target is teacher 2's prediction
    for the same noisy latent and caption, on a D2 batch teacher 1's (Algorithm 2; no ground-truth noise).

    Args:
        half1, half2: (N1, C, H, W), (N2, C, H, W) images of D1 and D2; half1_ids, half2_ids: their dataset ids.
        teacher1, teacher2: the UNets fine-tuned on D1 and on D2 (`load_teachers` checks their provenance).
        Other arguments as `finetune_unet`; the student gets the same number of steps as the baseline.
    Returns:
        The metadata written.
    """
    levers = levers or Text2ImageConfig()
    accelerator = make_accelerator(train_cfg)
    frozen = frozen_parts(parts, levers, accelerator.device)
    cache = DiskCache(cache_dir) if cache_dir is not None else None
    bank = CaptionBank.encode(frozen, [sampler.captions[i] for i in [*half1_ids, *half2_ids]], cache=cache)
    encode = {"batch_size": train_cfg.batch_size, "bank": bank, "cache": cache}
    encode["encode_batch_size"] = levers.encode_batch_size
    batches = AlternatingSources(
        half1=latent_source(frozen, half1, half1_ids, sampler, **encode),
        half2=latent_source(frozen, half2, half2_ids, sampler, **encode),
    )
    del frozen
    init = pretrained_record(parts)
    data = {  # hashed before the teachers are cast to the training dtype
        "half1_sha256": tensor_sha256(half1),
        "half2_sha256": tensor_sha256(half2),
        "teacher1_sha256": _weights_sha256(teacher1),
        "teacher2_sha256": _weights_sha256(teacher2),
        "captions": _sampler_record(sampler),
    }
    # the frozen teachers on the device in text2image.weight_dtype (in place, as they were moved before)
    dtype = weight_dtype(levers.weight_dtype, accelerator.device)
    teachers = [ConditionalTeacher(freeze(t, accelerator.device, dtype)) for t in (teacher1, teacher2)]
    targets = CrossTeacherTargets(teacher1=teachers[0], teacher2=teachers[1])
    result = train_conditional(
        parts=parts,
        unet=copy.deepcopy(parts.unet),
        batches=batches,
        target_fn=targets,
        train_cfg=train_cfg,
        state_dir=state_dir,
        description={"data": data, "init": init, "distill": True, "levers": _levers_record(levers)},
        accelerator=accelerator,
        levers=levers,
    )
    meta = {**metadata, "data": data, "init": init, "levers": _levers_record(levers)}
    return write_finetuned(out_dir, parts, result, meta, train_cfg)


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
    save_pipeline(
        out_dir, parts, unet=result.ema_unet, extra_unets={RAW_UNET_DIR: result.unet}, metadata=meta
    )
    return meta


def load_finetuned_unet(folder: str | Path, weights: Literal["raw", "ema"] = "ema") -> UNet2DConditionModel:
    """The EMA (unet/) or raw (unet_raw/) UNet of a folder written by `write_finetuned`."""
    sub = "unet" if weights == "ema" else RAW_UNET_DIR
    return UNet2DConditionModel.from_pretrained(Path(folder) / sub).eval()


def load_metadata(folder: str | Path) -> dict[str, Any]:
    """The metadata.json of a folder written by `write_finetuned`."""
    path = Path(folder) / METADATA
    if not path.is_file():
        raise FileNotFoundError(f"no {METADATA} in {folder}: not a fine-tuned pipeline folder")
    return json.loads(path.read_text())


def load_teachers(
    teacher1: str | Path,
    teacher2: str | Path,
    *,
    weights: Literal["raw", "ema"],
    half1_sha256: str,
    half2_sha256: str,
    split_fingerprint: str | None = None,
) -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    """The teachers' UNets, after `dualmd.defense.distill.check_teachers` has confirmed from their metadata that
    teacher 1 learnt exactly D1 and teacher 2 exactly D2 of the current split (LeakageError otherwise)."""
    check_teachers(
        load_metadata(teacher1),
        load_metadata(teacher2),
        half1_sha256=half1_sha256,
        half2_sha256=half2_sha256,
        split_fingerprint=split_fingerprint,
    )
    return load_finetuned_unet(teacher1, weights), load_finetuned_unet(teacher2, weights)


def pretrained_record(parts: Components) -> dict[str, str]:
    """Hashes of the pretrained UNet a run starts from and of the text encoder that encodes its captions: they enter
    the run hash, so a saved state is resumed only on the same pretrained pipeline (a retrained stand-in restarts)."""
    return {
        "unet_sha256": _weights_sha256(parts.unet),
        "text_encoder_sha256": _weights_sha256(parts.text_encoder),
    }


def _sampler_record(sampler: CaptionSampler) -> dict[str, Any]:
    return {
        "seed": sampler.seed,
        "diversify": sampler.diversify,
        "dropout": sampler.dropout,
        "sha256": run_hash({"captions": [list(c) for c in sampler.captions]}),
    }


def _weights_sha256(module: torch.nn.Module) -> str:
    return run_hash({k: tensor_sha256(v) for k, v in module.state_dict().items()})
