"""The fast paths of issue 14 on the CPU: each changes speed, not results.

Training options (channels_last, fused_adam, ema_lerp, data_on_device, bf16 autocast, compile) reproduce the
plain run to float rounding and resume exactly; the sampler and attack forwards agree compiled and eager; bf16
attack scores give metrics inside the fp32 run's bootstrap interval.

torch.compile with its default backend (inductor, which compiles C++ with gcc on the CPU) takes ~40 s for a tiny
UNet's forward and backward, so those tests are `slow`; their fast variants compile through the "aot_eager"
backend, which runs the same graph capture (dynamo and AOT autograd) without code generation.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from diffusers import DDIMScheduler, DDPMScheduler
from helpers.models import TINY_MODEL, tiny_model_dir, tiny_unet
from helpers.training import DIFFUSION, TRAIN, Interrupt, interrupt_at, load_weights, run, tiny_images

from dualmd.attacks.run import attack_model
from dualmd.config.attacks import AttackConfig, LossAttackConfig, PIAConfig
from dualmd.config.evaluation import MetricsConfig
from dualmd.defense.distill import AlternatingBatches, CrossTeacherTargets
from dualmd.metrics import summarize
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.models.unet import create_scheduler, create_unet
from dualmd.sample import run_sampler
from dualmd.train.checkpoint import run_hash
from dualmd.train.loop import RandomBatches, ema_step, fit, make_accelerator, make_ema

#: Every training fast path that runs eagerly (compile has tests of its own).
EAGER_FAST = {"channels_last": True, "fused_adam": True, "ema_lerp": True, "data_on_device": True}


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Accelerate keeps one mixed-precision setting per process: reset it around each test of this file."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def fast_compile(monkeypatch):
    """torch.compile through the "aot_eager" backend: dynamo and AOT autograd, no C++ code generation."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def assert_weights_close(a: dict, b: dict, *, atol: float = 1e-3, rtol: float = 1e-4) -> None:
    """Weights of two runs that differ by float rounding. Adam divides by sqrt(v): a rounding difference in a
    near-zero gradient can move a weight by up to lr per step, so the bound is half of one step (TRAIN.lr 2e-3);
    observed: <= 1.6e-4 after 12 steps."""
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=rtol, msg=k)


# --- EMA --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["ramp", "constant"])
def test_ema_lerp_equals_diffusers_ema(schedule):
    cfg = replace(TRAIN, ema_schedule=schedule, ema_decay=0.9)
    unet = tiny_unet(0)
    params = list(unet.parameters())
    reference, lerp = make_ema(unet, cfg), make_ema(unet, cfg)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        with torch.no_grad():
            for p in params:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        ema_step(reference, params, lerp=False)
        ema_step(lerp, params, lerp=True)
        assert lerp.optimization_step == reference.optimization_step
        assert lerp.cur_decay_value == reference.cur_decay_value
    for a, b in zip(lerp.shadow_params, reference.shadow_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert not a.requires_grad
    # the states are interchangeable: same keys, a lerp state loads into a diffusers EMA
    assert lerp.state_dict().keys() == reference.state_dict().keys()
    reference.load_state_dict(lerp.state_dict())


# --- mixed precision on the CPU ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU's behaviour")
def test_bf16_applies_on_the_cpu_and_fp16_is_refused():
    with pytest.raises(ValueError, match="train.mixed_precision: fp16 needs a CUDA device"):
        make_accelerator(replace(TRAIN, mixed_precision="fp16"))
    accelerator = make_accelerator(replace(TRAIN, mixed_precision="bf16"))
    assert accelerator.mixed_precision == "bf16"
    unet, dtypes = tiny_unet(0), []
    unet.conv_in.register_forward_hook(lambda module, inputs, out: dtypes.append(out.dtype))
    with accelerator.autocast():
        unet(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]))
    assert dtypes == [torch.bfloat16]


# --- training: eager fast paths ---------------------------------------------------------------------------


