"""Teacher-max: an adaptive white-box attack on DualMD that holds both teachers (adaptive in the sense of Carlini
et al., "On Evaluating Adversarial Robustness", arXiv 1902.06705: the attacker knows how the defense works).

DualMD is a black-box defense: its sampler alternates two teachers trained on the disjoint halves D1 and D2, so no
single model of the sampler has seen every member. An attacker with the weights of both teachers sees through
it: each member is a member of exactly one teacher. The attack scores every image x_0 on each teacher with one
white-box statistic (`attack.teacher_max.statistic`, a registered model attack, configured by its own section)
and keeps the larger:

    score(x_0) = max(s_teacher1(x_0), s_teacher2(x_0))        (both "higher = member")

Both teachers share architecture, schedule and training steps, so their scores are on one scale. The per-teacher
scores go to `extra` under the models' names. Cost: twice the statistic's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor

from dualmd.attacks import loss, pia, secmi, sima  # noqa: F401  (registers what it wraps)
from dualmd.attacks.base import (
    ATTACKS,
    Attack,
    AttackResult,
    ModelAttack,
    check_inputs,
    check_labels,
    register,
)
from dualmd.models.adapter import NoisePredictor, Schedule


@register("teacher_max")
class TeacherMax(Attack):
    """The larger of one model attack's scores on each model of a pair."""

    requires = "pair"

    def statistic(self) -> ModelAttack:
        """The model attack scored on each teacher, e.g. PIA."""
        name = self.cfg.teacher_max.statistic
        attack = ATTACKS[name](cfg=self.cfg)
        if not isinstance(attack, ModelAttack):  # e.g. a slice attack: it would score different samples
            raise ValueError(f"attack.teacher_max.statistic: {name!r} does not score every image of a model")
        return attack

    def run(
        self,
        models: Mapping[str, NoisePredictor],
        schedule: Schedule,
        images: Tensor,
        sample_ids: np.ndarray,
        is_member: np.ndarray,
    ) -> AttackResult:
        """Score every image on each model of `models` (name -> predictor, e.g. teacher1 and teacher2)."""
        ids = check_inputs(images, sample_ids)
        is_member = check_labels(is_member, len(images))
        if len(models) < 2:
            raise ValueError(f"teacher_max needs the models of a pair, got {list(models)}")
        statistic = self.statistic()
        per_model = {name: statistic.score(model, schedule, images, ids) for name, model in models.items()}
        scores = np.max(np.stack(list(per_model.values())), axis=0)
        return AttackResult(ids, is_member, scores, per_model, attack=self.name)
