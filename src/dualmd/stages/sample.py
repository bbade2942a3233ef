"""Stage of `workflow/rules/sample.smk`: the generated images of one sampler."""

from __future__ import annotations

from pathlib import Path

from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage
from dualmd.stages.device import device


@stage("sample", config="sample", sections=("sample",))
def sample(*, config: Path, sampler: str, models: dict[str, Path], out: Path, info: Path, grid: Path) -> None:
    """Generate `sample.num_images` images with `sampler` (its model directories in `models`; a checkpoint
    "<name>@<step>" is read from its model's directory): an .npz in [-1, 1], the sampling provenance, and a PNG
    grid."""
    from dualmd.images import save_samples
    from dualmd.models.directory import target_dir
    from dualmd.samplers import generate

    cfg = load_config(config).sample
    dirs = {name: target_dir(name, path) for name, path in models.items()}
    images, details = generate(sampler, dirs, cfg, device=device())
    save_samples(images, out, grid, nrow=16)
    write_json(info, {"sampler": sampler, **details, "config": cfg.to_dict()})
