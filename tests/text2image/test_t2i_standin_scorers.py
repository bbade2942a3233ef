"""The tiny run's stand-in scorers of Table 5 (`dualmd.text2image.standin_scorers`): the stand-in CLIP trains on
images outside the split only and learns to tell an image's caption from another digit's on held-out images; the
saved folder and the descriptor file load through the scoring code unchanged; the stage writes both; the scoring
stages read them where a key is "standin" and name them as stand-ins."""

import json

import numpy as np
import pytest
import torch
import yaml
from helpers.text2image import POPULATION, PRIVATE
from sklearn.datasets import load_digits

from dualmd.cli import main
from dualmd.clip_score import clip_cosines, compute_clip_score, load_clip
from dualmd.config.evaluation import (
    STANDIN_CLIP_LABEL,
    STANDIN_DESCRIPTOR_LABEL,
    UtilityConfig,
    is_standin_label,
    scorer_path,
)
from dualmd.config.experiment import ExperimentConfig
from dualmd.config.text2image import StandinScorersConfig
from dualmd.data.splits import Split
from dualmd.text2image.copy_score import copy_similarities, descriptors, load_descriptor
from dualmd.text2image.standin_scorers import (
    RECORD,
    check_outside_split,
    save_standin_clip,
    tiny_clip,
    train_standin_clip,
    write_copy_descriptor,
)

LABELS = load_digits().target
#: A split of the private ids (64..95): 16 members (8 per half), 16 non-members.
PRIVATE_IDS = np.arange(PRIVATE.start, PRIVATE.stop)
SPLIT = Split(
    PRIVATE_IDS[:16], PRIVATE_IDS[16:], PRIVATE_IDS[:8], PRIVATE_IDS[8:16], meta={"num_dataset_images": 96}
)
#: The population outside the split: the first 48 ids train the stand-in CLIP, the last 16 test it.
TRAIN_IDS, TEST_IDS = list(POPULATION)[:48], list(POPULATION)[48:]


@pytest.fixture(scope="module")
def standin_clip(digits32, tmp_path_factory):
    """The stand-in CLIP trained 150 steps on TRAIN_IDS (~8 s on one core), saved and loaded back."""
    images, captions = digits32
    torch.set_num_threads(1)
    cfg = StandinScorersConfig(num_steps=150, batch_size=16, lr=2e-3, num_heldout_images=8)
    model, processor, record = train_standin_clip(images[TRAIN_IDS], TRAIN_IDS, captions, SPLIT, cfg)
    folder = tmp_path_factory.mktemp("standin") / "clip"
    save_standin_clip(folder, model, processor, record)
    return folder


def caption_gap(model, processor, images, captions):
    """On TEST_IDS: mean cosine of each image with its own first caption minus with the first caption of the next
    test image of another digit, and how often the own caption wins."""
    own = [captions[i][0] for i in TEST_IDS]
    others = [
        next(j for j in TEST_IDS[k + 1 :] + TEST_IDS[:k] if LABELS[j] != LABELS[i])
        for k, i in enumerate(TEST_IDS)
    ]
    matched = clip_cosines(images[TEST_IDS], own, model, processor)
    mismatched = clip_cosines(images[TEST_IDS], [captions[j][0] for j in others], model, processor)
    return float((matched - mismatched).mean()), float((matched > mismatched).mean())


def test_the_standin_clip_refuses_members_and_nonmembers(digits32):
    images, captions = digits32
    check_outside_split(TRAIN_IDS, SPLIT)  # the population passes
    leaky = [*TRAIN_IDS, int(SPLIT.member_idx[3]), int(SPLIT.nonmember_idx[0])]
    with pytest.raises(ValueError, match=r"outside the split, got 1 members \[67\]; 1 nonmembers \[80\]"):
        train_standin_clip(images[leaky], leaky, captions, SPLIT, StandinScorersConfig(num_steps=1))


def test_trained_standin_clip_prefers_the_own_caption_on_held_out_images(standin_clip, digits32):
    """Held out of training and outside the split, an image's cosine with its own caption beats that with another
    digit's caption by a wide margin after training, and not at all at the seeded initialisation."""
    images, captions = digits32
    model, processor = load_clip(standin_clip)  # as dualmd.clip_score reads it: local files only
    gap, wins = caption_gap(model, processor, images, captions)
    untrained_gap, _ = caption_gap(*tiny_clip(image_size=32, seed=0), images, captions)
    assert gap > 0.15 and wins >= 0.75, (gap, wins)
    assert abs(untrained_gap) < 0.05
    record = json.loads((standin_clip / RECORD).read_text())
    assert record["population_size"] == 48 and record["num_heldout_images"] == 8
    assert record["heldout_after"]["loss"] < record["heldout_before"]["loss"]
    assert record["loss_curve"][-1][1] < record["loss_curve"][0][1]


