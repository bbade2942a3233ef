"""The attack section: which attacks run, the keys they share, and one nested section per attack
(`attack.<name>`, read by the attacks that `dualmd.catalog.ATTACKS[name].reads` names)."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from dualmd import catalog
from dualmd.config.base import Section, Weights, require


@dataclass(frozen=True)
class SecMIConfig(Section):
    SECTION = "attack.secmi"
    t_sec: int = 100  # timestep of the round-trip comparison
    k: int = 10  # DDIM stride of the inversion

    def _validate(self, prefix: str) -> None:
        require(self.k >= 1, f"{prefix}.k", "must be >= 1")
        require(
            self.t_sec > self.k and self.t_sec % self.k == 0,
            f"{prefix}.t_sec",
            "must be a multiple of k and larger than k",
        )


@dataclass(frozen=True)
class SecMINNConfig(Section):
    SECTION = "attack.secmi_nn"
    train_fraction: float = 0.2  # slice of members and non-members that trains the classifier
    num_epochs: int = 15
    lr: float = 1e-3
    batch_size: int = 128

    def _validate(self, prefix: str) -> None:
        require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")
        require(self.num_epochs >= 1, f"{prefix}.num_epochs", "must be >= 1")
        require(self.lr > 0, f"{prefix}.lr", "must be > 0")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


@dataclass(frozen=True)
class PIAConfig(Section):
    SECTION = "attack.pia"
    timestep: int = 200  # attack timestep fixed a priori
    sweep_timesteps: tuple[int, ...] = (20, 40, 60, 80, 100, 120, 140, 160, 180, 200)  # reported separately
    lp: float = 4.0
    # text-to-image only: every noise prediction is classifier-free guided, eps_u + w (eps_c - eps_u), as the
    # authors' SD PIA (w = 7.5); 1: the conditional prediction alone. No unconditional stage reads it.
    guidance_scale: float = 1.0

    def _validate(self, prefix: str) -> None:
        require(self.lp > 0, f"{prefix}.lp", "must be > 0")
        require(self.guidance_scale >= 1.0, f"{prefix}.guidance_scale", "must be >= 1 (1: no guidance)")


@dataclass(frozen=True)
class LossAttackConfig(Section):
    SECTION = "attack.loss"
    timesteps: tuple[int, ...] = (50, 100, 200)  # scores are averaged over these timesteps

    def _validate(self, prefix: str) -> None:
        require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")


#: GSA's timesteps: K = 10 evenly spaced over T = 1000, t_j = j * T / K - 1 (Pang et al.'s sampling_frequency).
GSA_TIMESTEPS = (99, 199, 299, 399, 499, 599, 699, 799, 899, 999)


@dataclass(frozen=True)
class GSAConfig(Section):
    """GSA (`dualmd.attacks.gsa`): its gradient features, its classifier and where the classifier's labels come
    from (`protocol`)."""

    SECTION = "attack.gsa"
    # gsa1: gradient of the loss averaged over the timesteps | gsa2: per-timestep gradient norms, averaged
    variant: Literal["gsa1", "gsa2"] = "gsa1"
    timesteps: tuple[int, ...] = GSA_TIMESTEPS  # one noise draw per (image, timestep)
    train_fraction: float = 0.2  # slice of members and non-members that trains the classifier (as secmi_nn)
    num_estimators: int = 200  # boosting stages (GSA's XGBClassifier(n_estimators=200))
    max_depth: int = 3  # depth of each regression tree
    learning_rate: float = 0.1  # shrinkage of each stage
    batch_size: int = 64  # images per vmap call: memory holds batch_size per-sample gradients
    # slice: the classifier trains on the first train_fraction of the target's own members and non-members, the
    # rest is scored | shadow: it trains on reference models (LiRA's, outside the split) and scores every candidate
    protocol: Literal["slice", "shadow"] = "slice"
    num_reference: int = 4  # shadow: reference models reference1..K (those LiRA's offline mode trains)
    # shadow: baseline, every target against reference models of the baseline's recipe; target, each against
    # reference models built like it (shadow teachers, students, a checkpoint at its step; catalog.lira_references)
    recipe: Literal["baseline", "target"] = "target"

    #: Keys left out of `to_dict` at their default, so that the slice protocol's config keeps the digest it had
    #: before the shadow protocol existed (and a run its results).
    _OMITTED_AT_DEFAULT = ("protocol", "num_reference", "recipe")

    @property
    def uses_references(self) -> bool:
        """True under the shadow protocol: the attack needs its reference models' features."""
        return self.protocol == "shadow"

    def reference_models(self, target: str) -> list[str]:
        """The reference models whose features train the classifier for `target` (none under the slice protocol):
        LiRA's offline reference models of `recipe`, which never saw a candidate."""
        if not self.uses_references:
            return []
        return catalog.lira_references(target, self.num_reference, "offline", self.recipe)

    def _validate(self, prefix: str) -> None:
        require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")
        require(
            len(set(self.timesteps)) == len(self.timesteps), f"{prefix}.timesteps", "lists a timestep twice"
        )
        require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")
        require(self.num_estimators >= 1, f"{prefix}.num_estimators", "must be >= 1")
        require(self.max_depth >= 1, f"{prefix}.max_depth", "must be >= 1")
        require(self.learning_rate > 0, f"{prefix}.learning_rate", "must be > 0")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")
        # one reference model already gives IN and OUT rows; the catalog numbers them from 1 to 9999
        require(1 <= self.num_reference <= 9999, f"{prefix}.num_reference", "must be from 1 to 9999")


