"""The memorization detectors on prompts: Wen et al.'s text-conditional noise magnitude (hand-computed with a fake
UNet), SecMI's t-error with the caption as condition, and the per-generation rows with their copy statistics."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from helpers.text2image import MeanUNet

from dualmd.attacks.secmi import t_error
from dualmd.config.attacks import SecMIConfig
from dualmd.config.evaluation import MemorizationConfig
from dualmd.config.sections import SampleConfig
from dualmd.models.adapter import Schedule
from dualmd.text2image.attack import CaptionedPredictor, caption_t_error, encode_latents
from dualmd.text2image.components import encode_prompts, tiny_components
from dualmd.text2image.memorization_report import ROW_COLUMNS
from dualmd.text2image.memorized import MemorizedPrompts
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline
from dualmd.text2image.prompt_memorization import (
    NoiseMagnitudes,
    generate_with_noise_magnitude,
    generation_seeds,
    noise_magnitude,
    score_target,
)

PROMPTS = ["a handwritten digit one", "a bold two at the top left", "a small grey picture of the digit five"]
SAMPLE = SampleConfig(num_inference_steps=3, batch_size=2, seed=5)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_components()


def pipeline(parts, unet):
    return DualMDStableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet1=unet,
        unet2=unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler.config),
    )


def test_noise_magnitude_is_the_l2_norm_of_the_guidance_direction():
    eps_uncond = torch.zeros(2, 4, 2, 2)
    eps_cond = torch.stack([torch.full((4, 2, 2), 1.0), torch.full((4, 2, 2), -2.0)])
    # 16 entries of 1 -> sqrt(16) = 4; 16 entries of -2 -> 8
    np.testing.assert_allclose(noise_magnitude(eps_uncond, eps_cond).numpy(), [4.0, 8.0])
    np.testing.assert_allclose(noise_magnitude(eps_cond, eps_cond).numpy(), [0.0, 0.0])


def test_noise_magnitude_averages_the_steps_of_a_guided_generation(tiny):
    """With MeanUNet the magnitude at timestep t is |mean(c) - mean("")| (t + 1) sqrt(4 * 8 * 8); the detector
    averages it over the DDIM timesteps. Three prompts in batches of two check that each image keeps its own."""
    pipe = pipeline(tiny, MeanUNet())
    images, magnitude = generate_with_noise_magnitude(
        pipe, PROMPTS, generation_seeds(0, [7, 8, 9], 0), SAMPLE, guidance_scale=7.5
    )
    pipe.scheduler.set_timesteps(SAMPLE.num_inference_steps)
    mean_t_plus_1 = float(np.mean([int(t) + 1 for t in pipe.scheduler.timesteps]))
    gap = (pipe.encode_prompt(PROMPTS).mean(dim=(1, 2)) - pipe.encode_prompt([""]).mean()).abs().double()
    np.testing.assert_allclose(magnitude, (gap * mean_t_plus_1 * 16.0).numpy(), rtol=1e-5)
    assert images.shape == (3, 3, 32, 32) and torch.isfinite(images).all()


def test_noise_magnitudes_refuse_missing_steps():
    recorder = NoiseMagnitudes(2, 3)
    recorder(0, 0, torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(RuntimeError, match="not recorded"):
        recorder.mean()
    recorder(0, 1, torch.zeros(2, 1), torch.ones(2, 1))
    recorder(1, 2, torch.zeros(1, 1), torch.full((1, 1), 3.0))
    recorder(0, 2, torch.zeros(1, 1), torch.ones(1, 1))
    np.testing.assert_allclose(recorder.mean(), [1.0, 5.0 / 3.0])


def test_caption_t_error_is_secmi_with_each_image_bound_to_its_caption(tiny):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    cfg = SecMIConfig(t_sec=100, k=20)
    errors = caption_t_error(tiny, images, PROMPTS, cfg, batch_size=2)
    schedule = Schedule.from_scheduler(tiny.scheduler)
    latents = encode_latents(tiny, images)
    for j, prompt in enumerate(PROMPTS):
        alone = CaptionedPredictor(tiny.unet, encode_prompts(tiny, [prompt]))
        # batches of 2 and of 1: equal up to the rounding of batch-shaped kernels
        np.testing.assert_allclose(
            errors[j], t_error(alone, schedule, latents[j : j + 1], cfg, 1)[0], rtol=1e-4
        )
    swapped = caption_t_error(tiny, images, PROMPTS[::-1], cfg, batch_size=3)
    assert errors[0] != pytest.approx(swapped[0], rel=1e-3) and errors[1] == pytest.approx(
        swapped[1], rel=1e-4
    )
    assert (errors > 0).all()


def test_t_error_of_a_predictor_blind_to_the_latent_is_zero(tiny):
    """Deterministic DDIM with a prediction that does not depend on x_t is exactly invertible: the round trip of
    SecMI lands where it started, whatever the caption."""
    errors = caption_t_error(
        tiny,
        torch.rand(2, 3, 32, 32) * 2 - 1,
        PROMPTS[:2],
        SecMIConfig(t_sec=100, k=10),
        batch_size=2,
        unet=MeanUNet(),
    )
    np.testing.assert_allclose(errors, 0.0, atol=1e-8)


def selection():
    return MemorizedPrompts(
        memorized_ids=(10, 11),
        other_ids=(12, 13),
        prompts={"10": PROMPTS[0], "11": PROMPTS[1], "12": PROMPTS[2], "13": "a thin seven"},
        half="half1",
        repeats=4,
        prompt_caption=0,
        seed=0,
        split_fingerprint="x",
    )


def test_score_target_rows_and_their_copies(tiny):
    """Members that hold generation 0 of each prompt are found as exact copies by the copy rule, with the right
    dataset id; generation 1 comes from other seeds."""
    pipe = pipeline(tiny, tiny.unet.eval())
    sel = selection()
    ids = list(sel.image_ids)
    sample = SampleConfig(num_inference_steps=2, batch_size=4, seed=1)
    first = pipe(
        [sel.prompt(i) for i in ids],
        num_inference_steps=2,
        guidance_scale=3.0,
        seeds=generation_seeds(1, ids, 0),
    )
    others = torch.rand(4, 3, 32, 32) * 2 - 1
    members, member_ids = torch.cat([others, first]), np.array([20, 21, 22, 23, 110, 111, 112, 113])
    own = {i: torch.rand(3, 32, 32) * 2 - 1 for i in ids}
    rows = score_target(
        pipe,
        sel,
        images=own,
        members=members,
        member_ids=member_ids,
        t_errors=np.array([1.0, 2.0, 3.0, 4.0]),
        num_generations=2,
        sample=sample,
        guidance_scale=3.0,
        memorization=MemorizationConfig(k_nearest=3),
    )
    assert tuple(rows.columns) == ROW_COLUMNS and len(rows) == 8
    assert rows["group"].tolist() == ["memorized", "memorized", "other", "other"] * 2
    assert (
        rows["generation"].tolist() == [0] * 4 + [1] * 4
        and rows["t_error"].tolist() == [1.0, 2.0, 3.0, 4.0] * 2
    )
    gen0 = rows[rows["generation"] == 0]
    assert gen0["is_copy"].all() and gen0["nearest_member"].tolist() == [110, 111, 112, 113]
    np.testing.assert_allclose(gen0["nearest_distance"], 0.0, atol=1e-4)
    expected_own = [float((first[j] - own[i]).double().norm()) for j, i in enumerate(ids)]
    np.testing.assert_allclose(gen0["own_distance"], expected_own, rtol=1e-5)
    assert set(rows["nearest_member"]) <= set(member_ids.tolist()) and (rows["noise_magnitude"] > 0).all()
    gen1 = rows[rows["generation"] == 1]
    assert (gen1["nearest_distance"] > 1e-3).all()  # other seeds, other images
    pair = score_target(
        pipe,
        sel,
        images=own,
        members=members,
        member_ids=member_ids,
        t_errors=None,
        num_generations=1,
        sample=sample,
        guidance_scale=3.0,
        memorization=MemorizationConfig(k_nearest=3),
    )
    assert pair["t_error"].isna().all()
    np.testing.assert_allclose(pair["noise_magnitude"], gen0["noise_magnitude"], rtol=1e-6)
