"""The DualMD text-to-image pipeline: it alternates the two UNets at every step, and saves and loads."""

import pytest
import torch
from diffusers import DDIMScheduler

from dualmd.text2image.components import save_pipeline, tiny_cond_unet
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline

PROMPTS = ["a handwritten digit one", "a bold nine at the top left"]


@pytest.fixture
def pair(parts):
    unet2 = tiny_cond_unet(seed=7)  # outputs differ from the pretrained UNet's
    scheduler = DDIMScheduler.from_config(parts.scheduler.config)
    return DualMDStableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet1=parts.unet.eval(),
        unet2=unet2.eval(),
        scheduler=scheduler,
    )


def test_step_i_uses_unet_1_then_2_alternately_with_guidance(pair):
    calls = []
    pair.unet1.register_forward_hook(lambda m, a, kw_out=None: calls.append((1, a[0].shape[0])))
    pair.unet2.register_forward_hook(lambda m, a, kw_out=None: calls.append((2, a[0].shape[0])))
    out = pair(PROMPTS, num_inference_steps=5, guidance_scale=7.5, seed=0)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    # one call per step on the doubled batch (unconditional + conditional halves): CFG inside one UNet
    assert calls == [(1, 4), (2, 4), (1, 4), (2, 4), (1, 4)]
    assert pair.teacher_sequence(5) == "12121"


def test_alternation_changes_the_result_and_a_pair_of_equal_unets_is_one_model(pair, parts):
    mixed = pair(PROMPTS, num_inference_steps=4, seed=1, output_type="latent")
    same = DualMDStableDiffusionPipeline(**{**pair.components, "unet2": pair.unet1})
    alone = same(PROMPTS, num_inference_steps=4, seed=1, output_type="latent")
    assert not torch.allclose(mixed, alone)
    # guidance and per-image seeds: the first image does not depend on the second prompt
    assert torch.allclose(
        alone[:1], same(PROMPTS[:1], num_inference_steps=4, seed=1, output_type="latent"), atol=1e-5
    )


def test_save_and_load_give_the_same_images(pair, tmp_path):
    pair.save_pretrained(tmp_path / "dualmd")
    loaded = DualMDStableDiffusionPipeline.from_pretrained(tmp_path / "dualmd")
    a = pair(PROMPTS, num_inference_steps=3, seed=2)
    assert torch.allclose(a, loaded(PROMPTS, num_inference_steps=3, seed=2), atol=1e-5)
    assert len(loaded(PROMPTS[0], num_inference_steps=2, output_type="pil")) == 1


def test_from_teachers_needs_a_shared_vae_and_text_encoder(parts, tmp_path):
    save_pipeline(tmp_path / "t1", parts)
    save_pipeline(tmp_path / "t2", parts, unet=tiny_cond_unet(seed=7))
    pipe = DualMDStableDiffusionPipeline.from_teachers(tmp_path / "t1", tmp_path / "t2")
    assert not torch.equal(pipe.unet1.conv_in.weight, pipe.unet2.conv_in.weight)
    torch.nn.init.zeros_(parts.vae.decoder.conv_out.weight)
    save_pipeline(tmp_path / "t3", parts)
    with pytest.raises(ValueError, match="vae weights differ"):
        DualMDStableDiffusionPipeline.from_teachers(tmp_path / "t1", tmp_path / "t3")


def test_images_do_not_depend_on_the_batch_size(pair):
    prompts = PROMPTS + ["a small grey picture of the digit five"]
    whole = pair(prompts, num_inference_steps=3, seed=4, eta=1.0, batch_size=3, output_type="latent")
    parts = pair(prompts, num_inference_steps=3, seed=4, eta=1.0, batch_size=2, output_type="latent")
    assert torch.allclose(whole, parts, atol=1e-4)  # float rounding of batch-shaped kernels only