def test_the_standin_clip_gives_a_clip_score_named_as_a_standin(standin_clip, digits32):
    images, captions = digits32
    prompts = [captions[i][0] for i in TEST_IDS]
    cfg = UtilityConfig(num_images=len(TEST_IDS), clip_path="standin", num_bootstrap=20)
    result = compute_clip_score(images[TEST_IDS], prompts, cfg, standin=standin_clip)
    assert 0 < result["clip_score"] <= 100 and result["clip_absent_reason"] is None
    assert result["clip_model"] == f"{STANDIN_CLIP_LABEL} (32 px, projection 64-d)"
    assert is_standin_label(result["clip_model"]) and not is_standin_label("clip-vit-large-patch14")
    with pytest.raises(ValueError, match="utility.clip_path is 'standin', but no stand-in was given"):
        compute_clip_score(images[TEST_IDS], prompts, cfg)


def test_the_standin_descriptor_is_the_pixel_correlation(digits32, tmp_path):
    """Through the copy-score code: 1 for an image with itself or a brighter, lower-contrast copy of it, -1 for its
    negative, below 1 for another image of the same digit."""
    images, _ = digits32
    path = tmp_path / "copy_descriptor.pt"
    write_copy_descriptor(path)
    model = load_descriptor(path)  # as memorization.copy_descriptor is read
    x = images[0:1]
    same_digit = next(i for i in range(1, 64) if LABELS[i] == LABELS[0])
    generated = torch.cat([x, 0.5 * x + 0.2, -x, images[same_digit : same_digit + 1]])
    scores = copy_similarities(
        descriptors(model, generated), descriptors(model, x.expand(4, -1, -1, -1)), descriptors(model, x)
    )
    np.testing.assert_allclose(scores["own"][:3], [1.0, 1.0, -1.0], atol=1e-6)
    assert 0.0 < scores["own"][3] < 0.99


def test_scorer_keys_resolve_standin_to_the_stage_outputs(tmp_path):
    assert (
        scorer_path("resources/sscd.pt", tmp_path / "x.pt", "memorization.copy_descriptor").name == "sscd.pt"
    )
    assert scorer_path("standin", tmp_path / "x.pt", "memorization.copy_descriptor") == tmp_path / "x.pt"
    with pytest.raises(ValueError, match="memorization.copy_descriptor is 'standin'"):
        scorer_path("standin", None, "memorization.copy_descriptor")


@pytest.mark.parametrize(
    "scorers",
    [{"memorization": {"copy_descriptor": "standin"}}, {"utility": {"clip_path": "standin"}}],
    ids=["descriptor", "clip"],
)
def test_standin_scorers_belong_to_the_text2image_experiment(scorers):
    with pytest.raises(ValueError, match="text2image.enabled is false"):
        ExperimentConfig.from_mapping({**scorers, "text2image": {"enabled": False}})
    ExperimentConfig.from_mapping({**scorers, "text2image": {"enabled": True}})


def test_the_stage_writes_both_standins_and_the_scoring_stage_reads_them(tmp_path):
    """`t2i-standin-scorers` on a 40-image population; `image_scorers` of a config whose keys are "standin" loads
    the CLIP folder and the descriptor and names both as stand-ins."""
    from dualmd.config.experiment import load_config
    from dualmd.stages.t2i_prompt_memorization import image_scorers

    config = {
        "dataset": {"name": "digits", "image_size": 32, "channels": 3, "max_images": 64},
        "split": {"num_images": 24, "member_fraction": 0.5},
        "text2image": {
            "enabled": True,
            "standin_scorers": {"num_steps": 2, "batch_size": 8, "num_heldout_images": 8},
        },
        "memorization": {"copy_descriptor": "standin", "clip_path": "standin"},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    data = ["--images", str(tmp_path / "images.npz"), "--split", str(tmp_path / "split.npz")]
    data += ["--split-meta", str(tmp_path / "split.json")]
    main(["prepare-data", "--config", str(cfg), "--out", data[1], "--meta", str(tmp_path / "d.json")])
    main(["split", "--config", str(cfg), "--images", data[1], "--out", data[3], "--meta", data[5]])
    clip, descriptor = tmp_path / "scorers/clip", tmp_path / "scorers/copy_descriptor.pt"
    main(
        [
            "t2i-standin-scorers",
            "--config",
            str(cfg),
            *data,
            "--clip",
            str(clip),
            "--descriptor",
            str(descriptor),
        ]
    )
    assert json.loads((clip / RECORD).read_text())["population_size"] == 40
    scorers = image_scorers(load_config(cfg), "cpu", clip=clip, descriptor=descriptor)
    assert scorers.descriptor is not None and scorers.clip is not None
    assert scorers.descriptor_name == STANDIN_DESCRIPTOR_LABEL
    assert scorers.clip_name.startswith(STANDIN_CLIP_LABEL)
    with pytest.raises(ValueError, match="memorization.copy_descriptor is 'standin'"):
        image_scorers(load_config(cfg), "cpu", clip=clip)
