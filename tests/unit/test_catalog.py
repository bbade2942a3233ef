"""The catalog of targets and attacks, and its agreement with the attack registry."""

from __future__ import annotations

from dataclasses import fields

import pytest

from dualmd import catalog
from dualmd.attacks.run import MODULES as attack_modules
from dualmd.attacks.run import registry
from dualmd.config.attacks import DEPLOYED_SAMPLE_KEYS, AttackConfig
from dualmd.config.sections import SampleConfig


def test_targets_members_and_models():
    assert catalog.models() == ["baseline", "teacher1", "teacher2", "student", "selfdistill"]
    assert catalog.samplers() == ["baseline", "teacher1", "teacher2", "student", "dualmd", "selfdistill"]
    assert {t: catalog.member_subset(t) for t in catalog.TARGETS} == {
        "baseline": "members",
        "teacher1": "half1",
        "teacher2": "half2",
        "student": "members",
        "dualmd": "members",
        "selfdistill": "members",
    }
    assert catalog.sampler_models("dualmd") == ("teacher1", "teacher2")
    assert catalog.sampler_models("student") == ("student",)
    assert catalog.target("student").models == ("teacher1", "teacher2")
    assert catalog.target("selfdistill").models == ("baseline",)  # the control: one teacher saw every member
    assert all(t.members in catalog.MEMBER_SUBSETS for t in catalog.TARGETS.values())
    with pytest.raises(ValueError, match="unknown target"):
        catalog.target("teacher3")


def test_downstream_orders_training():
    assert set(catalog.downstream("teacher1")) == {"student", "dualmd"}
    assert catalog.downstream("baseline") == ["selfdistill"]
    assert catalog.downstream("student") == []


def test_catalog_and_registry_agree():
    registered = registry()
    assert set(registered) == set(catalog.ATTACKS)
    # each attack is built by importing the module that defines it, and only that one
    assert set(attack_modules) == set(catalog.ATTACKS)
    for name, cls in registered.items():
        assert cls.__module__ == f"dualmd.attacks.{attack_modules[name]}", name
        assert cls.requires == catalog.attack(name).access, name
        # every section an attack reads exists in the attack config
        for section in catalog.attack(name).reads:
            assert hasattr(AttackConfig(), section), (name, section)
    assert catalog.attack_targets("pia") == catalog.models()
    assert catalog.attack_targets("nn_distance") == catalog.samplers()
    # recon queries every sampler's denoising chain (DualMD's through both teachers); teacher_max holds the
    # teachers of DualMD only
    assert catalog.attack_targets("recon") == catalog.samplers()
    assert catalog.attack_targets("teacher_max") == ["dualmd"] == catalog.names("pair")
    assert catalog.attack_names("sampler") == ["recon"] and catalog.attack_names("pair") == ["teacher_max"]
    # the text-to-image black-box attack prompts the text-to-image samplers; no default config runs it
    assert catalog.attack_names("prompts") == ["pang_wang"]
    assert catalog.attack_targets("pang_wang") == ["baseline", "student", "dualmd"]
    assert "pang_wang" not in AttackConfig().names and "pang_wang" in catalog.TEXT2IMAGE_ATTACKS
    for spec in catalog.ATTACKS.values():
        assert set(spec.sample_keys) <= {f.name for f in fields(SampleConfig)}, spec.name
        if spec.wraps is not None:  # names a key of its own section
            assert hasattr(getattr(AttackConfig(), spec.reads[0]), spec.wraps), spec.name
    assert catalog.T_ERROR_ATTACK in catalog.attack_names("model")
    # the grid keys of recon's deployed interface are keys of the sample section
    assert set(DEPLOYED_SAMPLE_KEYS) <= {f.name for f in fields(SampleConfig)}


def test_dualmd_and_its_teachers_are_reported_per_member_half():
    assert [name for name in catalog.TARGETS if catalog.reports_halves(name)] == [
        "teacher1",
        "teacher2",
        "dualmd",
    ]
    assert not catalog.reports_halves("teacher1_ov50") and not catalog.reports_halves("baseline@100")


