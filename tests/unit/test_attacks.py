"""Attack contract (every registered attack) and attack-specific hand-checked behaviour."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from helpers.models import tiny_unet
from torch import nn

from dualmd import catalog
from dualmd.attacks.base import AttackResult, load_scores, per_sample_noise, save_scores, train_test_split
from dualmd.attacks.gsa import (
    ShadowClassifier,
    ShadowModel,
    gradient_features,
    gsa_section,
    shadow_classifier,
)
from dualmd.attacks.lira import ReferenceStatistics, lira_section, offline_lira, reference_statistics
from dualmd.attacks.pia import PIAN
from dualmd.attacks.recon import chain_timesteps, choose_setting, reconstruct
from dualmd.attacks.run import (
    attack_model,
    attack_pair,
    attack_sampler,
    attack_samples,
    attack_scores,
    build_attack,
    registry,
)
from dualmd.attacks.secmi import ddim_step, round_trip
from dualmd.config.attacks import (
    AttackConfig,
    GSAConfig,
    GSAShadowConfig,
    LiraConfig,
    LossAttackConfig,
    NNDistanceConfig,
    PIAConfig,
    ReconConfig,
    SecMIConfig,
    SecMINNConfig,
    SecMITunedConfig,
    SimAConfig,
    TeacherMaxConfig,
)
from dualmd.config.base import ConfigError
from dualmd.config.experiment import ExperimentConfig
from dualmd.config.sections import ModelConfig
from dualmd.defense.dualmd import AlternatingTeachers, teacher_sequence
from dualmd.metrics import auc
from dualmd.models.adapter import EpsNetwork, Schedule, UNetPredictor
from dualmd.models.directory import check_model_matches_split
from dualmd.models.unet import create_unet
from dualmd.sample import DeployedSampler, build_scheduler

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
# The contract below runs every attack on images and noise predictors; the text-to-image black-box attack
# ("prompts": it prompts a text-to-image sampler) has its contract in test_pang_wang.py and tests/text2image/.
ATTACKS = registry()
NAMES = sorted(a for a, cls in ATTACKS.items() if cls.requires != "prompts")
# Attacks that train a classifier or choose a setting on a labelled slice and score only the rest.
SLICE_ATTACKS = ("gsa", "loss_tuned", "pia_tuned", "recon", "secmi_nn", "secmi_stat_tuned", "sima_tuned")
# Short sweeps keep the contract tests fast; secmi_nn trains 2 epochs (its own AUC test trains more).
FAST = dict(
    pia=PIAConfig(timestep=200, sweep_timesteps=(100, 200)),
    loss=LossAttackConfig(timesteps=(50, 200)),
    secmi_nn=SecMINNConfig(num_epochs=2),
    gsa=GSAConfig(timesteps=(50, 200), num_estimators=20),
    gsa_shadow=GSAShadowConfig(timesteps=(50, 200), num_estimators=20),
    sima=SimAConfig(timestep=20, sweep_timesteps=(0, 20, 100)),
    recon=ReconConfig(timesteps=(20, 100), num_queries=(1, 2), num_steps=2),
    secmi_stat_tuned=SecMITunedConfig(timesteps=(20, 100)),
)


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def make_images(num_per_class: int, seed: int = 0):
    """(2n, 1, 8, 8) uniform images in [-1, 1], members and non-members interleaved, non-trivial ids."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(2 * num_per_class, 1, 8, 8, generator=gen) * 2 - 1
    is_member = np.arange(2 * num_per_class) % 2 == 0
    sample_ids = np.arange(2 * num_per_class) * 7 + 3
    return images, sample_ids, is_member


class MemorizingPredictor(nn.Module):
    """A fake model that memorized its members: it identifies the known image y nearest to x_t / sqrt(alpha_bar_t)
    and returns the exact noise (x_t - sqrt(alpha_bar_t) y) / sqrt(1 - alpha_bar_t), plus a deterministic
    perturbation that is 10x larger for non-members (a model that fits its members better than unseen data).
    The output is multiplied by a parameter `gain` (1), so gradient attacks see weights whose loss gradient is
    larger on non-members.
    """

    def __init__(self, schedule: Schedule, members: torch.Tensor, nonmembers: torch.Tensor):
        super().__init__()
        self.schedule = schedule
        self.gain = nn.Parameter(torch.ones(()))
        self.known = torch.cat([members, nonmembers]).double()
        self.scale = torch.cat(
            [torch.full((len(members),), 0.05), torch.full((len(nonmembers),), 0.5)]
        ).double()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x_t.double()
        a = self.schedule.alpha_bar(t, x)
        nearest = ((x[:, None] - a.sqrt()[:, None] * self.known[None]) ** 2).flatten(2).sum(-1).argmin(1)
        eps = (x - a.sqrt() * self.known[nearest]) / (1 - a).sqrt()
        # Depends on x_t and t, so a DDIM round trip does not cancel it (SecMI would see no error otherwise).
        wobble = torch.sin(3 * x + t.view(-1, 1, 1, 1).double() / 100)
        return (eps + self.scale[nearest].view(-1, 1, 1, 1) * wobble).float() * self.gain


def tiny_predictor(seed: int = 0) -> UNetPredictor:
    return UNetPredictor(tiny_unet(seed))


def REFERENCES() -> list[UNetPredictor]:  # noqa: N802  (a constant-like factory of fresh predictors)
    """Four untrained reference models, different from `tiny_predictor()` (online LiRA needs an even number)."""
    return [tiny_predictor(seed) for seed in (1, 2, 3, 4)]


def online_in(num_models: int, num_candidates: int) -> np.ndarray:
    """(K, N) bool: shadow model k trained on candidate n when n + k is even, so every candidate is IN for half of
    the models and OUT for the other half."""
    k, n = np.arange(num_models)[:, None], np.arange(num_candidates)[None, :]
    return (k + n) % 2 == 0