def test_eager_fast_paths_reproduce_the_plain_run(tmp_path):
    plain = run(tmp_path, "plain", replace(TRAIN, hflip=True), snapshot_steps=(6,))
    fast = run(tmp_path, "fast", replace(TRAIN, hflip=True, **EAGER_FAST), snapshot_steps=(6,))
    assert fast["config"]["train"]["channels_last"] is True
    np.testing.assert_allclose(
        [v for _, v in fast["loss_curve"]], [v for _, v in plain["loss_curve"]], rtol=1e-4
    )
    # the final weights, and those kept mid-run while the weights were NHWC
    for sub in ("unet", "unet_ema", "checkpoints/6/unet", "checkpoints/6/unet_ema"):
        a, b = load_weights(tmp_path / "fast", sub), load_weights(tmp_path / "plain", sub)
        assert_weights_close(a, b)
        assert all(v.is_contiguous() for v in a.values())  # saved as ordinary NCHW weights


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fast_paths_with_bf16_resume_exactly(tmp_path, request, compiled):
    if compiled:
        request.getfixturevalue("fast_compile")
    cfg = replace(TRAIN, hflip=True, mixed_precision="bf16", compile=compiled, **EAGER_FAST)
    full = run(tmp_path, "full", cfg)
    assert full["mixed_precision"] == "bf16"
    with pytest.raises(Interrupt):
        run(tmp_path, "resumed", cfg, on_step=interrupt_at(7))
    resumed = run(tmp_path, "resumed", cfg)
    assert resumed["resumed_from_step"] == 5 and resumed["loss_curve"] == full["loss_curve"]
    for sub in ("unet", "unet_ema"):
        a, b = load_weights(tmp_path / "full", sub), load_weights(tmp_path / "resumed", sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub


def test_a_plain_state_resumes_with_the_fast_paths_on(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path, "switched", TRAIN, on_step=interrupt_at(7))
    switched = run(tmp_path, "switched", replace(TRAIN, **EAGER_FAST))
    assert switched["resumed_from_step"] == 5  # the fast paths do not enter the run hash
    run(tmp_path, "plain", TRAIN)
    for sub in ("unet", "unet_ema"):
        assert_weights_close(load_weights(tmp_path / "switched", sub), load_weights(tmp_path / "plain", sub))


@pytest.mark.parametrize(
    "options",
    [
        {"channels_last": True, "ema_lerp": True, "data_on_device": True},
        {"fused_adam": True, "ema_lerp": True, "data_on_device": True},
    ],
    ids=["nhwc", "fused-adam"],
)
def test_dp_sgd_runs_with_the_eager_fast_paths(tmp_path, options):
    fast = run(tmp_path, "dp_fast", replace(TRAIN, **options), dp_epsilon=8.0)
    plain = run(tmp_path, "dp_plain", TRAIN, dp_epsilon=8.0)
    assert fast["dp"] == plain["dp"]
    # Poisson batches and Opacus' noise draw the same numbers, so the runs agree to rounding
    assert_weights_close(
        load_weights(tmp_path / "dp_fast", "unet"), load_weights(tmp_path / "dp_plain", "unet")
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compile": True}, "train.compile cannot combine with DP-SGD"),
        (
            {"channels_last": True, "fused_adam": True},
            "train.fused_adam cannot combine with train.channels_last",
        ),
    ],
    ids=["compile", "nhwc-fused-adam"],
)
def test_dp_sgd_refuses_incompatible_fast_paths(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path, "dp", replace(TRAIN, **options), dp_epsilon=8.0)


def test_data_on_device_needs_a_movable_batch_source(tmp_path):
    def opaque(step, generator):
        return torch.zeros(4, 1, 8, 8)

    with pytest.raises(ValueError, match="train.data_on_device: the batch source function"):
        fit_steps(tmp_path, replace(TRAIN, data_on_device=True), batches=opaque)


# --- training: compile --------------------------------------------------------------------------------------


def fit_steps(tmp_path, cfg, *, batches=None, target_fn=None, num_steps: int = 4) -> tuple[list[float], dict]:
    """`num_steps` steps of `fit` on the tiny data; (per-step losses, final raw weights)."""
    from dualmd.train.loop import noise_target

    cfg = replace(cfg, num_train_steps=num_steps, checkpoint_every_steps=100)
    losses: list[float] = []
    torch.manual_seed(0)
    result = fit(
        unet=create_unet(model=TINY_MODEL, image_size=8, channels=1),
        schedule=Schedule.from_scheduler(create_scheduler(DIFFUSION)),
        batches=batches or RandomBatches(images=tiny_images(32, seed=0), batch_size=cfg.batch_size),
        target_fn=target_fn or noise_target,
        cfg=cfg,
        accelerator=make_accelerator(cfg),
        state_dir=tmp_path / f"state_{len(list(tmp_path.iterdir()))}",
        run_hash=run_hash({"test": 1}),
        on_step=lambda info: losses.append(float(info.loss)),
    )
    return losses, {k: v.clone() for k, v in result.unet.state_dict().items()}


def check_compiled_training_matches_eager(tmp_path) -> None:
    eager_loss, eager_w = fit_steps(tmp_path, TRAIN)
    compiled_loss, compiled_w = fit_steps(tmp_path, replace(TRAIN, compile=True))
    np.testing.assert_allclose(compiled_loss, eager_loss, rtol=1e-4)
    assert_weights_close(compiled_w, eager_w)


def test_compiled_training_matches_eager_fast(tmp_path, fast_compile):
    check_compiled_training_matches_eager(tmp_path)


@pytest.mark.slow
def test_compiled_training_matches_eager_inductor(tmp_path):
    torch._dynamo.reset()
    check_compiled_training_matches_eager(tmp_path)


def test_distillation_with_compiled_nhwc_teachers_matches_eager(tmp_path, fast_compile):
    from dualmd.defense.distill import Teacher, training_predictor

    half1, half2 = tiny_images(16, seed=0), tiny_images(16, seed=1)
    teachers = [Teacher(UNetPredictor(tiny_unet(s)), {}) for s in (1, 2)]
    runs = {}
    for compiled in (False, True):
        cfg = replace(TRAIN, compile=compiled, channels_last=compiled)  # NHWC teachers too
        t1, t2 = (training_predictor(t, cfg, torch.device("cpu")) for t in teachers)
        runs[compiled] = fit_steps(
            tmp_path,
            cfg,
            batches=AlternatingBatches(half1=half1, half2=half2, batch_size=cfg.batch_size),
            target_fn=CrossTeacherTargets(teacher1=t1, teacher2=t2),
        )
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    assert_weights_close(runs[True][1], runs[False][1])


