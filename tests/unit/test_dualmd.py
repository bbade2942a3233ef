"""DualMD: which teacher denoises at each step, never an average, and the diffusers pipeline; the training
target the defenses are compared against (the baseline regresses the true noise)."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from helpers.models import TINY_MODEL, tiny_unet

from dualmd.config.sections import DiffusionConfig, TrainConfig
from dualmd.defense.dualmd import AlternatingTeachers, DualMDPipeline, teacher_sequence, to_pil
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler
from dualmd.sample import run_sampler
from dualmd.train.loop import RandomBatches, StepInfo, fit, make_accelerator, noise_target
from dualmd.train.run import train_model


class FakeTeacher:
    """Predicts a constant eps (+1 or -1) and logs (name, t) for every call."""

    def __init__(self, name: str, value: float, log: list):
        self.name, self.value, self.log = name, value, log

    def __call__(self, x_t, t):
        assert (t == t[0]).all()
        self.log.append((self.name, int(t[0])))
        return torch.full_like(x_t, self.value)


def fake_pair(alternation):
    log = []
    pair = AlternatingTeachers(
        teacher1=FakeTeacher("teacher1", 1.0, log),
        teacher2=FakeTeacher("teacher2", -1.0, log),
        alternation=alternation,
    )
    return pair, log


def test_parity_rule_of_the_authors_ddpm_code():
    seq = teacher_sequence(list(range(999, -1, -1)), "timestep_parity")
    assert seq[0] == 1  # t = 999 is odd -> teacher 1
    assert seq[-1] == 2  # t = 0 is even -> teacher 2
    assert seq == teacher_sequence(list(range(999, -1, -1)), "step_index")  # same chain under both rules


def test_rules_differ_when_chain_starts_at_even_timestep():
    timesteps = list(range(14, -1, -1))  # T = 15: the first timestep is even
    assert teacher_sequence(timesteps, "timestep_parity")[:2] == [2, 1]
    assert teacher_sequence(timesteps, "step_index")[:2] == [1, 2]


@pytest.mark.parametrize("num_train_timesteps", [20, 1000], ids=["T20", "T1000"])
def test_ddpm_full_chain_parity_uses_the_right_teacher_at_every_step(num_train_timesteps):
    pair, log = fake_pair("timestep_parity")
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
    run_sampler(pair, scheduler, num_images=2, image_shape=(1, 2, 2), num_inference_steps=num_train_timesteps)
    assert [t for _, t in log] == list(range(num_train_timesteps - 1, -1, -1))  # one call per step
    assert all(name == ("teacher1" if t % 2 else "teacher2") for name, t in log)


def test_ddim_step_index_alternates_starting_with_teacher1():
    pair, log = fake_pair("step_index")
    scheduler = DDIMScheduler(num_train_timesteps=20)
    run_sampler(pair, scheduler, num_images=3, image_shape=(1, 2, 2), num_inference_steps=5, batch_size=3)
    assert [name for name, _ in log] == ["teacher1", "teacher2", "teacher1", "teacher2", "teacher1"]
    assert [t for _, t in log] == [16, 12, 8, 4, 0]


def test_each_batch_runs_its_own_alternating_chain():
    pair, log = fake_pair("step_index")
    run_sampler(
        pair,
        DDIMScheduler(num_train_timesteps=20),
        num_images=5,
        image_shape=(1, 2, 2),
        num_inference_steps=4,
        batch_size=2,
    )
    assert [name[-1] for name, _ in log] == list("1212" * 3)  # 3 batches, 4 steps each


def test_outputs_are_never_averaged():
    # Reproduce the chain by hand with eps = +1 / -1 alternating; an average (eps = 0) would differ.
    pair, _ = fake_pair("step_index")
    scheduler = DDIMScheduler(num_train_timesteps=20, clip_sample=False)
    got = run_sampler(pair, scheduler, num_images=1, image_shape=(1, 2, 2), num_inference_steps=4, seed=7)
    x = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(7))
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(torch.full_like(x, 1.0 if i % 2 == 0 else -1.0), t, x).prev_sample
    assert torch.allclose(got, x.clamp(-1, 1), atol=1e-6)
    y = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(7))
    for t in scheduler.timesteps:
        y = scheduler.step(torch.zeros_like(y), t, y).prev_sample
    assert not torch.allclose(got, y.clamp(-1, 1), atol=1e-3)


def test_degenerate_parity_raises_before_any_step():
    pair, log = fake_pair("timestep_parity")
    with pytest.raises(ValueError, match="step_index"):
        run_sampler(
            pair,
            DDPMScheduler(num_train_timesteps=1000),
            num_images=1,
            image_shape=(1, 2, 2),
            num_inference_steps=50,
        )  # "leading" spacing: 980, 960, ... all even
    assert log == []


def test_parity_refusal_names_the_first_pair_of_same_parity_and_the_fixes():
    """A chain that alternates at first and gets stuck later (8 -> 6, then 3 -> 1) is refused, and the
    message names the first offending pair and both ways out (step_index, or the full chain)."""
    expected = (
        "DualMD timestep parity does not alternate the teachers on these timesteps (5 steps, e.g. t=8 and "
        "t=6 have the same parity, as with DDPM/DDIM 'leading' spacing at an even stride). Use "
        "sample.dualmd_alternation: step_index, or num_inference_steps = num_train_timesteps."
    )
    with pytest.raises(ValueError) as raised:
        teacher_sequence([9, 8, 6, 3, 1], "timestep_parity")
    assert str(raised.value) == expected
    assert teacher_sequence([9, 8, 7, 4, 1], "timestep_parity") == [1, 2, 1, 2, 1]  # odd strides alternate


def test_unknown_alternation_raises():
    with pytest.raises(ValueError, match="unknown DualMD alternation"):
        teacher_sequence([3, 2, 1], "average")


def test_pipeline_end_to_end_save_and_reload(tmp_path):
    scheduler = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=20).config)
    pipe = DualMDPipeline(unet1=tiny_unet(0), unet2=tiny_unet(1), scheduler=scheduler)
    images = pipe(3, num_inference_steps=4, eta=0.5, seed=2, batch_size=2)
    assert images.shape == (3, 1, 8, 8) and images.abs().max() <= 1.0
    assert pipe.teacher_sequence(4) == "1212"
    pipe.save_pretrained(tmp_path)
    again = DualMDPipeline.from_pretrained(tmp_path)
    assert isinstance(again.scheduler, DDIMScheduler)
    assert torch.allclose(again(3, num_inference_steps=4, eta=0.5, seed=2), images, atol=1e-5)
    pil = pipe(2, num_inference_steps=2, output_type="pil")
    assert len(pil) == 2 and pil[0].size == (8, 8) and pil[0].mode == "L"


def test_to_pil_maps_minus_one_to_black_and_one_to_white_and_clips_outside():
    """x in [-1, 1] -> round((x + 1) * 127.5) as 8-bit grey: -1 -> 0, 0 -> 128 (127.5 rounds to even), 0.5 ->
    191, 1 -> 255; values outside [-1, 1] saturate at 0 and 255 instead of wrapping around."""
    images = torch.tensor([[[[-1.0, 0.0, 0.5], [1.0, -1.5, 1.01]]]])
    (pil,) = to_pil(images)
    assert pil.mode == "L" and pil.size == (3, 2)
    assert np.array(pil).tolist() == [[0, 128, 191], [255, 0, 255]]


def test_to_pil_keeps_three_channels_as_rgb():
    """(N, 3, H, W) gives RGB images whose pixels hold each channel's value (not only the first channel)."""
    images = torch.tensor([[[[-1.0, 1.0]], [[0.0, -1.0]], [[1.0, 0.5]]]] * 2)  # (2, 3, 1, 2)
    pils = to_pil(images)
    assert len(pils) == 2
    for pil in pils:
        assert pil.mode == "RGB" and pil.size == (2, 1)
        assert pil.getpixel((0, 0)) == (0, 128, 255) and pil.getpixel((1, 0)) == (255, 0, 191)