def test_checkpoint_names_resolve_to_their_model():
    assert catalog.checkpoint_targets((120, 300)) == ["baseline@120", "baseline@300"]
    assert catalog.split_checkpoint("baseline@120") == ("baseline", 120)
    assert catalog.split_checkpoint("teacher1") == ("teacher1", None)
    assert catalog.target("baseline@120") is catalog.target("baseline")
    assert catalog.member_subset("baseline@300") == "members"
    # a checkpoint samples with its own weights (the sample stage reads them from its model's checkpoints/)
    assert catalog.sampler_models("baseline@120") == ("baseline@120",)
    with pytest.raises(ValueError, match="unknown target 'teacher1@5'"):  # teachers keep no checkpoints
        catalog.target("teacher1@5")
    with pytest.raises(ValueError, match="integer step"):
        catalog.split_checkpoint("baseline@last")
    names = ["student", "baseline", "baseline@300", "selfdistill", "baseline@120", "dualmd", "teacher2"]
    assert sorted(names, key=catalog.report_rank) == [
        "baseline@120",
        "baseline@300",
        "baseline",
        "teacher2",
        "student",
        "dualmd",
        "selfdistill",
    ]


def test_dp_controls_are_named_by_their_epsilon_and_resolve_without_the_config():
    assert catalog.control_targets([10, 0.5, 100.0]) == ["dpsgd_eps10", "dpsgd_eps0.5", "dpsgd_eps100"]
    dp = catalog.target("dpsgd_eps0.5")
    assert (dp.kind, dp.members, dp.dp_epsilon, dp.has_weights, dp.checkpoints) == (
        "trained",
        "members",
        0.5,
        True,
        False,
    )
    assert catalog.member_subset("dpsgd_eps10") == "members"
    for bad in ("dpsgd_eps", "dpsgd_eps10.0", "dpsgd_eps1e-05", "dpsgd_eps10@5"):  # one spelling per epsilon
        with pytest.raises(ValueError, match="unknown target"):
            catalog.target(bad)
    with pytest.raises(ValueError, match="without an exponent"):
        catalog.dp_target(1e-7)
    names = ["dpsgd_eps10", "selfdistill", "dpsgd_eps100", "baseline", "dpsgd_eps0.5"]
    assert sorted(names, key=catalog.report_rank) == [
        "baseline",
        "selfdistill",
        "dpsgd_eps100",
        "dpsgd_eps10",
        "dpsgd_eps0.5",
    ]
    compared = [n for n in ["baseline", "baseline@120", "student", "dualmd", "selfdistill", "dpsgd_eps10"]]
    assert [n for n in compared if catalog.compared_to_curve(n)] == [
        "student",
        "dualmd",
        "selfdistill",
        "dpsgd_eps10",
    ]


def test_overlap_ablation_targets():
    assert catalog.control_targets([10], [50]) == [
        "teacher1_ov50",
        "teacher2_ov50",
        "student_ov50",
        "dpsgd_eps10",
    ]
    t1, t2, student = (catalog.target(n) for n in ("teacher1_ov50", "teacher2_ov50", "student_ov50"))
    assert (t1.kind, t1.members, t2.members) == ("trained", "half1_ov50", "half2_ov50")
    assert (student.kind, student.members, student.models) == (
        "distilled",
        "members",
        ("teacher1_ov50", "teacher2_ov50"),
    )
    assert catalog.compared_to_curve("student_ov50") and not catalog.compared_to_curve("teacher1_ov50")
    for bad in ("student_ov0", "student_ov050", "student_ov101", "dualmd_ov50", "student_ov50@3"):
        with pytest.raises(ValueError, match="unknown target"):
            catalog.target(bad)
    with pytest.raises(ValueError, match="whole percentage"):
        catalog.overlap_targets(0)


