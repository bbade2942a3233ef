"""What the workflow computes: its targets, the split subset that holds each target's members, and its attacks.

This is the one table the Snakemake rules, the config validation and the package read; it imports nothing
beyond the standard library so that planning a run never loads torch.

A *target* is anything an attack scores and a sampler draws from:

- ``trained``: a DDPM trained on ground-truth noise over one split subset (the baseline on every member, each
  teacher on its half);
- ``distilled``: a model trained from the predictions of other models (the DistillMD student learns from
  teacher 1 on D2 and teacher 2 on D1, so its members are every member; the ``selfdistill`` control learns
  from the baseline on every member, separating "distillation" from "distillation from the teacher that did not
  see the image");
- ``pair``: a sampler made of several models and no weights of its own (DualMD alternates the two teachers).

A target's *members* are the images it is scored on as members; non-members are always the split's non-member
set. Adding a target is one entry here (and, for a new kind, one stage function).

A target with ``checkpoints=True`` also saves its weights during its own training run at the fractions of its
steps in ``train.snapshot_fractions``; each snapshot is a target of its own, ``<name>@<step>`` (e.g.
``baseline@120``), with the same members, stored under ``<model dir>/checkpoints/<step>``. They trace the
undefended model's privacy-utility curve at no extra training cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TargetKind = Literal["trained", "distilled", "pair"]
Access = Literal["model", "samples"]


@dataclass(frozen=True)
class Target:
    """One model or sampler of the experiment."""

    name: str
    kind: TargetKind
    members: str  # split subset scored as its members: "members", "half1" or "half2"
    models: tuple[str, ...] = ()  # distilled: its teachers; pair: the models it alternates
    checkpoints: bool = False  # snapshots during training become targets "<name>@<step>"

    @property
    def has_weights(self) -> bool:
        """True for targets with a model directory (white-box attacks reach them)."""
        return self.kind != "pair"


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: what it needs and which nested `attack.<section>` config blocks it reads."""

    name: str
    access: Access  # "model": queries a target's noise predictor; "samples": sees only generated images
    reads: tuple[str, ...]
    # Workflow granularity. Cheap attacks score every target in one job, so that adding a target adds no
    # process start-up; an attack whose work per target dwarfs the start-up gets one job per target, which
    # starts as soon as that target exists instead of waiting for the last one.
    job_per_target: bool = False


_TARGETS = (
    Target("baseline", "trained", members="members", checkpoints=True),
    Target("teacher1", "trained", members="half1"),
    Target("teacher2", "trained", members="half2"),
    Target("student", "distilled", members="members", models=("teacher1", "teacher2")),
    Target("dualmd", "pair", members="members", models=("teacher1", "teacher2")),
    Target("selfdistill", "distilled", members="members", models=("baseline",)),
)
_ATTACKS = (
    AttackSpec("loss", "model", reads=("loss",)),
    AttackSpec("secmi_stat", "model", reads=("secmi",)),
    AttackSpec("secmi_nn", "model", reads=("secmi", "secmi_nn"), job_per_target=True),  # trains a ResNet-18
    AttackSpec("pia", "model", reads=("pia",)),
    AttackSpec("pian", "model", reads=("pia",)),
    AttackSpec("sima", "model", reads=("sima",)),
    AttackSpec("gsa", "model", reads=("gsa",)),  # per-sample gradients and a boosted-tree classifier
    AttackSpec("nn_distance", "samples", reads=("nn_distance",)),
)

#: Every target by name, in report order: the undefended baseline first, then the teachers, the defenses and
#: the controls.
TARGETS: dict[str, Target] = {t.name: t for t in _TARGETS}
#: Every attack by name.
ATTACKS: dict[str, AttackSpec] = {a.name: a for a in _ATTACKS}
#: The attack whose score files carry SecMI's per-sample t-error, which memorization reads.
T_ERROR_ATTACK = "secmi_stat"
#: Split subsets a target may be scored on.
MEMBER_SUBSETS = ("members", "half1", "half2")


#: Separates a target's name from a training step in the name of one of its checkpoints.
CHECKPOINT_SEP = "@"


def target(name: str) -> Target:
    """The target called `name` (a checkpoint "<name>@<step>" gives its model's target); unknown names raise
    ValueError listing the known ones."""
    base, step = split_checkpoint(name)
    if base not in TARGETS or (step is not None and not TARGETS[base].checkpoints):
        raise ValueError(f"unknown target {name!r}; known: {list(TARGETS)}")
    return TARGETS[base]


def split_checkpoint(name: str) -> tuple[str, int | None]:
    """("baseline", 120) for "baseline@120"; (name, None) for a name without a step."""
    base, sep, step = name.partition(CHECKPOINT_SEP)
    if not sep:
        return name, None
    if not step.isdigit():
        raise ValueError(f"target {name!r}: expected <name>{CHECKPOINT_SEP}<step> with an integer step")
    return base, int(step)


def checkpoint_targets(steps: tuple[int, ...]) -> list[str]:
    """Names of the checkpoints at `steps` of every target that keeps them, in report order."""
    return [f"{t.name}{CHECKPOINT_SEP}{step}" for t in _TARGETS if t.checkpoints for step in steps]


def report_rank(name: str) -> tuple[int, float]:
    """Sort key of the report: targets in catalog order, a model's checkpoints by step just before it."""
    base, step = split_checkpoint(name)
    return list(TARGETS).index(target(base).name), float("inf") if step is None else float(step)


def attack(name: str) -> AttackSpec:
    """The attack called `name`; unknown names raise ValueError listing the known ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {list(ATTACKS)}")
    return ATTACKS[name]


def names(kind: TargetKind) -> list[str]:
    """Targets of one kind, in report order."""
    return [t.name for t in _TARGETS if t.kind == kind]


def models() -> list[str]:
    """Targets with weights (trained and distilled), in report order."""
    return [t.name for t in _TARGETS if t.has_weights]


def samplers() -> list[str]:
    """Every target: each generates images."""
    return list(TARGETS)


def member_subset(name: str) -> str:
    """Split subset holding the members of target `name`."""
    return target(name).members


def sampler_models(name: str) -> tuple[str, ...]:
    """Model directories a sampler draws with: its own, or those of a pair."""
    t = target(name)
    return t.models if t.kind == "pair" else (t.name,)


def attack_targets(name: str) -> list[str]:
    """Targets an attack scores: every model for a model attack, every sampler for a samples attack."""
    return models() if attack(name).access == "model" else samplers()


def attack_names(access: Access) -> list[str]:
    """Attacks with one kind of access, in registry order."""
    return [a.name for a in _ATTACKS if a.access == access]


def downstream(name: str) -> list[str]:
    """Targets built from target `name` (directly or not): what waits for it to finish."""
    found: list[str] = []
    frontier = [name]
    while frontier:
        current = frontier.pop()
        for t in _TARGETS:
            if current in t.models and t.name not in found:
                found.append(t.name)
                frontier.append(t.name)
    return found
