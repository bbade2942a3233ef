"""What every attack shares: registration against the catalog, batching on the model's device without gradients,
the input checks and their messages, and the labelled-slice protocol."""

import re

import numpy as np
import pytest
import torch

from dualmd.attacks import base
from dualmd.attacks.base import (
    ModelAttack,
    batch_slices,
    check_images,
    check_inputs,
    check_labels,
    check_timesteps,
    fraction_count,
    model_device,
    own_section,
    per_sample_sum,
    register,
    train_test_split,
)
from dualmd.attacks.run import attack_samples, build_attack, registry
from dualmd.config.attacks import AttackConfig, LiraConfig
from dualmd.models.adapter import Schedule

# --- registration --------------------------------------------------------------------------------------------


def test_register_adds_a_catalogued_attack_under_its_name(monkeypatch):
    sima = registry()["sima"]
    monkeypatch.delitem(base.ATTACKS, "sima")

    class Again(ModelAttack):
        def score_batch(self, model, schedule, images, sample_ids):
            raise NotImplementedError

    assert register("sima")(Again) is Again
    assert Again.name == "sima" and base.ATTACKS["sima"] is Again
    assert sima.name == "sima"


def test_register_refuses_a_name_twice_or_outside_the_catalog(monkeypatch):
    registry()

    class Fake(ModelAttack):
        def score_batch(self, model, schedule, images, sample_ids):
            raise NotImplementedError

    with pytest.raises(ValueError, match=r"^attack 'loss' registered twice$"):
        register("loss")(Fake)
    with pytest.raises(
        ValueError, match=r"^attack 'carlini' \(model\) does not match dualmd\.catalog\.ATTACKS"
    ):
        register("carlini")(Fake)
    monkeypatch.delitem(base.ATTACKS, "nn_distance")  # catalogued as a "samples" attack
    with pytest.raises(ValueError, match=r"^attack 'nn_distance' \(model\) does not match"):
        register("nn_distance")(Fake)
    assert "nn_distance" not in base.ATTACKS and Fake.name == ""


def test_own_section_reads_each_names_own_section_and_refuses_another_kind():
    """One module serves several names, each with its own section of one type; a name of another kind is refused,
    naming the attack, the kind asked for and the section it has."""
    cfg = AttackConfig(lira_online=LiraConfig(mode="online", num_reference=6))
    assert own_section(cfg, "lira_online", LiraConfig, "LiRA") is cfg.lira_online
    assert own_section(cfg, "lira", LiraConfig, "LiRA") is cfg.lira
    with pytest.raises(ValueError, match=r"^'loss' is not a LiRA attack \(its section is 'loss'\)$"):
        own_section(cfg, "loss", LiraConfig, "LiRA")


# --- batching ------------------------------------------------------------------------------------------------


class Probe(ModelAttack):
    """Scores each image by its id + 0.5 and records what each batch looked like."""

    def __init__(self, cfg):
        super().__init__(cfg=cfg)
        self.batches = []

    def score_batch(self, model, schedule, images, sample_ids):
        self.batches.append((images.device.type, len(images), list(sample_ids), torch.is_grad_enabled()))
        ids = torch.as_tensor(np.asarray(sample_ids), dtype=torch.float32)
        return ids + 0.5, {"double": 2 * ids}


class OnMeta:
    device = "meta"

    def __call__(self, x, t):
        raise AssertionError("not queried by the probe")


def test_model_attacks_score_in_batches_without_gradients_and_return_float64():
    attack = Probe(AttackConfig(batch_size=3))
    images = torch.zeros(7, 1, 2, 2)
    ids = np.array([9, 4, 7, 1, 0, 12, 3], dtype=np.int32)
    result = attack.run(lambda x, t: x, None, images, ids, np.array([1, 0, 0, 1, 0, 1, 1]))
    assert [b[1:3] for b in attack.batches] == [(3, [9, 4, 7]), (3, [1, 0, 12]), (1, [3])]
    assert all(device == "cpu" and not grad for device, _, _, grad in attack.batches)
    assert result.scores.dtype == np.float64 and result.extra["double"].dtype == np.float64
    np.testing.assert_array_equal(result.scores, ids + 0.5)
    np.testing.assert_array_equal(result.extra["double"], 2 * ids)
    assert result.sample_ids.dtype == np.int64 and result.is_member.dtype == bool
    np.testing.assert_array_equal(result.is_member, [True, False, False, True, False, True, True])
    np.testing.assert_array_equal(attack.score(lambda x, t: x, None, images, ids), ids + 0.5)


