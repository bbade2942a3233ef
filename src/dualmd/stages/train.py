"""Stages of `workflow/rules/train.smk`: a model trained on its split subset, and a model distilled from others."""

from __future__ import annotations

from pathlib import Path

from dualmd import catalog
from dualmd.config import load_config
from dualmd.data.members import load_split_images, subset_images
from dualmd.data.splits import load_split
from dualmd.models.directory import provenance


def train(
    *, config: Path, images: Path, split: Path, split_meta: Path, model: str, out: Path, state_dir: Path
) -> dict:
    """Train target `model` (kind "trained") on its member subset and write its model directory."""
    from dualmd.train import train_model

    target = catalog.target(model)
    if target.kind != "trained":
        raise ValueError(f"{model!r} is a {target.kind} target, not one trained on ground-truth noise")
    cfg = load_config(config)
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    limit = cfg.train.probe_num_images
    return train_model(
        images=subset_images(data, the_split, target.members),
        probe_members=subset_images(data, the_split, target.members, limit),
        probe_nonmembers=subset_images(data, the_split, "nonmembers", limit),
        model_cfg=cfg.model,
        diffusion_cfg=cfg.diffusion,
        train_cfg=cfg.train,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        metadata=provenance(the_split, model, target.members),
    )


def distill(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    model: str,
    teachers: dict[str, Path],
    out: Path,
    state_dir: Path,
) -> dict:
    """DistillMD: check the teachers against the split, then train the student and write its directory.

    `teachers` maps each of the target's teacher names (teacher1: D1, teacher2: D2) to a model directory;
    a directory trained on another subset or split is refused before any step.
    """
    from dualmd.defense.distill import Teacher, distill_student

    target = catalog.target(model)
    if target.kind != "distilled":
        raise ValueError(f"{model!r} is a {target.kind} target, not a distilled one")
    if set(teachers) != set(target.models):
        raise ValueError(f"{model} distils from {list(target.models)}, got teachers {sorted(teachers)}")
    cfg = load_config(config)
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    limit = cfg.train.probe_num_images
    first, second = (
        Teacher.load(teachers[name], weights=cfg.distill.teacher_weights) for name in target.models
    )
    return distill_student(
        half1=subset_images(data, the_split, "half1"),
        half2=subset_images(data, the_split, "half2"),
        teacher1=first,
        teacher2=second,
        half1_sha256=the_split.sha256("half1"),
        half2_sha256=the_split.sha256("half2"),
        split_fingerprint=the_split.fingerprint(),
        probe_members=subset_images(data, the_split, target.members, limit),
        probe_nonmembers=subset_images(data, the_split, "nonmembers", limit),
        model_cfg=cfg.model,
        diffusion_cfg=cfg.diffusion,
        train_cfg=cfg.train,
        distill_cfg=cfg.distill,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        metadata=provenance(the_split, model, target.members),
    )
