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

*Controls* are optional targets a config adds by value (`control_targets`); their names carry their
parameters, so `target` resolves them without the config:

- a DP-SGD baseline ``dpsgd_eps<ε>`` is the baseline trained with differentially private SGD at privacy
  budget ε, on every member;
- the overlap ablation at p percent trains ``teacher1_ov<p>`` on D1 plus the first p% of D2 (split subset
  ``half1_ov<p>``), ``teacher2_ov<p>`` likewise, and distils ``student_ov<p>`` from them with DistillMD's rule
  (a D1 batch regresses on teacher 2, which now saw p% of D1). At 100% both teachers saw every member.

The text-to-image experiment (`dualmd.text2image`, paper §3.5 and Table 3) has the targets of
``TEXT2IMAGE_TARGETS``, and each again with prompt diversification, named with ``PD_SUFFIX`` (``baseline_pd``,
``student_pd`` distilled from ``teacher1_pd`` and ``teacher2_pd``, ``dualmd_pd``): trained with one of an image's
captions drawn at each use instead of its first caption. The name alone says how a model is trained, so the two
variants share every stage config.

LiRA's *reference models* (which GSA's shadow protocol also trains its classifier on, the offline ones only) are
targets that no attack scores and no sampler draws (`dualmd.data.splits` holds their training sets):

- ``reference<k>`` (k = 1, 2, ...): the baseline's recipe on split subset ``ref<k>``, a random half of a population
  of dataset images outside the split, with the baseline's checkpoints;
- ``reference<k>_teacher1``, ``reference<k>_teacher2``, ``reference<k>_student``: DistillMD rebuilt on ``ref<k>``,
  teachers on its disjoint halves ``ref<k>_half1`` and ``ref<k>_half2`` and a student distilled from them;
- ``shadow<k>``: the baseline's recipe on split subset ``shadow<k>``, a random half of the candidates (members and
  non-members), for online LiRA;
- ``shadow<k>_teacher1``, ``shadow<k>_teacher2``, ``shadow<k>_student``: DistillMD rebuilt on ``shadow<k>``, teachers
  on its disjoint halves ``shadow<k>_half1`` and ``shadow<k>_half2`` and a student distilled from them (online LiRA
  built like the target).

Which of them calibrate a target is the target's ``reference_role`` (`lira_references`): the recipe that built it.

A target with ``checkpoints=True`` also saves its weights during its own training run at the fractions of its
steps in ``train.snapshot_fractions``; each snapshot is a target of its own, ``<name>@<step>`` (e.g.
``baseline@120``), with the same members, stored under ``<model dir>/checkpoints/<step>``. They trace the
undefended model's privacy-utility curve at no extra training cost.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

TargetKind = Literal["trained", "distilled", "pair"]
Access = Literal["model", "samples", "sampler", "pair", "prompts", "scores"]
ReferenceRole = Literal["baseline", "teacher1", "teacher2", "student"]


