"""Pang & Wang's black-box attack on a text-to-image sampler: generations seeded per candidate id, the encoders
(the DeiT one from a local folder only), and the Table 4 report."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import DDIMScheduler

from dualmd.cli import main
from dualmd.config.attacks import AttackConfig, PangWangConfig
from dualmd.config.sections import SampleConfig
from dualmd.scores import AttackResult, save_scores
from dualmd.text2image.blackbox import generation_seeds, load_encoder, pang_wang_features
from dualmd.text2image.pipeline import DualMDStableDiffusionPipeline


@pytest.fixture
def pipe(parts):
    return DualMDStableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet1=parts.unet.eval(),
        unet2=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler.config),
    )


def _features(pipe, images, captions, ids, batch_size):
    cfg = AttackConfig(
        batch_size=batch_size,
        seed=3,
        pang_wang=PangWangConfig(num_generations=2, num_inference_steps=2, encoder="pixels"),
    )
    encoder = load_encoder(cfg.pang_wang)
    return pang_wang_features(
        pipe, encoder, images=images, prompts=captions, sample_ids=ids, cfg=cfg, sample=SampleConfig()
    )


def test_generations_are_seeded_by_candidate_id_not_by_batch(pipe, digits32):
    images, captions = digits32
    ids = np.array([70, 71, 72])
    prompts = [captions[i][0] for i in ids]
    together = _features(pipe, images[ids], prompts, ids, batch_size=3)
    alone = _features(pipe, images[ids[2:]], prompts[2:], ids[2:], batch_size=1)
    # equal up to float rounding in batched convolutions, which can move one pixel across a quantisation step
    np.testing.assert_allclose(alone, together[2:], atol=1e-4)
    assert together.shape == (3, 192) and np.isfinite(together).all()
    # another id (same image and caption) draws other generations
    moved = _features(pipe, images[ids[2:]], prompts[2:], np.array([99]), batch_size=1)
    assert np.abs(moved - alone).max() > 10 * 1e-4  # well beyond the rounding above
    assert generation_seeds(3, [72], 0) != generation_seeds(3, [72], 1)  # the generations differ too


def test_deit_encoder_loads_from_a_local_folder_and_gives_token_features(tmp_path):
    from transformers import DeiTConfig, DeiTImageProcessor, DeiTModel

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    DeiTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "deit")
    DeiTImageProcessor(
        size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(tmp_path / "deit")
    encoder = load_encoder(PangWangConfig(encoder="deit", encoder_path=str(tmp_path / "deit")))
    images = torch.rand(2, 3, 24, 24) * 2 - 1
    embeddings = encoder.embed(images)
    assert encoder.similarity == "token_cosine" and embeddings.shape == (2, 16 + 2, 16)  # cls + distillation
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_encoder(PangWangConfig(encoder="deit", encoder_path=str(tmp_path / "missing")))


def test_table4_has_every_sampler_and_variant_in_the_paper_order(tmp_path):
    cfg = tmp_path / "metrics.yaml"
    cfg.write_text(yaml.safe_dump({"metrics": {"tpr_at_fpr": [0.01], "num_bootstrap": 20}}))
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = []
    for sampler in ("student", "dualmd", "baseline"):
        for suffix in ("", "_pd"):
            path = tmp_path / f"{sampler}{suffix}.npz"
            separation = 4.0 if (sampler, suffix) == ("baseline", "") else 0.0
            values = rng.normal(size=200) + separation * is_member
            save_scores(AttackResult(np.arange(200), is_member, values, attack="pang_wang"), path)
            scores.append(str(path))
    metrics = tmp_path / "pang_wang.json"
    main(
        [
            "evaluate",
            "--config",
            str(cfg),
            "--attack",
            "pang_wang",
            "--scores",
            *scores,
            "--out",
            str(metrics),
        ]
        + ["--roc", str(tmp_path / "roc.csv"), "--plot", str(tmp_path / "roc.png")]
    )
    csv, md = tmp_path / "t4.csv", tmp_path / "t4.md"
    main(
        ["t2i-blackbox-report", "--config", str(cfg), "--attacks", str(metrics), "--out", str(csv)]
        + ["--markdown", str(md)]
    )
    table = pd.read_csv(csv)
    assert list(table["method"]) == ["No defense"] * 2 + ["DualMD"] * 2 + ["DistillMD"] * 2
    assert list(table["prompt_diversification"]) == [False, True] * 3
    assert table.loc[0, "auc"] > 0.95 and {"auc_low", "auc_high", "asr", "tpr_at_fpr_0.01"} <= set(table)
    text = md.read_text()
    assert "Table 4" in text and "| Pang & Wang | DualMD |" in text and "AUC (w/ PD)" in text


@pytest.mark.inception
def test_inception_encoder_takes_the_configured_input_size():
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    small = load_encoder(PangWangConfig(encoder="inception", encoder_image_size=96))
    assert "96x96 px input" in small.name and small.similarity == "product"
    assert small.embed(images).shape == (2, 2048)
    assert "px input" not in load_encoder(PangWangConfig(encoder="inception")).name  # 299: the FID network
