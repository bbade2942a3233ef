"""Tuned threshold attacks: `loss`, `pia`, `sima` and `secmi_stat` with their timestep and orientation chosen on a
labelled slice, as `recon` chooses its setting (the "best timestep" that PIA's and SimA's papers report, but
chosen without the scored candidates).

The a-priori attacks fix their timestep before seeing any data and their orientation by the paper's argument
(lower loss = member). Their tuned variants take the first `train_fraction` of members and of non-members in split
order (`base.train_test_split`: the labelled slice of secmi_nn, gsa and recon, and `metrics.selection_fraction`'s
slice at the default 0.2), and choose among the candidate timesteps t and the two orientations o = +1 (higher =
member, as the a-priori score) and o = -1 the pair with the highest AUC there:

    (t*, o*) = argmax_{t, o} AUC_slice(o * s_t)     AUC(-s) = 1 - AUC(s); ties: the first t, then o = +1

and score only the other candidates with o* * s_t*. The a-priori attacks and their score files are unchanged.

* `loss_tuned`, `pia_tuned`, `sima_tuned` (access "scores") query no model: s_t are the per-timestep scores
  ("t<step>" extras) that the a-priori attack already writes (loss: each of `attack.loss.timesteps`; pia, sima:
  their `sweep_timesteps`), read from its score files.
* `secmi_stat_tuned` queries the model: SecMI writes one t-error, at t_sec. It computes the t-error at every
  candidate t_sec (multiples of `attack.secmi.k`) from one DDIM inversion up to the largest, plus one denoising
  step per candidate; at t_sec = `attack.secmi.t_sec` it equals `secmi_stat`'s exactly. Cost: max(t_sec) / k + number
  of candidates UNet calls per image (27 at the defaults, secmi_stat's 11).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from dualmd.attacks.base import (
    Attack,
    AttackResult,
    ModelAttack,
    check_labels,
    per_sample_sum,
    register,
    train_test_split,
)
from dualmd.attacks.secmi import ddim_step
from dualmd.metrics import auc


def choose_timestep(per_t: Mapping[int, np.ndarray], is_member: np.ndarray) -> tuple[int, int]:
    """The timestep and orientation (+1: higher = member, -1: lower = member) with the highest AUC.

    Args:
        per_t: timestep -> (n,) scores, higher = member a priori.
        is_member: (n,) bool, both classes present.
    Returns:
        (t, orientation); ties go to the first timestep of `per_t`, then to orientation +1.
    """
    best: tuple[int, int, float] | None = None
    for t, values in per_t.items():
        value = auc(values, is_member)
        orientation = 1 if value >= 0.5 else -1
        oriented = max(value, 1.0 - value)
        if best is None or oriented > best[2]:
            best = (t, orientation, oriented)
    if best is None:
        raise ValueError("no candidate timestep to choose from")
    return best[0], best[1]


def tuned_result(
    per_t: Mapping[int, np.ndarray],
    sample_ids: np.ndarray,
    is_member: np.ndarray,
    train_fraction: float,
    attack: str,
    sweep: bool = False,
) -> AttackResult:
    """Choose (t, orientation) on the leading slice, score the rest with it.

    Args:
        per_t: timestep -> (N,) scores aligned with sample_ids (split order), higher = member a priori.
        sample_ids, is_member: (N,) of every candidate.
        train_fraction: the slice: that fraction of the members and of the non-members, first in order.
        attack: the variant's name (in errors and the result).
        sweep: also keep each timestep's oriented scores on the scored part ("t<step>", the report's sweep).
    Returns:
        The scored part only; extra "timestep" and "orientation" hold the choice (constant arrays).
    """
    is_member = check_labels(is_member, len(sample_ids))
    train, test = train_test_split(is_member, train_fraction, attack)
    t, orientation = choose_timestep({k: v[train] for k, v in per_t.items()}, is_member[train])
    extra = {"timestep": np.full(len(test), float(t)), "orientation": np.full(len(test), float(orientation))}
    if sweep:
        extra |= {f"t{k}": orientation * np.asarray(v)[test] for k, v in per_t.items()}
    ids = np.asarray(sample_ids, dtype=np.int64)
    return AttackResult(
        ids[test], is_member[test], orientation * np.asarray(per_t[t])[test], extra, attack=attack
    )


class TunedThreshold(Attack):
    """A tuned variant computed from the a-priori attack's score file (`catalog.AttackSpec.tunes`)."""

    requires = "scores"

    def run(self, base: AttackResult) -> AttackResult:
        """The tuned scores from `base`, the a-priori attack's result on one target (every candidate scored)."""
        cfg = getattr(self.cfg, self.name)
        available = {int(k[1:]): v for k, v in base.extra.items() if k[:1] == "t" and k[1:].isdigit()}
        missing = [t for t in cfg.timesteps if t not in available]
        if missing or not available:
            raise ValueError(
                f"attack.{self.name}.timesteps: {missing or 'none'} not among the timesteps the "
                f"{base.attack or 'a-priori'} scores carry ({sorted(available)}); tuning reuses them"
            )
        per_t = {t: available[t] for t in cfg.timesteps} if cfg.timesteps else dict(sorted(available.items()))
        return tuned_result(per_t, base.sample_ids, base.is_member, cfg.train_fraction, self.name)


