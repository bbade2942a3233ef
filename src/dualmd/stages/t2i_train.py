"""Stage of `workflow/rules/text2image.smk`: fine-tune the pretrained text-to-image UNet on a target's subset
(baseline: members; teacher1/2: D1/D2), with or without prompt diversification.

With `text2image.memorized_prompts` on, it takes the selection file of `dualmd.text2image.memorized` (`memorized`);
without it (None) nothing changes. `cache_dir` keeps the latents and caption states of the run's images across
jobs (`dualmd.text2image.levers`); the text2image levers apply.
"""

from __future__ import annotations

from pathlib import Path

from dualmd import catalog
from dualmd.stage import stage
from dualmd.text2image.experiment import caption_sampler, model_range, text2image_config


@stage("t2i-train", config="t2i_train", sections=("dataset", "train", "text2image"), distributed=True)
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
    cache_dir: Path | None = None,
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
        images=model_range(data[rows]),
        image_ids=rows.tolist(),
        sampler=caption_sampler(cfg, target, selection),
        train_cfg=cfg.train,
        out_dir=Path(out),
        state_dir=Path(state_dir),
        levers=cfg.text2image,
        cache_dir=None if cache_dir is None else Path(cache_dir),
        metadata={**provenance(the_split, model, target.members), **training_record(ids, selection)},
    )