def test_pipeline_teachers_differ_from_a_single_teacher():
    scheduler = DDPMScheduler(num_train_timesteps=10)
    dual = DualMDPipeline(unet1=tiny_unet(0), unet2=tiny_unet(1), scheduler=scheduler)
    same = DualMDPipeline(unet1=tiny_unet(0), unet2=tiny_unet(0), scheduler=scheduler)
    assert not torch.allclose(dual(2, seed=0), same(2, seed=0), atol=1e-4)


def test_pipeline_call_is_the_sampling_loop_with_every_setting_passed_on():
    """A DDIM chain of 5 of 15 steps (timesteps 12, 9, 6, 3, 0: parities alternate) with eta, seed and the parity
    rule: the pipeline gives exactly the images of the sampling loop run with the same settings."""
    scheduler = DDIMScheduler(num_train_timesteps=15)
    unet1, unet2 = tiny_unet(0), tiny_unet(1)
    pipe = DualMDPipeline(unet1=unet1, unet2=unet2, scheduler=scheduler)
    settings = {"num_inference_steps": 5, "eta": 0.3, "seed": 5, "batch_size": 2}
    images = pipe(3, alternation="timestep_parity", **settings)
    selector = AlternatingTeachers(
        teacher1=UNetPredictor(unet1), teacher2=UNetPredictor(unet2), alternation="timestep_parity"
    )
    expected = run_sampler(selector, scheduler, num_images=3, image_shape=(1, 8, 8), **settings)
    assert torch.equal(images, expected)
    assert pipe.teacher_sequence(5, "timestep_parity") == "21212"