def test_reference_models_are_trained_targets_no_attack_or_sampler_reaches():
    assert catalog.lira_references("baseline", 3) == ["reference1", "reference2", "reference3"]
    ref = catalog.target("reference2")
    assert (ref.kind, ref.members, ref.models) == ("trained", "ref2", ())
    assert "reference1" not in catalog.models() + catalog.samplers()
    assert not catalog.compared_to_curve("reference1")
    # gsa may query them (its shadow protocol); the others always do, and are kept out of the default run
    assert [a for a in catalog.ATTACKS if catalog.attack(a).references] == [
        "gsa",
        "lira",
        "lira_online",
        "lira_target",
        "lira_online_target",
        "gsa_shadow",
    ]
    assert [a for a in catalog.ATTACKS if catalog.attack(a).references and catalog.attack(a).default] == [
        "gsa"
    ]
    for bad in (
        "reference0",
        "reference01",
        "reference1_teacher3",
        "reference1_student@10",
        "shadow0",
        "shadow1@10",
        "shadow1_teacher3",
        "shadow1_student@10",
        "shadow01_student",
    ):
        with pytest.raises(ValueError, match="unknown target"):
            catalog.target(bad)


def test_reference_set_numbers_the_offline_reference_models_only():
    for name, k in [
        ("reference3", 3),
        ("reference12_teacher2", 12),
        ("reference2_student", 2),
        ("reference4@120", 4),
    ]:
        assert catalog.reference_set(name) == k, name
    for bad in ("shadow1", "baseline", "student", "reference0"):  # online shadow models train on candidates
        with pytest.raises(ValueError, match="is not an offline reference model"):
            catalog.reference_set(bad)


def test_lira_reference_models_follow_the_mode_and_the_targets_recipe():
    """Offline with the baseline's recipe: reference<k> for every target (as before); online: shadow<k>; built like
    the target: the reference set's model in the target's role, a checkpoint's at the same step."""
    for name in ("baseline", "student", "teacher1", "baseline@120", "selfdistill"):
        assert catalog.lira_references(name, 2) == ["reference1", "reference2"]
        assert catalog.lira_references(name, 2, "online") == ["shadow1", "shadow2"]
    target = {
        "baseline": ["reference1", "reference2"],
        "baseline@120": ["reference1@120", "reference2@120"],
        "teacher1": ["reference1_teacher1", "reference2_teacher1"],
        "teacher2": ["reference1_teacher2", "reference2_teacher2"],
        "student": ["reference1_student", "reference2_student"],
        "selfdistill": ["reference1", "reference2"],  # no shadow recipe of its own: the baseline's
    }
    for name, expected in target.items():
        assert catalog.lira_references(name, 2, "offline", "target") == expected, name
    student = catalog.target("reference2_student")
    assert (student.kind, student.members, student.halves) == (
        "distilled",
        "ref2",
        ("ref2_half1", "ref2_half2"),
    )
    assert student.models == ("reference2_teacher1", "reference2_teacher2")
    assert [catalog.member_subset(m) for m in student.models] == list(student.halves)
    assert (
        catalog.target("reference2@120").members == "ref2" and catalog.target("shadow3").members == "shadow3"
    )
    with pytest.raises(ValueError, match="unknown LiRA recipe 'student'"):
        catalog.lira_references("student", 2, "offline", "student")
    with pytest.raises(ValueError, match="unknown LiRA mode 'onl'"):
        catalog.lira_references("student", 2, "onl")


def test_online_lira_built_like_the_target_uses_distillmd_rebuilt_on_each_shadow_set():
    """Online with the target's recipe: the student against the shadow students, a teacher against the shadow
    teachers of its role, the baseline (and its checkpoints, which no shadow model keeps) against shadow<k>; on
    shadow set k, two teachers on the halves of shadow<k> and a student distilled from exactly those two."""
    expected = {
        "student": ["shadow1_student", "shadow2_student", "shadow3_student", "shadow4_student"],
        "teacher1": ["shadow1_teacher1", "shadow2_teacher1", "shadow3_teacher1", "shadow4_teacher1"],
        "teacher2": ["shadow1_teacher2", "shadow2_teacher2", "shadow3_teacher2", "shadow4_teacher2"],
        "baseline": ["shadow1", "shadow2", "shadow3", "shadow4"],
        "baseline@120": ["shadow1", "shadow2", "shadow3", "shadow4"],
        "selfdistill": ["shadow1", "shadow2", "shadow3", "shadow4"],
    }
    for name, models in expected.items():
        assert catalog.lira_references(name, 4, "online", "target") == models, name
    student = catalog.target("shadow3_student")
    assert (student.kind, student.members, student.halves, student.models) == (
        "distilled",
        "shadow3",  # IN for the shadow student: every candidate of shadow3, either half
        ("shadow3_half1", "shadow3_half2"),
        ("shadow3_teacher1", "shadow3_teacher2"),
    )
    teacher1, teacher2 = (catalog.target(m) for m in student.models)
    assert (teacher1.kind, teacher1.members, teacher2.members) == (
        "trained",
        "shadow3_half1",
        "shadow3_half2",
    )
    assert not student.checkpoints and not catalog.target("shadow3").checkpoints
    # a shadow model is neither scored nor sampled, and no shadow model is an offline reference model
    assert not {"shadow1_student", "shadow1_teacher1"} & set(catalog.models() + catalog.samplers())
    with pytest.raises(ValueError, match="is not an offline reference model"):
        catalog.reference_set("shadow1_student")


