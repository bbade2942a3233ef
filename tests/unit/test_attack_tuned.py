"""The tuned threshold attacks by hand: timestep and orientation come from the labelled slice alone (here the slice
prefers another timestep than the scored part would, and an inverted slice flips the orientation), the slice's
candidates are not scored, and the a-priori attack's scores are untouched."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor

from dualmd.attacks.base import AttackResult
from dualmd.attacks.run import attack_model, attack_scores, build_attack
from dualmd.attacks.secmi import t_error_batch
from dualmd.attacks.tuned import choose_timestep, t_errors, tuned_result
from dualmd.config.attacks import AttackConfig, PIAConfig, PIATunedConfig, SecMIConfig, SecMITunedConfig
from dualmd.config.base import ConfigError
from dualmd.config.experiment import ExperimentConfig
from dualmd.models.adapter import Schedule

# 5 members and 5 non-members, interleaved; train_fraction 0.2 takes the first member (id 10, position 0) and
# the first non-member (id 11, position 1): the slice is positions 0, 1.
IDS = np.arange(10, 20)
IS_MEMBER = np.arange(10) % 2 == 0
SLICE_IDS = [10, 11]
# t50 ranks the slice's member above its non-member and the rest badly; t100 ties on the slice and separates the
# rest perfectly. The slice alone picks t50; the scored part alone would pick t100.
T50 = np.array([5.0, 1.0, 0.0, 3.0, 1.0, 4.0, 0.5, 2.0, 0.2, 6.0])
T100 = np.array([1.0, 1.0, 9.0, 0.0, 8.0, 0.1, 7.0, 0.2, 6.0, 0.3])


def base_result(t50=T50, t100=T100) -> AttackResult:
    """What the a-priori attack writes: every candidate, its own score and the per-timestep scores."""
    return AttackResult(IDS, IS_MEMBER, t50.copy(), {"t50": t50.copy(), "t100": t100.copy()}, attack="pia")


def tuned(base: AttackResult, **section) -> AttackResult:
    cfg = AttackConfig(pia_tuned=PIATunedConfig(**{"train_fraction": 0.2, **section}))
    return attack_scores("pia_tuned", cfg, base=base)


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def test_the_slice_chooses_the_timestep_and_the_rest_is_scored():
    result = tuned(base_result())
    assert result.extra["timestep"][0] == 50 and result.extra["orientation"][0] == 1
    assert result.sample_ids.tolist() == list(range(12, 20))  # the slice's ids 10, 11 are not scored
    assert not set(SLICE_IDS) & set(result.sample_ids.tolist())
    np.testing.assert_array_equal(result.scores, T50[2:])
    np.testing.assert_array_equal(result.is_member, IS_MEMBER[2:])
    assert result.attack == "pia_tuned"
    # no sweep of its own: the a-priori attack's score file already carries every timestep's scores
    assert set(result.extra) == {"timestep", "orientation"}


def test_an_inverted_slice_flips_the_orientation():
    t50 = T50.copy()
    t50[[0, 1]] = t50[[1, 0]]  # now the slice's member scores lower: AUC 0 as scored, 1 negated
    result = tuned(base_result(t50=t50))
    assert result.extra["timestep"][0] == 50 and result.extra["orientation"][0] == -1
    np.testing.assert_array_equal(result.scores, -t50[2:])


def test_the_scored_part_never_influences_the_choice():
    """Rewriting every score outside the slice changes neither the timestep nor the orientation."""
    rng = np.random.default_rng(0)
    t50, t100 = T50.copy(), T100.copy()
    t50[2:], t100[2:] = rng.normal(size=8), rng.normal(size=8)
    result = tuned(base_result(t50, t100))
    assert (result.extra["timestep"][0], result.extra["orientation"][0]) == (50, 1)
    np.testing.assert_array_equal(result.scores, t50[2:])


def test_candidate_grid_restricts_the_choice_and_must_be_in_the_sweep():
    result = tuned(base_result(), timesteps=(100,))
    assert result.extra["timestep"][0] == 100
    np.testing.assert_array_equal(result.scores, T100[2:])
    with pytest.raises(ValueError, match=r"\[70\] not among .*\[50, 100\]"):
        tuned(base_result(), timesteps=(70, 100))


def test_timesteps_are_read_from_the_t_step_extras_only():
    """A one-digit timestep ("t5") is a candidate like any other; a diagnostic such as SecMI's "t_error" is not."""
    base = AttackResult(
        IDS,
        IS_MEMBER,
        T50.copy(),
        {"t5": T50.copy(), "t100": T100.copy(), "t_error": np.ones(10)},
        attack="pia",
    )
    result = tuned(base)
    assert (result.extra["timestep"][0], result.extra["orientation"][0]) == (5, 1)
    np.testing.assert_array_equal(result.scores, T50[2:])
    assert tuned(base, timesteps=(100,)).extra["timestep"][0] == 100