@dataclass(frozen=True)
class GSAShadowConfig(GSAConfig):
    """The `gsa_shadow` attack: GSA's section with the shadow protocol as its default."""

    SECTION = "attack.gsa_shadow"
    protocol: Literal["slice", "shadow"] = "shadow"
    _OMITTED_AT_DEFAULT = ()  # a new section: its config file names every key


@dataclass(frozen=True)
class SimAConfig(Section):
    SECTION = "attack.sima"
    timestep: int = 20  # attack timestep fixed a priori: small, the model sees the (almost) clean image
    sweep_timesteps: tuple[int, ...] = (0, 10, 20, 50, 100, 150, 200)  # reported separately
    lp: float = 4.0  # the score is minus sum_i |eps_theta(x_0, t)_i|^lp (SimA's code: 4)

    def _validate(self, prefix: str) -> None:
        require(self.lp > 0, f"{prefix}.lp", "must be > 0")


@dataclass(frozen=True)
class LiraConfig(Section):
    """LiRA (`dualmd.attacks.lira`): how its reference models are built and how a candidate is calibrated."""

    SECTION = "attack.lira"
    # K: offline, reference models reference1..K, each on a random half of the reference population outside the
    # split; online, shadow models shadow1..K, each on a random half of the candidates (every candidate IN for K/2)
    # and, with the target's recipe, DistillMD rebuilt on each (every candidate IN for K/4 shadow teachers of a role)
    num_reference: int = 4
    statistic: Literal["loss", "pia", "pian", "sima"] = (
        "loss"  # per-candidate statistic, configured by its section
    )
    # one pooled variance for every candidate (advised for few references), or each candidate's own
    global_variance: bool = True
    # offline: z-score against models that never saw the candidate; online: likelihood ratio of the IN and OUT
    # Gaussians of shadow models trained with and without it (Carlini et al. 2022)
    mode: Literal["offline", "online"] = "offline"
    # baseline: every reference model is trained like the baseline; target: built like the attacked target (the
    # student distilled from its own shadow teachers, a teacher on a half-size set, offline a checkpoint at its step)
    recipe: Literal["baseline", "target"] = "baseline"

    #: LiRA is always calibrated by its reference models.
    uses_references = True

    def reference_models(self, target: str) -> list[str]:
        """The models that calibrate `target` (`catalog.lira_references` under this section's mode and recipe)."""
        return catalog.lira_references(target, self.num_reference, self.mode, self.recipe)

    def _validate(self, prefix: str) -> None:
        # a per-candidate variance needs two reference statistics; the pooled one needs two as well
        require(2 <= self.num_reference <= 9999, f"{prefix}.num_reference", "must be from 2 to 9999")
        online = self.mode == "online"
        # complementary pairs of shadow models: every candidate is IN for exactly K / 2 of them
        require(not online or self.num_reference % 2 == 0, f"{prefix}.num_reference", "must be even online")
        require(
            not online or self.global_variance or self.num_reference >= 4,
            f"{prefix}.num_reference",
            "must be >= 4 online with a per-candidate variance (two IN and two OUT statistics per candidate)",
        )
        # online, built like the target: the shadow teachers of each role come in complementary quadruples, so every
        # candidate is IN for exactly K / 4 of them (`dualmd.data.splits`), and its IN variance needs two
        require(
            not (online and self.recipe == "target")
            or (self.num_reference % 4 == 0 and self.num_reference >= 8),
            f"{prefix}.num_reference",
            "must be a multiple of 4 and >= 8 online with the target's recipe (every candidate IN for K / 4 shadow "
            "teachers of each role, at least two)",
        )


