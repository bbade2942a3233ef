"""Stage of `workflow/rules/text2image.smk`: white-box attack scores on text-to-image targets (latents, each
image's caption as condition).

With `text2image.memorized_prompts` on, it takes the selection file of `dualmd.text2image.memorized` (`memorized`);
without it (None) nothing changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd import catalog
from dualmd.stage import stage
from dualmd.text2image.experiment import run_captions_of, text2image_config

log = logging.getLogger(__name__)


@stage("t2i-attack", config="t2i_attack_{attack}")
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
    from dualmd.text2image.levers import apply_tf32
    from dualmd.text2image.memorized import load_selection

    cfg = text2image_config(config)
    apply_tf32(cfg.text2image.allow_tf32)
    the_split = load_split(split, split_meta)
    captions = run_captions_of(cfg, load_selection(memorized, the_split))
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