def shadow_images(k: int, num: int = 16) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Reference model k's images for GSA's shadow protocol: `num` images of its own (no candidate of
    `make_images`), the first half IN (it trained on them), the rest OUT; ids from 1000 up, apart from every
    candidate's."""
    images = torch.rand(num, 1, 8, 8, generator=torch.Generator().manual_seed(100 + k)) * 2 - 1
    return images, 1000 + num * k + np.arange(num), np.arange(num) < num // 2


def calibration(
    name, cfg, references, schedule, images, ids
) -> ReferenceStatistics | ShadowClassifier | None:
    """What the reference models give an attack whose config has it query them (None for every other attack):
    LiRA's statistics, offline from models that saw no candidate, online with `online_in` as the shadow models'
    training sets; GSA's shadow classifier, fitted on each reference model's `shadow_images`."""
    if cfg.reference_section(name) is None:
        return None
    if isinstance(references, ReferenceStatistics | ShadowClassifier):
        return references
    if catalog.attack(name).module_name == "dualmd.attacks.gsa":
        models = [
            r if isinstance(r, ShadowModel) else ShadowModel(r, schedule, *shadow_images(k))
            for k, r in enumerate(references)
        ]
        return shadow_classifier(gsa_section(cfg, name), models, cfg.seed)
    online = lira_section(cfg, name).mode == "online"
    is_in = online_in(len(references), len(ids)) if online else None
    models = [(r, schedule) for r in references]
    return reference_statistics(cfg, models, images, ids, attack=name, is_in=is_in)


def run_attack(name, cfg, model, schedule, images, ids, is_member, generated, references=()) -> AttackResult:
    """Dispatch on what the attack needs, as the CLI does; a sampler is the model alone, a pair twice the model;
    `references` (predictors, or what they give) calibrate lira and gsa's shadow protocol."""
    requires = ATTACKS[name].requires
    if requires == "samples":
        return attack_samples(
            name, cfg, generated=generated, images=images, sample_ids=ids, is_member=is_member
        )
    if requires == "sampler":
        return attack_sampler(
            name, cfg, sampler=model, schedule=schedule, images=images, sample_ids=ids, is_member=is_member
        )
    if requires == "pair":
        models = {"teacher1": model, "teacher2": model}
        return attack_pair(
            name, cfg, models=models, schedule=schedule, images=images, sample_ids=ids, is_member=is_member
        )
    if requires == "scores":  # a tuned variant: the a-priori attack's result, then the choice on the slice
        base = run_attack(catalog.attack(name).tunes, cfg, model, schedule, images, ids, is_member, generated)
        return attack_scores(name, cfg, base=base)
    return attack_model(
        name,
        cfg,
        predictor=model,
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
        references=calibration(name, cfg, references, schedule, images, ids),
    )


def by_id(result: AttackResult) -> dict[int, float]:
    return dict(zip(result.sample_ids.tolist(), result.scores.tolist(), strict=True))


# --- registry ------------------------------------------------------------------------------------------------


def test_registry_holds_exactly_the_documented_attacks():
    assert sorted(set(ATTACKS) - set(NAMES)) == ["pang_wang"]
    assert NAMES == [
        "gsa",
        "gsa_shadow",
        "lira",
        "lira_online",
        "lira_online_target",
        "lira_target",
        "loss",
        "loss_tuned",
        "nn_distance",
        "pia",
        "pia_tuned",
        "pian",
        "recon",
        "secmi_nn",
        "secmi_stat",
        "secmi_stat_tuned",
        "sima",
        "sima_tuned",
        "teacher_max",
    ]


def test_registry_matches_config_schema_enum():
    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not written yet")
    schema = yaml.safe_load(SCHEMA.read_text())
    assert sorted(schema["properties"]["attack"]["properties"]["names"]["items"]["enum"]) == sorted(ATTACKS)


def test_unknown_attack_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown attack 'carlini'.*secmi_stat"):
        build_attack("carlini", AttackConfig())


def test_entry_points_refuse_the_wrong_kind_of_attack(schedule):
    images, ids, is_member = make_images(2)
    with pytest.raises(ValueError, match="use attack_samples"):
        attack_model("nn_distance", AttackConfig(), predictor=tiny_predictor(), schedule=schedule,
                     images=images, sample_ids=ids, is_member=is_member)  # fmt: skip
    with pytest.raises(ValueError, match="use attack_model"):
        attack_samples(
            "loss", AttackConfig(), generated=images, images=images, sample_ids=ids, is_member=is_member
        )


# --- contract, every attack ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_contract_shape_finite_deterministic_batch_independent(name, schedule):
    images, ids, is_member = make_images(8)
    model = tiny_predictor()
    generated = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    refs = REFERENCES()
    first = run_attack(
        name, AttackConfig(batch_size=4, **FAST), model, schedule, images, ids, is_member, generated, refs
    )
    again = run_attack(
        name, AttackConfig(batch_size=4, **FAST), model, schedule, images, ids, is_member, generated, refs
    )
    big = run_attack(
        name, AttackConfig(batch_size=16, **FAST), model, schedule, images, ids, is_member, generated, refs
    )

    expected = 16 if name not in SLICE_ATTACKS else 2 * (8 - 1)  # they score what they did not train on
    assert first.scores.shape == (expected,)
    assert np.isfinite(first.scores).all()
    assert first.attack == name
    assert set(first.sample_ids) <= set(ids)
    member_of = dict(zip(ids.tolist(), is_member.tolist(), strict=True))
    assert first.is_member.tolist() == [member_of[i] for i in first.sample_ids.tolist()]
    np.testing.assert_array_equal(first.scores, again.scores)  # seeded: bit-identical on a rerun
    np.testing.assert_array_equal(first.sample_ids, big.sample_ids)
    # A classifier trained on model outputs amplifies float32 noise of batched convs.
    rtol = 5e-3 if name in SLICE_ATTACKS + ("gsa_shadow",) else 1e-4
    np.testing.assert_allclose(first.scores, big.scores, rtol=rtol, atol=1e-6)
    for key, values in first.extra.items():
        assert values.shape == (expected,) and np.isfinite(values).all(), key


