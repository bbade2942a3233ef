"""DistillMD (Algorithm 2): cross-teacher targets, alternation of halves, leakage guard, real-teacher run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from helpers.models import TINY_MODEL

from dualmd.config.sections import DiffusionConfig, DistillConfig, TrainConfig
from dualmd.defense.distill import LeakageError, Teacher, check_teachers, distill_student, selfdistill_student
from dualmd.train.loop import StepInfo
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


def distill(tmp: Path, teacher1: Teacher, teacher2: Teacher, cfg: TrainConfig = TRAIN, **kw) -> dict:
    return distill_student(
        half1=HALF1,
        half2=HALF2,
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
