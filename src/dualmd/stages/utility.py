"""Stages of `workflow/rules/evaluate.smk` on utility: reference features of the members, FID / IS of one
sampler."""

from __future__ import annotations

import json
from pathlib import Path

from dualmd.config import load_config
from dualmd.files import write_json
from dualmd.stages import device


def reference(*, config: Path, images: Path, split: Path, split_meta: Path, out: Path) -> None:
    """Features of every member image under the configured FID network, saved once for all samplers."""
    from dualmd.data.members import load_split_images, subset_images
    from dualmd.data.splits import load_split
    from dualmd.utility import ReferenceStats, compute_features, feature_net_name, save_reference

    cfg = load_config(config).utility
    the_split = load_split(split, split_meta)
    members = subset_images(load_split_images(images, the_split), the_split, "members")
    features = compute_features(members, cfg, device())
    save_reference(out, ReferenceStats.from_features(features, feature_net_name(cfg, device())))


def utility(*, config: Path, reference: Path, samples: Path, info: Path, sampler: str, out: Path) -> None:
    """FID / IS of one sampler's images against the member features, with the sampler's settings."""
    from dualmd.images import load_samples
    from dualmd.utility import compute_utility, load_reference

    cfg = load_config(config).utility
    sampling = json.loads(Path(info).read_text())
    summary = compute_utility(load_samples(samples), load_reference(reference), cfg, device=device())
    write_json(
        out,
        {
            "sampler": sampler,
            **summary,
            "scheduler": sampling["scheduler"],
            "num_inference_steps": sampling["num_inference_steps"],
        },
    )