@pytest.mark.parametrize(
    "name", [n for n in NAMES if n not in SLICE_ATTACKS], ids=[n for n in NAMES if n not in SLICE_ATTACKS]
)
def test_contract_scores_do_not_depend_on_order_or_company(name, schedule):
    images, ids, is_member = make_images(8)
    model = tiny_predictor()
    generated = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    cfg = AttackConfig(batch_size=5, **FAST)
    # lira: the references score every candidate once (their pooled variance is a property of that set)
    refs = calibration(name, cfg, REFERENCES(), schedule, images, ids)
    full = by_id(run_attack(name, cfg, model, schedule, images, ids, is_member, generated, refs))
    perm = np.random.default_rng(0).permutation(len(ids))[:10]  # shuffled subset, scored in other batches
    part = by_id(
        run_attack(name, cfg, model, schedule, images[perm], ids[perm], is_member[perm], generated, refs)
    )
    for sid, value in part.items():
        assert value == pytest.approx(full[sid], rel=1e-4, abs=1e-6), sid


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_contract_members_of_a_memorizing_model_score_higher(name, schedule):
    images, ids, is_member = make_images(32)
    model = MemorizingPredictor(schedule, images[is_member], images[~is_member])
    generated = images[is_member].clone()  # black-box: the model regurgitates its members
    cfg = AttackConfig(batch_size=16, **{**FAST, "secmi_nn": SecMINNConfig(num_epochs=5)})
    # Reference models of the same kind that memorized other images: every candidate is out for them.
    others = [torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(s)) * 2 - 1 for s in (5, 6)]
    refs = [MemorizingPredictor(schedule, other, images) for other in others]
    section = cfg.reference_section(name)
    if getattr(section, "mode", None) == "online":
        # Shadow models that memorized the candidates they trained on (`online_in`), none of the others.
        trained = online_in(4, len(ids))
        refs = [MemorizingPredictor(schedule, images[t], images[~t]) for t in map(torch.from_numpy, trained)]
    elif isinstance(section, GSAConfig):
        # GSA's reference models memorized their IN images and know their OUT images only roughly, as the target
        shadow = [shadow_images(k, num=len(ids)) for k in range(4)]
        refs = [
            ShadowModel(MemorizingPredictor(schedule, x[is_in], x[~is_in]), schedule, x, shadow_ids, is_in)
            for x, shadow_ids, is_in in shadow
        ]
    # models of one recipe differ a little; not in the gain for GSA's, whose feature is the loss gradient with
    # respect to it: a gain off 1 adds a gradient on every image, which a trained model does not have
    gains = (0.9, 1.1, 0.95, 1.05) if not isinstance(section, GSAConfig) else ()
    for ref, gain in zip(refs, gains, strict=False):
        ref.gain.data.fill_(gain)
    result = run_attack(name, cfg, model, schedule, images, ids, is_member, generated, refs)
    members, nonmembers = result.scores[result.is_member], result.scores[~result.is_member]
    assert members.mean() > nonmembers.mean()
    assert auc(result.scores, result.is_member) > 0.9


# --- input checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("is_member", "message"),
    [(np.zeros(4, bool), "member set is empty"), (np.ones(4, bool), "non-member set is empty")],
    ids=["no_members", "no_nonmembers"],
)
def test_empty_member_or_nonmember_set_is_refused(is_member, message, schedule):
    images, ids, _ = make_images(2)
    with pytest.raises(ValueError, match=message):
        build_attack("loss", AttackConfig()).run(tiny_predictor(), schedule, images, ids, is_member)


def test_images_outside_minus_one_one_and_duplicate_ids_are_refused(schedule):
    images, ids, is_member = make_images(2)
    attack = build_attack("pia", AttackConfig())
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        attack.run(tiny_predictor(), schedule, images * 127.5 + 127.5, ids, is_member)
    with pytest.raises(ValueError, match="distinct"):
        attack.run(tiny_predictor(), schedule, images, np.zeros(4, int), is_member)


def test_timesteps_beyond_the_schedule_are_refused(schedule):
    images, ids, is_member = make_images(2)
    cfg = AttackConfig(loss=LossAttackConfig(timesteps=(1000,)))
    with pytest.raises(ValueError, match=r"attack.loss.timesteps.*\[1000\]"):
        build_attack("loss", cfg).run(tiny_predictor(), schedule, images, ids, is_member)


# --- SecMI ---------------------------------------------------------------------------------------------------


class RecordingPredictor:
    """Returns a constant noise and records every (x_t, t) it is queried with."""

    def __init__(self, value: float = 0.3):
        self.value, self.calls = value, []

    def __call__(self, x_t, t):
        self.calls.append((x_t.clone(), t.clone()))
        return torch.full_like(x_t, self.value)


def test_secmi_queries_the_model_as_secmi_does(schedule):
    """11 UNet calls at the defaults: inversion from t = 0 (on x_0 itself) to 80, then 90 (up) and 100 (down)."""
    model = RecordingPredictor()
    x_0 = torch.rand(3, 1, 8, 8) * 2 - 1
    round_trip(model, schedule, x_0, SecMIConfig(t_sec=100, k=10))
    assert [int(t[0]) for _, t in model.calls] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    torch.testing.assert_close(model.calls[0][0], x_0)


