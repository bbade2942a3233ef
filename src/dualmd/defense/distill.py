"""DistillMD (paper §3.3, Eq. 7, Algorithm 2): distil a fresh student from two teachers on disjoint halves.

Iteration i (0-based) even: x_0 from D1 and the target is teacher 2's prediction (teacher 2 never saw D1);
odd: x_0 from D2 and teacher 1's prediction. The whole batch of an iteration comes from one half, the target
contains no ground-truth noise and the teachers are never averaged. The student sees the private images as
inputs (x_t is built from them with fresh noise and t ~ U{0..T-1}); only its target is "soft":

    L(theta) = E ||stopgrad(eps_teacher(x_t, t)) - eps_theta(x_t, t)||^2

The student is trained by the same loop as the baseline (`dualmd.train.run.run_and_save`) with the batch source
and the target swapped, and it gets the baseline's number of optimiser steps (the paper's fairness rule).

Self-distillation (`selfdistill_student`) is the control that separates "distillation" from "distillation from
the teacher that did not see the image": one teacher trained on every member (the baseline) gives the target
for every member, with the same loop, steps and optimiser as DistillMD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dualmd.config.sections import DiffusionConfig, DistillConfig, ModelConfig, TrainConfig
from dualmd.models.adapter import NoisePredictor, UNetPredictor
from dualmd.models.directory import load_metadata, load_predictor
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import RandomBatches, StepInfo, make_accelerator
from dualmd.train.run import run_and_save


class LeakageError(ValueError):
    """A teacher would give targets for images it was trained on (wrong, swapped or stale teachers)."""


@dataclass(frozen=True)
class Teacher:
    """A teacher's noise predictor and the metadata.json of its model directory."""

    predictor: NoisePredictor
    metadata: dict[str, Any]

    @classmethod
    def load(cls, model_dir: str | Path, *, weights: str, device: str | torch.device = "cpu") -> Teacher:
        """Load the raw or EMA weights (DistillConfig.teacher_weights) of a trained model directory."""
        predictor, _schedule = load_predictor(model_dir, weights, device)  # type: ignore[arg-type]
        return cls(predictor=predictor, metadata=load_metadata(model_dir))


def check_teachers(
    teacher1_meta: dict[str, Any],
    teacher2_meta: dict[str, Any],
    *,
    half1_sha256: str,
    half2_sha256: str,
    split_fingerprint: str | None = None,
    subsets: tuple[str, str] = ("half1", "half2"),
) -> None:
    """Raise LeakageError unless teacher 1 learnt exactly D1 and teacher 2 exactly D2 of the current split.

    Args:
        teacher1_meta, teacher2_meta: metadata.json of each teacher (keys subset, subset_sha256 and, when
            `split_fingerprint` is given, split_fingerprint).
        half1_sha256, half2_sha256: hashes of the subsets the teachers must have learnt, in the current split.
        split_fingerprint: fingerprint of the current split, or None to skip that check.
        subsets: the names of those subsets: D1 and D2, or the overlap ablation's "half1_ov<p>", "half2_ov<p>".
    """
    names = (teacher1_meta.get("subset"), teacher2_meta.get("subset"))
    if names == subsets[::-1]:
        raise LeakageError(
            f"teachers are swapped: teacher1 was trained on {subsets[1]} and teacher2 on {subsets[0]}; "
            f"teacher1 must be the model of {subsets[0]} and teacher2 the model of {subsets[1]}"
        )
    expected = {
        "teacher1": (subsets[0], half1_sha256, teacher1_meta),
        "teacher2": (subsets[1], half2_sha256, teacher2_meta),
    }
    for name, (subset, sha, meta) in expected.items():
        if meta.get("subset") != subset:
            raise LeakageError(f"{name} was trained on subset {meta.get('subset')!r}, expected {subset!r}")
        if meta.get("subset_sha256") != sha:
            raise LeakageError(
                f"{name} was trained on another split: its {subset} hash "
                f"{str(meta.get('subset_sha256'))[:12]}... differs from the current split's "
                f"{sha[:12]}...; retrain the teachers on the current split"
            )
        if split_fingerprint is not None and meta.get("split_fingerprint") != split_fingerprint:
            raise LeakageError(
                f"{name} was trained on another split: split fingerprint "
                f"{meta.get('split_fingerprint')!r} differs from the current {split_fingerprint!r}"
            )