def test_scores_without_a_sweep_cannot_be_tuned():
    """The error names the attack whose scores lack the timesteps, or says "a-priori" for an unnamed result."""
    base = AttackResult(IDS, IS_MEMBER, T50.copy(), {"t_error": np.ones(10)}, attack="pia")
    with pytest.raises(
        ValueError, match=r"timesteps: none not among the timesteps the pia scores carry \(\[\]\)"
    ):
        tuned(base)
    unnamed = AttackResult(IDS, IS_MEMBER, T50.copy(), {}, attack="")
    with pytest.raises(ValueError, match=r"the a-priori scores carry"):
        tuned(unnamed)


def test_a_slice_too_small_for_a_member_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^pia_tuned: train_fraction=0.1 leaves an empty training"):
        tuned(base_result(), train_fraction=0.1)  # floor(5 * 0.1) = 0 members


def test_tuned_result_ids_are_int64_and_its_sweep_is_oriented():
    """With sweep, each timestep's scores on the scored part, times the chosen orientation (-1 here)."""
    t50 = T50.copy()
    t50[[0, 1]] = t50[[1, 0]]
    result = tuned_result(
        {50: t50, 100: T100}, IDS.astype(np.int32), IS_MEMBER, 0.2, "secmi_stat_tuned", sweep=True
    )
    assert result.sample_ids.dtype == np.int64 and result.sample_ids.tolist() == list(range(12, 20))
    assert result.extra["orientation"][0] == -1
    np.testing.assert_array_equal(result.extra["t50"], -t50[2:])
    np.testing.assert_array_equal(result.extra["t100"], -T100[2:])


def test_no_candidate_timestep_is_an_error():
    with pytest.raises(ValueError, match="^no candidate timestep"):
        choose_timestep({}, np.array([True, False]))


def test_ties_go_to_the_first_timestep_and_the_a_priori_orientation():
    flat = np.zeros(4)
    assert choose_timestep({7: flat, 3: flat}, np.array([True, False, True, False])) == (7, 1)


def test_the_a_priori_attack_is_unchanged(schedule):
    """pia's scores are those of its fixed timestep on every candidate, with or without its tuned variant."""
    images = torch.linspace(-1, 1, 10 * 16).view(10, 1, 4, 4)
    cfg = AttackConfig(pia=PIAConfig(timestep=40, sweep_timesteps=(20, 40, 60)))
    common = dict(predictor=CheckingPredictor(), schedule=schedule, images=images, sample_ids=IDS)
    pia = attack_model("pia", cfg, is_member=IS_MEMBER, **common)
    before = pia.scores.copy()
    result = attack_scores("pia_tuned", cfg, base=pia)
    np.testing.assert_array_equal(pia.scores, before)
    np.testing.assert_array_equal(pia.scores, pia.extra["t40"])
    assert pia.sample_ids.tolist() == IDS.tolist()
    t, o = int(result.extra["timestep"][0]), int(result.extra["orientation"][0])
    np.testing.assert_array_equal(result.scores, o * pia.extra[f"t{t}"][2:])


