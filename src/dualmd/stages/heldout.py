"""Stage of `workflow/rules/evaluate.smk`: the held-out denoising loss of every model (`dualmd.heldout`)."""

from __future__ import annotations

from pathlib import Path

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.files import write_json
from dualmd.stage import stage


@stage("heldout-loss", config="heldout", sections=("heldout",))
def heldout_loss(
    *, config: Path, images: Path, split: Path, split_meta: Path, targets: dict[str, Path], out: Path
) -> None:
    """Per-non-member losses and their mean with a 95 % interval for each model, in one JSON file.

    The file holds, per model, ``mean``, ``low``, ``high`` and ``per_sample`` (aligned with ``sample_ids``), so
    later joint bootstraps can resample the same non-members for utility and attack scores.
    """
    from dualmd.data.members import load_split_images, subset_images
    from dualmd.data.splits import load_split
    from dualmd.heldout import mean_interval, per_sample_loss, timestep_grid
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.stages.device import device

    cfg = load_config(config).heldout
    the_split = load_split(split, split_meta)
    ids = the_split.subset("nonmembers")
    images_nm = subset_images(load_split_images(images, the_split), the_split, "nonmembers")
    results, grid = {}, None
    for name, path in targets.items():
        path = target_dir(name, path)
        check_trained_on(path, the_split, catalog.member_subset(name))
        predictor, schedule = load_predictor(path, cfg.weights, device())
        grid = timestep_grid(schedule.num_train_timesteps, cfg.num_timesteps)
        losses = per_sample_loss(
            predictor, schedule, images_nm, ids, grid, seed=cfg.seed, batch_size=cfg.batch_size
        )
        mean, low, high = mean_interval(losses, cfg.num_bootstrap, cfg.seed)
        results[name] = {"mean": mean, "low": low, "high": high, "per_sample": losses.tolist()}
    write_json(
        out,
        {
            "metric": "held-out denoising loss (per-pixel eps-MSE on the non-members, mean over the grid)",
            "weights": cfg.weights,
            "timesteps": list(grid or ()),
            "num_bootstrap": cfg.num_bootstrap,
            "sample_ids": ids.tolist(),
            "models": results,
        },
    )
