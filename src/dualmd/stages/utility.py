"""Stages of `workflow/rules/evaluate.smk` on utility: reference features, FID / KID / IS of one sampler."""

from __future__ import annotations

import json
from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage
from dualmd.stages.device import device


@stage("reference-features", config="utility")
def reference(*, config: Path, images: Path, split: Path, split_meta: Path, out: Path) -> None:
    """Features of the reference set under the configured FID network, saved once for all samplers.

    ``utility.reference``: "dataset" takes every image of the prepared dataset (the authors' choice: the whole
    training set), "members" only the split's members.
    """
    from dualmd.data.members import load_split_images, subset_images
    from dualmd.data.splits import load_split
    from dualmd.utility import ReferenceStats, compute_features, feature_net_name, save_reference

    cfg = load_config(config).utility
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)  # checks that the split indexes this dataset
    chosen = (
        subset_images(data, the_split, "members") if cfg.reference == "members" else data
    )  # uint8 as stored
    features = compute_features(chosen, cfg, device())
    save_reference(out, ReferenceStats.from_features(features, feature_net_name(cfg, device())))


@stage("utility", config="utility", sections=("utility",))
def utility(
    *,
    config: Path,
    reference: Path,
    samples: Path,
    info: Path,
    sampler: str,
    standin_clip: Path | None,
    out: Path,
) -> None:
    """FID (with its interval), KID and IS of one sampler's images against the reference, with the sampler's
    settings; for images generated from prompts (text-to-image: the info lists them), also the CLIP score with
    its interval, or the reason it is absent (`dualmd.clip_score`).

    Args:
        standin_clip: the stand-in CLIP folder (t2i-standin-scorers), where utility.clip_path is "standin".
    """
    from dualmd.images import load_samples
    from dualmd.utility import compute_utility, load_reference

    cfg = load_config(config).utility
    sampling = json.loads(Path(info).read_text())
    images = load_samples(samples)
    summary = compute_utility(images, load_reference(reference), cfg, device=device())
    if "prompts" in sampling:
        from dualmd.clip_score import compute_clip_score

        summary |= compute_clip_score(images, sampling["prompts"], cfg, device=device(), standin=standin_clip)
    write_json(
        out,
        {
            "sampler": sampler,
            **summary,
            "scheduler": sampling["scheduler"],
            "num_inference_steps": sampling["num_inference_steps"],
        },
    )
