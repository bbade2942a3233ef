"""The tuned threshold attacks by hand: timestep and orientation come from the labelled slice alone (here the slice
prefers another timestep than the scored part would, and an inverted slice flips the orientation), the slice's
candidates are not scored, and the a-priori attack's scores are untouched."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import CheckingPredictor

from dualmd.attacks.base import AttackResult
from dualmd.attacks.run import attack_model, attack_scores
from dualmd.attacks.secmi import t_error_batch
from dualmd.attacks.tuned import choose_timestep, t_errors
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
    cfg = AttackConfig(pia_tuned=PIATunedConfig(train_fraction=0.2, **section))
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
    with pytest.raises(ValueError, match="multiples of attack.secmi.k"):
        attack_model(
            "secmi_stat_tuned",
            AttackConfig(secmi_stat_tuned=SecMITunedConfig(timesteps=(25,))),
            predictor=model,
            schedule=schedule,
            images=images,
            sample_ids=IDS,
            is_member=IS_MEMBER,
        )