@dataclass(frozen=True)
class Target:
    """One model or sampler of the experiment."""

    name: str
    kind: TargetKind
    members: str  # split subset scored as its members: "members", "half1" or "half2"
    models: tuple[str, ...] = ()  # distilled: its teachers; pair: the models it alternates
    checkpoints: bool = False  # snapshots during training become targets "<name>@<step>"
    dp_epsilon: float | None = None  # trained with DP-SGD at this epsilon (delta = 1 / number of members)
    prompt_diversification: bool = False  # text-to-image: one of an image's captions drawn at each use
    # distilled from two teachers: the split subsets of its D1 and D2 batches (Algorithm 2)
    halves: tuple[str, str] = ("half1", "half2")
    # LiRA with reference models built like the target: the model of a reference set that mirrors this target's
    # recipe (`REFERENCE_ROLES`); a target without its own ("baseline") is calibrated by the baseline's recipe
    reference_role: ReferenceRole = "baseline"

    @property
    def has_weights(self) -> bool:
        """True for targets with a model directory (white-box attacks reach them)."""
        return self.kind != "pair"


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: what it needs and which nested `attack.<section>` config blocks it reads."""

    name: str
    # "model": queries a target's noise predictor (white-box); "samples": sees only generated images;
    # "sampler": queries a sampler's denoising chain from a point it chooses (black-box, every sampler, DualMD
    # through its alternating teachers); "pair": white-box on each model of a pair sampler (DualMD's teachers);
    # "prompts": queries a text-to-image sampler with captions and sees only the images it returns; "scores": no
    # query at all, computed from another attack's score files (`tunes`)
    access: Access
    reads: tuple[str, ...]
    # Workflow granularity. Cheap attacks score every target in one job, so that adding a target adds no
    # process start-up; an attack whose work per target dwarfs the start-up gets one job per target, which
    # starts as soon as that target exists instead of waiting for the last one.
    job_per_target: bool = False
    # Keys of the `sample` section it reads: a sampler attack queries the sampler the sample stage runs.
    sample_keys: tuple[str, ...] = ()
    # A key of its own section that names a model attack it runs; that attack's sections are read too.
    wraps: str | None = None
    # The attack may also query LiRA's reference models (`lira_references`): which ones, if any, its own section
    # says (`AttackConfig.reference_models`; GSA only under its shadow protocol).
    references: bool = False
    # The attack scores the checkpoints of the undefended curve too (``baseline@<step>``), so the frontier and the
    # matched-utility verdicts include it. Off only for a costly per-target job whose cost grows with the curve.
    curve: bool = True
    # Module of `dualmd.attacks` that defines it (default: its name); a job running the attack imports that module
    # and no other attack module, so the module's import closure is the attack's code.
    module: str = ""
    # A tuned variant of this a-priori attack: its timestep and orientation are chosen on the labelled slice from
    # the attack's per-timestep scores ("t<step>" in its score files), and the slice is not scored. Needs `tunes`
    # in the same run: the variant is reported beside the a-priori attack, never instead of it.
    tunes: str | None = None
    # In the default `attack.names` (config/config.yaml); False: only where a config names it (attacks-strong.yaml)
    default: bool = True

    @property
    def module_name(self) -> str:
        """Dotted name of the module that defines the attack."""
        return f"dualmd.attacks.{self.module or self.name}"


_TARGETS = (
    Target("baseline", "trained", members="members", checkpoints=True),
    Target("teacher1", "trained", members="half1", reference_role="teacher1"),
    Target("teacher2", "trained", members="half2", reference_role="teacher2"),
    Target(
        "student", "distilled", members="members", models=("teacher1", "teacher2"), reference_role="student"
    ),
    Target("dualmd", "pair", members="members", models=("teacher1", "teacher2")),
    Target("selfdistill", "distilled", members="members", models=("baseline",)),
)


def _lira_variant(name: str) -> AttackSpec:
    """LiRA under its own section `attack.<name>`, whose defaults pick the mode and the recipe."""
    return AttackSpec(
        name, "model", reads=(name,), wraps="statistic", references=True, module="lira", default=False
    )


_ATTACKS = (
    AttackSpec("loss", "model", reads=("loss",)),
    AttackSpec("secmi_stat", "model", reads=("secmi",), module="secmi"),
    # trains a ResNet-18 per target (the default run's costliest attack job): not on the curve's checkpoints
    AttackSpec("secmi_nn", "model", reads=("secmi", "secmi_nn"), job_per_target=True, curve=False),
    AttackSpec("pia", "model", reads=("pia",)),
    AttackSpec("pian", "model", reads=("pia",), module="pia"),
    AttackSpec("sima", "model", reads=("sima",)),
    # per-sample gradients and a boosted-tree classifier, trained on a labelled slice of the target or, under the
    # shadow protocol, on reference models; gsa_shadow is the same attack with the shadow protocol as its default
    AttackSpec("gsa", "model", reads=("gsa",), references=True),
    AttackSpec("nn_distance", "samples", reads=("nn_distance",)),
    # noise, denoise with the sampler, compare: the sampler's weights and DualMD's alternation rule
    AttackSpec("recon", "sampler", reads=("recon",), sample_keys=("weights", "dualmd_alternation")),
    AttackSpec("teacher_max", "pair", reads=("teacher_max",), wraps="statistic"),  # max over the teachers
    # calibrated by reference models; runs the attack named by its `statistic`
    AttackSpec("lira", "model", reads=("lira",), wraps="statistic", references=True, default=False),
    # the same attack with its own section, whose defaults are the online mode, the target's recipe or both: one
    # config runs and reports the variants side by side
    *(_lira_variant(name) for name in ("lira_online", "lira_target", "lira_online_target")),
    AttackSpec("gsa_shadow", "model", reads=("gsa_shadow",), references=True, module="gsa", default=False),
    # tuned variants of the threshold attacks (dualmd/attacks/tuned.py): from the sweep the attack already scores,
    # no model query; SecMI's t-error has no sweep, so its variant queries the model (strong config only)
    AttackSpec("loss_tuned", "scores", reads=("loss_tuned",), tunes="loss", module="tuned", default=False),
    AttackSpec("pia_tuned", "scores", reads=("pia_tuned",), tunes="pia", module="tuned", default=False),
    AttackSpec("sima_tuned", "scores", reads=("sima_tuned",), tunes="sima", module="tuned", default=False),
    AttackSpec(
        "secmi_stat_tuned", "model", reads=("secmi", "secmi_stat_tuned"), module="tuned", default=False
    ),
    # text-to-image only: generations from each candidate's caption, embedded and compared with the candidate
    # (Pang & Wang 2023); one job per sampler, as generation dominates
    AttackSpec(
        "pang_wang",
        "prompts",
        reads=("pang_wang",),
        job_per_target=True,
        sample_keys=("weights", "dualmd_alternation", "eta"),
    ),
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
#: Name prefix of the DP-SGD baselines, followed by epsilon ("dpsgd_eps10").
DP_PREFIX = "dpsgd_eps"
_DP_NAME = re.compile(rf"{DP_PREFIX}(\d+(?:\.\d+)?)")
#: Suffix of the overlap ablation's targets, followed by the overlap in percent ("student_ov50").
OVERLAP_SEP = "_ov"
_OVERLAP_NAME = re.compile(rf"(teacher1|teacher2|student){OVERLAP_SEP}(\d{{1,3}})")
#: Targets of the text-to-image experiment, in report order, and those of them that generate images.
TEXT2IMAGE_TARGETS = ("baseline", "teacher1", "teacher2", "student", "dualmd")
TEXT2IMAGE_SAMPLERS = ("baseline", "student", "dualmd")
#: The white-box attacks that run on text-to-image models (on latents, each image's caption as condition).
TEXT2IMAGE_WHITEBOX_ATTACKS = ("loss", "secmi_stat", "secmi_nn", "pia", "pian")
#: Every attack that runs on text-to-image targets: the white-box ones, and the black-box attack of Pang & Wang
#: (2023) on each sampler (prompted with the candidates' captions).
TEXT2IMAGE_ATTACKS = (*TEXT2IMAGE_WHITEBOX_ATTACKS, "pang_wang")
#: Suffix of a text-to-image target trained with prompt diversification ("baseline_pd").
PD_SUFFIX = "_pd"
#: Name prefix of LiRA's reference models, followed by k >= 1 ("reference3") and, for DistillMD rebuilt on the
#: reference set, the model's role ("reference3_student").
REFERENCE_PREFIX = "reference"
#: The models of one reference set: the baseline's recipe, and DistillMD's teachers and student.
REFERENCE_ROLES: tuple[ReferenceRole, ...] = typing.get_args(ReferenceRole)
_REFERENCE_NAME = re.compile(rf"{REFERENCE_PREFIX}([1-9]\d{{0,3}})(?:_(teacher1|teacher2|student))?")
#: Name prefix of online LiRA's shadow models, followed by k >= 1 ("shadow3") and, for DistillMD rebuilt on the
#: shadow set, the model's role ("shadow3_student").
SHADOW_PREFIX = "shadow"
_SHADOW_NAME = re.compile(rf"{SHADOW_PREFIX}([1-9]\d{{0,3}})(?:_(teacher1|teacher2|student))?")


def dp_target(epsilon: float) -> Target:
    """The DP-SGD baseline at privacy budget `epsilon`: trained like the baseline, on every member."""
    name = f"{DP_PREFIX}{epsilon:g}"
    if not epsilon > 0 or not _DP_NAME.fullmatch(name):
        raise ValueError(f"a DP-SGD target needs epsilon > 0 written without an exponent, got {epsilon}")
    return Target(name, "trained", members="members", dp_epsilon=float(epsilon))


def overlap_targets(percent: int) -> tuple[Target, Target, Target]:
    """Teacher 1, teacher 2 and student of the overlap ablation at `percent` % (1 to 100)."""
    if not (isinstance(percent, int) and 1 <= percent <= 100):
        raise ValueError(f"an overlap is a whole percentage from 1 to 100, got {percent!r}")
    t1, t2 = f"teacher1{OVERLAP_SEP}{percent}", f"teacher2{OVERLAP_SEP}{percent}"
    return (
        Target(t1, "trained", members=f"half1{OVERLAP_SEP}{percent}"),
        Target(t2, "trained", members=f"half2{OVERLAP_SEP}{percent}"),
        Target(f"student{OVERLAP_SEP}{percent}", "distilled", members="members", models=(t1, t2)),
    )


def diversified_target(name: str) -> Target:
    """Text-to-image target `name` trained with prompt diversification: "<name>_pd", built from the
    diversified versions of its models."""
    if name not in TEXT2IMAGE_TARGETS:
        raise ValueError(f"{name!r} is not a text-to-image target; known: {list(TEXT2IMAGE_TARGETS)}")
    base = TARGETS[name]
    return replace(
        base,
        name=f"{name}{PD_SUFFIX}",
        models=tuple(f"{m}{PD_SUFFIX}" for m in base.models),
        checkpoints=False,
        prompt_diversification=True,
    )


def text2image_targets(variants: Sequence[bool], kind: TargetKind | None = None) -> list[str]:
    """Names of the text-to-image targets (of one `kind`, or all) for each prompt-diversification variant in
    `variants` (False: "baseline", ...; True: "baseline_pd", ...), in that order."""
    chosen = [n for n in TEXT2IMAGE_TARGETS if kind is None or TARGETS[n].kind == kind]
    return [f"{n}{PD_SUFFIX}" if pd else n for pd in variants for n in chosen]


def text2image_samplers(variants: Sequence[bool]) -> list[str]:
    """Names of the text-to-image samplers for each prompt-diversification variant in `variants`."""
    return [f"{n}{PD_SUFFIX}" if pd else n for pd in variants for n in TEXT2IMAGE_SAMPLERS]


def _model_number(k: int) -> int:
    if not (isinstance(k, int) and 1 <= k <= 9999):
        raise ValueError(f"a reference model number is an integer from 1 to 9999, got {k!r}")
    return k


def _rebuilt(name: str, subset: str, role: ReferenceRole, *, checkpoints: bool) -> Target:
    """The model of `role` in a set of models that rebuild the experiment on split subset `subset`, named
    `name` ("baseline") or "<name>_<role>": the baseline's recipe on `subset` (with the baseline's checkpoints when
    `checkpoints`), a teacher on its half "<subset>_half1" / "<subset>_half2", or DistillMD's student distilled
    from those two teachers."""
    if role == "baseline":
        return Target(name, "trained", members=subset, checkpoints=checkpoints)
    halves = (f"{subset}_half1", f"{subset}_half2")
    if role in ("teacher1", "teacher2"):
        return Target(f"{name}_{role}", "trained", members=halves[role == "teacher2"])
    if role == "student":
        teachers = (f"{name}_teacher1", f"{name}_teacher2")
        return Target(f"{name}_student", "distilled", members=subset, models=teachers, halves=halves)
    raise ValueError(f"unknown reference role {role!r}; known: {list(REFERENCE_ROLES)}")


def reference_target(k: int, role: ReferenceRole = "baseline") -> Target:
    """LiRA's reference model k (1-based) of one role (`REFERENCE_ROLES`): "baseline", the baseline's recipe on
    split subset ``ref<k>`` (with its checkpoints); "teacher1" / "teacher2", a teacher's recipe on the half
    ``ref<k>_half1`` / ``ref<k>_half2``; "student", DistillMD's student distilled from those two teachers."""
    return _rebuilt(f"{REFERENCE_PREFIX}{_model_number(k)}", f"ref{k}", role, checkpoints=True)