@dataclass(frozen=True)
class AlternatingBatches:
    """Algorithm 2's data order: even iterations draw a batch from D1 (`half1`), odd ones from D2."""

    half1: Tensor  # (N1, C, H, W)
    half2: Tensor  # (N2, C, H, W)
    batch_size: int
    hflip: bool = False

    def __call__(self, step: int, generator: torch.Generator) -> Tensor:
        images = self.half1 if step % 2 == 0 else self.half2
        return RandomBatches(images=images, batch_size=self.batch_size, hflip=self.hflip)(step, generator)

    def to(self, device: torch.device) -> AlternatingBatches:
        """The same batches, gathered from copies of both halves on `device` (train.data_on_device)."""
        return replace(self, half1=self.half1.to(device), half2=self.half2.to(device))


def training_predictor(teacher: Teacher, train_cfg: TrainConfig, device: torch.device) -> NoisePredictor:
    """A teacher's predictor on the training device, in the student's memory format (train.channels_last) and
    compiled when train.compile (its forward runs every step, under the loop's autocast); predictors other
    than a `UNetPredictor` are returned unchanged."""
    predictor = teacher.predictor
    if not isinstance(predictor, UNetPredictor):
        return predictor
    unet = predictor.unet.to(device)
    if train_cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    return UNetPredictor(unet, compile=train_cfg.compile)


@dataclass(frozen=True)
class CrossTeacherTargets:
    """Algorithm 2's target: the prediction of the teacher that did NOT train on this iteration's half."""

    teacher1: NoisePredictor
    teacher2: NoisePredictor

    def __call__(self, step: int, x_t: Tensor, t: Tensor, eps: Tensor, **condition: Tensor) -> Tensor:
        # eps is deliberately unused: the ground-truth noise never enters the student's target (Eq. 7).
        # A conditional student's teachers get the same condition (caption states) as the student.
        teacher = self.teacher2 if step % 2 == 0 else self.teacher1
        return teacher(x_t, t, **condition)