def test_ddim_step_matches_hand_computation_and_inverts_itself(schedule):
    """With eps = 0.3 everywhere: x_t = sqrt(a_t) (x_s - sqrt(1 - a_s) 0.3) / sqrt(a_s) + sqrt(1 - a_t) 0.3."""
    x_s = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    a_s, a_t = float(schedule.alphas_cumprod[10]), float(schedule.alphas_cumprod[20])
    expected = a_t**0.5 * (0.5 - (1 - a_s) ** 0.5 * 0.3) / a_s**0.5 + (1 - a_t) ** 0.5 * 0.3
    x_t = ddim_step(RecordingPredictor(0.3), schedule, x_s, 10, 20)
    assert x_t.dtype == torch.float64
    torch.testing.assert_close(x_t, torch.full_like(x_s, expected))
    # A predictor whose eps does not change along the path round-trips exactly: SecMI's error is then 0.
    torch.testing.assert_close(ddim_step(RecordingPredictor(0.3), schedule, x_t, 20, 10), x_s)


def test_secmi_stat_score_is_minus_the_positive_t_error(schedule):
    images, ids, is_member = make_images(4)
    result = build_attack("secmi_stat", AttackConfig()).run(
        tiny_predictor(), schedule, images, ids, is_member
    )
    assert (result.extra["t_error"] > 0).all()
    np.testing.assert_allclose(result.scores, -result.extra["t_error"])


# --- PIA / PIAN ----------------------------------------------------------------------------------------------


def test_pia_score_matches_hand_computation_with_identity_model(schedule):
    """eps_theta(x, t) = x: eps^ = x_0, x_t = (sqrt(a) + sqrt(1 - a)) x_0, score = -|1 - sqrt(a) - sqrt(1 - a)|^4 sum x_0^4."""
    images, ids, is_member = make_images(2)
    cfg = AttackConfig(pia=PIAConfig(timestep=200, sweep_timesteps=(20, 200)))
    result = build_attack("pia", cfg).run(lambda x, t: x.clone(), schedule, images, ids, is_member)
    for t in (20, 200):
        a = float(schedule.alphas_cumprod[t])
        expected = -(abs(1 - a**0.5 - (1 - a) ** 0.5) ** 4) * (images.double() ** 4).flatten(1).sum(1).numpy()
        np.testing.assert_allclose(result.extra[f"t{t}"], expected, rtol=1e-5)
    np.testing.assert_array_equal(
        result.scores, result.extra["t200"]
    )  # the a-priori timestep gives the score
    assert sorted(result.extra) == ["t20", "t200"]


def test_pian_rescales_proximal_noise_to_standard_normal_mean_abs():
    attack = PIAN(cfg=AttackConfig())
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    eps = attack.proximal_noise(lambda x, t: 5.0 * x + 1.0, images)
    torch.testing.assert_close(eps.abs().flatten(1).mean(1), torch.full((3,), (2 / np.pi) ** 0.5))


# --- loss ----------------------------------------------------------------------------------------------------


def test_loss_attack_draws_noise_per_sample_and_timestep(schedule):
    """With a model predicting 0 the loss is ||eps||^2 of the seeded per-sample noise, averaged over timesteps."""
    images, ids, is_member = make_images(2)
    cfg = AttackConfig(seed=5, loss=LossAttackConfig(timesteps=(50, 100)))
    result = build_attack("loss", cfg).run(lambda x, t: torch.zeros_like(x), schedule, images, ids, is_member)
    norms = [
        per_sample_noise(5, ids, (1, 8, 8), t).double().pow(2).flatten(1).sum(1).numpy() for t in (50, 100)
    ]
    np.testing.assert_allclose(result.scores, -(norms[0] + norms[1]) / 2, rtol=1e-6)
    assert not np.allclose(norms[0], norms[1])  # each timestep gets fresh noise


# --- nearest generated neighbour ----------------------------------------------------------------------------

# Three generated 1x2x2 images and three attacked ones; pixels flattened row by row.
NN_GENERATED = torch.tensor([[0.3, 0.4, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8], [1.0, 1.0, 1.0, 1.0]]).view(
    3, 1, 2, 2
)
NN_IMAGES = torch.tensor(
    [
        [0.0, 0.0, 0.0, 0.0],  # member: distances 0.5, 1.0, 2.0
        [0.0, 0.0, 0.6, 0.8],  # member, a copy of generated[1]: 0, sqrt(1.25), sqrt(2.2)
        [1.0, 1.0, 1.0, -1.0],  # non-member: sqrt(2.85), 2.0, sqrt(5.4)
    ]
).view(3, 1, 2, 2)


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (1, [-0.5, 0.0, -(2.85**0.5)]),
        (2, [-(0.5 + 1.0) / 2, -(1.25**0.5) / 2, -(2.85**0.5 + 2.0) / 2]),
        (3, [-(0.5 + 1.0 + 2.0) / 3, -(1.25**0.5 + 2.2**0.5) / 3, -(2.85**0.5 + 2.0 + 5.4**0.5) / 3]),
    ],
    ids=["k1", "k2", "k3"],
)
def test_nn_distance_is_minus_mean_l2_to_the_k_nearest_generated(k, expected):
    """Score = -(mean Euclidean distance to the k nearest generated images): members (close) score higher."""
    cfg = AttackConfig(nn_distance=NNDistanceConfig(k=k), batch_size=2)
    result = attack_samples(
        "nn_distance",
        cfg,
        generated=NN_GENERATED,
        images=NN_IMAGES,
        sample_ids=np.array([4, 9, 1]),
        is_member=np.array([True, True, False]),
    )
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)  # float32 pixels
    np.testing.assert_array_equal(result.sample_ids, [4, 9, 1])
    np.testing.assert_array_equal(result.is_member, [True, True, False])
    assert result.scores[:2].min() > result.scores[2]  # higher = more likely a member
    assert auc(result.scores, result.is_member) == 1.0