def test_model_attacks_move_each_batch_to_the_models_device():
    attack = Probe(AttackConfig(batch_size=2))
    attack.score(OnMeta(), None, torch.zeros(3, 1, 2, 2), np.array([1, 2, 3]))
    assert [b[0] for b in attack.batches] == ["meta", "meta"]


def test_model_device_prefers_the_models_own_device():
    assert model_device(OnMeta(), torch.device("cpu")) == torch.device("meta")
    assert model_device(lambda x, t: x, torch.device("meta")) == torch.device("meta")

    class NoDevice:
        device = None

    assert model_device(NoDevice(), torch.device("cpu")) == torch.device("cpu")


def test_batch_slices_cover_the_range_in_order():
    assert list(batch_slices(7, 3)) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert list(batch_slices(6, 3)) == [slice(0, 3), slice(3, 6)]
    assert list(batch_slices(2, 5)) == [slice(0, 2)]
    assert list(batch_slices(0, 5)) == []


def test_per_sample_sum_sums_every_axis_but_the_first():
    x = torch.arange(24.0).view(2, 3, 4)
    torch.testing.assert_close(per_sample_sum(x), torch.tensor([66.0, 210.0]))


# --- input checks --------------------------------------------------------------------------------------------


def test_check_images_names_what_is_wrong():
    with pytest.raises(
        ValueError, match=r"^images: expected a float tensor \(B, C, H, W\), got ndarray \(2, 3\)$"
    ):
        check_images(np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"^generated: expected a float tensor \(B, C, H, W\), got Tensor \(2, 3\)"
    ):
        check_images(torch.zeros(2, 3), "generated")
    with pytest.raises(ValueError, match=r"got Tensor \(1, 1, 2, 2\)"):
        check_images(torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^images: no images$"):
        check_images(torch.zeros(0, 1, 2, 2))
    with pytest.raises(ValueError, match=r"^images: values in \[0, 1\.5\]; expected \[-1, 1\]"):
        check_images(torch.tensor([0.0, 1.5]).view(1, 1, 1, 2))
    check_images(torch.tensor([-1.0009, 1.0009]).view(1, 1, 1, 2))  # uint8 conversions land on the bounds
    check_images(
        torch.tensor([-1.001, 1.001], dtype=torch.float64).view(1, 1, 1, 2)
    )  # the tolerance included
    with pytest.raises(ValueError, match=r"^images: expected a float tensor \(B, C, H, W\), got list \(\)$"):
        check_images([0.5, 0.5])
    for bad in (1.002, -1.002):
        with pytest.raises(ValueError, match="expected"):
            check_images(torch.tensor([0.0, bad]).view(1, 1, 1, 2))


def test_check_inputs_wants_one_distinct_non_negative_integer_per_image():
    images = torch.zeros(3, 1, 2, 2)
    ids = check_inputs(images, np.array([5, 0, 2], dtype=np.int32))
    assert ids.dtype == np.int64 and ids.tolist() == [5, 0, 2]
    message = r"^sample_ids: expected 3 integers, got shape \(%s\) dtype %s$"
    with pytest.raises(ValueError, match=message % ("2,", "int64")):
        check_inputs(images, np.array([1, 2]))
    with pytest.raises(ValueError, match=message % ("3, 1", "int64")):
        check_inputs(images, np.array([[1], [2], [3]]))
    with pytest.raises(ValueError, match=message % ("3,", "float64")):
        check_inputs(images, np.array([1.0, 2.0, 3.0]))
    for bad in ([1, -1, 2], [1, 1, 2]):
        with pytest.raises(ValueError, match="^sample_ids must be distinct non-negative integers"):
            check_inputs(images, np.array(bad))
    with pytest.raises(ValueError, match="^images: no images"):
        check_inputs(torch.zeros(0, 1, 2, 2), np.array([], dtype=int))


def test_check_labels_accepts_booleans_or_zero_one_with_both_classes():
    labels = check_labels(np.array([1, 0, 1]), 3)
    assert labels.dtype == bool and labels.tolist() == [True, False, True]
    assert check_labels([False, True], 2).tolist() == [False, True]
    with pytest.raises(ValueError, match=r"^is_member: expected shape \(3,\), got \(2,\)$"):
        check_labels(np.array([True, False]), 3)
    with pytest.raises(ValueError, match="^is_member must be boolean"):
        check_labels(np.array([0, 2, 1]), 3)
    with pytest.raises(ValueError, match="^the member set is empty"):
        check_labels(np.array([0, 0]), 2)
    with pytest.raises(ValueError, match="^the non-member set is empty"):
        check_labels(np.array([True, True]), 2)


def test_check_timesteps_accepts_exactly_zero_to_t_minus_one():
    schedule = Schedule(torch.linspace(0.99, 0.01, 50, dtype=torch.float64))
    check_timesteps((0, 49), schedule, "attack.x")
    with pytest.raises(
        ValueError, match=r"^attack\.x: timesteps \[-1, 50\] outside \[0, 50\) of the model's"
    ):
        check_timesteps((-1, 0, 50), schedule, "attack.x")


def test_sample_attacks_refuse_generated_images_of_another_shape():
    images = torch.zeros(2, 1, 4, 4)
    common = dict(images=images, sample_ids=np.array([0, 1]), is_member=np.array([True, False]))
    with pytest.raises(
        ValueError, match=r"^generated images \(1, 2, 2\) and attacked images \(1, 4, 4\) differ"
    ):
        attack_samples("nn_distance", AttackConfig(), generated=torch.zeros(3, 1, 2, 2), **common)
    with pytest.raises(ValueError, match="^generated: values in"):
        attack_samples("nn_distance", AttackConfig(), generated=torch.full((3, 1, 4, 4), 2.0), **common)
    with pytest.raises(ValueError, match="^is_member: expected shape"):
        build_attack("nn_distance", AttackConfig()).run(
            torch.zeros(3, 1, 4, 4), images, np.array([0, 1]), np.array([True, False, True])
        )


# --- the labelled slice --------------------------------------------------------------------------------------


def test_fraction_count_floors_without_losing_exact_products_to_rounding():
    assert fraction_count(10, 0.3) == 3  # 10 * 0.3 = 2.9999999999999996 in floating point
    assert fraction_count(10, 0.25) == 2
    assert fraction_count(7, 0.999) == 6
    assert fraction_count(3, 0.2) == 0


def test_train_test_split_takes_the_leading_fraction_of_each_class():
    is_member = np.array([False, True, True, False, True, False, True, False, False, True])
    train, test = train_test_split(is_member, 0.5, "gsa")
    # members at 1, 2, 4, 6, 9 -> first 2; non-members at 0, 3, 5, 7, 8 -> first 2
    np.testing.assert_array_equal(train, [0, 1, 2, 3])
    np.testing.assert_array_equal(test, [4, 5, 6, 7, 8, 9])
    train, test = train_test_split(is_member, 0.8, "gsa")
    np.testing.assert_array_equal(train, [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(test, [8, 9])


ALMOST_ONE = 1 - 1e-10  # floor(n * fraction + 1e-9) = n for the short class, n - 1 for a class of 20


@pytest.mark.parametrize(
    ("members", "nonmembers", "fraction"),
    [(2, 2, 0.3), (1, 3, 0.5), (3, 1, 0.5), (2, 20, ALMOST_ONE), (20, 2, ALMOST_ONE)],
    ids=[
        "no_training",
        "no_member_to_train",
        "no_nonmember_to_train",
        "no_member_to_test",
        "no_nonmember_to_test",
    ],
)
def test_train_test_split_refuses_an_empty_training_or_test_part(members, nonmembers, fraction):
    labels = np.array([True] * members + [False] * nonmembers)
    message = (
        rf"^recon: train_fraction={re.escape(str(fraction))} leaves an empty training or test set with "
        rf"{members} members and {nonmembers} non-members$"
    )
    with pytest.raises(ValueError, match=message):
        train_test_split(labels, fraction, "recon")
