"""Teacher-max: the configured statistic scored on each model of the pair, the larger kept per image."""

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.predictors import affine_eps

from dualmd.attacks.run import attack_pair, build_attack, registry
from dualmd.config.attacks import AttackConfig, PIAConfig, SecMIConfig, TeacherMaxConfig
from dualmd.models.adapter import Schedule


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    return Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))


def images_and_ids(num=6):
    images = torch.rand(num, 1, 4, 4, generator=torch.Generator().manual_seed(12)) * 2 - 1
    return images, np.arange(num) * 3 + 2, np.arange(num) % 2 == 0


def gain(x, sign):
    """1 +- 0.8 tanh(5 x_00) per image: a model whose scale depends on the image, so each wins on some."""
    return 1 + sign * 0.8 * torch.tanh(5 * x[:, :1, :1, :1])


MODELS = {
    "teacher1": lambda x, t: gain(x, 1) * affine_eps(x, t),
    "teacher2": lambda x, t: gain(x, -1) * affine_eps(x, t),
    "teacher3": lambda x, t: 1.5 * affine_eps(x, t),
}


@pytest.mark.parametrize("statistic", ["pia", "secmi_stat", "loss"])
def test_teacher_max_is_the_maximum_of_the_statistic_over_the_models(statistic, schedule):
    images, ids, is_member = images_and_ids()
    cfg = AttackConfig(
        seed=2,
        teacher_max=TeacherMaxConfig(statistic=statistic),
        pia=PIAConfig(timestep=60, sweep_timesteps=()),
        secmi=SecMIConfig(t_sec=40, k=20),
    )
    result = attack_pair(
        "teacher_max",
        cfg,
        models=MODELS,
        schedule=schedule,
        images=images,
        sample_ids=ids,
        is_member=is_member,
    )
    single = build_attack(statistic, cfg)
    per_model = {name: single.score(model, schedule, images, ids) for name, model in MODELS.items()}
    assert sorted(result.extra) == sorted(MODELS)
    for name, values in per_model.items():
        np.testing.assert_array_equal(result.extra[name], values)
    np.testing.assert_array_equal(result.scores, np.max(np.stack(list(per_model.values())), axis=0))
    winners = np.argmax(np.stack(list(per_model.values())), axis=0)
    assert len(set(winners.tolist())) >= 2  # more than one model wins somewhere
    np.testing.assert_array_equal(result.sample_ids, ids)
    np.testing.assert_array_equal(result.is_member, is_member)


def test_teacher_max_needs_a_pair_and_a_statistic_that_scores_every_image(schedule):
    images, ids, is_member = images_and_ids(2)
    with pytest.raises(ValueError, match=r"^teacher_max needs the models of a pair, got \['teacher1'\]$"):
        attack_pair("teacher_max", AttackConfig(), models={"teacher1": MODELS["teacher1"]}, schedule=schedule,
                    images=images, sample_ids=ids, is_member=is_member)  # fmt: skip
    registry()  # gsa registered: the statistic exists but scores only a slice
    attack = build_attack("teacher_max", AttackConfig(teacher_max=TeacherMaxConfig(statistic="gsa")))
    with pytest.raises(
        ValueError, match=r"^attack\.teacher_max\.statistic: 'gsa' does not score every image"
    ):
        attack.statistic()
    with pytest.raises(ValueError, match="^the non-member set is empty"):
        attack_pair("teacher_max", AttackConfig(), models=MODELS, schedule=schedule, images=images,
                    sample_ids=ids, is_member=np.array([True, True]))  # fmt: skip
