"""The attack registry by name and the entry point of each kind of attack, which the attack stages call.

Scores are "higher = more likely a member" (see `dualmd.attacks.base`). White-box attacks (`requires ==
"model"`) query a `NoisePredictor`; black-box attacks see only generated images (`requires == "samples"`) or only
what the sampler returns from a noisy image (`"sampler"`); `"pair"` attacks query each model of a pair sampler.
No attack module imports this one; it imports them, by the names in `MODULES`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from dualmd import catalog
from dualmd.attacks import base
from dualmd.attacks.base import Attack, AttackResult
from dualmd.config.attacks import AttackConfig

if TYPE_CHECKING:
    from dualmd.attacks.gsa import ShadowClassifier
    from dualmd.attacks.lira import ReferenceStatistics
    from dualmd.models.adapter import NoisePredictor, Schedule
    from dualmd.sample import DeployedSampler, PredictorSelector

#: The module whose import registers each attack (`base.register`), from its catalog entry
#: (`catalog.AttackSpec.module_name`). A module is imported when its attack is first built, not with this module: a
#: job runs one attack and pays only for that attack's dependencies (diffusers' pipelines for recon,
#: scikit-learn's ensembles for gsa), and a job that uses one helper module (copy detection's nearest neighbours)
#: loads no attack.
MODULES = {name: spec.module_name.removeprefix("dualmd.attacks.") for name, spec in catalog.ATTACKS.items()}


def registry() -> dict[str, type[Attack]]:
    """Every registered attack by name (importing every attack module)."""
    for module in sorted(set(MODULES.values())):
        importlib.import_module(f"dualmd.attacks.{module}")
    return base.ATTACKS


def _built(name: str, cfg: AttackConfig, requires: str) -> Attack:
    """`build_attack`, refusing an attack of another kind with the entry point it needs."""
    attack = build_attack(name, cfg)
    if attack.requires != requires:
        raise ValueError(f"attack {name!r} needs {attack.requires!r} access: use {_ENTRY[attack.requires]}")
    return attack


def build_attack(name: str, cfg: AttackConfig) -> Attack:
    """The attack registered as `name`, configured by the shared keys and its own sections of `cfg`
    (`AttackConfig.for_attack`); unknown names raise ValueError listing the known."""
    if name not in MODULES:
        raise ValueError(f"unknown attack {name!r}; known: {sorted(MODULES)}")
    importlib.import_module(f"dualmd.attacks.{MODULES[name]}")
    return base.ATTACKS[name](cfg=cfg.for_attack(name))


def attack_model(
    name: str,
    cfg: AttackConfig,
    *,
    predictor: NoisePredictor,
    schedule: Schedule,
    images: Tensor,
    sample_ids: np.ndarray,
    is_member: np.ndarray,
    references: ReferenceStatistics | ShadowClassifier | None = None,
) -> AttackResult:
    """Run white-box attack `name` on a model.

    Args:
        predictor, schedule: the attacked model (e.g. from `dualmd.models.adapter.load_predictor`).
        images: (N, C, H, W) float in [-1, 1], members and non-members.
        sample_ids: (N,) distinct non-negative ints (dataset indices), seeding per-sample noise.
        is_member: (N,) bool.
        references: for an attack whose config has it query reference models (`AttackConfig.reference_section`),
            and no other: their statistics (lira), or the classifier fitted on their features (gsa's shadow
            protocol).
    Returns:
        Per-sample scores (secmi_nn, gsa under the slice protocol: only the samples outside their training slice).
    """
    attack = _built(name, cfg, "model")
    if cfg.reference_section(name) is not None:
        if references is None:
            raise ValueError(f"attack {name!r} is calibrated by reference models: pass what they give")
        attack = attack.with_references(references)  # type: ignore[attr-defined]
    elif references is not None:
        raise ValueError(f"attack {name!r} takes no reference models")
    return attack.run(predictor, schedule, images, sample_ids, is_member)  # type: ignore[call-arg]


def attack_samples(
    name: str,
    cfg: AttackConfig,
    *,
    generated: Tensor,
    images: Tensor,
    sample_ids: np.ndarray,
    is_member: np.ndarray,
) -> AttackResult:
    """Run black-box attack `name` from generated images (N_gen, C, H, W) in [-1, 1]; other args as
    `attack_model`."""
    attack = _built(name, cfg, "samples")
    return attack.run(generated, images, sample_ids, is_member)  # type: ignore[call-arg]


def attack_sampler(
    name: str,
    cfg: AttackConfig,
    *,
    sampler: NoisePredictor | PredictorSelector | DeployedSampler,
    schedule: Schedule,
    images: Tensor,
    sample_ids: np.ndarray,
    is_member: np.ndarray,
) -> AttackResult:
    """Run black-box attack `name` through a sampler's denoising chain.

    Args:
        sampler: one model's predictor, or the selector of a pair (`dualmd.samplers.load_sampler`); or the
            sampler as deployed, with its scheduler and step grid (`dualmd.sample.DeployedSampler`), for an attack
            that queries it there (`AttackConfig.queries_deployed_sampler`).
        schedule: the sampler's noise schedule; other args as `attack_model`.
    """
    attack = _built(name, cfg, "sampler")
    return attack.run(sampler, schedule, images, sample_ids, is_member)  # type: ignore[call-arg]


def attack_pair(
    name: str,
    cfg: AttackConfig,
    *,
    models: dict[str, NoisePredictor],
    schedule: Schedule,
    images: Tensor,
    sample_ids: np.ndarray,
    is_member: np.ndarray,
) -> AttackResult:
    """Run white-box attack `name` on every model of a pair sampler (name -> predictor, e.g. DualMD's teachers);
    other args as `attack_model`."""
    attack = _built(name, cfg, "pair")
    return attack.run(models, schedule, images, sample_ids, is_member)  # type: ignore[call-arg]


def attack_scores(name: str, cfg: AttackConfig, *, base: AttackResult) -> AttackResult:
    """Run attack `name` computed from another attack's scores on one target (`catalog.AttackSpec.tunes`: a tuned
    variant from the a-priori attack's result `base`); no model is queried."""
    attack = _built(name, cfg, "scores")
    expected = catalog.attack(name).tunes
    if base.attack and base.attack != expected:
        raise ValueError(f"attack {name!r} reads the scores of {expected!r}, got those of {base.attack!r}")
    return attack.run(base)  # type: ignore[call-arg]


#: The entry point of each kind of attack.
_ENTRY = {
    "model": "attack_model",
    "samples": "attack_samples",
    "sampler": "attack_sampler",
    "pair": "attack_pair",
    "prompts": "dualmd.text2image.blackbox.attack_sampler_blackbox",
    "scores": "attack_scores",
}
