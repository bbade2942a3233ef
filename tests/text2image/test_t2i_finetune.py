"""Fine-tuning and DistillMD for the conditional UNet in latent space, through the one training loop."""

import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from helpers.text2image import PRIVATE, short_run

from dualmd.defense.distill import CrossTeacherTargets, LeakageError
from dualmd.text2image.batches import AlternatingSources, CaptionBank, latent_source
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import encode_prompts, tiny_cond_unet
from dualmd.text2image.finetune import (
    ConditionalTeacher,
    distill_unet,
    finetune_unet,
    load_finetuned_unet,
    load_teachers,
)
from dualmd.train.loop import Conditioned

MEMBERS = list(PRIVATE)[:16]


def test_batches_carry_latents_and_the_states_of_the_drawn_caption(parts, digits32):
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0, dropout=0.5)
    source = latent_source(parts, images[MEMBERS], MEMBERS, sampler, batch_size=8)
    batch = source(3, torch.Generator().manual_seed(0))
    assert isinstance(batch, Conditioned)
    assert batch.x_0.shape == (8, 4, 8, 8) and batch.encoder_hidden_states.shape == (8, 16, 32)
    again = source(3, torch.Generator().manual_seed(0))
    assert torch.equal(batch.x_0, again.x_0)  # every draw comes from the loop's generator and the seeds
    idx = torch.randint(len(MEMBERS), (8,), generator=torch.Generator().manual_seed(0))
    prompts = sampler(3, [MEMBERS[i] for i in idx])
    assert "" in prompts and any(prompts)  # some dropped, some kept at rate 0.5
    assert torch.allclose(batch.encoder_hidden_states, encode_prompts(parts, prompts), atol=1e-6)


def test_finetuned_pipeline_loads_in_diffusers_and_generates(parts, digits32, tmp_path):
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0, dropout=0.1)
    before = {k: v.clone() for k, v in parts.unet.state_dict().items()}
    meta = finetune_unet(
        parts=parts,
        images=images[MEMBERS],
        image_ids=MEMBERS,
        sampler=sampler,
        train_cfg=short_run(6),
        out_dir=tmp_path / "baseline",
        state_dir=tmp_path / "state",
        metadata={"model_id": "baseline"},
    )
    assert all(torch.equal(v, parts.unet.state_dict()[k]) for k, v in before.items())  # pretrained kept
    assert json.loads((tmp_path / "baseline/metadata.json").read_text())["model_id"] == meta["model_id"]
    raw = load_finetuned_unet(tmp_path / "baseline", "raw")
    assert any(not torch.equal(v, before[k]) for k, v in raw.state_dict().items())  # it trained
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "baseline", safety_checker=None)
    out = pipe(
        ["a handwritten digit seven"],
        num_inference_steps=3,
        height=32,
        width=32,
        guidance_scale=7.5,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_student_targets_come_from_the_teacher_that_did_not_see_the_half():
    t1, t2 = ConditionalTeacher(tiny_cond_unet(seed=1)), ConditionalTeacher(tiny_cond_unet(seed=2))
    targets = CrossTeacherTargets(teacher1=t1, teacher2=t2)
    x_t, t, eps = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 4, 8, 8)
    states = torch.randn(2, 16, 32)
    even = targets(0, x_t, t, eps, encoder_hidden_states=states)  # D1 batch -> teacher 2
    odd = targets(1, x_t, t, eps, encoder_hidden_states=states)  # D2 batch -> teacher 1
    assert torch.equal(even, t2(x_t, t, encoder_hidden_states=states))
    assert torch.equal(odd, t1(x_t, t, encoder_hidden_states=states))
    assert not torch.allclose(even, odd)
    sources = AlternatingSources(half1=lambda s, g: "D1", half2=lambda s, g: "D2")
    assert [sources(s, None) for s in range(4)] == ["D1", "D2", "D1", "D2"]