@register("loss_tuned")
class LossTuned(TunedThreshold):
    """The loss attack at one of its timesteps (not their mean), chosen with its orientation on the slice."""


@register("pia_tuned")
class PIATuned(TunedThreshold):
    """PIA at the sweep's timestep chosen with its orientation on the slice."""


@register("sima_tuned")
class SimATuned(TunedThreshold):
    """SimA at the sweep's timestep chosen with its orientation on the slice."""


def t_errors(model, schedule, x_0: torch.Tensor, k: int, t_secs: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """SecMI's t-error at every t_sec of `t_secs` (multiples of k, > k), sharing one DDIM inversion.

    The round trip at t_sec inverts to t = t_sec - k, then to t_sec (the inversion's own next step), and denoises
    back to t (`secmi.round_trip`); the inversion to max(t_secs) visits every x~ needed.

    Args:
        x_0: (B, C, H, W) clean images in [-1, 1].
    Returns:
        t_sec -> (B,) float64 positive errors.
    """
    needed = {t for t_sec in t_secs for t in (t_sec - k, t_sec)}
    x, current = x_0.double(), 0
    kept: dict[int, torch.Tensor] = {}  # x_0 itself is never needed: t_sec - k >= k
    for target in range(k, max(t_secs) + 1, k):  # 0 -> k -> ...; the first call is eps(x_0, 0)
        x, current = ddim_step(model, schedule, x, current, target), target
        if target in needed:
            kept[target] = x
    errors = {}
    for t_sec in t_secs:
        x_back = ddim_step(model, schedule, kept[t_sec], t_sec, t_sec - k)
        errors[t_sec] = per_sample_sum((x_back - kept[t_sec - k]) ** 2)
    return errors


@register("secmi_stat_tuned")
class SecMIStatTuned(ModelAttack):
    """SecMI_stat with t_sec and the orientation chosen on the slice; `run` scores the rest."""

    def score_batch(self, model, schedule, images, sample_ids):
        k, t_secs = self.cfg.secmi.k, self.cfg.secmi_stat_tuned.timesteps
        bad = [t for t in t_secs if t <= k or t % k or t >= schedule.num_train_timesteps]
        if bad:
            raise ValueError(
                f"attack.secmi_stat_tuned.timesteps: {bad} are not multiples of attack.secmi.k = {k} above it "
                f"and below the model's {schedule.num_train_timesteps} steps"
            )
        # negated: a priori members have the lower round-trip error, scores are "higher = member"
        per_t = {f"t{t}": -err for t, err in t_errors(model, schedule, images, k, t_secs).items()}
        return per_t[f"t{t_secs[0]}"], per_t

    def run(self, model, schedule, images, sample_ids, is_member) -> AttackResult:
        """Every candidate's t-errors, the choice on the leading slice, the rest scored (with its sweep)."""
        _, extra = self.score_with_extra(model, schedule, images, sample_ids)
        per_t = {t: extra[f"t{t}"] for t in self.cfg.secmi_stat_tuned.timesteps}
        cfg = self.cfg.secmi_stat_tuned
        return tuned_result(per_t, sample_ids, is_member, cfg.train_fraction, self.name, sweep=True)
