"""Stage of `workflow/rules/text2image_memorization.smk`: the tiny run's stand-in scorers of Table 5, the CLIP
trained on the images outside the split and their captions, and the fixed copy descriptor
(`dualmd.text2image.standin_scorers`), which the scoring stages read where a scorer key is "standin".
"""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd.stage import stage
from dualmd.text2image.experiment import experiment_captions, model_range, population, text2image_config

log = logging.getLogger(__name__)


@stage("t2i-standin-scorers", config="t2i_standin_scorers", sections=("dataset", "text2image"))
def standin_scorers(
    *, config: Path, images: Path, split: Path, split_meta: Path, clip: Path, descriptor: Path
) -> None:
    """Train the stand-in CLIP on the dataset images outside the split and write it with the copy descriptor.

    Args:
        clip: the stand-in CLIP's folder written (CLIPModel, CLIPProcessor, standin.json).
        descriptor: the stand-in copy descriptor's TorchScript file written.
    """
    from dualmd.data.members import load_split_images
    from dualmd.data.splits import load_split
    from dualmd.text2image.standin_scorers import save_standin_clip, train_standin_clip, write_copy_descriptor

    cfg = text2image_config(config)
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    ids = population(the_split.num_dataset_images, the_split.member_idx, the_split.nonmember_idx)
    model, processor, record = train_standin_clip(
        model_range(data[ids]),
        ids.tolist(),
        experiment_captions(cfg),
        the_split,
        cfg.text2image.standin_scorers,
    )
    save_standin_clip(clip, model, processor, record)
    Path(descriptor).parent.mkdir(parents=True, exist_ok=True)
    write_copy_descriptor(descriptor)
    after = record["heldout_after"]
    log.info(
        "stand-in CLIP: %d images, held-out loss %.3f, own caption beats another's %.3f of the time (%.1f s)",
        record["population_size"],
        after["loss"],
        after["pair_accuracy"],
        record["wall_time_s"],
    )
