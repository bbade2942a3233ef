"""Stage of `workflow/rules/attack.smk`: one attack's per-sample scores on every target it reaches."""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd import catalog
from dualmd.config import load_config

log = logging.getLogger(__name__)


def score(
    *,
    config: Path,
    attack: str,
    images: Path,
    split: Path,
    split_meta: Path,
    targets: dict[str, Path],
    out_dir: Path,
) -> None:
    """Score the members of each target and the non-members with `attack`; write `out_dir/<target>.npz`.

    Args:
        targets: target name -> its model directory (model attacks; for a checkpoint "<name>@<step>" the
            directory of its model) or its generated images (samples attacks).
    """
    from dualmd.attacks import attack_model, attack_samples, save_scores
    from dualmd.data.members import evaluation_set, load_split_images
    from dualmd.data.splits import load_split
    from dualmd.images import load_samples
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.stages import device

    spec = catalog.attack(attack)
    cfg = load_config(config).attack
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    for name, path in targets.items():
        x, ids, is_member = evaluation_set(data, the_split, name)
        if spec.access == "model":
            path = target_dir(name, path)
            check_trained_on(path, the_split, catalog.member_subset(name))
            predictor, schedule = load_predictor(
                path, cfg.weights, device(), compile=cfg.compile, mixed_precision=cfg.mixed_precision
            )
            result = attack_model(
                attack,
                cfg,
                predictor=predictor,
                schedule=schedule,
                images=x,
                sample_ids=ids,
                is_member=is_member,
            )
        else:
            result = attack_samples(
                attack, cfg, generated=load_samples(path), images=x, sample_ids=ids, is_member=is_member
            )
        save_scores(result, Path(out_dir) / f"{name}.npz")
        log.info("%s on %s: %d samples scored", attack, name, len(result.scores))