def shadow_target(k: int, role: ReferenceRole = "baseline") -> Target:
    """Online LiRA's shadow model k (1-based) of one role (`REFERENCE_ROLES`): "baseline", the baseline's recipe on
    split subset ``shadow<k>``, a random half of the candidates (no checkpoints); "teacher1" / "teacher2", a
    teacher's recipe on the half ``shadow<k>_half1`` / ``shadow<k>_half2``; "student", DistillMD's student
    distilled from those two teachers, whose members are ``shadow<k>``."""
    return _rebuilt(f"{SHADOW_PREFIX}{_model_number(k)}", f"shadow{k}", role, checkpoints=False)


def reference_set(name: str) -> int:
    """k of offline reference model `name` ("reference<k>", "reference<k>_<role>" or a checkpoint of one): every
    model of reference set k trained inside split subset ``ref<k>``.

    Raises:
        ValueError: `name` is no offline reference model (a target, or an online shadow model ``shadow<k>``, which
            trains on candidates).
    """
    found = _REFERENCE_NAME.fullmatch(split_checkpoint(name)[0])
    if found is None:
        raise ValueError(f"{name!r} is not an offline reference model ({REFERENCE_PREFIX}<k>[_<role>])")
    return int(found.group(1))


def lira_references(name: str, num: int, mode: str = "offline", recipe: str = "baseline") -> list[str]:
    """The `num` models that calibrate target `name` for LiRA in `mode` ("offline", "online") with reference
    models of `recipe` ("baseline", "target").

    Offline: ``reference<k>`` (baseline recipe), or the model of reference set k in the target's
    ``reference_role``. Online: ``shadow<k>`` (baseline recipe), or the model of shadow set k in the target's role.
    Under the target recipe a checkpoint "<name>@<step>" gets each reference model's checkpoint at the same step
    where the reference models keep checkpoints (offline); online shadow models keep none, so a checkpoint is
    calibrated by the shadow models of its model's role, as under the baseline recipe.
    """
    if mode not in ("offline", "online"):
        raise ValueError(f"unknown LiRA mode {mode!r}; known: ['offline', 'online']")
    built = shadow_target if mode == "online" else reference_target
    if recipe == "baseline":
        return [built(k).name for k in range(1, num + 1)]
    if recipe != "target":
        raise ValueError(f"unknown LiRA recipe {recipe!r}; known: ['baseline', 'target']")
    base, step = split_checkpoint(name)
    role = target(base).reference_role
    models = [built(k, role) for k in range(1, num + 1)]
    return [m.name + ("" if step is None or not m.checkpoints else f"{CHECKPOINT_SEP}{step}") for m in models]