@dataclass(frozen=True)
class LiraOnlineConfig(LiraConfig):
    """The `lira_online` attack: LiRA's section with the online mode as its default."""

    SECTION = "attack.lira_online"
    mode: Literal["offline", "online"] = "online"


@dataclass(frozen=True)
class LiraTargetConfig(LiraConfig):
    """The `lira_target` attack: LiRA's section with reference models built like the target as its default."""

    SECTION = "attack.lira_target"
    recipe: Literal["baseline", "target"] = "target"


@dataclass(frozen=True)
class LiraOnlineTargetConfig(LiraConfig):
    """The `lira_online_target` attack: LiRA's section with the online mode and shadow models built like the target
    as its defaults."""

    SECTION = "attack.lira_online_target"
    num_reference: int = 8  # the fewest sets that give every candidate two IN shadow teachers of each role
    mode: Literal["offline", "online"] = "online"
    recipe: Literal["baseline", "target"] = "target"


@dataclass(frozen=True)
class NNDistanceConfig(Section):
    SECTION = "attack.nn_distance"
    k: int = 1  # mean distance to the k nearest generated samples

    def _validate(self, prefix: str) -> None:
        require(self.k >= 1, f"{prefix}.k", "must be >= 1")


#: The `sample` keys that fix a sampler's step grid and what each step does (`dualmd.sample.DeployedSampler`): an
#: attack that queries the sampler as deployed reads them beside its catalog entry's `sample_keys`.
DEPLOYED_SAMPLE_KEYS = ("scheduler", "num_inference_steps", "eta", "variance_type", "clip_sample")


@dataclass(frozen=True)
class ReconConfig(Section):
    """The reconstruction attack (`dualmd.attacks.recon`): grids chosen on a labelled slice."""

    SECTION = "attack.recon"
    # chain: noise to t, then a num_steps-step deterministic DDIM chain through the sampler's predictors; deployed:
    # an image-to-image query at a strength on the sampler's own step grid (sample.scheduler, num_inference_steps)
    interface: Literal["chain", "deployed"] = "chain"
    timesteps: tuple[int, ...] = (50, 100, 200)  # chain: candidate noising timesteps t (one is chosen)
    num_steps: int = 4  # chain: deterministic DDIM steps from t back to the clean image
    # deployed: candidate strengths s (one is chosen); the query runs the last int(s N) steps of the N-step grid
    strengths: tuple[float, ...] = (0.05, 0.1, 0.2)
    num_queries: tuple[int, ...] = (1, 2)  # candidate numbers of queries averaged (one is chosen)
    train_fraction: float = 0.2  # slice of members and non-members that chooses t (or s) and the queries

    @property
    def sample_keys(self) -> tuple[str, ...]:
        """The `sample` keys this interface reads beyond the catalog's: the step grid for "deployed"."""
        return DEPLOYED_SAMPLE_KEYS if self.interface == "deployed" else ()

    def _validate(self, prefix: str) -> None:
        require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one timestep")
        require(
            len(set(self.timesteps)) == len(self.timesteps), f"{prefix}.timesteps", "lists a timestep twice"
        )
        require(len(self.strengths) >= 1, f"{prefix}.strengths", "needs at least one strength")
        require(
            len(set(self.strengths)) == len(self.strengths), f"{prefix}.strengths", "lists a strength twice"
        )
        require(all(0.0 < s <= 1.0 for s in self.strengths), f"{prefix}.strengths", "must be in (0, 1]")
        require(len(self.num_queries) >= 1, f"{prefix}.num_queries", "needs at least one count")
        require(min(self.num_queries, default=1) >= 1, f"{prefix}.num_queries", "counts must be >= 1")
        require(self.num_steps >= 1, f"{prefix}.num_steps", "must be >= 1")
        # the chain t > ... > 0 takes num_steps distinct integer timesteps
        require(
            min(self.timesteps, default=1) >= self.num_steps,
            f"{prefix}.timesteps",
            f"every timestep must be >= num_steps ({self.num_steps})",
        )
        require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")


