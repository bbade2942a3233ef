"""Training loop end to end on a tiny UNet: model directory, diffusers round trip, metadata, exact resume."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from helpers.training import (
    CALLER_META,
    TRAIN,
    Interrupt,
    interrupt_at,
    load_weights,
    run,
    tiny_images,
)

from dualmd.train.checkpoint import STATE_FILE
from dualmd.train.loop import RandomBatches, make_accelerator, make_ema, random_hflip
from dualmd.train.run import fixed_noise


def test_model_dir_loads_in_diffusers_pipeline_and_metadata_is_complete(tmp_path):
    meta = run(tmp_path, "baseline")
    out = tmp_path / "baseline"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dir left
    raw, ema = UNet2DModel.from_pretrained(out / "unet"), UNet2DModel.from_pretrained(out / "unet_ema")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(raw.state_dict().values(), ema.state_dict().values(), strict=True)
    )
    pipe = DDPMPipeline(unet=raw, scheduler=DDPMScheduler.from_pretrained(out / "scheduler"))
    images = pipe(
        batch_size=2, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (2, 8, 8, 1) and np.isfinite(images).all()
    assert pipe.scheduler.config.num_train_timesteps == 20

    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    for key, value in CALLER_META.items():
        assert on_disk[key] == value
    assert on_disk["num_train_steps"] == 12 and on_disk["seed"] == 3
    assert on_disk["config"]["model"]["block_out_channels"] == [8, 16]
    assert on_disk["config"]["diffusion"]["num_train_timesteps"] == 20
    assert on_disk["config"]["train"]["lr"] == 2e-3
    assert [s for s, _ in on_disk["loss_curve"]] == [4, 8, 12]
    assert all(np.isfinite(loss) and loss > 0 for _, loss in on_disk["loss_curve"])
    probe = on_disk["probe"]
    assert probe["timesteps"] == [2, 5, 10]
    assert len(probe["member_loss"]) == len(probe["nonmember_loss"]) == len(probe["gap"]) == 3
    assert probe["gap"][0] == pytest.approx(probe["nonmember_loss"][0] - probe["member_loss"][0])
    assert on_disk["device"] == str(make_accelerator(TRAIN).device) and on_disk["resumed_from_step"] == 0
    assert on_disk["wall_time_s"] > 0 and on_disk["images_per_s"] > 0
    assert set(on_disk["versions"]) == {"torch", "diffusers", "accelerate"}


@pytest.mark.parametrize("ema_schedule", ["ramp", "constant"])
def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path, ema_schedule):
    cfg = replace(TRAIN, hflip=True, ema_schedule=ema_schedule)  # the flip draws must be resumed too
    full = run(tmp_path, "full", cfg)
    with pytest.raises(Interrupt):
        run(tmp_path, "resumed", cfg, on_step=interrupt_at(7))  # the last state is that of step 5
    assert not (tmp_path / "resumed").exists()  # nothing that looks like a finished model
    assert torch.load(tmp_path / "state_resumed" / STATE_FILE, weights_only=False)["step"] == 5

    resumed = run(tmp_path, "resumed", cfg)
    assert resumed["resumed_from_step"] == 5
    assert resumed["loss_curve"] == full["loss_curve"]
    for sub in ("unet", "unet_ema"):
        a, b = load_weights(tmp_path / "full", sub), load_weights(tmp_path / "resumed", sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    assert resumed["probe"] == full["probe"]


@pytest.mark.parametrize(
    ("schedule", "first_decay", "second_decay"), [("ramp", 0.0, 2 / 11), ("constant", 0.9, 0.9)]
)
def test_ema_schedule(schedule, first_decay, second_decay):
    net = torch.nn.Linear(3, 2)
    ema = make_ema(net, replace(TRAIN, ema_decay=0.9, ema_schedule=schedule))
    start = [p.detach().clone() for p in net.parameters()]
    expected = start
    for decay, shift in ((first_decay, 1.0), (second_decay, -2.0)):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(shift)
        ema.step(net.parameters())
        expected = [decay * e + (1 - decay) * p for e, p in zip(expected, net.parameters(), strict=True)]
        assert all(torch.allclose(s, e) for s, e in zip(ema.shadow_params, expected, strict=True))


def test_state_of_another_config_is_not_resumed(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path, "m", on_step=interrupt_at(6))
    changed = run(tmp_path, "m", replace(TRAIN, lr=1e-3, num_train_steps=6))
    assert changed["resumed_from_step"] == 0
    # Bookkeeping keys do not change the run: the state of a finished run is reused as is.
    again = run(tmp_path, "m", replace(TRAIN, lr=1e-3, num_train_steps=6, log_every_steps=3))
    assert again["resumed_from_step"] == 6


def test_probe_timesteps_outside_schedule_are_refused(tmp_path):
    with pytest.raises(ValueError, match="probe_timesteps"):
        run(tmp_path, "bad", replace(TRAIN, probe_timesteps=(5, 20)))


def test_batches_are_deterministic_and_flip_mirrors_width():
    images = tiny_images(16, seed=0)
    source = RandomBatches(images=images, batch_size=6)
    a = source(0, torch.Generator().manual_seed(1))
    assert torch.equal(a, source(0, torch.Generator().manual_seed(1))) and a.shape == (6, 1, 8, 8)
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(64, 1, 1, 1)
    flipped = random_hflip(x, torch.Generator().manual_seed(0))
    is_flipped = (flipped != x).flatten(1).any(1)
    assert 10 < int(is_flipped.sum()) < 54  # about half
    assert torch.equal(flipped[is_flipped], x[is_flipped].flip(-1))


def test_fixed_noise_depends_on_image_index_only():
    assert torch.equal(fixed_noise(3, (1, 8, 8)), fixed_noise(5, (1, 8, 8))[:3])
    assert not torch.equal(fixed_noise(2, (1, 8, 8))[0], fixed_noise(2, (1, 8, 8))[1])


def test_checkpoints_equal_a_shorter_run_and_survive_an_interruption(tmp_path):
    """The weights kept after step k are those of a run of k steps (same seed, same draws, same schedule), and a
    run interrupted after a snapshot still writes every checkpoint when resumed."""
    full = run(tmp_path, "full", snapshot_steps=(4, 8))
    short = run(tmp_path, "short", replace(TRAIN, num_train_steps=4))
    for sub in ("unet", "unet_ema"):
        kept, direct = (
            load_weights(tmp_path / "full/checkpoints/4", sub),
            load_weights(tmp_path / "short", sub),
        )
        assert all(torch.equal(kept[k], direct[k]) for k in kept), sub
    meta = json.loads((tmp_path / "full/checkpoints/8/metadata.json").read_text())
    assert meta["num_train_steps"] == meta["checkpoint_step"] == 8 and meta["subset"] == CALLER_META["subset"]
    assert meta["loss_curve"] == [p for p in full["loss_curve"] if p[0] <= 8] and "probe" not in meta
    assert sorted(p.name for p in (tmp_path / "full/checkpoints").iterdir()) == ["4", "8"]
    assert short["loss_curve"] == [p for p in full["loss_curve"] if p[0] <= 4]

    with pytest.raises(Interrupt):  # killed after both snapshots; the last state is that of step 10
        run(tmp_path, "resumed", on_step=interrupt_at(9), snapshot_steps=(4, 8))
    resumed = run(tmp_path, "resumed", snapshot_steps=(4, 8))
    assert resumed["resumed_from_step"] == 10
    for step in ("4", "8"):
        a, b = (
            load_weights(tmp_path / f"{name}/checkpoints/{step}", "unet_ema") for name in ("full", "resumed")
        )
        assert all(torch.equal(a[k], b[k]) for k in a), step


def test_a_state_without_checkpoints_is_not_resumed_by_a_run_that_keeps_them(tmp_path):
    with pytest.raises(Interrupt):
        run(tmp_path, "m", on_step=interrupt_at(6))
    assert run(tmp_path, "m", snapshot_steps=(4,))["resumed_from_step"] == 0
    assert (tmp_path / "m/checkpoints/4/unet_ema").is_dir()
