"""DistillMD (Algorithm 2): cross-teacher targets, alternation of halves, leakage guard, real-teacher run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from helpers.models import TINY_MODEL, tiny_model_dir, tiny_unet

from dualmd.config.sections import DiffusionConfig, DistillConfig, TrainConfig
from dualmd.defense.distill import (
    AlternatingBatches,
    CrossTeacherTargets,
    LeakageError,
    Teacher,
    TeacherTargets,
    check_single_teacher,
    check_teachers,
    distill_student,
    selfdistill_student,
    training_predictor,
)
from dualmd.models.adapter import UNetPredictor
from dualmd.models.unet import create_scheduler
from dualmd.train.checkpoint import run_hash, tensor_sha256
from dualmd.train.loop import RandomBatches, StepInfo, make_accelerator
from dualmd.train.run import train_model

MODEL = TINY_MODEL
DIFFUSION = DiffusionConfig(num_train_timesteps=20)
TRAIN = TrainConfig(
    num_train_steps=10,
    batch_size=8,
    lr=2e-3,
    warmup_steps=2,
    checkpoint_every_steps=5,
    log_every_steps=5,
    probe_timesteps=(2, 10),
    probe_num_images=16,
    seed=0,
)
SHA1, SHA2 = "1" * 64, "2" * 64
META1 = {"model_id": "teacher1", "subset": "half1", "subset_sha256": SHA1, "split_fingerprint": "fp"}
META2 = {"model_id": "teacher2", "subset": "half2", "subset_sha256": SHA2, "split_fingerprint": "fp"}
STUDENT_META = {
    "model_id": "student",
    "subset": "members",
    "subset_sha256": "3" * 64,
    "split_fingerprint": "fp",
}

# D1 images are strictly positive and D2 images strictly negative, so a batch shows which half it came from.
HALF1 = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
HALF2 = -torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.9 - 0.05
NONMEMBERS = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1


def constant_teacher(value: float, meta: dict) -> Teacher:
    return Teacher(predictor=lambda x_t, t: torch.full_like(x_t, value), metadata=dict(meta))


def distill(
    tmp: Path, teacher1: Teacher, teacher2: Teacher, cfg: TrainConfig = TRAIN, *, half2=HALF2, **kw
) -> dict:
    return distill_student(
        half1=HALF1,
        half2=half2,
        teacher1=teacher1,
        teacher2=teacher2,
        half1_sha256=SHA1,
        half2_sha256=SHA2,
        split_fingerprint="fp",
        probe_members=torch.cat([HALF1, HALF2]),
        probe_nonmembers=NONMEMBERS,
        model_cfg=MODEL,
        diffusion_cfg=DIFFUSION,
        train_cfg=cfg,
        distill_cfg=DistillConfig(teacher_weights="raw"),
        out_dir=tmp / "student",
        state_dir=tmp / "state",
        metadata=dict(STUDENT_META),
        **kw,
    )


def test_check_teachers_accepts_the_right_pair():
    check_teachers(META1, META2, half1_sha256=SHA1, half2_sha256=SHA2, split_fingerprint="fp")
    check_teachers(META1, META2, half1_sha256=SHA1, half2_sha256=SHA2, split_fingerprint=None)


@pytest.mark.parametrize(
    ("meta1", "meta2", "fingerprint", "message"),
    [
        (META2, META1, "fp", "swapped"),
        ({**META1, "subset_sha256": "9" * 64}, META2, "fp", "teacher1 was trained on another split"),
        (META1, {**META2, "subset_sha256": "9" * 64}, "fp", "teacher2 was trained on another split"),
        (META1, META2, "other-fp", "split fingerprint"),
        (META1, META1, "fp", "teacher2 was trained on subset 'half1'"),
        ({**META1, "subset": "members"}, META2, "fp", "teacher1 was trained on subset 'members'"),
    ],
    ids=[
        "swapped",
        "other-split-teacher1",
        "other-split-teacher2",
        "other-fingerprint",
        "same-teacher-twice",
        "baseline-as-teacher",
    ],
)
def test_check_teachers_refuses_leaking_pairs(meta1, meta2, fingerprint, message):
    with pytest.raises(LeakageError, match=message):
        check_teachers(meta1, meta2, half1_sha256=SHA1, half2_sha256=SHA2, split_fingerprint=fingerprint)


def test_check_teachers_of_the_overlap_ablation_name_their_subsets():
    ov1, ov2 = {**META1, "subset": "half1_ov50"}, {**META2, "subset": "half2_ov50"}
    subsets = ("half1_ov50", "half2_ov50")
    check_teachers(ov1, ov2, half1_sha256=SHA1, half2_sha256=SHA2, subsets=subsets)
    with pytest.raises(LeakageError, match="teacher1 was trained on subset 'half1', expected 'half1_ov50'"):
        check_teachers(META1, ov2, half1_sha256=SHA1, half2_sha256=SHA2, subsets=subsets)
    with pytest.raises(LeakageError, match="swapped: teacher1 was trained on half2_ov50"):
        check_teachers(ov2, ov1, half1_sha256=SHA1, half2_sha256=SHA2, subsets=subsets)
    with pytest.raises(
        LeakageError, match="expected 'half1'"
    ):  # an overlap teacher never passes as a default one
        check_teachers(ov1, ov2, half1_sha256=SHA1, half2_sha256=SHA2)


def test_distill_refuses_swapped_teachers_before_training(tmp_path):
    with pytest.raises(LeakageError, match="swapped"):
        distill(tmp_path, constant_teacher(1.0, META2), constant_teacher(-1.0, META1))
    assert not (tmp_path / "student").exists() and not (tmp_path / "state").exists()


def test_each_half_is_regressed_on_the_other_teacher(tmp_path):
    steps: list[StepInfo] = []
    meta = distill(
        tmp_path, constant_teacher(1.0, META1), constant_teacher(-1.0, META2), on_step=steps.append
    )
    assert [s.step for s in steps] == list(range(10))
    for s in steps:
        from_d1 = s.step % 2 == 0
        assert bool((s.x_0 > 0).all()) if from_d1 else bool((s.x_0 < 0).all()), f"step {s.step}: wrong half"
        # Even iterations: D1 batch, target from teacher 2 (-1); odd: D2 batch, target from teacher 1 (+1).
        assert torch.equal(s.target, torch.full_like(s.x_0, -1.0 if from_d1 else 1.0)), f"step {s.step}"
    assert meta["teachers"]["teacher1"] == {"subset": "half1", "subset_sha256": SHA1, "model_id": "teacher1"}
    assert meta["teachers"]["teacher2"]["subset"] == "half2"
    assert meta["teacher_weights"] == "raw" and meta["model_id"] == "student"
    assert meta["config"]["distill"] == {"teacher_weights": "raw"}
    assert len(meta["probe"]["gap"]) == 2


def test_student_learns_a_constant_teacher(tmp_path):
    cfg = TrainConfig(
        num_train_steps=30,
        batch_size=8,
        lr=1e-2,
        warmup_steps=1,
        checkpoint_every_steps=100,
        log_every_steps=10,
        probe_timesteps=(2,),
        probe_num_images=8,
        ema_decay=0.5,
    )
    losses: list[float] = []
    distill(
        tmp_path,
        constant_teacher(0.5, META1),
        constant_teacher(0.5, META2),
        cfg,
        on_step=lambda s: losses.append(float(s.loss)),
    )
    assert sum(losses[-5:]) / 5 < 0.2 * losses[0]  # the loss is the distance to the constant 0.5
    student = UNet2DModel.from_pretrained(tmp_path / "student" / "unet")
    with torch.no_grad():
        out = student(torch.randn(8, 1, 8, 8), torch.randint(20, (8,))).sample
    assert abs(float(out.mean()) - 0.5) < 0.2


def test_distill_from_real_teachers_writes_a_working_student(tmp_path):
    cfg = TrainConfig(
        num_train_steps=4,
        batch_size=8,
        checkpoint_every_steps=2,
        log_every_steps=2,
        probe_timesteps=(2,),
        probe_num_images=8,
    )
    for name, half, meta in (("teacher1", HALF1, META1), ("teacher2", HALF2, META2)):
        train_model(
            images=half,
            probe_members=half,
            probe_nonmembers=NONMEMBERS,
            model_cfg=MODEL,
            diffusion_cfg=DIFFUSION,
            train_cfg=cfg,
            out_dir=tmp_path / name,
            state_dir=tmp_path / f"s_{name}",
            metadata=dict(meta),
        )
    teachers = [Teacher.load(tmp_path / name, weights="ema") for name in ("teacher1", "teacher2")]
    meta = distill(tmp_path, *teachers, cfg)
    on_disk = json.loads((tmp_path / "student" / "metadata.json").read_text())
    assert on_disk["teachers"]["teacher2"]["model_id"] == "teacher2" and meta["num_train_steps"] == 4
    out = tmp_path / "student"
    pipe = DDPMPipeline(
        unet=UNet2DModel.from_pretrained(out / "unet_ema"),
        scheduler=DDPMScheduler.from_pretrained(out / "scheduler"),
    )
    images = pipe(batch_size=1, num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 8, 8, 1)


# --- self-distillation, the control: one teacher trained on every member -----------------------------------

SHA_MEMBERS = "4" * 64
BASELINE_META = {
    "model_id": "baseline",
    "subset": "members",
    "subset_sha256": SHA_MEMBERS,
    "split_fingerprint": "fp",
}


def selfdistill(tmp: Path, teacher: Teacher, **kw) -> dict:
    return selfdistill_student(
        members=torch.cat([HALF1, HALF2]),
        teacher=teacher,
        members_sha256=SHA_MEMBERS,
        split_fingerprint="fp",
        probe_members=torch.cat([HALF1, HALF2]),
        probe_nonmembers=NONMEMBERS,
        model_cfg=MODEL,
        diffusion_cfg=DIFFUSION,
        train_cfg=TRAIN,
        distill_cfg=DistillConfig(teacher_weights="raw"),
        out_dir=tmp / "selfdistill",
        state_dir=tmp / "state",
        metadata={**STUDENT_META, "model_id": "selfdistill"},
        **kw,
    )


def test_selfdistill_regresses_every_member_on_the_one_teacher(tmp_path):
    """Batches mix both halves (drawn from all members) and every target is the teacher's output, never the noise."""
    steps: list[StepInfo] = []
    meta = selfdistill(tmp_path, constant_teacher(0.5, BASELINE_META), on_step=steps.append)
    assert [s.step for s in steps] == list(range(10))
    for s in steps:
        assert torch.equal(s.target, torch.full_like(s.x_0, 0.5)), f"step {s.step}"
    pixels = torch.cat([s.x_0 for s in steps])
    assert bool(
        (pixels.flatten(1)[:, 0] > 0).any() and (pixels.flatten(1)[:, 0] < 0).any()
    )  # D1 and D2 images
    assert meta["teachers"] == {
        "teacher": {"subset": "members", "subset_sha256": SHA_MEMBERS, "model_id": "baseline"}
    }
    assert meta["num_train_steps"] == TRAIN.num_train_steps and meta["model_id"] == "selfdistill"


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (META1, "subset 'half1', expected 'members'"),
        ({**BASELINE_META, "subset_sha256": "9" * 64}, "another split: its members hash"),
        ({**BASELINE_META, "split_fingerprint": "other"}, "split fingerprint"),
    ],
    ids=["teacher-of-one-half", "other-members", "other-fingerprint"],
)
def test_selfdistill_refuses_a_teacher_of_other_data_before_training(tmp_path, meta, message):
    with pytest.raises(LeakageError, match=message):
        selfdistill(tmp_path, constant_teacher(0.5, meta))
    assert not (tmp_path / "selfdistill").exists() and not (tmp_path / "state").exists()