# --- SecMI-NN ------------------------------------------------------------------------------------------------


def test_secmi_nn_trains_on_the_leading_fifth_of_each_class():
    is_member = np.array([True, False] * 10)  # 10 members at even positions, 10 non-members at odd
    train, test = train_test_split(is_member, 0.2, "secmi_nn")
    np.testing.assert_array_equal(
        train, [0, 1, 2, 3]
    )  # first 2 members (0, 2) and first 2 non-members (1, 3)
    np.testing.assert_array_equal(test, np.arange(4, 20))
    with pytest.raises(ValueError, match="secmi_nn: train_fraction=0.2 leaves an empty training"):
        train_test_split(np.array([True, False, False]), 0.2, "secmi_nn")


# --- GSA -----------------------------------------------------------------------------------------------------


class LinearEps(nn.Module):
    """eps_theta(x_t, t) = w x_t + b, b broadcast over the image width: two parameter tensors, () and (2,)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.7))
        self.b = nn.Parameter(torch.tensor([-0.2, 0.1]))

    def forward(self, x_t, t):
        return self.w * x_t + self.b


@pytest.mark.parametrize("variant", ["gsa1", "gsa2"])
def test_gsa_features_match_hand_derived_gradients_of_a_linear_model(variant, schedule):
    """L_j = mean_pixels (w x_j + b - eps_j)^2, so dL_j/dw = mean 2 r x_j and dL_j/db_k = mean over column k of 2 r
    times its share of pixels (1/2). gsa1 takes norms of the gradient of mean_j L_j, gsa2 the mean of the norms."""
    images = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    ids, timesteps = np.array([5, 8, 13]), (10, 500)
    cfg = GSAConfig(variant=variant, timesteps=timesteps, batch_size=2)
    feats = gradient_features(LinearEps(), schedule, images.float(), ids, cfg, seed=3).numpy()
    w, b = 0.7, np.array([-0.2, 0.1])
    x_0 = images.numpy()
    grads = []  # per timestep: (dL/dw (3,), dL/db (3, 2))
    for t in timesteps:
        eps = per_sample_noise(3, ids, (1, 2, 2), t).double().numpy()
        a = float(schedule.alphas_cumprod[t])
        x_t = a**0.5 * x_0 + (1 - a) ** 0.5 * eps
        r = w * x_t + b - eps  # (3, 1, 2, 2)
        grads.append(((2 * r * x_t).mean(axis=(1, 2, 3)), (2 * r).mean(axis=(1, 2)) / 2))
    if variant == "gsa1":
        d_w = np.mean([g[0] for g in grads], axis=0)
        d_b = np.mean([g[1] for g in grads], axis=0)
        expected = np.stack([np.abs(d_w), np.linalg.norm(d_b, axis=1)], axis=1)
    else:
        expected = np.mean(
            [np.stack([np.abs(g[0]), np.linalg.norm(g[1], axis=1)], axis=1) for g in grads], axis=0
        )
    np.testing.assert_allclose(feats, expected, rtol=1e-5)


@pytest.mark.parametrize("variant", ["gsa1", "gsa2"])
def test_gsa_vmap_features_equal_a_loop_of_per_sample_backward_passes(variant, schedule):
    """The batched torch.func gradients of the tiny UNet (GroupNorm, mid-block attention) equal one autograd
    backward pass per image, and do not depend on the vmap batch size."""
    unet = tiny_unet(1).eval()
    images, ids, _ = make_images(3)
    timesteps = (30, 400)
    feats = gradient_features(
        UNetPredictor(unet),
        schedule,
        images,
        ids,
        GSAConfig(variant=variant, timesteps=timesteps, batch_size=4),
        0,
    )
    steps = torch.tensor(timesteps)
    noise = torch.stack([per_sample_noise(0, ids, (1, 8, 8), t) for t in timesteps], dim=1)
    expected = []
    for i in range(len(images)):
        losses = []
        for j in range(len(timesteps)):
            x_t = schedule.q_sample(images[i : i + 1], steps[j : j + 1], noise[i, j : j + 1])
            losses.append((unet(x_t, steps[j : j + 1]).sample - noise[i, j : j + 1]).square().mean())
        if variant == "gsa1":
            grads = torch.autograd.grad(torch.stack(losses).mean(), list(unet.parameters()))
            expected.append(torch.stack([g.norm() for g in grads]))
        else:
            per_t = [
                torch.stack([g.norm() for g in torch.autograd.grad(loss, list(unet.parameters()))])
                for loss in losses
            ]
            expected.append(torch.stack(per_t).mean(dim=0))
    assert feats.shape == (6, len(list(unet.parameters())))
    torch.testing.assert_close(feats, torch.stack(expected).double(), rtol=1e-4, atol=1e-6)
    one_by_one = gradient_features(
        UNetPredictor(unet),
        schedule,
        images,
        ids,
        GSAConfig(variant=variant, timesteps=timesteps, batch_size=1),
        0,
    )
    torch.testing.assert_close(one_by_one, feats, rtol=1e-4, atol=1e-6)


def test_gsa_runs_with_dropout_off_and_restores_the_training_mode(schedule):
    """A network handed over in training mode (dropout 0.5) gives the eval-mode features, twice the same, and is
    left in training mode."""
    torch.manual_seed(0)
    model = ModelConfig(block_out_channels=(8, 16), norm_num_groups=4, dropout=0.5)
    network = EpsNetwork(create_unet(model=model, image_size=8, channels=1)).train()
    images, ids, _ = make_images(2)
    cfg = GSAConfig(timesteps=(50, 300))
    first = gradient_features(network, schedule, images, ids, cfg, 0)
    torch.testing.assert_close(gradient_features(network, schedule, images, ids, cfg, 0), first)
    assert network.training
    evaluated = gradient_features(UNetPredictor(network.unet), schedule, images, ids, cfg, 0)
    torch.testing.assert_close(evaluated, first)


def test_gsa_scores_are_a_classifier_fitted_on_the_leading_slice(schedule):
    """The scores are the log-odds of a GradientBoostingClassifier fitted on the features of the training slice
    (first 20 % of members and of non-members), evaluated on the rest."""
    from sklearn.ensemble import GradientBoostingClassifier

    images, ids, is_member = make_images(10)
    model = MemorizingPredictor(schedule, images[is_member], images[~is_member])
    cfg = AttackConfig(seed=2, gsa=GSAConfig(timesteps=(50, 200), num_estimators=30, max_depth=2))
    result = build_attack("gsa", cfg).run(model, schedule, images, ids, is_member)
    train, test = train_test_split(is_member, 0.2, "gsa")
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    np.testing.assert_array_equal(result.is_member, is_member[test])
    feats = gradient_features(model, schedule, images, ids, cfg.gsa, seed=2).numpy()
    clf = GradientBoostingClassifier(n_estimators=30, max_depth=2, learning_rate=0.1, random_state=2)
    clf.fit(feats[train], is_member[train])
    np.testing.assert_allclose(result.scores, clf.decision_function(feats[test]))
    np.testing.assert_allclose(result.extra["grad_norm"], np.linalg.norm(feats[test], axis=1))


def test_gsa_needs_a_predictor_with_weights(schedule):
    images, ids, is_member = make_images(5)
    with pytest.raises(TypeError, match="exposes no network parameters"):
        build_attack("gsa", AttackConfig()).run(lambda x, t: x, schedule, images, ids, is_member)


# --- SimA ----------------------------------------------------------------------------------------------------


def test_sima_score_is_minus_the_l4_norm_of_the_prediction_on_the_clean_image(schedule):
    """eps_theta(x, t) = (1 + t / 100) x: score_t = -(1 + t / 100)^4 sum x_0^4; queried on x_0 itself."""
    images, ids, is_member = make_images(2)
    calls = []

    def model(x, t):
        calls.append((x.clone(), t.clone()))
        return (1 + t.view(-1, 1, 1, 1) / 100) * x

    cfg = AttackConfig(sima=SimAConfig(timestep=20, sweep_timesteps=(0, 20, 150)))
    result = build_attack("sima", cfg).run(model, schedule, images, ids, is_member)
    fourth = (images.double() ** 4).flatten(1).sum(1).numpy()
    for t in (0, 20, 150):
        np.testing.assert_allclose(result.extra[f"t{t}"], -((1 + t / 100) ** 4) * fourth, rtol=1e-6)
    np.testing.assert_array_equal(result.scores, result.extra["t20"])  # the a-priori timestep gives the score
    assert [int(t[0]) for _, t in calls] == [
        20,
        0,
        150,
    ]  # one query per distinct timestep, attack timestep first
    for x, _ in calls:
        torch.testing.assert_close(x, images)  # the clean image, no noise added


# --- recon ---------------------------------------------------------------------------------------------------


def test_recon_chain_is_evenly_spaced_from_t():
    assert chain_timesteps(100, 4) == [100, 75, 50, 25]
    assert chain_timesteps(50, 4) == [50, 38, 25, 13]
    assert chain_timesteps(7, 1) == [7]


def test_recon_with_a_zero_predictor_reconstructs_x_t_over_sqrt_alpha_bar(schedule):
    """eps_theta = 0: every DDIM step rescales x by sqrt(a_next / a_s), so x^_0 = x_t / sqrt(a_t) = x_0 +
    sqrt((1 - a_t) / a_t) eps and the distance is sqrt((1 - a_t) / a_t) ||eps||, averaged over the queries."""
    images, ids, is_member = make_images(10)
    images = images / 2  # in [-0.5, 0.5]: the small noise below never reaches the clipping at +-1
    cfg = AttackConfig(seed=4, recon=ReconConfig(timesteps=(10, 30), num_queries=(1, 3), num_steps=3))
    result = attack_sampler(
        "recon",
        cfg,
        sampler=lambda x, t: torch.zeros_like(x),
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
    )
    _, test = train_test_split(is_member, 0.2, "recon")
    np.testing.assert_array_equal(result.sample_ids, ids[test])
    by_setting = {}
    for t in (10, 30):
        a = float(schedule.alphas_cumprod[t])
        norms = np.stack([per_sample_noise(4, ids, (1, 8, 8), t, j).double().flatten(1).norm(dim=1).numpy()
                          for j in range(3)])  # fmt: skip
        for q in (1, 3):
            by_setting[(t, q)] = -(((1 - a) / a) ** 0.5) * norms[:q].mean(axis=0)
        np.testing.assert_allclose(result.extra[f"t{t}"], by_setting[(t, 3)][test], rtol=1e-6)
    chosen = (int(result.extra["timestep"][0]), int(result.extra["num_queries"][0]))
    np.testing.assert_allclose(result.scores, by_setting[chosen][test], rtol=1e-6)


def test_recon_chooses_the_setting_with_the_best_auc_on_the_slice():
    is_member = np.array([False, False, True, True])
    scores = {
        (50, 1): np.array([0.4, 0.3, 0.2, 0.1]),  # AUC 0
        (100, 1): np.array([0.1, 0.3, 0.2, 0.4]),  # AUC 0.75
        (100, 2): np.array([0.1, 0.2, 0.3, 0.4]),  # AUC 1
        (200, 2): np.array([0.0, 0.1, 0.5, 0.6]),  # AUC 1 too: the first best wins
    }
    assert choose_setting(scores, is_member) == (100, 2)


def test_recon_denoises_dualmd_through_its_alternating_teachers(schedule):
    """The chain 100 -> 75 -> 50 -> 25 -> clean queries the teachers exactly as DualMD's sampler assigns them."""
    calls = []

    def teacher(k):
        def predict(x, t):
            calls.append((k, int(t[0])))
            return torch.zeros_like(x)

        return predict

    pair = AlternatingTeachers(teacher1=teacher(1), teacher2=teacher(2), alternation="step_index")
    x_t = torch.rand(2, 1, 8, 8) * 2 - 1
    reconstruct(pair, schedule, x_t, 100, 4)
    assert calls == [(1, 100), (2, 75), (1, 50), (2, 25)]
    assert [k for k, _ in calls] == teacher_sequence([100, 75, 50, 25], "step_index")


