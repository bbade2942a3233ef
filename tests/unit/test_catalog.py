"""The catalog of targets and attacks, and its agreement with the attack registry."""

from __future__ import annotations

import pytest

from dualmd import catalog
from dualmd.attacks import ATTACKS as REGISTERED
from dualmd.config import AttackConfig


def test_targets_members_and_models():
    assert catalog.models() == ["baseline", "teacher1", "teacher2", "student"]
    assert catalog.samplers() == [*catalog.models(), "dualmd"]
    assert {t: catalog.member_subset(t) for t in catalog.TARGETS} == {
        "baseline": "members",
        "teacher1": "half1",
        "teacher2": "half2",
        "student": "members",
        "dualmd": "members",
    }
    assert catalog.sampler_models("dualmd") == ("teacher1", "teacher2")
    assert catalog.sampler_models("student") == ("student",)
    assert catalog.target("student").models == ("teacher1", "teacher2")
    assert all(t.members in catalog.MEMBER_SUBSETS for t in catalog.TARGETS.values())
    with pytest.raises(ValueError, match="unknown target"):
        catalog.target("teacher3")


def test_downstream_orders_training():
    assert set(catalog.downstream("teacher1")) == {"student", "dualmd"}
    assert catalog.downstream("baseline") == []


def test_catalog_and_registry_agree():
    assert set(REGISTERED) == set(catalog.ATTACKS)
    for name, cls in REGISTERED.items():
        assert cls.requires == catalog.attack(name).access, name
        # every section an attack reads exists in the attack config
        for section in catalog.attack(name).reads:
            assert hasattr(AttackConfig(), section), (name, section)
    assert catalog.attack_targets("pia") == catalog.models()
    assert catalog.attack_targets("nn_distance") == catalog.samplers()
    assert catalog.T_ERROR_ATTACK in catalog.attack_names("model")
