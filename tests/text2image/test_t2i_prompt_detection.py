"""Memorized-prompt detection from two lists: the detector over the first steps by hand (a UNet whose text guidance
is the mean of the states), the chains stopped there, the summary of hand-set values, and the list files."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from helpers.text2image import MeanUNet

from dualmd.config.evaluation import MetricsConfig
from dualmd.config.sections import SampleConfig
from dualmd.text2image.components import tiny_components
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline
from dualmd.text2image.prompt_detection import (
    detection_markdown,
    detection_rows,
    detection_summary,
    noise_magnitudes,
    read_prompt_list,
)

PROMPTS = ["a handwritten digit one", "a bold two at the top left", "zero"]


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tiny = tiny_components()
    unet = MeanUNet()
    return DualMDStableDiffusionPipeline(
        vae=tiny.vae,
        text_encoder=tiny.text_encoder,
        tokenizer=tiny.tokenizer,
        unet1=unet,
        unet2=unet,
        scheduler=DDIMScheduler.from_config(tiny.scheduler.config),
    )


def test_the_detector_averages_the_first_steps_and_the_generations(pipe):
    """With MeanUNet the magnitude at timestep t is (t + 1) |mean(c) - mean("")| sqrt(4 * 8 * 8), whatever the
    starting noise: the mean over the first 2 of 5 steps takes the first two timesteps only."""
    sample = SampleConfig(num_inference_steps=5, batch_size=2, seed=3)
    values = noise_magnitudes(pipe, PROMPTS, sample, num_generations=2, num_steps=2, guidance_scale=7.5)
    pipe.scheduler.set_timesteps(5)
    first = [int(t) + 1 for t in pipe.scheduler.timesteps[:2]]
    gap = (pipe.encode_prompt(PROMPTS).mean(dim=(1, 2)) - pipe.encode_prompt([""]).mean()).abs().double()
    expected = (gap * np.mean(first) * 16).numpy()
    assert values.shape == (3, 2)
    np.testing.assert_allclose(values, np.stack([expected, expected], axis=1), rtol=1e-4)
    every = noise_magnitudes(pipe, PROMPTS, sample, num_generations=1, num_steps=None, guidance_scale=7.5)
    all_steps = [int(t) + 1 for t in pipe.scheduler.timesteps]
    np.testing.assert_allclose(every[:, 0], (gap * np.mean(all_steps) * 16).numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="stop_after needs output_type='latent'"):
        pipe(PROMPTS, num_inference_steps=5, stop_after=2)


def test_summary_of_hand_set_values():
    prompts = {"memorized": [f"m{i}" for i in range(3)], "ordinary": [f"o{i}" for i in range(4)]}
    magnitudes = {
        "memorized": np.array([[5.0, 7.0], [2.0, 2.0], [9.0, 9.0]]),  # means 6, 2, 9
        "ordinary": np.array([[1.0, 1.0], [3.0, 3.0], [4.0, 4.0], [0.0, 2.0]]),  # means 1, 3, 4, 1
    }
    rows = detection_rows(prompts, magnitudes)
    assert rows["group"].tolist() == ["memorized"] * 3 + ["ordinary"] * 4
    np.testing.assert_allclose(rows["noise_magnitude"], [6, 2, 9, 1, 3, 4, 1])
    np.testing.assert_allclose(rows["noise_magnitude_std"], [1, 0, 0, 0, 0, 0, 1])
    summary = detection_summary(rows, MetricsConfig(tpr_at_fpr=(0.01, 0.25), num_bootstrap=200))
    # 12 (memorized, ordinary) pairs: 6 and 9 beat all 4, 2 beats the two 1s: 10 / 12
    assert summary["auc"] == pytest.approx(10 / 12)
    assert summary["auc_low"] <= summary["auc"] <= summary["auc_high"]
    assert summary["tpr_at_fpr_0.01"] is None  # 4 ordinary prompts cannot resolve 1 % FPR
    assert summary["tpr_at_fpr_0.25"] == pytest.approx(2 / 3)  # at 4: 2 of 3 memorized, 1 of 4 ordinary
    assert (summary["memorized_median"], summary["ordinary_median"]) == (6.0, 2.0)
    text = detection_markdown(summary, num_generations=2, num_steps=5)
    assert "AUC 0.833 [" in text and "TPR at 0.01 FPR: n/a" in text and "3 memorized against 4" in text
    flipped = detection_summary(
        rows.assign(group=np.where(rows["group"] == "memorized", "ordinary", "memorized")),
        MetricsConfig(num_bootstrap=0),
    )
    assert flipped["auc"] == pytest.approx(2 / 12) and np.isnan(flipped["auc_low"])


def test_prompt_lists_are_read_line_by_line(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("  a thin seven \n\nzero\n")
    assert read_prompt_list(path) == ["a thin seven", "zero"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_prompt_list(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="holds no prompt"):
        read_prompt_list(tmp_path / "empty.txt")