@pytest.mark.parametrize(
    ("kind", "steps", "strengths"),
    [("ddim", 50, (0.02, 0.1)), ("ddpm", 1000, (0.01, 0.02))],
    ids=["ddim50", "ddpm1000"],
)
def test_recon_deployed_contract_on_a_memorizing_sampler(kind, steps, strengths, schedule):
    """Through the image-to-image query of either deployed sampler: scores of shape (scored,), finite, the same at
    every batch size, and members of a memorizing model score higher."""
    images, ids, is_member = make_images(16)
    model = MemorizingPredictor(schedule, images[is_member], images[~is_member])
    scheduler = build_scheduler(kind, DDPMScheduler(num_train_timesteps=1000))
    sampler = DeployedSampler(selector=model, scheduler=scheduler, num_inference_steps=steps)
    recon = ReconConfig(interface="deployed", strengths=strengths, num_queries=(1, 2))
    runs = [
        attack_sampler("recon", AttackConfig(batch_size=b, recon=recon), sampler=sampler, schedule=schedule,
                       images=images, sample_ids=ids, is_member=is_member)
        for b in (7, 32)
    ]  # fmt: skip
    assert runs[0].scores.shape == (2 * (16 - 3),) and np.isfinite(runs[0].scores).all()
    np.testing.assert_allclose(runs[0].scores, runs[1].scores, rtol=1e-5)
    assert auc(runs[0].scores, runs[0].is_member) > 0.9


