"""Stage of `workflow/rules/attack.smk`: one attack's per-sample scores on every target it reaches."""

from __future__ import annotations

import logging
from pathlib import Path

from dualmd import catalog
from dualmd.config.experiment import load_config
from dualmd.stage import stage

log = logging.getLogger(__name__)


@stage("attack", config="attack_{attack}")
def score(
    *,
    config: Path,
    attack: str,
    images: Path,
    split: Path,
    split_meta: Path,
    targets: dict[str, Path],
    out_dir: Path,
    references: dict[str, Path] | None = None,
) -> None:
    """Score the members of each target and the non-members with `attack`; write `out_dir/<target>.npz`.

    Args:
        targets: target name -> its model directory (model attacks; for a checkpoint "<name>@<step>" the
            directory of its model), its generated images (samples attacks), or the folder holding the run's
            model directories (sampler and pair attacks: the target's models, `catalog.sampler_models`, are
            its subfolders).
        references: reference model name ("reference1", ...) -> its directory, for an attack calibrated by
            reference models (lira): exactly `attack.lira.num_reference` of them, each checked to have trained
            on its subset of this split.
    """
    from dualmd.attacks.base import save_scores
    from dualmd.attacks.run import attack_model, attack_samples
    from dualmd.data.members import evaluation_set, load_split_images
    from dualmd.data.splits import load_split
    from dualmd.images import load_samples
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.stages.device import device

    spec = catalog.attack(attack)
    experiment = load_config(config)
    cfg = experiment.attack
    the_split = load_split(split, split_meta)
    data = load_split_images(images, the_split)
    calibration = None
    if spec.references:
        calibration = _reference_statistics(cfg, references or {}, the_split, data, device())
    elif references:
        raise ValueError(f"attack {attack!r} takes no reference models, got {sorted(references)}")
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
                references=calibration,
            )
        elif spec.access == "samples":
            result = attack_samples(
                attack, cfg, generated=load_samples(path), images=x, sample_ids=ids, is_member=is_member
            )
        else:
            result = _attack_models_of(attack, name, Path(path), the_split, experiment, x, ids, is_member)
        save_scores(result, Path(out_dir) / f"{name}.npz")
        log.info("%s on %s: %d samples scored", attack, name, len(result.scores))


def _attack_models_of(attack, name, models_root, the_split, experiment, images, sample_ids, is_member):
    """A sampler attack through the sampler of target `name`, or a pair attack on each of its models; the models
    are the subfolders of `models_root` named in the catalog, each checked against the split first."""
    from dualmd.attacks.run import attack_pair, attack_sampler
    from dualmd.models.adapter import Schedule
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.samplers import load_sampler
    from dualmd.stages.device import device

    cfg = experiment.attack
    dirs = {
        m: target_dir(m, models_root / catalog.split_checkpoint(m)[0]) for m in catalog.sampler_models(name)
    }
    for model, path in dirs.items():
        check_trained_on(path, the_split, catalog.member_subset(model))
    common = dict(images=images, sample_ids=sample_ids, is_member=is_member)
    if catalog.attack(attack).access == "pair":
        fast = dict(compile=cfg.compile, mixed_precision=cfg.mixed_precision)
        loaded = {m: load_predictor(path, cfg.weights, device(), **fast) for m, path in dirs.items()}
        models = {m: predictor for m, (predictor, _) in loaded.items()}
        schedule = next(iter(loaded.values()))[1]
        return attack_pair(attack, cfg, models=models, schedule=schedule, **common)
    # the sampler under attack is the one the sample stage runs: its weights and DualMD's alternation rule
    sample = experiment.sample
    sampler, base, _ = load_sampler(
        name,
        dirs,
        weights=sample.weights,
        alternation=sample.dualmd_alternation,
        device=device(),
        compile=cfg.compile,
        mixed_precision=cfg.mixed_precision,
    )
    return attack_sampler(attack, cfg, sampler=sampler, schedule=Schedule.from_scheduler(base), **common)


def _reference_statistics(cfg, references: dict[str, Path], the_split, data, device):
    """The configured statistic of every member and non-member on each reference model of the config."""
    import importlib

    from dualmd.data.datasets import to_model_range
    from dualmd.models.directory import check_trained_on, load_predictor

    expected = catalog.reference_targets(cfg.lira.num_reference)
    if sorted(references) != sorted(expected):
        raise ValueError(
            f"attack.lira.num_reference = {cfg.lira.num_reference} needs reference models {expected}, "
            f"got {sorted(references)}"
        )
    loaded = []
    for name in expected:
        check_trained_on(references[name], the_split, catalog.member_subset(name))
        loaded.append(
            load_predictor(
                references[name],
                cfg.weights,
                device,
                compile=cfg.compile,
                mixed_precision=cfg.mixed_precision,
            )
        )
    ids, _ = the_split.evaluation_indices()
    # LiRA's own module, imported by name as the attack itself is: the job's code holds it, no other job's does
    lira = importlib.import_module(catalog.attack("lira").module_name)
    stats = lira.reference_statistics(cfg, loaded, to_model_range(data[ids]), ids)
    log.info("%s on %d reference models: %d candidates", cfg.lira.statistic, len(loaded), len(ids))
    return stats