# --- per-sample targets from two different, non-constant teachers ------------------------------------------

STALE_SHA = "0123456789abcdef" * 4  # a hash whose 12- and 13-character prefixes differ


def unet_teacher(seed: int, meta: dict) -> Teacher:
    """A teacher whose prediction depends on x_t and t: a randomly initialised tiny UNet (seed picks which)."""
    return Teacher(predictor=UNetPredictor(tiny_unet(seed)), metadata=dict(meta))


def noised(x_0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with the linear betas over T = 20."""
    a = create_scheduler(DIFFUSION).alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * x_0 + (1 - a).sqrt() * eps


def is_row_of(x: torch.Tensor, images: torch.Tensor) -> bool:
    return bool((x.unsqueeze(0) == images).flatten(1).all(1).any())


def test_each_sample_is_regressed_on_the_prediction_of_the_teacher_that_did_not_see_it(tmp_path, monkeypatch):
    """Two different UNet teachers. Even iterations: every image of the batch is a (possibly mirrored) D1 image
    and its target is teacher 2's prediction at that sample's own x_t and t, not teacher 1's; odd iterations:
    D2 images and teacher 1. Both teachers run on the training device, the metadata records the data and
    teachers the run is keyed on."""
    placed = []

    def recording_training_predictor(teacher, train_cfg, device):
        placed.append(device)
        return training_predictor(teacher, train_cfg, device)

    monkeypatch.setattr("dualmd.defense.distill.training_predictor", recording_training_predictor)
    teacher1, teacher2 = unet_teacher(1, META1), unet_teacher(2, META2)
    steps: list[StepInfo] = []
    cfg = replace(TRAIN, num_train_steps=4, hflip=True)
    meta = distill(tmp_path, teacher1, teacher2, cfg, on_step=steps.append)
    assert placed == [make_accelerator(cfg).device] * 2
    mirrored = 0
    for s in steps:
        half, right, wrong = (HALF1, teacher2, teacher1) if s.step % 2 == 0 else (HALF2, teacher1, teacher2)
        for x in s.x_0:
            assert is_row_of(x, half) or is_row_of(x, half.flip(-1)), (
                f"step {s.step}: image of the wrong half"
            )
            mirrored += not is_row_of(x, half)
        x_t = noised(s.x_0, s.t, s.eps)
        with torch.no_grad():
            expected = right.predictor.unet(x_t, s.t).sample
            other_teacher = wrong.predictor.unet(x_t, s.t).sample
        torch.testing.assert_close(s.target, expected, rtol=0, atol=1e-4)
        assert not torch.allclose(s.target, other_teacher, atol=1e-2), (
            f"step {s.step}: the teacher that saw it"
        )
    assert mirrored > 0  # train.hflip reaches the batches
    assert meta["data"] == {
        "half1_sha256": tensor_sha256(HALF1),
        "half2_sha256": tensor_sha256(HALF2),
        "teacher1_metadata_sha256": run_hash(META1),
        "teacher2_metadata_sha256": run_hash(META2),
    }


def test_selfdistill_regresses_each_sample_on_the_teachers_prediction_at_its_x_t_and_t(tmp_path, monkeypatch):
    """The control with a UNet teacher: each target is the teacher's prediction at the sample's own x_t and t;
    mirrored members occur with train.hflip; the teacher runs on the training device; the metadata records
    members, teacher, distill section and teacher weights."""
    placed = []

    def recording_training_predictor(teacher, train_cfg, device):
        placed.append(device)
        return training_predictor(teacher, train_cfg, device)

    monkeypatch.setattr("dualmd.defense.distill.training_predictor", recording_training_predictor)
    teacher = unet_teacher(3, BASELINE_META)
    members = torch.cat([HALF1, HALF2])
    steps: list[StepInfo] = []
    meta = selfdistill_student(
        members=members,
        teacher=teacher,
        members_sha256=SHA_MEMBERS,
        split_fingerprint="fp",
        probe_members=members,
        probe_nonmembers=NONMEMBERS,
        model_cfg=MODEL,
        diffusion_cfg=DIFFUSION,
        train_cfg=replace(TRAIN, num_train_steps=3, hflip=True),
        distill_cfg=DistillConfig(teacher_weights="ema"),
        out_dir=tmp_path / "selfdistill",
        state_dir=tmp_path / "state",
        metadata={**STUDENT_META, "model_id": "selfdistill"},
        on_step=steps.append,
    )
    assert placed == [make_accelerator(TRAIN).device]
    mirrored = 0
    for s in steps:
        for x in s.x_0:
            assert is_row_of(x, members) or is_row_of(x, members.flip(-1))
            mirrored += not is_row_of(x, members)
        with torch.no_grad():
            expected = teacher.predictor.unet(noised(s.x_0, s.t, s.eps), s.t).sample
        torch.testing.assert_close(s.target, expected, rtol=0, atol=1e-4)
    assert mirrored > 0
    assert meta["data"] == {
        "members_sha256": tensor_sha256(members),
        "teacher_metadata_sha256": run_hash(BASELINE_META),
    }
    assert meta["config"]["distill"] == {"teacher_weights": "ema"} and meta["teacher_weights"] == "ema"


def test_cross_teacher_targets_pass_sample_timestep_and_condition_to_the_right_teacher():
    """Unit view of Algorithm 2's target: step parity picks the teacher, which gets x_t (not x_0 or eps), the
    per-sample t and the caption states of a conditional student; the true noise never enters."""
    calls = []

    def teacher(name):
        def predict(x_t, t, **condition):
            calls.append((name, x_t, t, condition))
            return x_t * (2.0 if name == "teacher1" else -3.0) + t.view(-1, 1, 1, 1)

        return predict

    targets = CrossTeacherTargets(teacher1=teacher("teacher1"), teacher2=teacher("teacher2"))
    x_t, t, eps = torch.randn(2, 1, 4, 4), torch.tensor([3, 7]), torch.randn(2, 1, 4, 4)
    states = torch.randn(2, 5, 6)
    even = targets(4, x_t, t, eps, encoder_hidden_states=states)
    odd = targets(5, x_t, t, eps)
    assert torch.equal(even, -3.0 * x_t + t.view(-1, 1, 1, 1))
    assert torch.equal(odd, 2.0 * x_t + t.view(-1, 1, 1, 1))
    assert [c[0] for c in calls] == ["teacher2", "teacher1"]
    assert calls[0][3].keys() == {"encoder_hidden_states"} and calls[0][3]["encoder_hidden_states"] is states
    assert calls[1][3] == {}
    assert all(c[1] is x_t and c[2] is t for c in calls)


def test_teacher_targets_give_the_teachers_prediction_at_x_t_and_t():
    seen = []
    target = TeacherTargets(teacher=lambda x_t, t: seen.append((x_t, t)) or x_t - t.view(-1, 1, 1, 1))
    x_t, t = torch.randn(3, 1, 2, 2), torch.tensor([0, 5, 9])
    assert torch.equal(target(0, x_t, t, torch.randn(3, 1, 2, 2)), x_t - t.view(-1, 1, 1, 1))
    assert seen[0][0] is x_t and seen[0][1] is t


def test_alternating_batches_draw_from_d1_then_d2_with_the_given_generator_only():
    """Even steps draw exactly RandomBatches' batch of D1, odd steps D2's, from the loop's generator alone
    (the global RNG is not used); hflip mirrors as RandomBatches does."""
    half1 = torch.arange(5 * 4.0).view(5, 1, 1, 4)
    half2 = -torch.arange(1, 7 * 4.0 + 1).view(7, 1, 1, 4)
    for hflip in (False, True):
        batches = AlternatingBatches(half1=half1, half2=half2, batch_size=6, hflip=hflip)
        for step, images in ((0, half1), (1, half2), (2, half1)):
            torch.manual_seed(step + 100)  # the global RNG must not matter
            got = batches(step, torch.Generator().manual_seed(step))
            want = RandomBatches(images=images, batch_size=6, hflip=hflip)(
                step, torch.Generator().manual_seed(step)
            )
            assert torch.equal(got, want), (hflip, step)
    flipped = AlternatingBatches(half1=half1, half2=half2, batch_size=16, hflip=True)(
        0, torch.Generator().manual_seed(0)
    )
    assert any(not is_row_of(x, half1) and is_row_of(x, half1.flip(-1)) for x in flipped)


def test_alternating_batches_move_both_halves_to_the_device():
    batches = AlternatingBatches(half1=HALF1, half2=HALF2, batch_size=3, hflip=True)
    moved = batches.to(torch.device("meta"))
    assert moved.half1.device.type == "meta" and moved.half2.device.type == "meta"
    assert moved.half1.shape == HALF1.shape and moved.half2.shape == HALF2.shape
    assert (moved.batch_size, moved.hflip) == (3, True)
    same = batches.to(torch.device("cpu"))
    for step in (0, 1):
        a, b = same(step, torch.Generator().manual_seed(9)), batches(step, torch.Generator().manual_seed(9))
        assert torch.equal(a, b)


def test_training_predictor_puts_a_unet_teacher_on_the_device_in_the_students_format(monkeypatch):
    """A UNet teacher is moved to the training device, in channels_last when the student is, and compiled
    when train.compile; its predictions are unchanged. Any other predictor is returned as it is."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: compiled.append(module) or module)
    x_t, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 9])
    teacher = unet_teacher(4, META1)
    before = teacher.predictor(x_t, t)
    plain = training_predictor(teacher, TRAIN, torch.device("cpu"))
    assert isinstance(plain, UNetPredictor) and compiled == []
    torch.testing.assert_close(plain(x_t, t), before, rtol=0, atol=1e-5)
    assert not plain.unet.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    fast = training_predictor(teacher, replace(TRAIN, channels_last=True, compile=True), torch.device("cpu"))
    assert compiled == [teacher.predictor.unet]  # the teacher's own UNet, compiled once
    assert fast.unet.conv_out.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x_t, t), before, rtol=0, atol=1e-5)
    on_meta = training_predictor(unet_teacher(5, META1), TRAIN, torch.device("meta"))
    assert on_meta.device.type == "meta"

    def other(x_t, t):
        return x_t

    assert training_predictor(Teacher(predictor=other, metadata=META1), TRAIN, torch.device("cpu")) is other