def test_a_tuned_variant_needs_its_a_priori_attack_in_the_run():
    with pytest.raises(ConfigError, match="need the attack"):
        ExperimentConfig.resolve({"attack": {"names": ["pia_tuned"]}})
    ExperimentConfig.resolve({"attack": {"names": ["pia", "pia_tuned"]}})
    # the stage config of the variant's own job names it alone
    ExperimentConfig.from_mapping({"attack": {"names": ["pia_tuned"]}})


def test_secmi_t_errors_share_one_inversion_and_match_secmi_stat(schedule):
    """At t_sec = attack.secmi.t_sec the grid's t-error is secmi_stat's, bit for bit; the variant scores the rest."""
    images = torch.linspace(-1, 1, 10 * 16).view(10, 1, 4, 4)
    model = CheckingPredictor()
    errors = t_errors(model, schedule, images, 10, (20, 50, 100))
    for t_sec in (20, 50, 100):
        expected = t_error_batch(model, schedule, images, SecMIConfig(t_sec=t_sec, k=10))
        torch.testing.assert_close(errors[t_sec], expected, rtol=0, atol=0)
    cfg = AttackConfig(secmi_stat_tuned=SecMITunedConfig(timesteps=(20, 50, 100)))
    result = attack_model(
        "secmi_stat_tuned",
        cfg,
        predictor=model,
        schedule=schedule,
        images=images,
        sample_ids=IDS,
        is_member=IS_MEMBER,
    )
    assert result.sample_ids.tolist() == list(range(12, 20))
    t, o = int(result.extra["timestep"][0]), int(result.extra["orientation"][0])
    np.testing.assert_allclose(result.scores, -o * errors[t][2:].numpy())
    # the report's sweep: every candidate's negated t-error on the scored part, in the chosen orientation
    for t_sec in (20, 50, 100):
        np.testing.assert_allclose(result.extra[f"t{t_sec}"], -o * errors[t_sec][2:].numpy())


def test_secmi_t_errors_cost_one_inversion_plus_one_step_per_candidate(schedule):
    """max(t_sec) / k inversion steps, then one denoising step from each t_sec: the queried timesteps, in order."""
    images = torch.linspace(-1, 1, 2 * 16).view(2, 1, 4, 4)
    for k, t_secs, queried in (
        (10, (20, 50), [0, 10, 20, 30, 40, 20, 50]),
        (1, (2, 3), [0, 1, 2, 2, 3]),  # the inversion stops at max(t_sec), not one step beyond
    ):
        model = CheckingPredictor()
        t_errors(model, schedule, images, k, t_secs)
        assert [int(t[0]) for _, t in model.calls] == queried


def test_secmi_stat_tuned_scores_a_priori_at_its_first_candidate(schedule):
    """`score` (every image, no slice) is the negated t-error at the first listed t_sec, with one t_sec or more."""
    images = torch.linspace(-1, 1, 10 * 16).view(10, 1, 4, 4)
    model = CheckingPredictor()
    errors = t_errors(model, schedule, images, 10, (20, 50, 100))
    for timesteps in ((50, 20, 100), (100,)):
        attack = build_attack("secmi_stat_tuned", AttackConfig(secmi_stat_tuned=SecMITunedConfig(timesteps)))
        scores = attack.score(model, schedule, images, IDS)
        np.testing.assert_array_equal(scores, -errors[timesteps[0]].numpy())


@pytest.mark.parametrize("t_sec", [25, 10, 1000])
def test_secmi_stat_tuned_refuses_a_t_sec_off_the_grid(schedule, t_sec):
    """Not a multiple of k = 10 (25), not above it (10), not below the model's 1000 steps (1000)."""
    images = torch.linspace(-1, 1, 10 * 16).view(10, 1, 4, 4)
    cfg = AttackConfig(secmi_stat_tuned=SecMITunedConfig(timesteps=(t_sec,)))
    with pytest.raises(
        ValueError, match=rf"\[{t_sec}\] are not multiples of attack.secmi.k = 10 above it and below"
    ):
        attack_model(
            "secmi_stat_tuned",
            cfg,
            predictor=CheckingPredictor(),
            schedule=schedule,
            images=images,
            sample_ids=IDS,
            is_member=IS_MEMBER,
        )
