"""Stage of `workflow/rules/text2image_memorization.smk`: every target scored on the memorized and the other
prompts (t-error, Wen et al.'s noise magnitude, copies, Table 5's copy score and CLIP score); the undefended models
again with Wen et al.'s mitigation when `text2image.mitigation` is on. The detectors and copy statistics are in
`dualmd.text2image.prompt_memorization`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd import catalog
from dualmd.stage import stage
from dualmd.text2image.experiment import text2image_config

log = logging.getLogger(__name__)


def memorization_targets(model_names: list[str]) -> list[str]:
    """The targets scored with these models: each model, then each DualMD pair whose two teachers are among them
    (both prompt-diversification variants are considered)."""
    pairs = catalog.text2image_targets((False, True), "pair")
    return list(model_names) + [p for p in pairs if all(m in model_names for m in catalog.sampler_models(p))]


@stage(
    "t2i-prompt-memorization",
    config="t2i_prompt_memorization",
    sections=("sample", "memorization", "text2image"),
)
def score(
    *,
    config: Path,
    images: Path,
    split: Path,
    split_meta: Path,
    memorized: Path | None,
    models: dict[str, Path],
    standin_clip: Path | None,
    standin_descriptor: Path | None,
    out_dir: Path,
) -> None:
    """Every generation of every selected prompt with each target of `memorization_targets(models)`, its noise
    magnitude, the prompt's t-error (models only), the copy statistics and Table 5's scores (the copy descriptor
    of `memorization.copy_descriptor`, CLIP of `memorization.clip_path`; absent without them), and with
    `text2image.mitigation` on, the undefended models' generations again under Wen et al.'s mitigation:
    `out_dir/<target>.csv`. `memorized` (the selection file) is required.

    Args:
        standin_clip: the stand-in CLIP folder (t2i-standin-scorers), where memorization.clip_path is "standin".
        standin_descriptor: the stand-in descriptor file, where memorization.copy_descriptor is "standin".
    """
    import pandas as pd
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
    from dualmd.text2image.levers import apply_tf32
    from dualmd.text2image.memorized import load_selection
    from dualmd.text2image.prompt_memorization import score_target

    if memorized is None:
        raise ValueError("t2i-prompt-memorization needs the selection file (--memorized)")
    cfg = text2image_config(config)
    apply_tf32(cfg.text2image.allow_tf32)
    the_split = load_split(split, split_meta)
    selection = load_selection(memorized, the_split)
    data = load_split_images(images, the_split)
    dirs = {name: Path(path) for name, path in models.items()}
    ids = list(selection.image_ids)
    prompt_images = {i: to_model_range(data[[i]])[0] for i in ids}
    scorers = image_scorers(cfg, device(), clip=standin_clip, descriptor=standin_descriptor)
    mitigation = cfg.text2image.mitigation
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
        pipe = sampler_pipeline(target, dirs, weights=cfg.sample.weights).to(device())
        common = {
            "images": prompt_images,
            "members": to_model_range(data[member_ids]),
            "member_ids": member_ids,
            "num_generations": cfg.text2image.memorized_prompts.num_generations,
            "sample": cfg.sample,
            "guidance_scale": cfg.text2image.guidance_scale,
            "memorization": cfg.memorization,
            "scorers": scorers,
        }
        rows = score_target(pipe, selection, t_errors=t_errors, **common)
        if mitigation.enabled and is_undefended(target):  # Table 5's "Wen et al." row: the undefended model
            mitigated = score_target(pipe, selection, t_errors=None, mitigation=mitigation, **common)
            rows = pd.concat([rows, mitigated], ignore_index=True)
        rows.to_csv(Path(out_dir) / f"{target}.csv", index=False)
        log.info("%s: %d generations of %d prompts scored", target, len(rows), len(ids))


def is_undefended(target: str) -> bool:
    """Whether `target` is the undefended fine-tuned model (either prompt-diversification variant)."""
    return target.removesuffix(catalog.PD_SUFFIX) == "baseline"


def image_scorers(cfg, device, *, clip: Path | None = None, descriptor: Path | None = None):
    """The copy descriptor and the CLIP model of the config, each absent (with the reason) where not set; a key
    that is "standin" reads the stand-in's `clip` folder or `descriptor` file and names it as a stand-in."""
    from dualmd.clip_score import clip_model_name, load_clip
    from dualmd.config.evaluation import scorer_path
    from dualmd.text2image.copy_score import descriptor_name, load_descriptor
    from dualmd.text2image.prompt_memorization import ImageScorers

    scorers = ImageScorers(batch_size=cfg.sample.batch_size, device=device)
    memorization = cfg.memorization
    if memorization.copy_descriptor is not None:
        path = scorer_path(memorization.copy_descriptor, descriptor, "memorization.copy_descriptor")
        scorers.descriptor = load_descriptor(path, device)
        scorers.descriptor_name = descriptor_name(memorization.copy_descriptor)
    if memorization.clip_path is not None:
        scorers.clip = load_clip(scorer_path(memorization.clip_path, clip, "memorization.clip_path"), device)
        scorers.clip_name = clip_model_name(memorization.clip_path, scorers.clip[0])
    return scorers