# --- teacher_max --------------------------------------------------------------------------------------------


def test_teacher_max_keeps_the_larger_statistic_of_the_two_teachers(schedule):
    """SimA statistic, teacher 1 predicts x (score -sum x^4), teacher 2 a constant 0.5 (score -64 * 0.5^4 = -4):
    faint images (x / 5) score higher on teacher 1, the others on teacher 2."""
    images, ids, is_member = make_images(4)
    images[:4] = images[:4] / 5
    cfg = AttackConfig(
        teacher_max=TeacherMaxConfig(statistic="sima"), sima=SimAConfig(timestep=20, sweep_timesteps=())
    )
    models = {"teacher1": lambda x, t: x.clone(), "teacher2": lambda x, t: torch.full_like(x, 0.5)}
    result = attack_pair(
        "teacher_max",
        cfg,
        models=models,
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
    )
    fourth = (images.double() ** 4).flatten(1).sum(1).numpy()
    np.testing.assert_allclose(result.extra["teacher1"], -fourth, rtol=1e-6)
    np.testing.assert_allclose(result.extra["teacher2"], np.full(8, -4.0), rtol=1e-6)
    np.testing.assert_allclose(result.scores, np.maximum(-fourth, -4.0), rtol=1e-6)
    assert (result.scores[:4] > -4).all() and (result.scores[4:] == -4).all()  # both teachers win somewhere


def test_teacher_max_finds_the_members_each_teacher_saw(schedule):
    """Each teacher memorized one half of the members (the other half is unseen, like the non-members): alone, a
    teacher misses half of the members; the maximum over both finds them all."""
    images, ids, is_member = make_images(32)
    members, nonmembers = images[is_member], images[~is_member]
    half1, half2 = members[:16], members[16:]
    models = {
        "teacher1": MemorizingPredictor(schedule, half1, torch.cat([half2, nonmembers])),
        "teacher2": MemorizingPredictor(schedule, half2, torch.cat([half1, nonmembers])),
    }
    cfg = AttackConfig(batch_size=16, **FAST)
    result = attack_pair(
        "teacher_max",
        cfg,
        models=models,
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
    )
    assert auc(result.scores, is_member) > 0.95
    for name in models:  # one teacher alone: half the members look unseen (AUC about 0.75)
        assert auc(result.extra[name], is_member) < 0.9


def test_teacher_max_refuses_a_statistic_that_scores_a_slice():
    with pytest.raises(ConfigError, match="attack.teacher_max.statistic"):
        ExperimentConfig.from_mapping({"attack": {"teacher_max": {"statistic": "gsa"}}})


# --- LiRA ----------------------------------------------------------------------------------------------------


