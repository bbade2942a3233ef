"""On a CUDA device: bf16 training resumes exactly, the fast-path training step never synchronises with the host,
and white-box attacks and recon through a deployed sampler score as they do on the CPU.

Skipped without a GPU (see conftest.py). Deterministic kernels and no TF32 are requested, so equality is exact
for training and to float32 rounding for the attacks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from helpers.models import tiny_unet
from helpers.training import TRAIN, Interrupt, interrupt_at, load_weights, run

from dualmd.attacks.run import attack_model, attack_sampler
from dualmd.config.attacks import AttackConfig, LossAttackConfig, PIAConfig, ReconConfig
from dualmd.defense.dualmd import AlternatingTeachers
from dualmd.models.adapter import Schedule, UNetPredictor
from dualmd.sample import DeployedSampler, build_scheduler
from dualmd.train.loop import make_accelerator

pytestmark = pytest.mark.gpu


@pytest.fixture
def deterministic_cuda(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


def test_bf16_training_interrupted_and_resumed_equals_uninterrupted(tmp_path, deterministic_cuda):
    cfg = replace(TRAIN, mixed_precision="bf16", hflip=True)
    assert make_accelerator(cfg).mixed_precision == "bf16"
    full = run(tmp_path, "full", cfg)
    assert full["mixed_precision"] == "bf16" and full["device"].startswith("cuda")
    with pytest.raises(Interrupt):
        run(tmp_path, "resumed", cfg, on_step=interrupt_at(7))
    resumed = run(tmp_path, "resumed", cfg)
    assert resumed["resumed_from_step"] == 5
    assert resumed["loss_curve"] == full["loss_curve"]
    for sub in ("unet", "unet_ema"):
        a, b = load_weights(tmp_path / "full", sub), load_weights(tmp_path / "resumed", sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    assert resumed["probe"] == full["probe"]


def test_fast_path_training_steps_do_not_synchronise(tmp_path):
    """With every fast path on (and bf16), steps between logging steps raise on any host sync (e.g. .item(), a
    copy from pageable memory); the first steps (compilation, lazy initialisation) are not checked."""
    from dualmd.train.loop import StepInfo

    cfg = replace(
        TRAIN,
        num_train_steps=12,
        log_every_steps=10**6,
        checkpoint_every_steps=10**6,
        mixed_precision="bf16",
        hflip=True,
        channels_last=True,
        compile=True,
        fused_adam=True,
        ema_lerp=True,
        data_on_device=True,
    )
    checked = []

    def watch(info: StepInfo) -> None:
        if info.step == 2:
            torch.cuda.set_sync_debug_mode("error")
        if info.step == cfg.num_train_steps - 2:  # the last step logs and saves: those sync, by design
            torch.cuda.set_sync_debug_mode("default")
        if 2 < info.step < cfg.num_train_steps - 2:
            checked.append(info.step)

    try:
        meta = run(tmp_path, "fast", cfg, on_step=watch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert checked == list(range(3, 10)) and meta["device"].startswith("cuda")


@pytest.mark.parametrize("name", ["loss", "pia", "pian", "secmi_stat"])
def test_white_box_attack_on_cuda_equals_cpu(name, deterministic_cuda):
    schedule = Schedule.from_scheduler(DDPMScheduler(num_train_timesteps=1000))
    cfg = AttackConfig(pia=PIAConfig(timestep=200, sweep_timesteps=(100, 200)), loss=LossAttackConfig())
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids, is_member = np.arange(16) * 3 + 1, np.arange(16) % 2 == 0
    results = {
        device: attack_model(
            name,
            cfg,
            predictor=UNetPredictor(tiny_unet(0).to(device).eval()),
            schedule=schedule,
            images=images,
            sample_ids=ids,
            is_member=is_member,
        )
        for device in ("cpu", "cuda")
    }
    np.testing.assert_array_equal(results["cpu"].sample_ids, results["cuda"].sample_ids)
    np.testing.assert_allclose(results["cuda"].scores, results["cpu"].scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("kind", "steps"), [("ddim", 50), ("ddpm", 1000)], ids=["ddim50", "ddpm1000"])
def test_recon_through_the_deployed_dualmd_sampler_on_cuda_equals_cpu(kind, steps, deterministic_cuda):
    """The image-to-image query on the GPU: noise drawn on the CPU (initial and, for the ancestral sampler, every
    step's) and moved, so the scores match the CPU's to float32 rounding."""
    base = DDPMScheduler(num_train_timesteps=1000)
    cfg = AttackConfig(recon=ReconConfig(interface="deployed", strengths=(0.02, 0.04), num_queries=(1, 2)))
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids, is_member = np.arange(16) * 3 + 1, np.arange(16) % 2 == 0
    results = {}
    for device in ("cpu", "cuda"):
        pair = AlternatingTeachers(
            teacher1=UNetPredictor(tiny_unet(1).to(device).eval()),
            teacher2=UNetPredictor(tiny_unet(2).to(device).eval()),
            alternation="timestep_parity" if kind == "ddpm" else "step_index",
        )
        sampler = DeployedSampler(
            selector=pair, scheduler=build_scheduler(kind, base), num_inference_steps=steps
        )
        results[device] = attack_sampler(
            "recon", cfg, sampler=sampler, schedule=Schedule.from_scheduler(base), images=images,
            sample_ids=ids, is_member=is_member,
        )  # fmt: skip
    np.testing.assert_array_equal(results["cpu"].sample_ids, results["cuda"].sample_ids)
    np.testing.assert_allclose(results["cuda"].scores, results["cpu"].scores, rtol=1e-4, atol=1e-5)
