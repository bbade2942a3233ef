"""White-box attacks on latents with the caption as condition: the score contract, PIA with classifier-free
guidance computed by hand, SecMI-NN's classifier on the captioned error maps, and members of a fine-tuned tiny
model scoring above non-members."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers.text2image import PRIVATE, short_run
from sklearn.metrics import roc_auc_score

from dualmd.attacks.secmi_nn import SecMINN, error_maps
from dualmd.config.attacks import AttackConfig, LossAttackConfig, PIAConfig, SecMIConfig, SecMINNConfig
from dualmd.models.adapter import Schedule
from dualmd.text2image.attack import (
    WHITEBOX_ATTACKS,
    CaptionedPredictor,
    attack_text2image,
    encode_latents,
)
from dualmd.text2image.captions import CaptionSampler
from dualmd.text2image.components import encode_prompts
from dualmd.text2image.finetune import finetune_unet, load_finetuned_unet

MEMBERS, NONMEMBERS = list(PRIVATE)[:8], list(PRIVATE)[8:16]
IDS = MEMBERS + NONMEMBERS
IS_MEMBER = np.array([True] * 8 + [False] * 8)
CFG = AttackConfig(
    batch_size=16,
    loss=LossAttackConfig(timesteps=(50, 100, 200)),
    pia=PIAConfig(timestep=100, sweep_timesteps=(50,)),
    secmi=SecMIConfig(t_sec=100, k=20),
    secmi_nn=SecMINNConfig(train_fraction=0.5, num_epochs=2, batch_size=4),
)
#: The attacks that score every sample batch by batch (secmi_nn trains on a labelled slice and scores the rest).
BATCHED = [a for a in WHITEBOX_ATTACKS if a != "secmi_nn"]


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


@pytest.mark.parametrize("name", BATCHED)
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


W = 7.5


def test_guided_prediction_is_the_classifier_free_combination(parts):
    """eps_u + w (eps_c - eps_u) with eps_c, eps_u the UNet's predictions for the caption and the empty prompt."""
    cond = encode_prompts(parts, ["a handwritten digit one", "a bold two at the top left"])
    uncond = encode_prompts(parts, ["", ""])
    guided = CaptionedPredictor(parts.unet, cond, guidance_scale=W, uncond_states=uncond)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([100, 300])
    eps_c, eps_u = CaptionedPredictor(parts.unet, cond)(x, t), CaptionedPredictor(parts.unet, uncond)(x, t)
    torch.testing.assert_close(guided(x, t), eps_u + W * (eps_c - eps_u), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="empty prompt's states"):
        CaptionedPredictor(parts.unet, cond, guidance_scale=W)
    with pytest.raises(ValueError, match="captions bound for 2"):
        guided(torch.zeros(4, 4, 8, 8), torch.zeros(4, dtype=torch.long))


def test_pia_uses_the_guided_prediction(parts, digits32):
    """PIA by hand on guided predictions: eps^ = g(z_0, 0), z_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps^, score
    -sum |eps^ - g(z_t, t)|^4 with g = eps_u + w (eps_c - eps_u); guidance changes the scores."""
    images, captions = digits32
    cfg = replace(CFG, pia=PIAConfig(timestep=100, sweep_timesteps=(50,), guidance_scale=W))
    result = run("pia", parts, digits32, cfg=cfg)
    z0 = encode_latents(parts, images[IDS])
    cond = CaptionedPredictor(parts.unet, encode_prompts(parts, [captions[i][0] for i in IDS]))
    uncond = CaptionedPredictor(parts.unet, encode_prompts(parts, [""] * len(IDS)))

    def g(x, t):
        steps = torch.full((len(x),), t, dtype=torch.long)
        eps_u = uncond(x, steps)
        return eps_u + W * (cond(x, steps) - eps_u)

    alpha_bar = Schedule.from_scheduler(parts.scheduler).alphas_cumprod[100].double()
    eps_hat = g(z0, 0).double()
    z_t = (alpha_bar.sqrt() * z0.double() + (1 - alpha_bar).sqrt() * eps_hat).float()
    expected = -((eps_hat - g(z_t, 100).double()).abs() ** 4).flatten(1).sum(dim=1)
    np.testing.assert_allclose(result.scores, expected.numpy(), rtol=1e-3)
    assert not np.allclose(result.scores, run("pia", parts, digits32).scores, rtol=1e-2)


def test_secmi_nn_classifies_the_error_maps_of_the_captioned_latents(parts, digits32):
    """The attack is SecMI-NN's classifier on SecMI's error maps of the latents, each with its own caption: the
    held-out half of members and non-members is scored, as `SecMINN.classify` scores maps computed by hand."""
    images, captions = digits32
    result = run(
        "secmi_nn", parts, digits32, cfg=replace(CFG, batch_size=5)
    )  # batches of 5, 5, 5, 1 captions
    held_out = [
        i for i in IDS if i not in MEMBERS[:4] + NONMEMBERS[:4]
    ]  # train_fraction 0.5: the first 4 each
    assert list(result.sample_ids) == held_out and np.isfinite(result.scores).all()
    assert result.is_member.tolist() == [True] * 4 + [False] * 4 and result.extra["t_error"].shape == (8,)
    latents, schedule = encode_latents(parts, images[IDS]), Schedule.from_scheduler(parts.scheduler)
    maps = []
    for start in range(0, 16, 5):  # the same batches (the classifier's SGD amplifies batch-shaped rounding)
        batch = IDS[start : start + 5]
        predictor = CaptionedPredictor(parts.unet, encode_prompts(parts, [captions[i][0] for i in batch]))
        maps.append(error_maps(predictor, schedule, latents[start : start + 5], CFG.secmi, 5))
    by_hand = SecMINN(cfg=CFG).classify(torch.cat(maps), np.array(IDS), IS_MEMBER)
    np.testing.assert_allclose(result.scores, by_hand.scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.extra["t_error"], by_hand.extra["t_error"], rtol=1e-6)
    other = attack_text2image(
        "secmi_nn",
        CFG,
        parts=parts,
        images=images[IDS],
        captions=[captions[i][0] for i in reversed(IDS)],
        sample_ids=np.array(IDS),
        is_member=IS_MEMBER,
    )
    assert not np.allclose(other.extra["t_error"], result.extra["t_error"], rtol=1e-3)  # the captions count


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
