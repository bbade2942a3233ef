"""White-box attacks on latents with the caption as condition: the score contract, and members of a fine-tuned
tiny model scoring above non-members."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers.text2image import PRIVATE, short_run
from sklearn.metrics import roc_auc_score

from dualmd.config.attacks import AttackConfig, LossAttackConfig, PIAConfig, SecMIConfig
from dualmd.text2image.attack import WHITEBOX_ATTACKS, CaptionedPredictor, attack_text2image
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.finetune import finetune_unet, load_finetuned_unet

MEMBERS, NONMEMBERS = list(PRIVATE)[:8], list(PRIVATE)[8:16]
IDS = MEMBERS + NONMEMBERS
IS_MEMBER = np.array([True] * 8 + [False] * 8)
CFG = AttackConfig(
    batch_size=16,
    loss=LossAttackConfig(timesteps=(50, 100, 200)),
    pia=PIAConfig(timestep=100, sweep_timesteps=(50,)),
    secmi=SecMIConfig(t_sec=100, k=20),
)


def run(name, parts, digits32, *, unet=None, cfg=CFG, ids=IDS, is_member=IS_MEMBER):
    images, captions = digits32
    return attack_text2image(
        name,
        cfg,
        parts=parts,
        images=images[ids],
        captions=[captions[i][0] for i in ids],  # the original caption of each image
        sample_ids=np.array(ids),
        is_member=is_member,
        unet=unet,
    )


@pytest.mark.parametrize("name", WHITEBOX_ATTACKS)
def test_scores_follow_the_contract(name, parts, digits32):
    result = run(name, parts, digits32)
    assert result.scores.shape == (16,) and np.isfinite(result.scores).all()
    assert result.attack == name and list(result.sample_ids) == IDS
    again = run(name, parts, digits32, cfg=replace(CFG, batch_size=3))
    np.testing.assert_allclose(again.scores, result.scores, rtol=1e-5, atol=1e-8)  # batch size is irrelevant
    for key, values in result.extra.items():
        np.testing.assert_allclose(again.extra[key], values, rtol=1e-5, atol=1e-8)


def test_captions_condition_the_prediction_and_bad_inputs_are_refused(parts, digits32):
    images, captions = digits32
    one = run("loss", parts, digits32).scores
    swapped = list(reversed([captions[i][0] for i in IDS]))
    other = attack_text2image(
        "loss",
        CFG,
        parts=parts,
        images=images[IDS],
        captions=swapped,
        sample_ids=np.array(IDS),
        is_member=IS_MEMBER,
    ).scores
    assert not np.allclose(one, other)
    with pytest.raises(ValueError, match="is not a white-box text-to-image attack"):
        run("gsa", parts, digits32)
    with pytest.raises(ValueError, match="distinct non-negative"):
        run("loss", parts, digits32, ids=[64] * 16)
    predictor = CaptionedPredictor(parts.unet, torch.zeros(2, 16, 32))
    with pytest.raises(ValueError, match="captions bound for 2"):
        predictor(torch.zeros(3, 4, 8, 8), torch.zeros(3, dtype=torch.long))


@pytest.fixture(scope="module")
def finetuned(pretrained_dir, digits32, tmp_path_factory):
    """The pretrained tiny pipeline fine-tuned on the 8 MEMBERS for 150 steps (original captions only)."""
    from dualmd.text2image.components import load_components

    images, captions = digits32
    parts = load_components(pretrained_dir)
    root = tmp_path_factory.mktemp("finetuned")
    finetune_unet(
        parts=parts,
        images=images[MEMBERS],
        image_ids=MEMBERS,
        sampler=CaptionSampler(captions=captions, diversify=False),
        train_cfg=short_run(150, batch_size=8, ema_decay=0.9),
        out_dir=root / "baseline",
        state_dir=root / "state",
        metadata={"model_id": "baseline", "subset": "members"},
    )
    return load_finetuned_unet(root / "baseline", "raw")


@pytest.mark.parametrize("name", ["loss", "pia", "secmi_stat"])
def test_fine_tuning_raises_members_scores_above_non_members(name, parts, digits32, finetuned):
    before = run(name, parts, digits32).scores  # the pretrained model: neither set was trained on
    after = run(name, parts, digits32, unet=finetuned).scores
    gain = after - before
    # Calibrated by the pretrained model, every member gains more than every non-member on this easy case.
    assert roc_auc_score(IS_MEMBER, gain) >= 0.9
    assert after[IS_MEMBER].mean() > after[~IS_MEMBER].mean()