def control_targets(dp_epsilons: Sequence[float] = (), overlap_percents: Sequence[int] = ()) -> list[str]:
    """Names of the optional control targets of a config, in report order."""
    overlaps = [t.name for p in overlap_percents for t in overlap_targets(p)]
    return overlaps + [dp_target(e).name for e in dp_epsilons]


def target(name: str) -> Target:
    """The target called `name` (a checkpoint "<name>@<step>" gives its model's target; a control's name gives
    the control); unknown names raise ValueError listing the known ones."""
    base, step = split_checkpoint(name)
    control = _control(base)
    if control is not None and (step is None or control.checkpoints):
        return control
    if base not in TARGETS or (step is not None and not TARGETS[base].checkpoints):
        raise ValueError(
            f"unknown target {name!r}; known: {list(TARGETS)}, {DP_PREFIX}<epsilon> and "
            f"teacher1|teacher2|student{OVERLAP_SEP}<percent>, {REFERENCE_PREFIX}<k>[_<role>], "
            f"{SHADOW_PREFIX}<k>[_<role>] and "
            f"{'|'.join(TEXT2IMAGE_TARGETS)}{PD_SUFFIX}"
        )
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


def _control(name: str) -> Target | None:
    """The control called `name`, or None: its parameters are read off the name, which must then be the name
    the control of those parameters has (one spelling per control: "dpsgd_eps10", not "dpsgd_eps10.0")."""
    try:
        if dp := _DP_NAME.fullmatch(name):
            candidates: tuple[Target, ...] = (dp_target(float(dp.group(1))),)
        elif overlap := _OVERLAP_NAME.fullmatch(name):
            candidates = overlap_targets(int(overlap.group(2)))
        elif reference := _REFERENCE_NAME.fullmatch(name):
            role = typing.cast(ReferenceRole, reference.group(2) or "baseline")
            candidates = (reference_target(int(reference.group(1)), role),)
        elif shadow := _SHADOW_NAME.fullmatch(name):
            role = typing.cast(ReferenceRole, shadow.group(2) or "baseline")
            candidates = (shadow_target(int(shadow.group(1)), role),)
        elif name.removesuffix(PD_SUFFIX) in TEXT2IMAGE_TARGETS:
            candidates = (diversified_target(name.removesuffix(PD_SUFFIX)),)
        else:
            return None
    except ValueError:  # parameters out of range
        return None
    return next((t for t in candidates if t.name == name), None)


