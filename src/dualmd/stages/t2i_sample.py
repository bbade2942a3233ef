"""Stage of `workflow/rules/text2image.smk`: images of one text-to-image sampler (a model, or DualMD's two
teachers alternating), prompted with the members' captions.

With `text2image.memorized_prompts` on, it takes the selection file of `dualmd.text2image.memorized` (`memorized`);
without it (None) nothing changes.
"""

from __future__ import annotations

from pathlib import Path

from dualmd.stage import stage
from dualmd.text2image.experiment import run_captions_of, text2image_config


@stage("t2i-sample", config="t2i_sample", sections=("dataset", "sample", "text2image"))
def sample(
    *,
    config: Path,
    split: Path,
    split_meta: Path,
    sampler: str,
    models: dict[str, Path],
    out: Path,
    info: Path,
    grid: Path,
    memorized: Path | None = None,
) -> None:
    """Generate `sample.num_images` images with `sampler`, prompted with the members' original captions (cycled,
    in split order; a memorized-prompt image's prompt for it): an .npz in [-1, 1], the sampling provenance and a
    PNG grid."""
    from dualmd.data.splits import load_split
    from dualmd.files import write_json
    from dualmd.images import save_samples
    from dualmd.stages.device import device
    from dualmd.text2image.generate import generate
    from dualmd.text2image.levers import apply_tf32
    from dualmd.text2image.memorized import load_selection

    cfg = text2image_config(config)
    apply_tf32(cfg.text2image.allow_tf32)
    the_split = load_split(split, split_meta)
    captions = run_captions_of(cfg, load_selection(memorized, the_split))
    members = the_split.member_idx
    prompts = [captions[members[i % len(members)]][0] for i in range(cfg.sample.num_images)]
    images, details = generate(
        sampler,
        {k: Path(v) for k, v in models.items()},
        prompts,
        cfg.sample,
        guidance_scale=cfg.text2image.guidance_scale,
        device=device(),
    )
    save_samples(images, out, grid, nrow=16)
    write_json(info, {**details, "prompts": prompts, "config": cfg.sample.to_dict()})
