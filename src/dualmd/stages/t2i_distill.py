"""Stage of `workflow/rules/text2image.smk`: distil the text-to-image DistillMD student from its two teachers.

With `text2image.memorized_prompts` on, it takes the selection file of `dualmd.text2image.memorized` (`memorized`);
without it (None) nothing changes. `cache_dir` keeps the latents and caption states of the run's images across
jobs (`dualmd.text2image.levers`); the text2image levers apply.
"""

from __future__ import annotations

from pathlib import Path

from dualmd import catalog
from dualmd.stage import stage
from dualmd.text2image.experiment import caption_sampler, model_range, text2image_config


@stage(
    "t2i-distill",
    config="t2i_distill",
    sections=("dataset", "train", "distill", "text2image"),
    distributed=True,
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
    cache_dir: Path | None = None,
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
        half1=model_range(data[half1]),
        half1_ids=half1.tolist(),
        half2=model_range(data[half2]),
        half2_ids=half2.tolist(),
        teacher1=teacher1,
        teacher2=teacher2,
        sampler=caption_sampler(cfg, target, selection),
        train_cfg=cfg.train,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        levers=cfg.text2image,
        cache_dir=None if cache_dir is None else Path(cache_dir),
        metadata={
            **provenance(the_split, model, target.members),
            **training_record(the_split.member_idx, selection),
        },
    )