def test_teacher_load_reads_the_chosen_weights_onto_the_device(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "teacher1", seed=6)
    (model_dir / "metadata.json").write_text(json.dumps(META1))
    teacher = Teacher.load(model_dir, weights="raw", device="meta")
    assert teacher.metadata == META1 and teacher.predictor.device.type == "meta"
    on_cpu = Teacher.load(model_dir, weights="ema")
    expected = tiny_unet(6).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in on_cpu.predictor.unet.state_dict().items())


@pytest.mark.parametrize(
    ("meta1", "meta2", "message"),
    [
        (
            META2,
            META1,
            "teachers are swapped: teacher1 was trained on half2 and teacher2 on half1; teacher1 must be the "
            "model of half1 and teacher2 the model of half2",
        ),
        (META1, {**META2, "subset": "members"}, "teacher2 was trained on subset 'members', expected 'half2'"),
        (
            {**META1, "subset_sha256": STALE_SHA},
            META2,
            "teacher1 was trained on another split: its half1 hash 0123456789ab... differs from the current "
            "split's 111111111111...; retrain the teachers on the current split",
        ),
        (
            META1,
            {**META2, "subset_sha256": STALE_SHA},
            "teacher2 was trained on another split: its half2 hash 0123456789ab... differs from the current "
            "split's 222222222222...; retrain the teachers on the current split",
        ),
        (
            META1,
            {k: v for k, v in META2.items() if k != "subset_sha256"},
            "teacher2 was trained on another split: its half2 hash None... differs from the current "
            "split's 222222222222...; retrain the teachers on the current split",
        ),
        (
            META1,
            {**META2, "split_fingerprint": "old"},
            "teacher2 was trained on another split: split fingerprint 'old' differs from the current 'fp'",
        ),
    ],
    ids=[
        "swapped",
        "teacher2-subset",
        "teacher1-hash",
        "teacher2-hash",
        "teacher2-no-hash",
        "teacher2-fingerprint",
    ],
)
def test_check_teachers_says_which_teacher_is_wrong_and_how(meta1, meta2, message):
    with pytest.raises(LeakageError) as raised:
        check_teachers(meta1, meta2, half1_sha256=SHA1, half2_sha256=SHA2, split_fingerprint="fp")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            {**BASELINE_META, "subset": "half2"},
            "the teacher was trained on subset 'half2', expected 'members'",
        ),
        (
            {**BASELINE_META, "subset_sha256": STALE_SHA},
            "the teacher was trained on another split: its members hash 0123456789ab... differs from the "
            "current split's 444444444444...",
        ),
        (
            {**BASELINE_META, "split_fingerprint": "old"},
            "the teacher was trained on another split: split fingerprint 'old' differs from the current 'fp'",
        ),
    ],
    ids=["subset", "hash", "fingerprint"],
)
def test_check_single_teacher_says_what_differs(meta, message):
    with pytest.raises(LeakageError) as raised:
        check_single_teacher(meta, members_sha256=SHA_MEMBERS, split_fingerprint="fp")
    assert str(raised.value) == message
    if "fingerprint" in message:  # without a fingerprint to compare, only subset and hash are checked
        check_single_teacher(meta, members_sha256=SHA_MEMBERS, split_fingerprint=None)