@dataclass(frozen=True)
class TunedConfig(Section):
    """A tuned threshold attack (`dualmd.attacks.tuned`): the timestep and the orientation (higher or lower =
    member) chosen by AUC on a labelled slice, one section per variant (the same keys, as LiRA's)."""

    SECTION = "attack.loss_tuned"
    # candidate timesteps; () = every timestep the a-priori attack's scores carry (loss: attack.loss.timesteps;
    # pia, sima: their sweep_timesteps), so that tuning costs no model query
    timesteps: tuple[int, ...] = ()
    train_fraction: float = 0.2  # first fraction of members and of non-members choosing them (not scored)

    def _validate(self, prefix: str) -> None:
        require(
            len(set(self.timesteps)) == len(self.timesteps), f"{prefix}.timesteps", "lists a timestep twice"
        )
        require(0.0 < self.train_fraction < 1.0, f"{prefix}.train_fraction", "must be in (0, 1)")


@dataclass(frozen=True)
class PIATunedConfig(TunedConfig):
    SECTION = "attack.pia_tuned"


@dataclass(frozen=True)
class SimATunedConfig(TunedConfig):
    SECTION = "attack.sima_tuned"


@dataclass(frozen=True)
class SecMITunedConfig(TunedConfig):
    """SecMI's t-error has no sweep: its tuned variant computes one at each t_sec here (multiples of
    attack.secmi.k, one DDIM inversion up to the largest)."""

    SECTION = "attack.secmi_stat_tuned"
    timesteps: tuple[int, ...] = (20, 40, 60, 80, 100, 150, 200)

    def _validate(self, prefix: str) -> None:
        super()._validate(prefix)
        require(len(self.timesteps) >= 1, f"{prefix}.timesteps", "needs at least one t_sec")


#: Model attacks `teacher_max` can run on each teacher: one score per image, no labelled slice.
TeacherStatistic = Literal["loss", "secmi_stat", "pia", "pian", "sima"]


@dataclass(frozen=True)
class TeacherMaxConfig(Section):
    """The white-box attack on both DualMD teachers (`dualmd.attacks.teacher_max`)."""

    SECTION = "attack.teacher_max"
    statistic: TeacherStatistic = "pia"  # the model attack scored on each teacher (its own section applies)


