"""Stage of `workflow/rules/text2image_blackbox.smk`: black-box attack scores on one text-to-image sampler
(Pang & Wang: generations from each candidate's caption).

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


@stage("t2i-blackbox", config="t2i_attack_{attack}")
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
    from dualmd.text2image.levers import apply_tf32
    from dualmd.text2image.memorized import load_selection

    if catalog.attack(attack).access != "prompts":
        raise ValueError(f"{attack!r} is not a black-box text-to-image attack; use t2i-attack")
    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = run_captions_of(cfg, load_selection(memorized, the_split))
    x, ids, is_member = evaluation_set(load_split_images(images, the_split), the_split, sampler)
    apply_tf32(cfg.text2image.allow_tf32)
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
