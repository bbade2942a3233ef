"""Stages of `workflow/rules/train.smk`: a model trained on its split subset, and a model distilled from others."""

from __future__ import annotations

from pathlib import Path

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.data.members import load_split_images, subset_images
from dualmd.data.splits import load_split
from dualmd.models.directory import provenance
from dualmd.stage import stage


@stage("train", config="train", sections=("model", "diffusion", "train"), distributed=True)
def train(
    *, config: Path, images: Path, split: Path, split_meta: Path, model: str, out: Path, state_dir: Path
) -> dict:
    """Train target `model` (kind "trained") on its member subset and write its model directory (with the
    checkpoints of `train.snapshot_fractions` when the catalog gives the target checkpoints; with DP-SGD for a
    DP-SGD control)."""
    from dualmd.train.run import train_model

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
        snapshot_steps=cfg.train.snapshot_steps if target.checkpoints else (),
        dp_epsilon=target.dp_epsilon,
    )


@stage("distill", config="distill", sections=("model", "diffusion", "train", "distill"), distributed=True)
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
    """Distil a student from its teachers, checked against the split first, and write its directory.

    Two teachers (DistillMD): `teachers` maps teacher1 (D1) and teacher2 (D2) to model directories and each
    half is regressed on the other half's teacher. One teacher (self-distillation, the control): the teacher
    trained on every member gives the target for every member. A directory trained on another subset or split
    is refused before any step.
    """
    from dualmd.defense.distill import Teacher, distill_student, selfdistill_student

    target = catalog.target(model)
    if target.kind != "distilled":
        raise ValueError(f"{model!r} is a {target.kind} target, not a distilled one")
    if set(teachers) != set(target.models):
        raise ValueError(f"{model} distils from {list(target.models)}, got teachers {sorted(teachers)}")
    if len(target.models) not in (1, 2):
        raise ValueError(
            f"{model}: distillation takes one or two teachers, the catalog names {target.models}"
        )
    cfg = load_config(config)
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    limit = cfg.train.probe_num_images
    loaded = [Teacher.load(teachers[name], weights=cfg.distill.teacher_weights) for name in target.models]
    common = {
        "split_fingerprint": the_split.fingerprint(),
        "probe_members": subset_images(data, the_split, target.members, limit),
        "probe_nonmembers": subset_images(data, the_split, "nonmembers", limit),
        "model_cfg": cfg.model,
        "diffusion_cfg": cfg.diffusion,
        "train_cfg": cfg.train,
        "distill_cfg": cfg.distill,
        "out_dir": Path(out),
        "state_dir": Path(state_dir),
        "metadata": provenance(the_split, model, target.members),
    }
    if len(loaded) == 1:
        return selfdistill_student(
            members=subset_images(data, the_split, target.members),
            teacher=loaded[0],
            members_sha256=the_split.sha256(target.members),
            **common,
        )
    first, second = loaded
    # D1 and D2 for the default student; the overlap ablation's teachers learnt each half plus part of the other;
    # a reference student (LiRA built like the target) the halves of its reference set
    learnt = tuple(catalog.target(name).members for name in target.models)
    return distill_student(
        half1=subset_images(data, the_split, target.halves[0]),
        half2=subset_images(data, the_split, target.halves[1]),
        teacher1=first,
        teacher2=second,
        half1_sha256=the_split.sha256(learnt[0]),
        half2_sha256=the_split.sha256(learnt[1]),
        teacher_subsets=learnt,
        **common,
    )
