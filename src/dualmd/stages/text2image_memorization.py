"""Stages of memorization on prompts in the text-to-image experiment (`workflow/rules/text2image_memorization.smk`):
choose the memorized prompts, score every target on them, and the report (paper §3.6, Fig. 3 and Table 5).

The selection (`dualmd.text2image.memorized`) is read by the training, sampling and attack stages too
(`dualmd.stages.text2image`, option `memorized`); the detectors and copy statistics are in
`dualmd.text2image.prompt_memorization`, the tables in `dualmd.text2image.memorization_report`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.stages.text2image import text2image_config

log = logging.getLogger(__name__)


def select(*, config: Path, split: Path, split_meta: Path, out: Path) -> None:
    """Choose the memorized and the other images of `text2image.memorized_prompts.half` and write the selection."""
    from dualmd.data.splits import load_split
    from dualmd.text2image.captions import dataset_captions
    from dualmd.text2image.memorized import save_selection, select_memorized_prompts

    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = dataset_captions(cfg.dataset)
    if len(captions) != the_split.num_dataset_images:
        raise ValueError(
            f"{len(captions)} captions for a split of {the_split.num_dataset_images} images: another dataset"
        )
    selection = select_memorized_prompts(the_split, captions, cfg.text2image.memorized_prompts)
    save_selection(selection, out)
    log.info("memorized %s, other %s", selection.memorized_ids, selection.other_ids)


def memorization_targets(model_names: list[str]) -> list[str]:
    """The targets scored with these models: each model, then each DualMD pair whose two teachers are among them
    (both prompt-diversification variants are considered)."""
    pairs = catalog.text2image_targets((False, True), "pair")
    return list(model_names) + [p for p in pairs if all(m in model_names for m in catalog.sampler_models(p))]


def score(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    memorized: Path | None,
    models: dict[str, Path],
    out_dir: Path,
) -> None:
    """Every generation of every selected prompt with each target of `memorization_targets(models)`, its noise
    magnitude, the prompt's t-error (models only) and the copy statistics: `out_dir/<target>.csv`. `memorized`
    (the selection file) is required."""
    import torch

    from dualmd.data.datasets import to_model_range
    from dualmd.data.members import load_split_images
    from dualmd.data.splits import load_split
    from dualmd.models.directory import check_trained_on
    from dualmd.stages.device import device
    from dualmd.text2image.attack import caption_t_error
    from dualmd.text2image.components import load_components
    from dualmd.text2image.finetune import load_finetuned_unet
    from dualmd.text2image.generate import sampler_pipeline
    from dualmd.text2image.memorized import load_selection
    from dualmd.text2image.prompt_memorization import score_target

    if memorized is None:
        raise ValueError("t2i-prompt-memorization needs the selection file (--memorized)")
    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    selection = load_selection(memorized, the_split)
    data = load_split_images(images, the_split)
    dirs = {name: Path(path) for name, path in models.items()}
    ids = list(selection.image_ids)
    prompt_images = {i: to_model_range(data[[i]])[0] for i in ids}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for target in memorization_targets(list(dirs)):
        spec = catalog.target(target)
        member_ids = the_split.subset(spec.members)
        t_errors = None
        if spec.has_weights:
            check_trained_on(dirs[target], the_split, spec.members)
            parts = load_components(dirs[target], device=device())  # unet/: the EMA weights
            unet = parts.unet if cfg.attack.weights == "ema" else load_finetuned_unet(dirs[target], "raw")
            t_errors = caption_t_error(
                parts,
                torch.stack([prompt_images[i] for i in ids]),
                [selection.prompt(i) for i in ids],
                cfg.attack.secmi,
                batch_size=cfg.attack.batch_size,
                unet=unet.to(device()),
            )
            del parts, unet
        rows = score_target(
            sampler_pipeline(target, dirs, weights=cfg.sample.weights).to(device()),
            selection,
            images=prompt_images,
            members=to_model_range(data[member_ids]),
            member_ids=member_ids,
            t_errors=t_errors,
            num_generations=cfg.text2image.memorized_prompts.num_generations,
            sample=cfg.sample,
            guidance_scale=cfg.text2image.guidance_scale,
            memorization=cfg.memorization,
        )
        rows.to_csv(Path(out_dir) / f"{target}.csv", index=False)
        log.info("%s: %d generations of %d prompts scored", target, len(rows), len(ids))


def report(
    *,
    config: Path,
    scores: list[Path],
    out: Path,
    copy_table: Path,
    markdown: Path,
    t_error_plot: Path,
    noise_plot: Path,
) -> None:
    """The detector table (AUC of memorized vs other prompts with 95 % intervals from the metrics config), the
    copy table, their Markdown and one histogram per detector."""
    from dualmd.text2image.memorization_report import write_prompt_memorization

    metrics = load_config(config).metrics
    write_prompt_memorization(
        scores,
        num_bootstrap=metrics.num_bootstrap,
        seed=metrics.seed,
        table=out,
        copies=copy_table,
        markdown=markdown,
        plots={"t_error": t_error_plot, "noise_magnitude": noise_plot},
    )
