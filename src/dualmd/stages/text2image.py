"""Stages of the text-to-image experiment (`dualmd.text2image`): pretrain the tiny stand-in, fine-tune the
baseline and the teachers, distil the DistillMD student, generate images with each sampler (DualMD included),
and score white-box attacks on latents.

Captions come from the dataset config (`dualmd.text2image.captions.dataset_captions`: digit templates or an
image folder's metadata.jsonl), in the order of the dataset array. The pretrained pipeline is the folder of
`text2image.pretrained` (SD v1.5) or the one `pretrain` writes (the tiny stand-in). A target named
"<name>_pd" (`catalog.PD_SUFFIX`) is trained with prompt diversification, any other on each image's first caption.

With `text2image.memorized_prompts` on, the stages that train, sample or attack take the selection file of
`dualmd.text2image.memorized` (`memorized`): the training sets repeat its memorized images and its chosen images
are captioned with their prompts first (`dualmd.text2image.memorized.run_captions`); without it (None) nothing
changes.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dualmd import catalog
from dualmd.config.experiment import ExperimentConfig, load_config

if TYPE_CHECKING:
    from dualmd.text2image.memorized import MemorizedPrompts

log = logging.getLogger(__name__)


def pretrain(
    *, config: Path, images: Path, split: Path, split_meta: Path, out: Path, state_dir: Path
) -> dict:
    """Pretrain the tiny pipeline on the dataset images outside the split and write its folder to `out`."""
    from dualmd.data.members import load_split_images
    from dualmd.data.splits import load_split
    from dualmd.text2image.pretrain import build_tiny_pipeline

    cfg = text2image_config(config)
    if cfg.text2image.pretrained is not None:
        raise ValueError(f"text2image.pretrained is {cfg.text2image.pretrained!r}: nothing to pretrain")
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    ids = population(the_split.num_dataset_images, the_split.member_idx, the_split.nonmember_idx)
    _, record = build_tiny_pipeline(
        Path(out),
        images=_model_range(data[ids]),
        image_ids=ids.tolist(),
        captions=_captions(cfg),
        vae_steps=cfg.text2image.pretrain_vae_steps,
        unet_cfg=replace(cfg.train, num_train_steps=cfg.text2image.pretrain_unet_steps),
        caption_dropout=cfg.text2image.caption_dropout,
        state_dir=Path(state_dir),
        seed=cfg.train.seed,
    )
    return record


def train(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    model: str,
    pretrained: Path,
    out: Path,
    state_dir: Path,
    memorized: Path | None = None,
) -> dict:
    """Fine-tune the pretrained UNet on target `model`'s subset (baseline: members; teacher1/2: D1/D2), with the
    memorized images of the selection `memorized` repeated where they belong to that subset."""
    from dualmd.data.members import load_split_images
    from dualmd.data.splits import load_split
    from dualmd.models.directory import provenance
    from dualmd.text2image.components import load_components
    from dualmd.text2image.finetune import finetune_unet
    from dualmd.text2image.memorized import load_selection, training_ids, training_record

    target = catalog.target(model)
    if target.kind != "trained":
        raise ValueError(f"{model!r} is a {target.kind} target, not one fine-tuned on ground-truth noise")
    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    selection = load_selection(memorized, the_split)
    data = load_split_images(images, the_split)
    ids = the_split.subset(target.members)
    rows = training_ids(ids, selection)  # ids, then the extra copies of the memorized images among them
    return finetune_unet(
        parts=load_components(pretrained),
        images=_model_range(data[rows]),
        image_ids=rows.tolist(),
        sampler=_sampler(cfg, target, selection),
        train_cfg=cfg.train,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        metadata={**provenance(the_split, model, target.members), **training_record(ids, selection)},
    )


def distill(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    model: str,
    pretrained: Path,
    teachers: dict[str, Path],
    out: Path,
    state_dir: Path,
    memorized: Path | None = None,
) -> dict:
    """Distil the DistillMD student from the teachers of D1 and D2 (checked against the split first); the
    memorized images of the selection `memorized` are repeated in their half, as in the teacher's training."""
    from dualmd.data.members import load_split_images
    from dualmd.data.splits import load_split
    from dualmd.models.directory import provenance
    from dualmd.text2image.components import load_components
    from dualmd.text2image.finetune import distill_unet, load_teachers
    from dualmd.text2image.memorized import load_selection, training_ids, training_record

    target = catalog.target(model)
    if target.kind != "distilled" or len(target.models) != 2 or set(teachers) != set(target.models):
        raise ValueError(f"{model!r}: text2image distils a student from two teachers {list(target.models)}")
    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    selection = load_selection(memorized, the_split)
    data = load_split_images(images, the_split)
    first, second = target.models
    teacher1, teacher2 = load_teachers(
        teachers[first],
        teachers[second],
        weights=cfg.distill.teacher_weights,
        half1_sha256=the_split.sha256("half1"),
        half2_sha256=the_split.sha256("half2"),
        split_fingerprint=the_split.fingerprint(),
    )
    half1, half2 = (training_ids(the_split.subset(h), selection) for h in ("half1", "half2"))
    return distill_unet(
        parts=load_components(pretrained),
        half1=_model_range(data[half1]),
        half1_ids=half1.tolist(),
        half2=_model_range(data[half2]),
        half2_ids=half2.tolist(),
        teacher1=teacher1,
        teacher2=teacher2,
        sampler=_sampler(cfg, target, selection),
        train_cfg=cfg.train,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        metadata={
            **provenance(the_split, model, target.members),
            **training_record(the_split.member_idx, selection),
        },
    )


