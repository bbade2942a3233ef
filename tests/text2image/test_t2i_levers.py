"""The memory and precision levers of text-to-image training (`dualmd.text2image.levers`): each one applies."""

import copy
import sys

import pytest
import torch
from helpers.text2image import PRIVATE, short_run

from dualmd.config.text2image import Text2ImageConfig
from dualmd.models.adapter import Schedule
from dualmd.text2image.attack import CaptionedPredictor
from dualmd.text2image.batches import latent_source
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.finetune import (
    ConditionalTeacher,
    distill_unet,
    finetune_unet,
    frozen_parts,
    train_conditional,
)
from dualmd.text2image.levers import apply_tf32, bf16_autocast, optimizer_factory
from dualmd.train.loop import Conditioned, fit, make_accelerator, noise_target

MEMBERS = list(PRIVATE)[:16]
CPU = torch.device("cpu")


def _fixed_batch(step, generator):
    """The same conditional batch of 8 latents at every step (the loop still draws t and eps)."""
    g = torch.Generator().manual_seed(step)
    return Conditioned(
        x_0=torch.randn(8, 4, 8, 8, generator=g), encoder_hidden_states=torch.randn(8, 16, 32, generator=g)
    )


def test_gradient_checkpointing_is_on_in_the_trained_unet(parts, tmp_path):
    unet = copy.deepcopy(parts.unet)
    assert not unet.is_gradient_checkpointing
    train_conditional(
        parts=parts,
        unet=unet,
        batches=_fixed_batch,
        target_fn=noise_target,
        train_cfg=short_run(2, batch_size=8),
        state_dir=tmp_path / "state",
        description={},
        levers=Text2ImageConfig(gradient_checkpointing=True),
    )
    assert unet.is_gradient_checkpointing and unet.training


@pytest.mark.parametrize("micro", [2, 4])
def test_accumulation_gives_the_gradient_and_step_of_one_big_batch(parts, tmp_path, micro):
    """Micro-batches of 8 / micro: the losses and the gradients are the big batch's (to float rounding; SGD, so
    that the weights after a step show the gradient: Adam's normalised step would magnify rounding where the
    gradient is ~0); every draw is the same."""
    sgd = lambda params: torch.optim.SGD(params, lr=1.0)  # noqa: E731
    results, losses = [], []
    for steps in (1, micro):
        seen = []
        result = fit(
            unet=copy.deepcopy(parts.unet).train(),
            schedule=Schedule.from_scheduler(parts.scheduler),
            batches=_fixed_batch,
            target_fn=noise_target,
            cfg=short_run(3, batch_size=8, warmup_steps=0, grad_clip_norm=1e9),
            accelerator=make_accelerator(short_run(3)),
            state_dir=tmp_path / f"state{steps}",
            run_hash=str(steps),
            on_step=lambda info, seen=seen: seen.append(float(info.loss)),
            accumulation_steps=steps,
            make_optimizer=sgd,
        )
        results.append(result.unet.state_dict())
        losses.append(seen)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for k, v in results[0].items():
        torch.testing.assert_close(results[1][k], v, rtol=1e-5, atol=1e-5)


def test_accumulation_refuses_a_batch_it_cannot_divide(parts, tmp_path):
    with pytest.raises(ValueError, match="not divisible into 3 micro-batches"):
        train_conditional(
            parts=parts,
            unet=copy.deepcopy(parts.unet),
            batches=_fixed_batch,
            target_fn=noise_target,
            train_cfg=short_run(1, batch_size=8),
            state_dir=tmp_path / "state",
            description={},
            levers=Text2ImageConfig(gradient_accumulation_steps=3),
        )


def test_weight_decay_gives_adamw_and_none_keeps_the_package_adam():
    assert optimizer_factory(Text2ImageConfig(), lr=1e-3, device=CPU) is None
    make = optimizer_factory(Text2ImageConfig(adam_weight_decay=1e-2), lr=1e-3, device=CPU)
    opt = make([torch.nn.Parameter(torch.zeros(3))])
    assert type(opt) is torch.optim.AdamW
    assert opt.param_groups[0]["weight_decay"] == 1e-2 and opt.param_groups[0]["lr"] == 1e-3


def test_8bit_adam_is_refused_without_cuda_or_bitsandbytes(monkeypatch):
    levers = Text2ImageConfig(use_8bit_adam=True)
    with pytest.raises(RuntimeError, match="CUDA only, and training runs on cpu"):
        optimizer_factory(levers, lr=1e-3, device=CPU)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    with pytest.raises(RuntimeError, match="bitsandbytes is not installed"):
        optimizer_factory(levers, lr=1e-3, device=torch.device("cuda"))


def test_frozen_modules_are_copies_in_the_weight_dtype(parts):
    frozen = frozen_parts(parts, Text2ImageConfig(weight_dtype="bf16"), CPU)
    for name in ("vae", "text_encoder"):
        params = list(getattr(frozen, name).parameters())
        assert {p.dtype for p in params} == {torch.bfloat16} and not any(p.requires_grad for p in params)
        assert next(getattr(parts, name).parameters()).dtype == torch.float32  # what is saved stays fp32
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        frozen_parts(parts, Text2ImageConfig(weight_dtype="fp16"), CPU)


