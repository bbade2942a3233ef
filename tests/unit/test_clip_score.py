"""CLIP score (`dualmd.clip_score`) with a tiny random CLIPModel built in code and saved to a folder: scores of
hand-set embeddings, agreement with CLIP's own logits, the bootstrap interval, and the reason when absent."""

import math

import numpy as np
import pytest
import torch
from helpers.clip import WIDTH, constant_towers, save, tiny_clip

from dualmd.clip_score import (
    NO_CLIP_REASON,
    clip_cosines,
    clip_score,
    clip_score_interval,
    compute_clip_score,
    load_clip,
)
from dualmd.config.evaluation import UtilityConfig

IMAGES = torch.rand(6, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
PROMPTS = ["a handwritten digit two", "digit seven", "a thin one", "zero", "a bold digit four", "nine"]
E1, E2 = np.eye(WIDTH)[0], np.eye(WIDTH)[1]


@pytest.mark.parametrize(
    ("text_direction", "expected"),
    [(E1, 100.0), ((E1 + E2) / math.sqrt(2), 100 / math.sqrt(2)), (-E1, 0.0), (E2, 0.0)],
    ids=["identical", "45-degrees", "opposite-clipped-at-0", "orthogonal"],
)
def test_clip_score_of_hand_set_embeddings(tmp_path, text_direction, expected):
    model, processor = tiny_clip(tmp_path)
    folder = save(constant_towers(model, 3 * E1, text_direction), processor, tmp_path / "clip")
    cfg = UtilityConfig(num_images=6, clip_path=str(folder), batch_size=4, num_bootstrap=50)
    result = compute_clip_score(IMAGES, PROMPTS, cfg)
    assert result["clip_score"] == pytest.approx(expected, abs=1e-4)
    # every pair has the same cosine: the bootstrap has nothing to resample
    assert result["clip_score_low"] == pytest.approx(expected, abs=1e-4)
    assert result["clip_score_high"] == pytest.approx(expected, abs=1e-4)
    assert result["clip_absent_reason"] is None and result["clip_model"].startswith("clip (16 px")


def test_cosines_match_clip_logits_of_a_random_model(tmp_path):
    """With logit_scale = log 100, CLIP's own forward gives logits_per_image[i, i] = 100 cos(image i, prompt i)."""
    model, processor = tiny_clip(tmp_path, seed=1)
    folder = save(model, processor, tmp_path / "clip")
    loaded, loaded_processor = load_clip(folder)
    cosines = clip_cosines(IMAGES, PROMPTS, loaded, loaded_processor, batch_size=4)
    pixels = ((IMAGES + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    inputs = processor(text=PROMPTS, images=list(pixels.numpy()), return_tensors="pt", padding=True)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
        logits = model(**inputs).logits_per_image.double().numpy()
    np.testing.assert_allclose(100 * cosines, np.diag(logits), rtol=1e-4, atol=1e-4)
    assert np.ptp(cosines) > 1e-3  # random towers: the pairs differ
    assert clip_score(cosines) == pytest.approx(max(np.diag(logits).mean(), 0.0), abs=1e-4)


def test_clip_score_clips_the_mean_not_each_pair_and_its_interval_covers_it():
    cosines = np.array([0.5, -0.1, 0.3, 0.2])
    assert clip_score(cosines) == pytest.approx(100 * 0.9 / 4)  # the negative pair counts, as in torchmetrics
    assert clip_score(np.array([-0.2, -0.4])) == 0.0
    low, high = clip_score_interval(cosines, num_bootstrap=500, seed=0)
    assert 100 * -0.1 <= low < clip_score(cosines) < high <= 100 * 0.5
    assert (low, high) == clip_score_interval(cosines, num_bootstrap=500, seed=0)  # seeded


def test_without_a_folder_the_score_is_absent_with_the_reason(tmp_path):
    result = compute_clip_score(IMAGES, PROMPTS, UtilityConfig(num_images=6))
    assert result["clip_score"] is None and result["clip_score_low"] is None
    assert result["clip_absent_reason"] == NO_CLIP_REASON and "utility.clip_path" in NO_CLIP_REASON
    with pytest.raises(FileNotFoundError, match="no config.json"):
        compute_clip_score(IMAGES, PROMPTS, UtilityConfig(num_images=6, clip_path=str(tmp_path / "missing")))


@pytest.mark.parametrize("has_prompts", [True, False], ids=["text-to-image", "unconditional"])
def test_utility_stage_adds_the_clip_score_for_prompted_samples(tmp_path, has_prompts):
    import json

    import yaml

    from dualmd.cli import main
    from dualmd.images import save_samples
    from dualmd.utility import ReferenceStats, save_reference

    model, processor = tiny_clip(tmp_path)
    folder = save(constant_towers(model, E1, E1), processor, tmp_path / "clip")
    utility = {"num_images": 6, "feature_net": "pixels", "num_bootstrap": 20, "clip_path": str(folder)}
    config = tmp_path / "utility.yaml"
    config.write_text(yaml.safe_dump({"utility": utility}))
    save_samples(IMAGES, tmp_path / "samples.npz", tmp_path / "grid.png", nrow=3)
    info = {"scheduler": "ddim", "num_inference_steps": 2} | ({"prompts": PROMPTS} if has_prompts else {})
    (tmp_path / "info.json").write_text(json.dumps(info))
    reference = np.random.default_rng(0).normal(size=(10, 192))
    save_reference(
        tmp_path / "ref.npz",
        ReferenceStats.from_features(
            reference, "pixels (3x8x8 area-averaged pixels, 192-d; NOT comparable to FID)"
        ),
    )
    out = tmp_path / "u.json"
    main(
        ["utility", "--config", str(config), "--reference", str(tmp_path / "ref.npz")]
        + ["--samples", str(tmp_path / "samples.npz"), "--info", str(tmp_path / "info.json")]
        + ["--sampler", "baseline", "--out", str(out)]
    )
    record = json.loads(out.read_text())
    assert record["fid"] > 0 and record["inception_score"] is None and record["is_absent_reason"]
    if has_prompts:
        assert record["clip_score"] == pytest.approx(100.0, abs=1e-4)
    else:
        assert "clip_score" not in record  # unconditional samples have no prompts to compare with
