"""Stage of `workflow/rules/text2image_memorization.smk`: choose the memorized prompts (images of
`text2image.memorized_prompts.half` repeated in training) and as many other images (paper §3.6).

The selection (`dualmd.text2image.memorized`) is read by the training, sampling and attack stages too (option
`memorized`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd.stage import stage
from dualmd.text2image.experiment import experiment_captions, text2image_config

log = logging.getLogger(__name__)


@stage("t2i-memorized-prompts", config="t2i_memorized_prompts", sections=("dataset", "text2image"))
def select(*, config: Path, split: Path, split_meta: Path, out: Path) -> None:
    """Choose the memorized and the other images of `text2image.memorized_prompts.half` and write the selection."""
    from dualmd.data.splits import load_split
    from dualmd.text2image.memorized import save_selection, select_memorized_prompts

    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    captions = experiment_captions(cfg)
    if len(captions) != the_split.num_dataset_images:
        raise ValueError(
            f"{len(captions)} captions for a split of {the_split.num_dataset_images} images: another dataset"
        )
    selection = select_memorized_prompts(the_split, captions, cfg.text2image.memorized_prompts)
    save_selection(selection, out)
    log.info("memorized %s, other %s", selection.memorized_ids, selection.other_ids)