def test_lira_is_the_z_score_against_the_references_per_candidate_or_pooled():
    """Candidates 10, 20, 30; statistic on 3 references: [[1, 2, 0], [3, 2, 0], [5, 2, 3]]."""
    refs = ReferenceStatistics(np.array([10, 20, 30]), np.array([[1.0, 2, 0], [3, 2, 0], [5, 2, 3]]), "loss")
    # per candidate: means 3, 2, 1; variances (ddof 1) 4, 0, 3; pooled std sqrt((4 + 0 + 3) / 3)
    assert refs.pooled_std == pytest.approx(np.sqrt(7 / 3))
    mean, std = refs.out_distribution(np.array([30, 10]), global_variance=False)
    np.testing.assert_allclose(mean, [1, 3])
    np.testing.assert_allclose(std, [np.sqrt(3), 2])
    mean, std = refs.out_distribution(np.array([20]), global_variance=True)
    np.testing.assert_allclose(std, [np.sqrt(7 / 3)])
    z = offline_lira(torch.tensor([7.0, 0.0]), torch.tensor([3.0, 2.0]), torch.tensor([2.0, 1.0]))
    assert z.tolist() == [2.0, -2.0]  # (7 - 3) / 2, (0 - 2) / 1
    with pytest.raises(ValueError, match="identical statistics for 1 candidate"):
        refs.out_distribution(np.array([20, 10]), global_variance=False)
    with pytest.raises(ValueError, match="no reference statistic for sample ids \\[40\\]"):
        refs.out_distribution(np.array([10, 40]), global_variance=True)
    with pytest.raises(ValueError, match="at least two reference models"):
        ReferenceStatistics(np.array([1, 2]), np.array([[1.0, 2.0]]), "loss")


def test_lira_scores_the_statistic_against_its_references(schedule):
    """lira's score equals (loss score on the target - mean over references) / pooled std, from the same noise."""
    images, ids, is_member = make_images(4)
    cfg = AttackConfig(loss=LossAttackConfig(timesteps=(50, 200)), lira=LiraConfig(num_reference=3))
    target, refs = tiny_predictor(), REFERENCES()
    loss = [build_attack("loss", cfg).score(m, schedule, images, ids) for m in (target, *refs)]
    pooled = np.sqrt(np.var(np.stack(loss[1:]), axis=0, ddof=1).mean())
    result = run_attack("lira", cfg, target, schedule, images, ids, is_member, None, refs)
    np.testing.assert_allclose(result.extra["statistic"], loss[0])
    np.testing.assert_allclose(result.scores, (loss[0] - np.mean(loss[1:], axis=0)) / pooled, rtol=1e-9)


def test_lira_needs_references_and_no_other_attack_takes_them(schedule):
    images, ids, is_member = make_images(2)
    cfg = AttackConfig(lira=LiraConfig(statistic="pia"))
    refs = reference_statistics(cfg, [(tiny_predictor(s), schedule) for s in (1, 2)], images, ids)
    common = dict(
        predictor=tiny_predictor(), schedule=schedule, images=images, sample_ids=ids, is_member=is_member
    )
    with pytest.raises(ValueError, match="calibrated by reference models"):
        attack_model("lira", cfg, **common)
    with pytest.raises(ValueError, match="takes no reference models"):
        attack_model("pia", cfg, references=refs, **common)
    with pytest.raises(ValueError, match="attack.lira.statistic is 'loss'"):
        attack_model("lira", AttackConfig(), references=refs, **common)
    assert attack_model("lira", cfg, references=refs, **common).scores.shape == (4,)


# --- score files and provenance ------------------------------------------------------------------------------


def test_scores_round_trip_through_npz(tmp_path):
    result = AttackResult(
        sample_ids=np.array([4, 9, 1]),
        is_member=np.array([True, False, True]),
        scores=np.array([0.5, -1.0, 2.0]),
        extra={"t20": np.array([1.0, 2.0, 3.0])},
        attack="pia",
    )
    path = tmp_path / "scores.npz"
    save_scores(result, path)
    loaded = load_scores(path)
    np.testing.assert_array_equal(loaded.sample_ids, result.sample_ids)
    np.testing.assert_array_equal(loaded.is_member, result.is_member)
    np.testing.assert_array_equal(loaded.scores, result.scores)
    np.testing.assert_array_equal(loaded.extra["t20"], result.extra["t20"])
    assert loaded.attack == "pia"


def test_load_scores_names_the_file_on_missing_keys_or_bad_lengths(tmp_path):
    missing = tmp_path / "missing.npz"
    np.savez(missing, sample_id=np.arange(3), score=np.zeros(3))
    with pytest.raises(ValueError, match=r"missing\.npz.*is_member"):
        load_scores(missing)
    short = tmp_path / "short.npz"
    np.savez(short, sample_id=np.arange(3), is_member=np.ones(3, bool), score=np.zeros(2))
    with pytest.raises(ValueError, match=r"short\.npz.*'score'"):
        load_scores(short)


def test_model_split_check():
    meta = {"model_id": "teacher1", "subset": "half1", "subset_sha256": "ab" * 32}
    check_model_matches_split(meta, expected_subset="half1", expected_sha256="ab" * 32)
    with pytest.raises(ValueError, match="trained on subset 'half1'.*'members'"):
        check_model_matches_split(meta, expected_subset="members", expected_sha256="ab" * 32)
    with pytest.raises(ValueError, match="different split"):
        check_model_matches_split(meta, expected_subset="half1", expected_sha256="cd" * 32)
    with pytest.raises(ValueError, match="lacks"):
        check_model_matches_split({"model_id": "x"}, expected_subset="half1", expected_sha256="ab" * 32)


def test_attacks_that_wrap_others_register_every_attack_they_may_name():
    """In a fresh interpreter (attack modules are imported on first use), importing teacher_max and lira alone
    registers every statistic their config accepts, which they build by name at run time."""
    import subprocess
    import sys

    script = """
import typing
from dualmd.attacks import base, lira, teacher_max
from dualmd.config.attacks import LiraConfig, TeacherStatistic
wrapped = set(typing.get_args(TeacherStatistic)) | set(typing.get_args(typing.get_type_hints(LiraConfig)["statistic"]))
missing = sorted(wrapped - set(base.ATTACKS))
assert len(wrapped) >= 4 and not missing, missing
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
