"""Sampling loop, per-image seeds, sample files and the `generate` entry point."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from helpers.models import tiny_model_dir, tiny_unet
from PIL import Image

from dualmd.config.sections import SampleConfig
from dualmd.images import load_samples, save_samples
from dualmd.models.adapter import UNetPredictor
from dualmd.models.directory import load_unet
from dualmd.sample import (
    SinglePredictor,
    build_scheduler,
    image_generators,
    run_sampler,
    sample_images,
    scheduler_overrides,
)
from dualmd.samplers import generate, load_sampler

TEACHER_VALUES = {"teacher1": 0.5, "teacher2": -0.5}


def constant_model_dir(path, value: float, num_train_timesteps: int = 20):
    """A model directory whose UNet predicts `value` at every pixel (conv_out weights 0, bias `value`)."""
    unet = tiny_unet(0)
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.fill_(value)
    for sub in ("unet", "unet_ema"):
        unet.save_pretrained(path / sub)
    DDPMScheduler(num_train_timesteps=num_train_timesteps).save_pretrained(path / "scheduler")
    return path


@pytest.fixture
def teacher_log(monkeypatch):
    """(teacher, t) of every predictor call `generate` makes; the teacher is read off its constant output."""
    log = []
    by_value = {v: name for name, v in TEACHER_VALUES.items()}

    class Recording(UNetPredictor):
        def __call__(self, x_t, t):
            eps = super().__call__(x_t, t)
            assert (t == t[0]).all()
            log.append((by_value[float(eps.flatten()[0])], int(t[0])))
            return eps

    monkeypatch.setattr("dualmd.samplers.UNetPredictor", Recording)
    return log


@pytest.fixture
def base_scheduler():
    return DDPMScheduler(num_train_timesteps=20, clip_sample=True)


@pytest.mark.parametrize(
    ("kind", "steps", "eta"),
    [("ddpm", 20, 0.0), ("ddpm", 5, 0.0), ("ddim", 5, 0.0), ("ddim", 5, 1.0)],
    ids=["ddpm_full", "ddpm_5", "ddim_eta0", "ddim_eta1"],
)
def test_images_do_not_depend_on_batch_size(base_scheduler, kind, steps, eta):
    predictor = UNetPredictor(tiny_unet(0))
    cfg = SampleConfig(num_images=8, scheduler=kind, num_inference_steps=steps, eta=eta, seed=3, batch_size=3)
    small = sample_images(predictor, base_scheduler, cfg, (1, 8, 8))
    large = sample_images(
        predictor, base_scheduler, SampleConfig(**{**cfg.to_dict(), "batch_size": 8}), (1, 8, 8)
    )
    assert small.shape == (8, 1, 8, 8) and small.dtype == torch.float32
    assert torch.allclose(small, large, atol=1e-5)
    assert small.abs().max() <= 1.0


def test_image_i_depends_only_on_seed_plus_i(base_scheduler):
    predictor = UNetPredictor(tiny_unet(0))
    run = {"image_shape": (1, 8, 8), "num_inference_steps": 5}
    eight = run_sampler(predictor, build_scheduler("ddpm", base_scheduler), num_images=8, seed=10, **run)
    shifted = run_sampler(predictor, build_scheduler("ddpm", base_scheduler), num_images=3, seed=13, **run)
    assert torch.allclose(eight[3:6], shifted, atol=1e-5)
    assert not torch.allclose(eight[0], eight[1], atol=1e-3)  # different seeds, different images


def test_eta_is_refused_for_ddpm(base_scheduler):
    with pytest.raises(ValueError, match="DDIM"):
        run_sampler(
            UNetPredictor(tiny_unet(0)),
            build_scheduler("ddpm", base_scheduler),
            num_images=1,
            image_shape=(1, 8, 8),
            num_inference_steps=2,
            eta=0.5,
        )


def test_build_scheduler_keeps_the_training_schedule(base_scheduler):
    ddim = build_scheduler("ddim", base_scheduler)
    assert isinstance(ddim, DDIMScheduler)
    assert torch.allclose(ddim.alphas_cumprod, base_scheduler.alphas_cumprod)
    with pytest.raises(ValueError, match="unknown scheduler"):
        build_scheduler("euler", base_scheduler)


def pytorch_ddpm_sampler(eps_fn, alphas_bar: torch.Tensor, generators, shape) -> torch.Tensor:
    """The authors' ancestral sampler written out (pytorch-ddpm, `fixedlarge`): posterior mean from the
    unclipped x_0 prediction, variance beta_t, no noise at t = 0, final clip. beta_t is recovered from
    alphas_bar as diffusers does, so that both round the same way in float32."""
    alphas_bar_prev = torch.cat([torch.ones(1), alphas_bar[:-1]])
    betas = 1 - alphas_bar / alphas_bar_prev
    coef_x0 = betas * alphas_bar_prev.sqrt() / (1 - alphas_bar)
    coef_xt = (1 - alphas_bar_prev) * (1 - betas).sqrt() / (1 - alphas_bar)
    x = torch.cat([torch.randn((1, *shape), generator=g) for g in generators])
    for t in reversed(range(len(betas))):
        eps = eps_fn(x, t)
        x0 = (x - (1 - alphas_bar[t]).sqrt() * eps) / alphas_bar[t].sqrt()
        mean = coef_x0[t] * x0 + coef_xt[t] * x
        noise = torch.cat([torch.randn((1, *shape), generator=g) for g in generators]) if t > 0 else 0
        x = mean + betas[t].sqrt() * noise
    return x.clamp(-1, 1)


def test_ddpm_fixed_large_without_x0_clip_is_the_authors_sampler(base_scheduler):
    class Linear:
        def __call__(self, x, t):
            return 0.9 * x + 0.01 * t.view(-1, 1, 1, 1)

    cfg = SampleConfig(
        num_images=3, scheduler="ddpm", num_inference_steps=20, variance_type="fixed_large", clip_sample=False
    )
    ours = sample_images(Linear(), base_scheduler, cfg, (1, 4, 4))
    theirs = pytorch_ddpm_sampler(
        lambda x, t: 0.9 * x + 0.01 * t, base_scheduler.alphas_cumprod, image_generators(0, 0, 3), (1, 4, 4)
    )
    assert torch.allclose(ours, theirs, atol=1e-5)
    # each option changes the images: diffusers' defaults are fixed_small variance and a clipped x_0
    for change in ({"variance_type": "fixed_small"}, {"clip_sample": True}):
        other = sample_images(
            Linear(), base_scheduler, SampleConfig(**{**cfg.to_dict(), **change}), (1, 4, 4)
        )
        assert not torch.allclose(other, ours, atol=1e-3), change


def test_sampling_options_reach_the_scheduler(base_scheduler):
    ddpm = build_scheduler(
        "ddpm",
        base_scheduler,
        **scheduler_overrides(SampleConfig(scheduler="ddpm", variance_type="fixed_large", clip_sample=False)),
    )
    assert ddpm.config.variance_type == "fixed_large" and ddpm.config.clip_sample is False
    ddim_overrides = scheduler_overrides(
        SampleConfig(scheduler="ddim", variance_type="fixed_large", clip_sample=False)
    )
    assert ddim_overrides == {"clip_sample": False}  # DDIM's variance comes from eta alone
    assert base_scheduler.config.variance_type == "fixed_small" and base_scheduler.config.clip_sample


def test_single_predictor_is_used_at_every_step():
    calls = []
    selector = SinglePredictor(lambda x, t: calls.append(int(t[0])) or torch.zeros_like(x))
    run_sampler(
        selector,
        DDIMScheduler(num_train_timesteps=20),
        num_images=1,
        image_shape=(1, 2, 2),
        num_inference_steps=4,
    )
    assert calls == [15, 10, 5, 0]


def test_save_and_load_samples_round_trip(tmp_path):
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    save_samples(images, tmp_path / "s.npz", tmp_path / "grid.png", nrow=4)
    assert torch.equal(load_samples(tmp_path / "s.npz"), images)
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (4 * 34 + 2, 2 * 34 + 2)  # 4 x 2 images of 8 px shown at 32 px, 2 px padding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "s.npz"]  # no temporary files left


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((2, 1, 4, 4), np.float32)}, "no 'images'"),
        ({"images": np.zeros((2, 4, 4), np.float32)}, "shape"),
        ({"images": np.full((2, 1, 4, 4), 3.0, np.float32)}, r"\[-1, 1\]"),
        ({"images": np.zeros((2, 1, 4, 4), np.float64)}, "float32"),
    ],
    ids=["missing_key", "not_4d", "out_of_range", "float64"],
)
def test_load_samples_rejects_malformed_files(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_samples(tmp_path / "bad.npz")


def test_generate_dualmd_records_the_teacher_sequence(tmp_path):
    dirs = {
        m: tiny_model_dir(tmp_path / m, seed) for seed, m in enumerate(["teacher1", "teacher2", "baseline"])
    }
    cfg = SampleConfig(num_images=3, scheduler="ddim", num_inference_steps=5, batch_size=2)
    images, info = generate("dualmd", dirs, cfg)
    assert images.shape == (3, 1, 8, 8)
    assert info["teacher_sequence"] == "12121" and info["alternation"] == "step_index"
    assert set(info["models"]) == {"teacher1", "teacher2"}
    json.dumps(info)  # provenance must be serialisable
    single, info1 = generate("baseline", dirs, cfg)
    assert "teacher_sequence" not in info1 and not torch.allclose(single, images, atol=1e-4)


def test_generate_refuses_missing_or_mismatched_teachers(tmp_path):
    dirs = {
        "teacher1": tiny_model_dir(tmp_path / "t1", 0),
        "teacher2": tiny_model_dir(tmp_path / "t2", 1, 30),
    }
    cfg = SampleConfig(num_images=1, num_inference_steps=2)
    with pytest.raises(ValueError, match="noise schedule"):
        generate("dualmd", dirs, cfg)
    with pytest.raises(ValueError, match="student"):
        generate("student", dirs, cfg)


def test_generate_dualmd_runs_teacher1_first_then_alternates(tmp_path, teacher_log):
    """DDIM, T = 20, 5 steps (t = 16, 12, 8, 4, 0), step_index rule: teachers 1, 2, 1, 2, 1, and each step's
    output is what moves x_t (the image equals the chain replayed by hand with eps = +0.5, -0.5, ...)."""
    dirs = {m: constant_model_dir(tmp_path / m, v) for m, v in TEACHER_VALUES.items()}
    cfg = SampleConfig(num_images=1, scheduler="ddim", num_inference_steps=5, seed=4)
    images, info = generate("dualmd", dirs, cfg)
    t1, t2 = "teacher1", "teacher2"
    assert teacher_log == [(t1, 16), (t2, 12), (t1, 8), (t2, 4), (t1, 0)]
    assert info["teacher_sequence"] == "12121"

    def replay(values):
        scheduler = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=20).config)
        scheduler.set_timesteps(5)
        x = torch.randn((1, 1, 8, 8), generator=torch.Generator().manual_seed(4))
        for value, t in zip(values, scheduler.timesteps, strict=True):
            x = scheduler.step(torch.full_like(x, value), t, x).prev_sample
        return x.clamp(-1, 1)

    torch.testing.assert_close(images, replay([0.5, -0.5, 0.5, -0.5, 0.5]), rtol=0, atol=1e-6)
    assert not torch.allclose(images, replay([-0.5, 0.5, -0.5, 0.5, -0.5]), atol=1e-3)  # swapped teachers


def test_generate_dualmd_timestep_parity_on_the_full_ddpm_chain(tmp_path, teacher_log):
    """DDPM, all 20 steps, timestep_parity rule: t odd -> teacher 1 (t = 19 first), t even -> teacher 2."""
    dirs = {m: constant_model_dir(tmp_path / m, v) for m, v in TEACHER_VALUES.items()}
    cfg = SampleConfig(
        num_images=2, scheduler="ddpm", num_inference_steps=20, dualmd_alternation="timestep_parity"
    )
    _, info = generate("dualmd", dirs, cfg)
    expected = [("teacher1" if t % 2 else "teacher2", t) for t in range(19, -1, -1)]
    assert teacher_log == expected
    assert info["teacher_sequence"] == "12" * 10


def test_generate_dualmd_timestep_parity_from_an_even_timestep_starts_with_teacher2(tmp_path, teacher_log):
    """DDPM, T = 21, all 21 steps (t = 20, 19, ..., 0), timestep_parity rule: t = 20 is even, so teacher 2 takes
    the first step, where the step_index rule would start with teacher 1; the rule chosen reaches the sampler."""
    dirs = {m: constant_model_dir(tmp_path / m, v, num_train_timesteps=21) for m, v in TEACHER_VALUES.items()}
    cfg = SampleConfig(
        num_images=1, scheduler="ddpm", num_inference_steps=21, dualmd_alternation="timestep_parity"
    )
    _, info = generate("dualmd", dirs, cfg)
    assert teacher_log == [("teacher1" if t % 2 else "teacher2", t) for t in range(20, -1, -1)]
    assert teacher_log[0] == ("teacher2", 20)
    assert info["teacher_sequence"] == "2" + "12" * 10 and info["alternation"] == "timestep_parity"


def test_generate_records_its_sampling_provenance(tmp_path):
    """Every setting that shapes the images is recorded: eta only for DDIM, the variance only for DDPM, the
    model directories actually used, and for DualMD the rule and the teacher at each step."""
    dirs = {m: tiny_model_dir(tmp_path / m, seed) for seed, m in enumerate(["teacher1", "teacher2"])}
    ddim = SampleConfig(
        num_images=2,
        scheduler="ddim",
        num_inference_steps=5,
        eta=0.5,
        variance_type="fixed_large",
        clip_sample=False,
        weights="raw",
        seed=3,
        batch_size=2,
    )
    _, info = generate("dualmd", dirs, ddim)
    assert info == {
        "sampler": "dualmd",
        "models": {"teacher1": str(dirs["teacher1"]), "teacher2": str(dirs["teacher2"])},
        "weights": "raw",
        "scheduler": "ddim",
        "num_inference_steps": 5,
        "num_train_timesteps": 20,
        "eta": 0.5,
        "variance_type": None,
        "clip_sample": False,
        "timestep_spacing": "leading",
        "num_images": 2,
        "seed": 3,
        "alternation": "step_index",
        "teacher_sequence": "12121",
    }
    ddpm = SampleConfig(
        num_images=1, scheduler="ddpm", num_inference_steps=4, eta=0.0, variance_type="fixed_large", seed=5
    )
    _, info = generate("teacher2", dirs, ddpm)
    assert info == {
        "sampler": "teacher2",
        "models": {"teacher2": str(dirs["teacher2"])},
        "weights": "ema",
        "scheduler": "ddpm",
        "num_inference_steps": 4,
        "num_train_timesteps": 20,
        "eta": None,
        "variance_type": "fixed_large",
        "clip_sample": True,
        "timestep_spacing": "leading",
        "num_images": 1,
        "seed": 5,
    }


def test_generate_runs_models_and_chain_on_the_requested_device(tmp_path, monkeypatch):
    """`generate(device=...)` loads every UNet there and runs the sampling chain there, and the sampling
    config's compile and mixed-precision options reach each model's predictor."""
    dirs = {m: tiny_model_dir(tmp_path / m, seed) for seed, m in enumerate(["teacher1", "teacher2"])}
    loaded, predictors, chains = [], [], []

    def recording_load_unet(model_dir, weights, *args, **kwargs):
        loaded.append((Path(model_dir).name, weights, args, kwargs))
        return load_unet(model_dir, weights, "cpu")

    class RecordingPredictor(UNetPredictor):
        def __init__(self, unet, **options):
            predictors.append(options)
            super().__init__(unet)  # uncompiled, fp32: only the options passed are under test

    def recording_sample_images(selector, base, cfg, shape, *args, **kwargs):
        chains.append((args, kwargs))
        return sample_images(selector, base, cfg, shape)

    monkeypatch.setattr("dualmd.samplers.load_unet", recording_load_unet)
    monkeypatch.setattr("dualmd.samplers.UNetPredictor", RecordingPredictor)
    monkeypatch.setattr("dualmd.samplers.sample_images", recording_sample_images)
    device = torch.device("cpu", 0)
    cfg = SampleConfig(
        num_images=1, num_inference_steps=2, weights="raw", compile=True, mixed_precision="bf16"
    )
    generate("dualmd", dirs, cfg, device=device)
    assert loaded == [("teacher1", "raw", (device,), {}), ("teacher2", "raw", (device,), {})]
    assert predictors == [{"compile": True, "mixed_precision": "bf16"}] * 2
    assert chains == [((), {"device": device})]


def test_load_sampler_defaults_to_uncompiled_fp32_teachers_on_the_cpu(tmp_path):
    """Without options the pair's teachers are plain fp32 forwards of the CPU UNets of teacher 1 and teacher 2
    (in that order), alternating by the rule asked for."""
    dirs = {m: tiny_model_dir(tmp_path / m, seed) for seed, m in enumerate(["teacher1", "teacher2"])}
    selector, base, shape = load_sampler("dualmd", dirs, weights="ema", alternation="timestep_parity")
    assert selector.alternation == "timestep_parity" and shape == (1, 8, 8)
    assert base.config.num_train_timesteps == 20
    for teacher, seed in ((selector.teacher1, 0), (selector.teacher2, 1)):
        assert teacher.device == torch.device("cpu") and teacher.autocast is False
        assert teacher._forward is teacher.unet  # not wrapped by torch.compile
        expected = tiny_unet(seed).state_dict()
        assert all(torch.equal(v, expected[k]) for k, v in teacher.unet.state_dict().items())


def test_mismatched_schedules_name_both_model_directories(tmp_path):
    """The refusal says which directory's schedule differs from which (the second from the first)."""
    first, second = tiny_model_dir(tmp_path / "t1", 0), tiny_model_dir(tmp_path / "t2", 1, 30)
    dirs = {"teacher1": first, "teacher2": second}
    with pytest.raises(ValueError) as raised:
        generate("dualmd", dirs, SampleConfig(num_images=1, num_inference_steps=2))
    assert str(raised.value) == f"{second} was trained with another noise schedule than {first}"