@dataclass(frozen=True)
class TeacherTargets:
    """Self-distillation's target: the one teacher's prediction, for images the teacher itself trained on."""

    teacher: NoisePredictor

    def __call__(self, step: int, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self.teacher(x_t, t)


def check_single_teacher(
    meta: dict[str, Any], *, members_sha256: str, split_fingerprint: str | None = None
) -> None:
    """Raise LeakageError unless the teacher learnt exactly the current split's members (a self-distilled
    student must see the same images as its teacher, or the control compares different data)."""
    if meta.get("subset") != "members":
        raise LeakageError(f"the teacher was trained on subset {meta.get('subset')!r}, expected 'members'")
    if meta.get("subset_sha256") != members_sha256:
        raise LeakageError(
            f"the teacher was trained on another split: its members hash {str(meta.get('subset_sha256'))[:12]}... "
            f"differs from the current split's {members_sha256[:12]}..."
        )
    if split_fingerprint is not None and meta.get("split_fingerprint") != split_fingerprint:
        raise LeakageError(
            f"the teacher was trained on another split: split fingerprint {meta.get('split_fingerprint')!r} "
            f"differs from the current {split_fingerprint!r}"
        )


def selfdistill_student(
    *,
    members: Tensor,
    teacher: Teacher,
    members_sha256: str,
    split_fingerprint: str | None,
    probe_members: Tensor,
    probe_nonmembers: Tensor,
    model_cfg: ModelConfig,
    diffusion_cfg: DiffusionConfig,
    train_cfg: TrainConfig,
    distill_cfg: DistillConfig,
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
    on_step: Callable[[StepInfo], None] | None = None,
) -> dict[str, Any]:
    """Distil a randomly initialised student from one teacher trained on every member (the control).

    Batches are drawn uniformly from all members and the target is the teacher's prediction; everything else
    (architecture, steps, optimiser, EMA, probe) is as in `distill_student`.
    """
    check_single_teacher(teacher.metadata, members_sha256=members_sha256, split_fingerprint=split_fingerprint)
    accelerator = make_accelerator(train_cfg)
    info = {k: teacher.metadata.get(k) for k in ("subset", "subset_sha256", "model_id")}
    data = {"members_sha256": tensor_sha256(members), "teacher_metadata_sha256": run_hash(teacher.metadata)}
    return run_and_save(
        batches=RandomBatches(images=members, batch_size=train_cfg.batch_size, hflip=train_cfg.hflip),
        target_fn=TeacherTargets(teacher=training_predictor(teacher, train_cfg, accelerator.device)),
        image_shape=tuple(members.shape[1:]),
        data=data,
        probe_members=probe_members,
        probe_nonmembers=probe_nonmembers,
        model_cfg=model_cfg,
        diffusion_cfg=diffusion_cfg,
        train_cfg=train_cfg,
        config={"distill": distill_cfg.to_dict()},
        out_dir=out_dir,
        state_dir=state_dir,
        metadata={**metadata, "teachers": {"teacher": info}, "teacher_weights": distill_cfg.teacher_weights},
        accelerator=accelerator,
        on_step=on_step,
    )


def distill_student(
    *,
    half1: Tensor,
    half2: Tensor,
    teacher1: Teacher,
    teacher2: Teacher,
    half1_sha256: str,
    half2_sha256: str,
    split_fingerprint: str | None,
    teacher_subsets: tuple[str, str] = ("half1", "half2"),
    probe_members: Tensor,
    probe_nonmembers: Tensor,
    model_cfg: ModelConfig,
    diffusion_cfg: DiffusionConfig,
    train_cfg: TrainConfig,
    distill_cfg: DistillConfig,
    out_dir: Path,
    state_dir: Path,
    metadata: dict[str, Any],
    on_step: Callable[[StepInfo], None] | None = None,
) -> dict[str, Any]:
    """Distil a randomly initialised student from the teachers (Algorithm 2) and write its model directory.

    Args:
        half1, half2: (N1, C, H, W), (N2, C, H, W) float32 in [-1, 1], the member halves D1 and D2.
        teacher1, teacher2: the models of D1 and D2 (checked with `check_teachers` first).
        half1_sha256, half2_sha256, split_fingerprint: identity of the subsets the teachers learnt, named
            `teacher_subsets` (the halves, or the overlap ablation's "half1_ov<p>", "half2_ov<p>").
        probe_members, probe_nonmembers: images for the overfitting probe (members = D1 and D2).
        model_cfg, diffusion_cfg, train_cfg: as for the baseline (same architecture and number of steps).
        distill_cfg: records which teacher weights (raw or EMA) `teacher1`/`teacher2` hold.
        out_dir, state_dir, metadata, on_step: as in `dualmd.train.run.train_model`.
    Returns:
        The metadata written to `out_dir/metadata.json` (with `teachers` and `teacher_weights`).
    """
    check_teachers(
        teacher1.metadata,
        teacher2.metadata,
        half1_sha256=half1_sha256,
        half2_sha256=half2_sha256,
        split_fingerprint=split_fingerprint,
        subsets=teacher_subsets,
    )
    if half1.shape[1:] != half2.shape[1:]:
        raise ValueError(f"D1 images {tuple(half1.shape[1:])} and D2 images {tuple(half2.shape[1:])} differ")
    accelerator = make_accelerator(train_cfg)
    teachers = {
        name: {
            "subset": t.metadata.get("subset"),
            "subset_sha256": t.metadata.get("subset_sha256"),
            "model_id": t.metadata.get("model_id"),
        }
        for name, t in (("teacher1", teacher1), ("teacher2", teacher2))
    }
    # A retrained teacher changes its metadata (loss curve, wall time), hence the hash: no stale resume.
    data = {
        "half1_sha256": tensor_sha256(half1),
        "half2_sha256": tensor_sha256(half2),
        "teacher1_metadata_sha256": run_hash(teacher1.metadata),
        "teacher2_metadata_sha256": run_hash(teacher2.metadata),
    }
    return run_and_save(
        batches=AlternatingBatches(
            half1=half1, half2=half2, batch_size=train_cfg.batch_size, hflip=train_cfg.hflip
        ),
        target_fn=CrossTeacherTargets(
            teacher1=training_predictor(teacher1, train_cfg, accelerator.device),
            teacher2=training_predictor(teacher2, train_cfg, accelerator.device),
        ),
        image_shape=tuple(half1.shape[1:]),
        data=data,
        probe_members=probe_members,
        probe_nonmembers=probe_nonmembers,
        model_cfg=model_cfg,
        diffusion_cfg=diffusion_cfg,
        train_cfg=train_cfg,
        config={"distill": distill_cfg.to_dict()},
        out_dir=out_dir,
        state_dir=state_dir,
        metadata={**metadata, "teachers": teachers, "teacher_weights": distill_cfg.teacher_weights},
        accelerator=accelerator,
        on_step=on_step,
    )