def score(
    *,
    config: Path,
    attack: str,
    images: Path,
    split: Path,
    split_meta: Path,
    targets: dict[str, Path],
    out_dir: Path,
    memorized: Path | None = None,
) -> None:
    """Score each target's members and the non-members with white-box attack `attack`, each image conditioned
    on its original caption (a memorized-prompt image: its prompt); write `out_dir/<target>.npz` (the format of
    every attack's scores)."""
    from dualmd.attacks.base import save_scores
    from dualmd.data.members import evaluation_set, load_split_images
    from dualmd.data.splits import load_split
    from dualmd.models.directory import check_trained_on
    from dualmd.stages.device import device
    from dualmd.text2image.attack import attack_text2image
    from dualmd.text2image.components import load_components
    from dualmd.text2image.finetune import load_finetuned_unet
    from dualmd.text2image.memorized import load_selection

    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = _captions(cfg, load_selection(memorized, the_split))
    data = load_split_images(images, the_split)
    for name, path in targets.items():
        check_trained_on(path, the_split, catalog.member_subset(name))
        x, ids, is_member = evaluation_set(data, the_split, name)
        parts = load_components(path, device=device())  # its unet/ holds the EMA weights
        unet = parts.unet if cfg.attack.weights == "ema" else load_finetuned_unet(path, "raw").to(device())
        result = attack_text2image(
            attack,
            cfg.attack,
            parts=parts,
            images=x,
            captions=[captions[i][0] for i in ids],
            sample_ids=ids,
            is_member=is_member,
            unet=unet,
        )
        save_scores(result, Path(out_dir) / f"{name}.npz")
        log.info("%s on %s: %d samples scored", attack, name, len(result.scores))


def sample(
    *,
    config: Path,
    split: Path,
    split_meta: Path,
    sampler: str,
    models: dict[str, Path],
    out: Path,
    info: Path,
    grid: Path,
    memorized: Path | None = None,
) -> None:
    """Generate `sample.num_images` images with `sampler`, prompted with the members' original captions (cycled,
    in split order; a memorized-prompt image's prompt for it): an .npz in [-1, 1], the sampling provenance and a
    PNG grid."""
    from dualmd.data.splits import load_split
    from dualmd.files import write_json
    from dualmd.images import save_samples
    from dualmd.stages.device import device
    from dualmd.text2image.generate import generate
    from dualmd.text2image.memorized import load_selection

    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = _captions(cfg, load_selection(memorized, the_split))
    members = the_split.member_idx
    prompts = [captions[members[i % len(members)]][0] for i in range(cfg.sample.num_images)]
    images, details = generate(
        sampler,
        {k: Path(v) for k, v in models.items()},
        prompts,
        cfg.sample,
        guidance_scale=cfg.text2image.guidance_scale,
        device=device(),
    )
    save_samples(images, out, grid, nrow=16)
    write_json(info, {**details, "prompts": prompts, "config": cfg.sample.to_dict()})


