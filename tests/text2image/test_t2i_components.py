"""The tiny tokenizer files, the tiny SD-shaped components, and pretraining them into a pipeline folder."""

import ast

import pytest
import torch
from diffusers import StableDiffusionPipeline
from helpers.text2image import POPULATION, PRIVATE, short_run

from dualmd.text2image.captions import (
    CaptionSampler,
    caption_words,
    load_digit_captions,
    with_unique_captions,
)
from dualmd.text2image.components import encode_prompts, tiny_components, tiny_vae
from dualmd.text2image.pretrain import pretrain_unet, pretrain_vae
from dualmd.text2image.tokenizer import TOKENIZER_DIR, load_tokenizer, write_tokenizer_files
from dualmd.train.checkpoint import run_hash


def test_shipped_tokenizer_files_are_what_the_builder_writes(tmp_path):
    write_tokenizer_files(tmp_path, caption_words())
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_text() == (TOKENIZER_DIR / name).read_text(), f"rebuild {name}"


def test_every_caption_word_is_one_token_and_other_text_still_tokenizes():
    tok = load_tokenizer()
    for word in caption_words():
        ids = tok(word).input_ids
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == 3, word
    ids = tok("Hello, 42!").input_ids  # bytes outside the caption words: no unknown token
    assert tok.unk_token_id not in ids[1:-1]
    longest = max(len(tok(c).input_ids) for per in load_digit_captions() for c in per)
    assert longest <= tok.model_max_length


def test_text_encoder_is_deterministic_and_distinct_per_caption():
    a, b = tiny_components(seed=0), tiny_components(seed=0)
    prompts = ["a thin zero at the top left", "a thin zero at the top right", ""]
    states = encode_prompts(a, prompts)
    assert states.shape == (3, tok_len(a), 32)
    assert torch.equal(states, encode_prompts(b, prompts))
    assert (states[0] - states[1]).abs().max() > 1e-3
    assert (states[0] - states[2]).abs().max() > 1e-3


def tok_len(parts):
    return parts.tokenizer.model_max_length


def test_vae_pretraining_lowers_the_loss_and_sets_the_scaling_factor(digits32):
    images = digits32[0][:32]
    vae = tiny_vae()
    record = pretrain_vae(vae, images, num_steps=10, batch_size=8)
    assert record["loss_curve"][-1][1] < record["loss_curve"][0][1]
    assert vae.config.scaling_factor == pytest.approx(record["scaling_factor"])
    assert vae.encode(images[:2]).latent_dist.mean.shape == (2, 4, 8, 8)  # 4x downsampling


def test_pretrained_pipeline_loads_in_diffusers_and_generates(pretrained_dir):
    record = ast.literal_eval((pretrained_dir.parent / "record.txt").read_text())
    assert record["unet"]["loss_curve"][-1][1] < record["unet"]["loss_curve"][0][1]
    pipe = StableDiffusionPipeline.from_pretrained(pretrained_dir, safety_checker=None)
    out = pipe(
        "a handwritten digit three",
        num_inference_steps=3,
        height=32,
        width=32,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("train_text_encoder", [False, True], ids=["frozen", "trained"])
def test_pretraining_text_encoder_sees_the_population_captions_only(digits32, tmp_path, train_text_encoder):
    """Trained, the text encoder leaves pretraining changed and frozen; trained or not, every caption it encoded
    belongs to an image outside the private set (none of PRIVATE's unique captions)."""
    images, templates = digits32
    captions = with_unique_captions(templates, seed=0)
    parts = tiny_components()
    init = {k: v.clone() for k, v in parts.text_encoder.state_dict().items()}
    seen = []  # every batch of token ids the text encoder was called with
    parts.text_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    record = pretrain_unet(
        parts,
        images[list(POPULATION)],
        list(POPULATION),
        CaptionSampler(captions=captions, dropout=0.1),
        short_run(12, batch_size=8, lr=5e-3),
        tmp_path,
        train_text_encoder=train_text_encoder,
    )
    texts = {parts.tokenizer.decode(row, skip_special_tokens=True).strip() for ids in seen for row in ids}
    population = {c for i in POPULATION for c in captions[i]} | {""}
    assert texts <= population
    assert not texts & {captions[i][0] for i in PRIVATE}
    assert texts & {captions[i][0] for i in POPULATION}  # the population's unique originals were used
    state = parts.text_encoder.state_dict()
    moved = max((state[k] - v).abs().max().item() for k, v in init.items())
    assert not parts.text_encoder.training
    assert not any(p.requires_grad for p in parts.text_encoder.parameters())
    if train_text_encoder:
        assert moved > 1e-3
        assert record["text_encoder"] == {
            "trained": True,
            "num_captions": len(population),
            "captions_sha256": run_hash({"captions": sorted(population)}),
        }
    else:
        assert moved == 0.0 and record["text_encoder"] == {"trained": False}
