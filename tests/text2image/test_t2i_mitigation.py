"""Wen et al.'s inference-time mitigation: AdamW's first step on the text states by hand (a UNet whose text
guidance is the mean of the states), the target that freezes a generation, independence from the batch, and the
pipeline sampling with the optimised states."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from helpers.text2image import MeanUNet

from dualmd.config.text2image import MitigationConfig
from dualmd.text2image.components import tiny_components
from dualmd.text2image.mitigation import mitigate_states, text_noise_magnitude
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline
from dualmd.text2image.prompt_memorization import NoiseMagnitudes


def states(*levels, tokens=5, width=3):
    """(b, tokens, width) states, sample j filled with levels[j] plus a per-entry ramp (so entries differ)."""
    ramp = torch.linspace(-0.1, 0.1, tokens * width).view(1, tokens, width)
    return torch.stack([torch.full((tokens, width), float(v)) for v in levels]) + ramp


X = torch.zeros(2, 4, 8, 8)
UNCOND = states(0.0, 0.0)


def test_one_iteration_is_adamw_first_step_on_every_token_but_the_first():
    """AdamW's first step moves each entry by lr against the sign of its gradient (bias-corrected moments:
    m / sqrt(v) = sign(g)), after the decoupled decay param * (1 - lr * 0.01); the start token stays."""
    cond = states(2.0, -1.0)
    cfg = MitigationConfig(enabled=True, max_iterations=1, lr=0.05)
    out, steps = mitigate_states(MeanUNet(), X, 10, UNCOND, cond, cfg)
    expected = cond.clone()
    sign = torch.tensor([1.0, -1.0]).view(2, 1, 1)  # mean(c) - mean("") is positive for sample 0
    expected[:, 1:] = cond[:, 1:] * (1 - 0.05 * 0.01) - 0.05 * sign
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(out[:, 0], cond[:, 0]) and steps.tolist() == [1, 1]


def test_iterations_lower_the_magnitude_and_the_target_freezes_a_generation():
    unet, cond = MeanUNet(), states(2.0, 0.5)

    def magnitude(c):
        with torch.no_grad():
            return text_noise_magnitude(unet(X, 10, UNCOND).sample, unet(X, 10, c).sample)

    before = magnitude(cond)
    np.testing.assert_allclose(
        before, 11 * (cond.mean(dim=(1, 2)) - UNCOND.mean(dim=(1, 2))).abs() * 16, rtol=1e-5
    )
    free, steps = mitigate_states(unet, X, 10, UNCOND, cond, MitigationConfig(max_iterations=5, lr=0.05))
    assert (magnitude(free) < before).all() and steps.tolist() == [5, 5]
    # a target between the two magnitudes: sample 1 is already there and stays as it was
    target = float(before.mean())
    cfg = MitigationConfig(max_iterations=50, lr=0.05, target_loss=target)
    held, steps = mitigate_states(unet, X, 10, UNCOND, cond, cfg)
    assert torch.equal(held[1], cond[1]) and steps[1] == 0
    assert 1 <= steps[0] < 50 and magnitude(held)[0] <= target
    # one iteration fewer does not reach it: the generation stops at the first step at the target
    assert steps[0] > 1
    fewer, _ = mitigate_states(
        unet, X[:1], 10, UNCOND[:1], cond[:1], MitigationConfig(max_iterations=int(steps[0]) - 1)
    )
    assert magnitude(torch.cat([fewer, cond[1:]]))[0] > target


def test_a_generation_does_not_depend_on_its_batch():
    unet, cond = MeanUNet(), states(2.0, -1.0)
    cfg = MitigationConfig(max_iterations=4, target_loss=200.0)
    together, steps = mitigate_states(unet, X, 10, UNCOND, cond, cfg)
    for j in range(2):
        alone, alone_steps = mitigate_states(unet, X[j : j + 1], 10, UNCOND[j : j + 1], cond[j : j + 1], cfg)
        torch.testing.assert_close(alone[0], together[j])
        assert alone_steps[0] == steps[j]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_components()


def test_the_pipeline_samples_with_the_optimised_states(tiny):
    """At step 0 the recorded magnitude is that of the optimised states (computed by hand with mitigate_states);
    without the mitigation it is the prompt's own."""
    unet = MeanUNet()
    pipe = DualMDStableDiffusionPipeline(
        vae=tiny.vae,
        text_encoder=tiny.text_encoder,
        tokenizer=tiny.tokenizer,
        unet1=unet,
        unet2=unet,
        scheduler=DDIMScheduler.from_config(tiny.scheduler.config),
    )
    prompts = ["a handwritten digit one", "a bold two at the top left"]
    cfg = MitigationConfig(enabled=True, max_iterations=3)
    runs = {}
    for name, mitigation in (("plain", None), ("wen", cfg)):
        recorder = NoiseMagnitudes(2, 3)
        pipe(prompts, num_inference_steps=3, guidance_scale=7.5, on_step=recorder, mitigation=mitigation)
        runs[name] = recorder.values
    pipe.scheduler.set_timesteps(3)
    timesteps = [int(t) for t in pipe.scheduler.timesteps]
    cond, uncond = pipe.encode_prompt(prompts), pipe.encode_prompt([""] * 2)
    optimised, _ = mitigate_states(unet, X, timesteps[0], uncond, cond, cfg)
    for name, c in (("plain", cond), ("wen", optimised)):
        gap = (c.mean(dim=(1, 2)) - uncond.mean(dim=(1, 2))).abs().double().numpy() * 16
        # every step sees the same states: optimised once at step 0 (num_steps 1), they condition the chain
        expected = np.stack([gap * (t + 1) for t in timesteps], axis=1)
        np.testing.assert_allclose(runs[name], expected, rtol=1e-3)
    assert not np.allclose(runs["wen"], runs["plain"])
    with pytest.raises(ValueError, match="exceed the chain's 3"):
        pipe(prompts, num_inference_steps=3, mitigation=MitigationConfig(num_steps=4))