def test_prompt_diversified_text2image_targets_resolve_by_name():
    student = catalog.target("student_pd")
    assert student.prompt_diversification and student.models == ("teacher1_pd", "teacher2_pd")
    assert (
        catalog.member_subset("teacher2_pd") == "half2"
        and not catalog.target("student").prompt_diversification
    )
    assert catalog.sampler_models("dualmd_pd") == ("teacher1_pd", "teacher2_pd")
    assert catalog.text2image_targets([False, True], "distilled") == ["student", "student_pd"]
    assert catalog.text2image_samplers([True]) == ["baseline_pd", "student_pd", "dualmd_pd"]
    assert (
        catalog.report_rank("baseline") < catalog.report_rank("baseline_pd") < catalog.report_rank("teacher1")
    )
    with pytest.raises(ValueError, match="unknown target"):
        catalog.target("selfdistill_pd")  # not a text-to-image target


def test_an_attack_is_declared_once():
    """An attack's catalog entry names its module and its config sections; the registry, the lazy import, the
    config nesting and the schema's lists of attacks follow it, and the attack receives only its own sections."""
    import yaml

    from dualmd.config.attacks import _NESTED
    from dualmd.sources import PACKAGE_DIR

    assert set(registry()) == set(catalog.ATTACKS)
    for name, spec in catalog.ATTACKS.items():
        assert registry()[name].__module__ == spec.module_name, name
    # every nested section is some attack's, and every section an attack reads is nested
    assert set(_NESTED) == {s for spec in catalog.ATTACKS.values() for s in spec.reads}
    schema = yaml.safe_load((PACKAGE_DIR.parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    attack = schema["properties"]["attack"]["properties"]
    assert attack["names"]["items"]["enum"] == list(catalog.ATTACKS)
    assert set(_NESTED) <= set(attack)
    set_inference = schema["properties"]["set_inference"]["properties"]["attack"]
    assert set_inference["enum"] == [*catalog.ATTACKS, None]
    cfg = AttackConfig()
    for name in catalog.ATTACKS:
        received = cfg.for_attack(name)
        own = {k for k in _NESTED if getattr(received, k) is not None}
        assert own == set(cfg.sections_of(name)), name
        assert (received.batch_size, received.weights, received.seed) == (
            cfg.batch_size,
            cfg.weights,
            cfg.seed,
        )
    # a wrapping attack receives the sections of the attack it wraps: teacher_max over PIA by default
    assert set(cfg.sections_of("teacher_max")) == {
        "teacher_max",
        *catalog.attack(cfg.teacher_max.statistic).reads,
    }
    assert (
        cfg.for_attack("pia").secmi is None
    )  # reading another attack's section fails instead of reading defaults


def test_only_secmi_nn_skips_the_curve_and_an_attack_off_it_runs_one_job_per_target():
    """The workflow's shared attack jobs write a score file for every model and checkpoint, so only a per-target
    attack can leave the checkpoints out; secmi_nn (a ResNet-18 trained per target) is the one that does."""
    off = [a.name for a in catalog.ATTACKS.values() if not a.curve]
    assert off == ["secmi_nn"]
    assert all(catalog.attack(name).job_per_target for name in off)