def test_pipeline_defaults_are_one_image_from_seed_zero_and_an_unknown_output_type_is_named():
    pipe = DualMDPipeline(
        unet1=tiny_unet(0), unet2=tiny_unet(1), scheduler=DDIMScheduler(num_train_timesteps=6)
    )
    assert torch.equal(pipe(), pipe(1, seed=0))
    with pytest.raises(ValueError, match=r"^unknown output_type 'np'; use 'pt' or 'pil'$"):
        pipe(1, output_type="np")


# --- the baseline's training target -------------------------------------------------------------------------

TARGET_TRAIN = TrainConfig(
    num_train_steps=2,
    batch_size=4,
    warmup_steps=1,
    checkpoint_every_steps=10,
    log_every_steps=1,
    probe_timesteps=(3,),
    probe_num_images=2,
    seed=7,
)
# (6, 1, 8, 8) in [-1, 1], image i filled with (i - 2.5) / 3, so a batch shows which images it holds.
TARGET_IMAGES = ((torch.arange(6.0) - 2.5) / 3).view(6, 1, 1, 1).expand(6, 1, 8, 8).contiguous()


def replay_draws(seed: int, num_steps: int, num_images: int, batch_size: int, num_timesteps: int):
    """The loop's draws from its one generator seeded with train.seed: batch indices, t, eps per step."""
    gen = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(num_steps):
        idx = torch.randint(num_images, (batch_size,), generator=gen)
        t = torch.randint(num_timesteps, (batch_size,), generator=gen)
        draws.append((idx, t, torch.randn((batch_size, 1, 8, 8), generator=gen)))
    return draws


def test_baseline_target_is_the_noise_added_to_x0(tmp_path):
    """Through the loop's TargetFn seam with the baseline's `noise_target`: the target is exactly the eps
    drawn from the seeded generator, and x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps with
    alpha_bar from the linear betas (1e-4 .. 0.02 over T = 20, 0-indexed cumulative product)."""
    seen = []

    def recording_target(step, x_t, t, eps):
        seen.append(x_t.clone())
        return noise_target(step, x_t, t, eps)

    steps: list[StepInfo] = []
    scheduler = create_scheduler(DiffusionConfig(num_train_timesteps=20))
    fit(
        unet=tiny_unet(0),
        schedule=Schedule.from_scheduler(scheduler),
        batches=RandomBatches(images=TARGET_IMAGES, batch_size=4),
        target_fn=recording_target,
        cfg=TARGET_TRAIN,
        accelerator=make_accelerator(TARGET_TRAIN),
        state_dir=tmp_path / "state",
        run_hash="baseline-target",
        on_step=steps.append,
    )
    alpha_bar = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, 20)))
    assert len(steps) == 2 and len(seen) == 2
    for info, x_t, (idx, t, eps) in zip(steps, seen, replay_draws(7, 2, 6, 4, 20), strict=True):
        assert torch.equal(info.x_0, TARGET_IMAGES[idx]) and torch.equal(info.t, t)
        assert torch.equal(info.eps, eps)
        assert torch.equal(info.target, eps)  # the very tensor that was added to x_0, not x_0 or x_t
        a = alpha_bar[t].view(-1, 1, 1, 1)
        expected = a.sqrt() * info.x_0.double() + (1 - a).sqrt() * eps.double()
        torch.testing.assert_close(x_t.double(), expected, rtol=0, atol=1e-5)


def test_train_model_regresses_the_baseline_on_the_true_noise(tmp_path):
    """`train_model` (baseline and teachers) plugs in the true noise as target: target == eps bit for bit."""
    steps: list[StepInfo] = []
    train_model(
        images=TARGET_IMAGES,
        probe_members=TARGET_IMAGES[:2],
        probe_nonmembers=TARGET_IMAGES[2:4],
        model_cfg=TINY_MODEL,
        diffusion_cfg=DiffusionConfig(num_train_timesteps=20),
        train_cfg=TARGET_TRAIN,
        out_dir=tmp_path / "baseline",
        state_dir=tmp_path / "state",
        metadata={"model_id": "baseline"},
        on_step=steps.append,
    )
    assert [s.step for s in steps] == [0, 1]
    for info, (idx, _t, eps) in zip(steps, replay_draws(7, 2, 6, 4, 20), strict=True):
        assert torch.equal(info.x_0, TARGET_IMAGES[idx])
        assert torch.equal(info.eps, eps) and torch.equal(info.target, eps)