@dataclass(frozen=True)
class PangWangConfig(Section):
    """The black-box attack of Pang & Wang (2023) on a text-to-image sampler (`dualmd.attacks.pang_wang`)."""

    SECTION = "attack.pang_wang"
    num_generations: int = 3  # images generated per candidate from its original caption (the paper: 3)
    num_inference_steps: int = 50  # DDIM steps of each generation (the paper: 50)
    guidance_scale: float = 7.5  # classifier-free guidance of each generation (the authors' code: 7.5)
    # inception: the FID Inception-v3 of `utility` (pooled 2048-d, offline); deit: a DeiT folder in
    # `encoder_path` (the authors': facebook/deit-base-distilled-patch16-384, last_hidden_state); pixels: 3x8x8
    # pooled pixels, for tests
    encoder: Literal["inception", "deit", "pixels"] = "inception"
    encoder_path: str | None = None  # local folder of the DeiT model and image processor (encoder: deit)
    # pixels per side of the inception encoder's input: 299 as FID; >= 75 (Inception-v3's smallest) runs the
    # network up to its last map and averages it globally (`dualmd.utility`), ~10x cheaper at 128 on a CPU
    encoder_image_size: int = 299
    fit_fraction: float = 0.5  # first fraction of the members and of the non-members fitting the Gaussians
    covariance_ridge: float = 1e-5  # added to the diagonal of each class covariance (the authors' 1e-5)

    def _validate(self, prefix: str) -> None:
        require(self.num_generations >= 1, f"{prefix}.num_generations", "must be >= 1")
        require(self.num_inference_steps >= 1, f"{prefix}.num_inference_steps", "must be >= 1")
        require(self.guidance_scale >= 1.0, f"{prefix}.guidance_scale", "must be >= 1 (1: no guidance)")
        require(0.0 < self.fit_fraction < 1.0, f"{prefix}.fit_fraction", "must be in (0, 1)")
        require(self.covariance_ridge > 0, f"{prefix}.covariance_ridge", "must be > 0")
        require(
            self.encoder != "deit" or self.encoder_path is not None,
            f"{prefix}.encoder_path",
            "encoder 'deit' needs the local folder of the DeiT model",
        )
        require(self.encoder_image_size >= 75, f"{prefix}.encoder_image_size", "must be >= 75 (Inception-v3)")
        require(
            self.encoder == "inception" or self.encoder_image_size == 299,
            f"{prefix}.encoder_image_size",
            "applies to the inception encoder only (deit uses its image processor's size)",
        )