def blackbox(
    *,
    config: Path,
    attack: str,
    images: Path,
    split: Path,
    split_meta: Path,
    sampler: str,
    models: dict[str, Path],
    out: Path,
    memorized: Path | None = None,
) -> None:
    """Score the sampler's members and the non-members with the black-box attack `attack` (Pang & Wang): each
    candidate's original caption (a memorized-prompt image: its prompt) prompts the sampler; write `out` (only
    the candidates outside the labelled slice are scored)."""
    from dualmd.attacks.base import save_scores
    from dualmd.data.members import evaluation_set, load_split_images
    from dualmd.data.splits import load_split
    from dualmd.stages.device import device
    from dualmd.text2image.blackbox import attack_sampler_blackbox
    from dualmd.text2image.generate import sampler_pipeline
    from dualmd.text2image.memorized import load_selection

    if catalog.attack(attack).access != "prompts":
        raise ValueError(f"{attack!r} is not a black-box text-to-image attack; use t2i-attack")
    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = _captions(cfg, load_selection(memorized, the_split))
    x, ids, is_member = evaluation_set(load_split_images(images, the_split), the_split, sampler)
    pipe = sampler_pipeline(sampler, {k: Path(v) for k, v in models.items()}, weights=cfg.sample.weights)
    result = attack_sampler_blackbox(
        pipe.to(device()),
        cfg.attack,
        cfg.sample,
        images=x,
        prompts=[captions[i][0] for i in ids],
        sample_ids=ids,
        is_member=is_member,
        device=device(),
    )
    save_scores(result, out)
    log.info("%s on %s: %d of %d candidates scored", attack, sampler, len(result.scores), len(ids))


def blackbox_report(*, config: Path, attacks: list[Path], out: Path, markdown: Path) -> None:
    """The Table 4 report from the evaluate stage's metrics of the black-box attack (`dualmd.text2image.report`)."""
    from dualmd.text2image.report import write_table4

    write_table4(attacks, load_config(config).metrics.tpr_at_fpr[0], out, markdown)


def utility_report(*, utility: list[Path], out: Path, markdown: Path) -> None:
    """FID, KID, IS and CLIP score of every text-to-image sampler (the utility stage's files) as CSV and
    Markdown."""
    from dualmd.text2image.report import write_utility_table

    write_utility_table(utility, out, markdown)


def report(*, config: Path, attacks: list[Path], out: Path, markdown: Path) -> None:
    """The Table 3 report from the evaluate stage's metrics of every attack (`dualmd.text2image.report`): a CSV
    and its Markdown, TPR at the first FPR bound of the metrics config."""
    from dualmd.text2image.report import write_table3

    write_table3(attacks, load_config(config).metrics.tpr_at_fpr[0], out, markdown)


def population(num_dataset_images: int, *taken: np.ndarray) -> np.ndarray:
    """The dataset indices in none of the `taken` index arrays (the images outside the split), sorted."""
    return np.setdiff1d(np.arange(num_dataset_images), np.concatenate(taken)).astype(np.int64)


def text2image_config(path: Path) -> ExperimentConfig:
    """The validated config at `path`; raises ValueError unless it runs the text-to-image experiment."""
    cfg = load_config(path)
    if not cfg.text2image.enabled:
        raise ValueError(
            f"{path}: text2image.enabled is false; these stages run the text-to-image experiment"
        )
    return cfg


def _captions(cfg: ExperimentConfig, selection: MemorizedPrompts | None = None) -> list[tuple[str, ...]]:
    """The captions of the run: the dataset's, a memorized-prompt selection's images with their prompt first."""
    from dualmd.text2image.captions import dataset_captions
    from dualmd.text2image.memorized import run_captions

    return run_captions(dataset_captions(cfg.dataset), selection)


def _sampler(cfg: ExperimentConfig, target: catalog.Target, selection: MemorizedPrompts | None = None):
    """Captions of training: with prompt diversification for a "<name>_pd" target (catalog.PD_SUFFIX), whatever
    the config's `text2image.prompt_diversification` (the variants the workflow builds)."""
    from dualmd.text2image.captions import CaptionSampler

    return CaptionSampler(
        captions=_captions(cfg, selection),
        seed=cfg.train.seed,
        diversify=target.prompt_diversification,
        dropout=cfg.text2image.caption_dropout,
    )


def _model_range(images: np.ndarray):
    from dualmd.data.datasets import to_model_range

    return to_model_range(images)