def test_a_bf16_teacher_takes_and_returns_fp32(parts):
    teacher = ConditionalTeacher(copy.deepcopy(parts.unet).to(torch.bfloat16))
    x_t, t, states = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 16, 32)
    exact = ConditionalTeacher(copy.deepcopy(parts.unet))(x_t, t, encoder_hidden_states=states)
    eps = teacher(x_t, t, encoder_hidden_states=states)
    assert eps.dtype == torch.float32
    torch.testing.assert_close(eps, exact, atol=0.1, rtol=0.1)


def test_latents_and_captions_are_cached_once_and_reused(parts, digits32, tmp_path, monkeypatch):
    from dualmd.text2image import batches, components
    from dualmd.text2image.levers import DiskCache

    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0, dropout=0.1)
    cache = DiskCache(tmp_path / "cache")
    first = latent_source(parts, images[MEMBERS], MEMBERS, sampler, batch_size=8, cache=cache)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert [f.split("-")[0] for f in files] == ["captions", "latents"]
    plain = latent_source(parts, images[MEMBERS], MEMBERS, sampler, batch_size=8)
    assert torch.equal(first.mean, plain.mean) and torch.equal(first.bank.states, plain.bank.states)

    def refuse(*args, **kwargs):
        raise AssertionError("encoded again although cached")

    monkeypatch.setattr(batches, "encode_images", refuse)
    monkeypatch.setattr(batches, "encode_prompts", refuse)
    again = latent_source(parts, images[MEMBERS], MEMBERS, sampler, batch_size=8, cache=cache)
    assert torch.equal(again.mean, first.mean) and torch.equal(again.std, first.std)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == files
    # another dtype of the VAE is another entry
    monkeypatch.setattr(batches, "encode_images", components.encode_images)
    monkeypatch.setattr(batches, "encode_prompts", components.encode_prompts)
    frozen = frozen_parts(parts, Text2ImageConfig(weight_dtype="bf16"), CPU)
    latent_source(frozen, images[MEMBERS], MEMBERS, sampler, batch_size=8, cache=cache)
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_tf32_flags_are_set_when_asked():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        apply_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32  # off: PyTorch's defaults are left alone
        apply_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_bf16_predictor_runs_under_autocast_and_returns_fp32(parts):
    dtypes = []
    hook = parts.unet.conv_in.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    states, x_t, t = torch.randn(2, 16, 32), torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    exact = CaptionedPredictor(parts.unet, states)(x_t, t)
    eps = CaptionedPredictor(parts.unet, states, mixed_precision="bf16")(x_t, t)
    hook.remove()
    assert dtypes == [torch.float32, torch.bfloat16] and eps.dtype == torch.float32
    torch.testing.assert_close(eps, exact, atol=0.1, rtol=0.1)
    with pytest.raises(ValueError, match="not supported on meta"), bf16_autocast("meta", True):
        pass


def test_finetuning_and_distillation_run_with_every_cpu_lever(parts, digits32, tmp_path):
    images, captions = digits32
    sampler = CaptionSampler(captions=captions, seed=0, dropout=0.1)
    levers = Text2ImageConfig(
        gradient_checkpointing=True,
        gradient_accumulation_steps=2,
        adam_weight_decay=1e-2,
        weight_dtype="bf16",
        allow_tf32=False,
    )
    common = {"sampler": sampler, "train_cfg": short_run(2, batch_size=8), "levers": levers}
    meta = finetune_unet(
        parts=parts,
        images=images[MEMBERS],
        image_ids=MEMBERS,
        out_dir=tmp_path / "baseline",
        state_dir=tmp_path / "s1",
        metadata={},
        cache_dir=tmp_path / "cache",
        **common,
    )
    assert meta["levers"]["weight_dtype"] == "bf16" and meta["levers"]["gradient_accumulation_steps"] == 2
    teacher1, teacher2 = copy.deepcopy(parts.unet), copy.deepcopy(parts.unet)
    distill_unet(
        parts=parts,
        half1=images[MEMBERS[:8]],
        half1_ids=MEMBERS[:8],
        half2=images[MEMBERS[8:]],
        half2_ids=MEMBERS[8:],
        teacher1=teacher1,
        teacher2=teacher2,
        out_dir=tmp_path / "student",
        state_dir=tmp_path / "s2",
        metadata={},
        cache_dir=tmp_path / "cache",
        **common,
    )
    assert next(teacher1.parameters()).dtype == torch.bfloat16  # the frozen teachers in the weight dtype
    assert next(parts.vae.parameters()).dtype == torch.float32
    kinds = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
    # latents of the members, of D1 and of D2; one caption bank: the student's captions are the baseline's
    assert kinds == ["captions", "latents", "latents", "latents"]