def report_rank(name: str) -> tuple[float, float]:
    """Sort key of the report: targets in catalog order, a model's checkpoints by step just before it, then
    the overlap ablation by overlap (teachers, then student), then the DP-SGD controls by decreasing epsilon
    (increasing privacy); a prompt-diversified text-to-image target right after the same target without it."""
    base, step = split_checkpoint(name)
    found = target(base)
    overlap = _OVERLAP_NAME.fullmatch(found.name)
    if overlap:
        return len(TARGETS), int(overlap.group(2)) + ("teacher1", "teacher2", "student").index(
            overlap.group(1)
        ) / 10
    if found.dp_epsilon is not None:
        return len(TARGETS) + 1, -found.dp_epsilon
    if found.prompt_diversification:  # right after the same target without it
        return list(TARGETS).index(found.name.removesuffix(PD_SUFFIX)) + 0.5, float("inf")
    return list(TARGETS).index(found.name), float("inf") if step is None else float(step)


def compared_to_curve(name: str) -> bool:
    """True for the targets the frontier compares with the undefended curve at matched utility: every
    distilled model, every pair sampler (DualMD, on the FID axis) and every DP-SGD baseline."""
    found = target(name)
    return found.kind in ("distilled", "pair") or found.dp_epsilon is not None


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


def reports_halves(name: str) -> bool:
    """Whether target `name`'s metrics are also reported per member half (D1's members and D2's, each against every
    non-member): DualMD's targets, a pair sampler and each model a pair alternates (its teachers)."""
    return any(name == t.name or name in t.models for t in _TARGETS if t.kind == "pair")


def sampler_models(name: str) -> tuple[str, ...]:
    """Targets whose weights a sampler draws with: its own (a checkpoint "<name>@<step>" its own weights), or the
    models of a pair."""
    t = target(name)
    return t.models if t.kind == "pair" else (name,)


def attack_targets(name: str) -> list[str]:
    """Targets an attack scores: every model for a model attack, every sampler for a samples or sampler
    attack, every pair (DualMD) for a pair attack, the text-to-image samplers for a prompts attack (without
    prompt diversification; `text2image_samplers` adds the "_pd" ones)."""
    spec = attack(name)
    if spec.tunes is not None:  # the targets of the attack whose scores it reads
        return attack_targets(spec.tunes)
    access = spec.access
    if access == "model":
        return models()
    if access == "prompts":
        return list(TEXT2IMAGE_SAMPLERS)
    return names("pair") if access == "pair" else samplers()


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