# --- sampling and attacks -----------------------------------------------------------------------------------


def sample(predictor) -> torch.Tensor:
    scheduler = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=20).config)
    return run_sampler(
        predictor, scheduler, num_images=6, image_shape=(1, 8, 8), num_inference_steps=4, batch_size=4
    )


def test_compiled_sampler_forward_matches_eager(fast_compile):
    eager = sample(UNetPredictor(tiny_unet(0)))
    compiled = sample(UNetPredictor(tiny_unet(0), compile=True))  # batches of 4 and 2: two shapes
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_sampler_forward_matches_eager_inductor():
    torch._dynamo.reset()
    torch.testing.assert_close(
        sample(UNetPredictor(tiny_unet(0), compile=True)),
        sample(UNetPredictor(tiny_unet(0))),
        atol=1e-5,
        rtol=1e-4,
    )


def test_bf16_sampler_stays_close_to_fp32():
    eager = sample(UNetPredictor(tiny_unet(0)))
    bf16 = sample(UNetPredictor(tiny_unet(0), mixed_precision="bf16"))
    assert bf16.dtype == torch.float32
    assert (bf16 - eager).abs().max() < 0.05  # bf16 keeps 8 mantissa bits; images live in [-1, 1]


ATTACK_CFG = AttackConfig(
    pia=PIAConfig(timestep=10, sweep_timesteps=(5, 10)), loss=LossAttackConfig(timesteps=(2, 5))
)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A tiny model trained 60 steps on 32 members (overfits a little), its members and 32 non-members."""
    AcceleratorState._reset_state(reset_partial_state=True)
    tmp = tmp_path_factory.mktemp("attacked")
    run(tmp, "model", replace(TRAIN, num_train_steps=60, checkpoint_every_steps=100))
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(tmp / "model" / "unet_ema")
    images = torch.cat([tiny_images(32, seed=0), tiny_images(32, seed=1)])
    return unet, images, np.arange(64) < 32


@pytest.mark.parametrize("name", ["loss", "pia", "secmi_stat"])
def test_bf16_attack_metrics_lie_in_the_fp32_bootstrap_interval(name, trained_model):
    unet, images, is_member = trained_model
    schedule = Schedule.from_scheduler(create_scheduler(DIFFUSION))
    cfg = replace(ATTACK_CFG, secmi=replace(ATTACK_CFG.secmi, t_sec=10, k=2))
    scores = {
        precision: attack_model(
            name,
            cfg,
            predictor=UNetPredictor(unet, mixed_precision=precision),
            schedule=schedule,
            images=images,
            sample_ids=np.arange(64),
            is_member=is_member,
        ).scores
        for precision in ("no", "bf16")
    }
    metrics_cfg = MetricsConfig(tpr_at_fpr=(0.1,), num_bootstrap=200)
    fp32, bf16 = (summarize(scores[p], is_member, metrics_cfg) for p in ("no", "bf16"))
    for key in ("auc", "asr"):
        assert fp32[f"{key}_low"] <= bf16[key] <= fp32[f"{key}_high"], (key, fp32, bf16)
    assert (
        np.corrcoef(scores["no"], scores["bf16"])[0, 1] > 0.95
    )  # secmi: bf16 errors add up over its DDIM inversion


def test_compiled_attack_forward_matches_eager(trained_model, fast_compile):
    unet, images, is_member = trained_model
    schedule = Schedule.from_scheduler(create_scheduler(DIFFUSION))
    results = [
        attack_model(
            "pia",
            ATTACK_CFG,
            predictor=UNetPredictor(unet, compile=compiled),
            schedule=schedule,
            images=images,
            sample_ids=np.arange(64),
            is_member=is_member,
        ).scores
        for compiled in (False, True)
    ]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-4, atol=1e-6)


def test_sample_and_attack_options_reach_the_forward(tmp_path, fast_compile):
    from dualmd.config.sections import SampleConfig
    from dualmd.models.directory import load_predictor
    from dualmd.samplers import generate

    model_dir = tiny_model_dir(tmp_path / "baseline")
    predictor, _ = load_predictor(model_dir, "ema", compile=True, mixed_precision="bf16")
    assert predictor.autocast and predictor._forward is not predictor.unet
    cfg = SampleConfig(num_images=3, num_inference_steps=3, batch_size=2)
    images = {
        precision: generate("baseline", {"baseline": model_dir}, replace(cfg, mixed_precision=precision))[0]
        for precision in ("no", "bf16")
    }
    assert not torch.equal(images["bf16"], images["no"])  # the option changed the forward's precision ...
    assert (images["bf16"] - images["no"]).abs().max() < 0.05  # ... and little else