def test_distilled_student_starts_from_the_pretrained_unet_and_saves_a_pipeline(parts, digits32, tmp_path):
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0)
    half1, half2 = MEMBERS[:8], MEMBERS[8:]
    bank = CaptionBank.encode(parts, captions)
    assert bank([""]).shape == (1, 16, 32)
    distill_unet(
        parts=parts,
        half1=images[half1],
        half1_ids=half1,
        half2=images[half2],
        half2_ids=half2,
        teacher1=tiny_cond_unet(seed=1),
        teacher2=tiny_cond_unet(seed=2),
        sampler=sampler,
        train_cfg=short_run(2, lr=1e-6, warmup_steps=1),
        out_dir=tmp_path / "student",
        state_dir=tmp_path / "state",
        metadata={"model_id": "student"},
    )
    student = load_finetuned_unet(tmp_path / "student", "raw")
    # Two steps at a tiny learning rate: still next to the pretrained weights, far from a random init.
    pre, rnd = parts.unet.state_dict(), tiny_cond_unet(seed=3).state_dict()
    gap_pre = sum((student.state_dict()[k] - v).abs().sum() for k, v in pre.items())
    gap_rnd = sum((student.state_dict()[k] - v).abs().sum() for k, v in rnd.items())
    assert gap_pre < 0.01 * gap_rnd
    assert StableDiffusionPipeline.from_pretrained(tmp_path / "student", safety_checker=None).unet is not None


def test_teachers_load_only_for_the_halves_they_learnt(parts, digits32, tmp_path):
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0)
    halves = {"half1": MEMBERS[:8], "half2": MEMBERS[8:]}
    for name, ids in halves.items():
        finetune_unet(
            parts=parts,
            images=images[ids],
            image_ids=ids,
            sampler=sampler,
            train_cfg=short_run(1),
            out_dir=tmp_path / name,
            state_dir=tmp_path / f"state_{name}",
            metadata={"model_id": name, "subset": name, "subset_sha256": f"sha-{name}"},
        )
    unet1, unet2 = load_teachers(
        tmp_path / "half1",
        tmp_path / "half2",
        weights="raw",
        half1_sha256="sha-half1",
        half2_sha256="sha-half2",
    )
    assert not torch.equal(unet1.conv_in.weight, unet2.conv_in.weight)
    with pytest.raises(LeakageError, match="swapped"):
        load_teachers(
            tmp_path / "half2",
            tmp_path / "half1",
            weights="raw",
            half1_sha256="sha-half1",
            half2_sha256="sha-half2",
        )
    with pytest.raises(LeakageError, match="another split"):
        load_teachers(
            tmp_path / "half1",
            tmp_path / "half2",
            weights="raw",
            half1_sha256="sha-new",
            half2_sha256="sha-half2",
        )


def test_a_resumed_conditional_run_reproduces_an_uninterrupted_one(parts, digits32, tmp_path):
    import copy

    from dualmd.models.adapter import Schedule
    from dualmd.train.loop import fit, make_accelerator, noise_target

    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=5, dropout=0.3)
    source = latent_source(parts, images[MEMBERS], MEMBERS, sampler, batch_size=4)
    cfg = short_run(4, checkpoint_every_steps=2)

    def train(state_dir, on_step=None):
        return fit(
            unet=copy.deepcopy(parts.unet),
            schedule=Schedule.from_scheduler(parts.scheduler),
            batches=source,
            target_fn=noise_target,
            cfg=cfg,
            accelerator=make_accelerator(cfg),
            state_dir=state_dir,
            run_hash="resume-test",
            on_step=on_step,
        ).unet.state_dict()

    whole = train(tmp_path / "whole")

    def stop_after_checkpoint(info):
        if info.step == 1:  # the state of step 2 is saved before the hook runs
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", stop_after_checkpoint)
    resumed = train(tmp_path / "resumed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_finished_state_is_not_resumed_on_another_pretrained_pipeline(parts, digits32, tmp_path):
    """The run hash holds the pretrained UNet's and text encoder's weights: after the stand-in is pretrained again,
    a fine-tune left in the same state folder trains from the new weights instead of returning the old result."""
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0, dropout=0.1)

    def finetune(state, out):
        finetune_unet(
            parts=parts,
            images=images[MEMBERS],
            image_ids=MEMBERS,
            sampler=sampler,
            train_cfg=short_run(3),
            out_dir=tmp_path / out,
            state_dir=tmp_path / state,
            metadata={"model_id": "baseline"},
        )
        return load_finetuned_unet(tmp_path / out, "raw").state_dict()

    old = finetune("state", "old")
    with torch.no_grad():  # "pretrained again": other text-encoder weights, the same UNet
        next(parts.text_encoder.parameters()).mul_(2.0)
    again = finetune("state", "again")  # the finished state of `old` lies in this folder
    fresh = finetune("fresh_state", "fresh")
    assert all(torch.equal(again[k], fresh[k]) for k in fresh)
    assert any(not torch.equal(again[k], old[k]) for k in old)
    meta = json.loads((tmp_path / "again/metadata.json").read_text())
    assert set(meta["init"]) == {"unet_sha256", "text_encoder_sha256"}