@dataclass(frozen=True)
class AttackConfig(Section):
    """Which attacks run and their parameters."""

    SECTION = "attack"
    # every attack but those kept out of the default run (`AttackSpec.default`: those that need reference models
    # trained for them, the tuned variants; config/attacks-strong.yaml adds them) and the text-to-image black-box
    # attack ("prompts")
    names: tuple[str, ...] = tuple(
        a for a, spec in catalog.ATTACKS.items() if spec.default and spec.access != "prompts"
    )
    weights: Weights = "ema"  # white-box attacks: which weights of a model are attacked
    batch_size: int = 256
    seed: int = 0  # per-sample noise seeds derive from this and the sample id
    # white-box attacks' UNet forward (not GSA's per-sample gradients, which run the plain fp32 UNet)
    compile: bool = False  # torch.compile the UNet forward
    mixed_precision: Literal["no", "bf16"] = "no"  # bf16 autocast of the UNet forward
    secmi: SecMIConfig = field(default_factory=SecMIConfig)
    secmi_nn: SecMINNConfig = field(default_factory=SecMINNConfig)
    pia: PIAConfig = field(default_factory=PIAConfig)
    loss: LossAttackConfig = field(default_factory=LossAttackConfig)
    nn_distance: NNDistanceConfig = field(default_factory=NNDistanceConfig)
    gsa: GSAConfig = field(default_factory=GSAConfig)
    sima: SimAConfig = field(default_factory=SimAConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)
    teacher_max: TeacherMaxConfig = field(default_factory=TeacherMaxConfig)
    lira: LiraConfig = field(default_factory=LiraConfig)
    lira_online: LiraOnlineConfig = field(default_factory=LiraOnlineConfig)
    lira_target: LiraTargetConfig = field(default_factory=LiraTargetConfig)
    lira_online_target: LiraOnlineTargetConfig = field(default_factory=LiraOnlineTargetConfig)
    gsa_shadow: GSAShadowConfig = field(default_factory=GSAShadowConfig)
    pang_wang: PangWangConfig = field(default_factory=PangWangConfig)
    loss_tuned: TunedConfig = field(default_factory=TunedConfig)
    pia_tuned: PIATunedConfig = field(default_factory=PIATunedConfig)
    sima_tuned: SimATunedConfig = field(default_factory=SimATunedConfig)
    secmi_stat_tuned: SecMITunedConfig = field(default_factory=SecMITunedConfig)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, prefix: str = "") -> AttackConfig:
        """As every section, with each nested per-attack section built (and checked) first."""
        raw = dict(raw or {})
        prefix = prefix or cls.SECTION
        nested = {
            k: sub.from_mapping(raw.pop(k), prefix=f"{prefix}.{k}") for k, sub in _NESTED.items() if k in raw
        }
        return replace(super().from_mapping(raw, prefix=prefix), **nested)

    def to_dict(self) -> dict[str, Any]:
        """Plain-YAML form, each nested section by its own `to_dict` (which may leave keys out at their default)."""
        out = super().to_dict()
        for key in _NESTED:
            section = getattr(self, key)
            if section is not None:
                out[key] = section.to_dict()
        return out

    def sections_of(self, name: str) -> tuple[str, ...]:
        """The nested sections attack `name` reads: its catalog entry's (`AttackSpec.reads`) and, for an attack that
        runs another (`AttackSpec.wraps`, e.g. teacher_max's `statistic`), that attack's."""
        spec = catalog.attack(name)
        sections = spec.reads
        if spec.wraps is not None:
            sections += catalog.attack(getattr(getattr(self, spec.reads[0]), spec.wraps)).reads
        return tuple(dict.fromkeys(sections))

    def sample_keys_of(self, name: str) -> tuple[str, ...]:
        """The keys of the `sample` section attack `name` reads: its catalog entry's (`AttackSpec.sample_keys`) and
        those its sections ask for (recon's deployed interface: the sampler's step grid, `DEPLOYED_SAMPLE_KEYS`)."""
        keys = catalog.attack(name).sample_keys
        for section in self.sections_of(name):
            keys += getattr(getattr(self, section), "sample_keys", ())
        return tuple(dict.fromkeys(keys))

    def queries_deployed_sampler(self, name: str) -> bool:
        """Whether attack `name` queries the sampler on its own step grid (it reads `DEPLOYED_SAMPLE_KEYS`)."""
        return set(DEPLOYED_SAMPLE_KEYS) <= set(self.sample_keys_of(name))

    def for_attack(self, name: str) -> AttackConfig:
        """This config as attack `name` receives it: the shared keys and the sections it reads; every other
        attack's section is None, so that an attack reading one fails at once instead of reading defaults."""
        own = self.sections_of(name)
        return replace(self, **{key: None for key in _NESTED if key not in own})

    def reference_section(self, name: str) -> LiraConfig | GSAConfig | None:
        """The section saying which reference models attack `name` queries (its own, `AttackSpec.reads[0]`), or None
        when it queries none: an attack the catalog does not mark `references`, or GSA's slice protocol."""
        spec = catalog.attack(name)
        section = getattr(self, spec.reads[0]) if spec.references else None
        return section if section is not None and section.uses_references else None

    def reference_models(self, name: str, targets: Sequence[str]) -> list[str]:
        """The models (without checkpoint steps) that calibrate `targets` for attack `name`: those its own section
        names (`reference_models`: `catalog.lira_references` under its mode and recipe), in order; none for an
        attack that queries no reference model."""
        section = self.reference_section(name)
        if section is None:
            return []
        found = [catalog.split_checkpoint(m)[0] for t in targets for m in section.reference_models(t)]
        return list(dict.fromkeys(found))

    def _validate(self, prefix: str) -> None:
        unknown = [n for n in self.names if n not in catalog.ATTACKS]
        require(
            not unknown, f"{prefix}.names", f"unknown attack(s) {unknown}; known: {list(catalog.ATTACKS)}"
        )
        require(len(set(self.names)) == len(self.names), f"{prefix}.names", "lists an attack twice")
        require(len(self.names) >= 1, f"{prefix}.names", "needs at least one attack")
        require(self.batch_size >= 1, f"{prefix}.batch_size", "must be >= 1")


#: The nested section of each attack, by its key in the attack section: every field of AttackConfig that is itself
#: a section (catalog.AttackSpec.reads names them).
_NESTED: dict[str, type[Section]] = {
    f.name: hint
    for f in fields(AttackConfig)
    if isinstance(hint := typing.get_type_hints(AttackConfig)[f.name], type) and issubclass(hint, Section)
}