def test_distill_checks_fingerprint_subset_names_and_image_shapes_before_training(tmp_path):
    """distill_student hands the split fingerprint and the subset names to the leakage check, and refuses
    halves of different image shapes, all before anything is written."""
    t1, t2 = constant_teacher(1.0, META1), constant_teacher(-1.0, META2)
    with pytest.raises(LeakageError, match="split fingerprint 'fp' differs from the current 'new'"):
        distill_student(
            half1=HALF1,
            half2=HALF2,
            teacher1=t1,
            teacher2=t2,
            half1_sha256=SHA1,
            half2_sha256=SHA2,
            split_fingerprint="new",
            probe_members=HALF1,
            probe_nonmembers=NONMEMBERS,
            model_cfg=MODEL,
            diffusion_cfg=DIFFUSION,
            train_cfg=TRAIN,
            distill_cfg=DistillConfig(),
            out_dir=tmp_path / "student",
            state_dir=tmp_path / "state",
            metadata=dict(STUDENT_META),
        )
    with pytest.raises(LeakageError, match="teacher1 was trained on subset 'half1', expected 'half1_ov50'"):
        distill(tmp_path, t1, t2, teacher_subsets=("half1_ov50", "half2_ov50"))
    with pytest.raises(ValueError) as raised:
        distill(tmp_path, t1, t2, half2=HALF2[:, :, :4, :6])
    assert str(raised.value) == "D1 images (1, 8, 8) and D2 images (1, 4, 6) differ"
    assert not (tmp_path / "student").exists() and not (tmp_path / "state").exists()
