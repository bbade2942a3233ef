"""Stage of `workflow/rules/text2image.smk`: pretrain the tiny text-to-image stand-in (VAE, conditional UNet, and
with `text2image.pretrain_text_encoder` the text encoder; frozen afterwards) on the dataset images outside the split
and their captions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dualmd.stage import stage
from dualmd.text2image.experiment import model_range, population, run_captions_of, text2image_config


@stage("t2i-pretrain", config="t2i_pretrain", sections=("dataset", "train", "text2image"), distributed=True)
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
        images=model_range(data[ids]),
        image_ids=ids.tolist(),
        captions=run_captions_of(cfg),
        vae_steps=cfg.text2image.pretrain_vae_steps,
        unet_cfg=replace(cfg.train, num_train_steps=cfg.text2image.pretrain_unet_steps),
        caption_dropout=cfg.text2image.caption_dropout,
        state_dir=Path(state_dir),
        seed=cfg.train.seed,
        train_text_encoder=cfg.text2image.pretrain_text_encoder,
    )
    return record
