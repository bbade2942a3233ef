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
        references: reference model name ("reference1", "reference1_student", "shadow1", ...) -> its directory,
            for an attack whose section has it query reference models (the LiRA attacks, GSA's shadow protocol):
            exactly the models that the section names for the targets (`AttackConfig.reference_models`), each
            checked to have trained on its subset of this split (a checkpoint "<name>@<step>" is resolved in its
            model's directory).
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
    calibrations = {}
    if cfg.reference_section(attack) is not None:
        calibrations = _calibrations(attack, cfg, references or {}, list(targets), the_split, data)
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
                references=calibrations.get(name),
            )
        elif spec.access == "samples":
            result = attack_samples(
                attack, cfg, generated=load_samples(path), images=x, sample_ids=ids, is_member=is_member
            )
        else:
            result = _attack_models_of(attack, name, Path(path), the_split, experiment, x, ids, is_member)
        save_scores(result, Path(out_dir) / f"{name}.npz")
        log.info("%s on %s: %d samples scored", attack, name, len(result.scores))


@stage("tune-attack", config="attack_{attack}")
def tune(*, config: Path, attack: str, scores: dict[str, Path], out_dir: Path) -> None:
    """An attack computed from another attack's score files (a tuned variant, `catalog.AttackSpec.tunes`): for each
    target, read the a-priori attack's scores and write `out_dir/<target>.npz`; no model is loaded.

    Args:
        scores: target name -> the a-priori attack's score file on it.
    """
    from dualmd.attacks.base import load_scores, save_scores
    from dualmd.attacks.run import attack_scores

    cfg = load_config(config).attack
    for name, path in scores.items():
        result = attack_scores(attack, cfg, base=load_scores(path))
        save_scores(result, Path(out_dir) / f"{name}.npz")
        log.info("%s on %s: %d samples scored", attack, name, len(result.scores))


def _attack_models_of(attack, name, models_root, the_split, experiment, images, sample_ids, is_member):
    """A sampler attack through the sampler of target `name`, or a pair attack on each of its models; the models
    are the subfolders of `models_root` named in the catalog, each checked against the split first."""
    from dualmd.attacks.run import attack_pair, attack_sampler
    from dualmd.models.adapter import Schedule
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.sample import DeployedSampler
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
    if cfg.queries_deployed_sampler(attack):  # and its scheduler and step grid (the stage config holds them)
        sampler = DeployedSampler.from_config(sampler, base, sample)
    return attack_sampler(attack, cfg, sampler=sampler, schedule=Schedule.from_scheduler(base), **common)


def _calibrations(attack, cfg, references: dict[str, Path], targets: list[str], the_split, data) -> dict:
    """Target name -> what the reference models that calibrate it give the attack (LiRA: the statistic of every
    candidate on each; GSA's shadow protocol: the classifier fitted on their features), computed once per set of
    reference models (the baseline's recipe: one set for every target)."""
    import importlib

    from dualmd.config.attacks import GSAConfig

    # the attack's own module, imported by name as the attack itself is: the job's code holds it, no other job's does
    module = importlib.import_module(catalog.attack(attack).module_name)
    section = cfg.reference_section(attack)
    sets = {name: tuple(section.reference_models(name)) for name in targets}
    expected = sorted({catalog.split_checkpoint(m)[0] for names in sets.values() for m in names})
    if sorted(references) != expected:
        raise ValueError(
            f"{section.SECTION}.num_reference = {section.num_reference} needs reference models {expected} "
            f"({getattr(section, 'mode', 'offline')}, {section.recipe} recipe), got {sorted(references)}"
        )
    compute = _shadow_classifier if isinstance(section, GSAConfig) else _reference_statistics
    computed = {}
    for names in dict.fromkeys(sets.values()):
        loaded = [_load_reference(m, references, the_split, cfg) for m in names]
        computed[names] = compute(module, attack, cfg, names, loaded, the_split, data)
    return {name: computed[names] for name, names in sets.items()}


def _reference_statistics(lira, attack, cfg, names, loaded, the_split, data):
    """LiRA's statistic of every member and non-member on each loaded reference model (`names`)."""
    from dualmd.data.datasets import to_model_range
    from dualmd.data.members import shadow_membership

    section = lira.lira_section(cfg, attack)
    ids, _ = the_split.evaluation_indices()
    # online: which shadow model trained on which candidate, from the split
    is_in = shadow_membership(the_split, names, ids) if section.mode == "online" else None
    statistics = lira.reference_statistics(
        cfg, loaded, to_model_range(data[ids]), ids, attack=attack, is_in=is_in
    )
    log.info("%s on reference models %s: %d candidates", section.statistic, list(names), len(ids))
    return statistics


def _shadow_classifier(gsa, attack, cfg, names, loaded, the_split, data):
    """GSA's shadow classifier, fitted on the features of each loaded reference model (`names`) on the images it
    trained on and as many of the reference population it did not (`shadow_in_out`): no candidate's."""
    import numpy as np

    from dualmd.data.datasets import to_model_range
    from dualmd.data.members import shadow_in_out

    models = []
    for name, (predictor, schedule) in zip(names, loaded, strict=True):
        in_ids, out_ids = shadow_in_out(the_split, name)
        ids = np.concatenate([in_ids, out_ids])
        is_in = np.arange(ids.size) < in_ids.size
        models.append(gsa.ShadowModel(predictor, schedule, to_model_range(data[ids]), ids, is_in))
    shadow = gsa.shadow_classifier(gsa.gsa_section(cfg, attack), models, cfg.seed)
    log.info(
        "%s: classifier fitted on %d rows of reference models %s", attack, len(shadow.is_in), list(names)
    )
    return shadow


def _load_reference(name: str, references: dict[str, Path], the_split, cfg):
    """Predictor and schedule of reference model `name` (a checkpoint resolved in its model's directory), checked
    to have trained on its subset of this split."""
    from dualmd.models.directory import check_trained_on, load_predictor, target_dir
    from dualmd.stages.device import device

    path = target_dir(name, references[catalog.split_checkpoint(name)[0]])
    check_trained_on(path, the_split, catalog.member_subset(name))
    return load_predictor(
        path, cfg.weights, device(), compile=cfg.compile, mixed_precision=cfg.mixed_precision
    )
