"""The text-to-image stages through the command line, on a tiny config: pretrain, choose the memorized prompts,
fine-tune baseline and teachers, distil the student, score an attack, score the memorized prompts (with Wen et
al.'s mitigation and a copy descriptor), detect memorized prompts from two lists on the pretrained pipeline; each
output is what the next stage and diffusers read."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from diffusers import StableDiffusionPipeline

from dualmd.attacks.base import load_scores
from dualmd.cli import main
from dualmd.text2image.experiment import population

CONFIG = {
    "dataset": {"name": "digits", "image_size": 32, "channels": 3, "max_images": 64},
    "split": {"num_images": 24, "member_fraction": 0.5},
    "train": {"num_train_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every_steps": 1},
    "text2image": {
        "enabled": True,
        "pretrain_vae_steps": 2,
        "pretrain_unet_steps": 2,
        # 2 of D1's 6 images have a third caption no other member shares: 1 memorized, 1 other
        "memorized_prompts": {"num_images": 1, "repeats": 3, "prompt_caption": 2, "num_generations": 2},
        "mitigation": {"enabled": True, "max_iterations": 2},
        "prompt_detection": {"num_generations": 2, "num_steps": 2},
    },
    "sample": {"num_images": 5, "num_inference_steps": 3, "batch_size": 4},
    "attack": {
        "names": ["loss", "pang_wang"],
        "batch_size": 8,
        "loss": {"timesteps": [100]},
        "pang_wang": {"num_generations": 2, "num_inference_steps": 2, "encoder": "pixels"},
    },
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Every stage once, in workflow order; returns the folder holding the outputs."""
    root = tmp_path_factory.mktemp("t2i_stages")
    torch.jit.script(ChannelMeans()).save(str(root / "means.pt"))
    (root / "memorized.txt").write_text("a handwritten digit two\n\na bold two at the top left\n")
    (root / "ordinary.txt").write_text("a thin seven\na small grey picture of the digit five\nzero\n")
    lists = {"memorized_list": str(root / "memorized.txt"), "ordinary_list": str(root / "ordinary.txt")}
    config = {**CONFIG, "memorization": {"copy_descriptor": str(root / "means.pt")}}
    config["text2image"] = {
        **CONFIG["text2image"],
        "prompt_detection": {**CONFIG["text2image"]["prompt_detection"], **lists},
    }
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    data = ["--images", str(root / "images.npz"), "--split", str(root / "split.npz")]
    data += ["--split-meta", str(root / "split.json")]
    memorized = ["--memorized", str(root / "prompts.json")]
    main(
        [
            "prepare-data",
            "--config",
            str(cfg),
            "--out",
            str(root / "images.npz"),
            "--meta",
            str(root / "d.json"),
        ]
    )
    main(
        [
            "split",
            "--config",
            str(cfg),
            "--images",
            str(root / "images.npz"),
            "--out",
            str(root / "split.npz"),
        ]
        + ["--meta", str(root / "split.json")]
    )
    main(["t2i-memorized-prompts", "--config", str(cfg), *data[2:], "--out", str(root / "prompts.json")])
    main(
        [
            "t2i-pretrain",
            "--config",
            str(cfg),
            *data,
            "--out",
            str(root / "pretrained"),
            "--state-dir",
            str(root / "s0"),
        ]
    )
    for model in ("baseline", "teacher1", "teacher2"):
        main(
            [
                "t2i-train",
                "--config",
                str(cfg),
                *data,
                "--model",
                model,
                "--pretrained",
                str(root / "pretrained"),
            ]
            + ["--out", str(root / model), "--state-dir", str(root / f"s_{model}"), *memorized]
        )
    main(
        [
            "t2i-distill",
            "--config",
            str(cfg),
            *data,
            "--model",
            "student",
            "--pretrained",
            str(root / "pretrained"),
        ]
        + ["--teachers", f"teacher1={root / 'teacher1'}", "--teachers", f"teacher2={root / 'teacher2'}"]
        + ["--out", str(root / "student"), "--state-dir", str(root / "s_student"), *memorized]
    )
    main(
        ["t2i-attack", "--config", str(cfg), "--attack", "loss", *data, "--out-dir", str(root / "scores")]
        + ["--targets", f"baseline={root / 'baseline'}", "--targets", f"teacher1={root / 'teacher1'}"]
        + memorized
    )
    for sampler in ("baseline", "dualmd"):
        main(
            ["t2i-blackbox", "--config", str(cfg), "--attack", "pang_wang", *data, "--sampler", sampler]
            + [f"--models={m}={root / m}" for m in ("baseline", "teacher1", "teacher2")]
            + ["--out", str(root / f"blackbox_{sampler}.npz"), *memorized]
        )
        main(
            ["t2i-sample", "--config", str(cfg), "--split", str(root / "split.npz"), "--split-meta"]
            + [str(root / "split.json"), "--sampler", sampler, "--out", str(root / f"{sampler}.npz")]
            + ["--info", str(root / f"{sampler}.json"), "--grid", str(root / f"{sampler}.png")]
            + [f"--models={m}={root / m}" for m in ("baseline", "teacher1", "teacher2")]
            + memorized
        )
    models = [f"--models={m}={root / m}" for m in ("baseline", "teacher1", "teacher2", "student")]
    main(
        ["t2i-prompt-memorization", "--config", str(cfg), *data, *memorized, *models]
        + ["--out-dir", str(root / "memorization")]
    )
    main(
        ["t2i-memorization-report", "--config", str(cfg), "--scores"]
        + [str(p) for p in sorted((root / "memorization").glob("*.csv"))]
        + ["--out", str(root / "pm.csv"), "--copy-table", str(root / "pmc.csv"), "--markdown"]
        + [str(root / "pm.md"), "--t-error-plot", str(root / "te.png"), "--noise-plot", str(root / "nm.png")]
    )
    main(
        ["t2i-prompt-detection", "--config", str(cfg), "--pipeline", str(root / "pretrained")]
        + ["--memorized-prompts", lists["memorized_list"], "--ordinary-prompts", lists["ordinary_list"]]
        + [
            "--out",
            str(root / "pd.csv"),
            "--summary",
            str(root / "pd.json"),
            "--markdown",
            str(root / "pd.md"),
        ]
        + ["--plot", str(root / "pd.png")]
    )
    return root


class ChannelMeans(torch.nn.Module):
    """A copy descriptor: the mean of each channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_pretraining_uses_only_images_outside_the_split(run):
    split = np.load(run / "split.npz")
    outside = population(64, split["member_idx"], split["nonmember_idx"])
    in_split = set(split["member_idx"]) | set(split["nonmember_idx"])
    assert len(outside) == 40 and not set(outside) & in_split
    assert json.loads((run / "pretrained/metadata.json").read_text())["population_size"] == 40


@pytest.mark.parametrize("model", ["baseline", "teacher1", "teacher2", "student"])
def test_every_model_is_a_stable_diffusion_folder_with_its_provenance(run, model):
    meta = json.loads((run / model / "metadata.json").read_text())
    assert meta["model_id"] == model and meta["subset"] == {"teacher1": "half1", "teacher2": "half2"}.get(
        model, "members"
    )
    pipe = StableDiffusionPipeline.from_pretrained(run / model, safety_checker=None)
    assert pipe.unet.config.sample_size == 8


def test_attack_scores_each_target_on_its_members_and_the_non_members(run):
    split = np.load(run / "split.npz")
    baseline, teacher1 = load_scores(run / "scores/baseline.npz"), load_scores(run / "scores/teacher1.npz")
    assert baseline.is_member.sum() == 12 and teacher1.is_member.sum() == 6
    assert set(teacher1.sample_ids[teacher1.is_member]) == set(split["half1_idx"])
    assert np.isfinite(baseline.scores).all()


def test_the_stages_refuse_a_config_without_text2image(run, tmp_path):
    cfg = tmp_path / "off.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "text2image": {"enabled": False}}))
    with pytest.raises(SystemExit):
        main(
            ["t2i-pretrain", "--config", str(cfg), "--images", str(run / "images.npz"), "--split"]
            + [str(run / "split.npz"), "--split-meta", str(run / "split.json"), "--out", str(tmp_path / "p")]
            + ["--state-dir", str(tmp_path / "s")]
        )


def test_samplers_prompt_with_member_captions_and_dualmd_alternates(run):
    from dualmd.images import load_samples

    for sampler in ("baseline", "dualmd"):
        assert load_samples(run / f"{sampler}.npz").shape == (5, 3, 32, 32)
    info = json.loads((run / "dualmd.json").read_text())
    assert info["teacher_sequence"] == "121" and len(info["prompts"]) == 5
    assert "teacher_sequence" not in json.loads((run / "baseline.json").read_text())


@pytest.mark.parametrize("sampler", ["baseline", "dualmd"])
def test_blackbox_attack_scores_the_held_out_half_of_each_sampler(run, sampler):
    split = np.load(run / "split.npz")
    result = load_scores(run / f"blackbox_{sampler}.npz")
    # 12 members and 12 non-members; the first 6 of each fit the Gaussians, the other 6 + 6 are scored
    assert result.attack == "pang_wang" and result.is_member.sum() == 6 and (~result.is_member).sum() == 6
    np.testing.assert_array_equal(result.sample_ids[result.is_member], split["member_idx"][6:])
    np.testing.assert_array_equal(result.sample_ids[~result.is_member], split["nonmember_idx"][6:])
    assert np.isfinite(result.scores).all()


def test_blackbox_stage_refuses_a_white_box_attack(run):
    with pytest.raises(SystemExit):
        main(
            ["t2i-blackbox", "--config", str(run / "config.yaml"), "--attack", "loss", "--images"]
            + [
                str(run / "images.npz"),
                "--split",
                str(run / "split.npz"),
                "--split-meta",
                str(run / "split.json"),
            ]
            + [
                "--sampler",
                "baseline",
                f"--models=baseline={run / 'baseline'}",
                "--out",
                str(run / "x.npz"),
            ]
        )


def test_memorized_images_are_repeated_only_by_the_models_of_their_half(run):
    split = np.load(run / "split.npz")
    selection = json.loads((run / "prompts.json").read_text())
    memorized, other = selection["memorized_ids"], selection["other_ids"]
    assert len(memorized) == len(other) == 1 and set(memorized + other) <= set(split["half1_idx"])
    repeated = {
        m: json.loads((run / m / "metadata.json").read_text())["memorized_prompts"]["repeated_ids"]
        for m in ("baseline", "teacher1", "teacher2", "student")
    }
    assert repeated == {"baseline": memorized, "teacher1": memorized, "teacher2": [], "student": memorized}
    # the samplers prompt with each member's first caption: a chosen image's prompt (its third caption) for it
    from dualmd.text2image.captions import load_digit_captions

    captions = load_digit_captions(64)
    chosen = selection["prompts"]
    members = split["member_idx"]
    expected = [chosen.get(str(i), captions[i][0]) for i in members]
    assert json.loads((run / "baseline.json").read_text())["prompts"] == expected[:5]
    assert set(chosen.values()) == {captions[i][2] for i in memorized + other}


def test_prompt_memorization_scores_every_model_and_dualmd(run):
    from dualmd.text2image.memorization_report import ROW_COLUMNS

    files = {p.stem: pd.read_csv(p) for p in (run / "memorization").glob("*.csv")}
    assert set(files) == {"baseline", "teacher1", "teacher2", "student", "dualmd"}
    for name, rows in files.items():
        # 2 prompts x 2 generations, the undefended model's again under Wen et al.'s mitigation
        assert tuple(rows.columns) == ROW_COLUMNS and len(rows) == 2 * 2 * (2 if name == "baseline" else 1)
        plain = rows[rows["mitigation"] == "none"]
        assert plain["t_error"].isna().all() == (name == "dualmd") and len(plain) == 4
        assert np.isfinite(rows["noise_magnitude"]).all()
        # the copy descriptor of the config scores every generation; no CLIP model: absent with the reason
        assert rows["sscd_own"].between(-1, 1).all() and rows["sscd_max"].between(-1, 1).all()
        assert (rows["sscd_max"] >= rows["sscd_own"] - 1e-9).all() or name == "teacher2"  # own image a member
        assert rows["clip_cosine"].isna().all() and rows["clip_absent_reason"].str.contains("clip_path").all()
    mitigated = files["baseline"][files["baseline"]["mitigation"] == "wen"]
    assert len(mitigated) == 4 and mitigated["t_error"].isna().all()
    table = pd.read_csv(run / "pm.csv")
    assert set(table["target"]) == set(files) and set(table["detector"]) == {"t_error", "noise_magnitude"}
    assert ((table["num_memorized"] == 1) & (table["num_other"] == 1)).all()
    copies = pd.read_csv(run / "pmc.csv")
    assert set(copies[copies["mitigation"] == "wen"]["target"]) == {"baseline"}
    text = (run / "pm.md").read_text()
    assert (run / "te.png").is_file() and "| DualMD |" in text and "| No defense, Wen et al. |" in text
    assert "CLIP score absent: no CLIP model: memorization.clip_path is not set" in text


def test_prompt_detection_scores_both_lists_on_the_pretrained_pipeline(run):
    """Each prompt of the two lists (blank lines skipped) with its mean noise magnitude over 2 generations of the
    first 2 steps, and the AUC of the summary is the AUC of those values."""
    from sklearn.metrics import roc_auc_score

    rows = pd.read_csv(run / "pd.csv")
    assert rows["group"].tolist() == ["memorized"] * 2 + ["ordinary"] * 3
    assert rows["prompt"].tolist()[:2] == ["a handwritten digit two", "a bold two at the top left"]
    assert (rows["noise_magnitude"] > 0).all() and (rows["noise_magnitude_std"] > 0).all()
    summary = json.loads((run / "pd.json").read_text())
    expected = roc_auc_score(rows["group"] == "memorized", rows["noise_magnitude"])
    assert summary["auc"] == pytest.approx(expected) and summary["auc_low"] <= summary["auc_high"]
    assert (summary["num_memorized"], summary["num_ordinary"], summary["num_steps"]) == (2, 3, 2)
    assert summary["tpr_at_fpr_0.01"] is None  # 3 ordinary prompts do not resolve 1 % FPR
    assert "AUC" in (run / "pd.md").read_text() and (run / "pd.png").stat().st_size > 1000


def test_unique_captions_and_a_pretrained_text_encoder_stay_outside_the_split(tmp_path, monkeypatch):
    """With `unique_captions` and `pretrain_text_encoder`, pretraining draws the captions of images outside the
    split only, saves a text encoder changed from its initialisation, and the memorized prompts are unique
    original captions."""
    from transformers import CLIPTextModel

    from dualmd.config.experiment import load_config
    from dualmd.text2image.captions import TAG_WORDS, CaptionSampler
    from dualmd.text2image.components import tiny_text_encoder
    from dualmd.text2image.experiment import model_range, run_captions_of
    from dualmd.train.checkpoint import run_hash, tensor_sha256

    text2image = {**CONFIG["text2image"], "unique_captions": True, "pretrain_text_encoder": True}
    text2image["memorized_prompts"] = {"num_images": 2, "prompt_caption": 0}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "text2image": text2image}))
    data = ["--images", str(tmp_path / "images.npz"), "--split", str(tmp_path / "split.npz")]
    data += ["--split-meta", str(tmp_path / "split.json")]
    main(["prepare-data", "--config", str(cfg), "--out", data[1], "--meta", str(tmp_path / "d.json")])
    main(["split", "--config", str(cfg), "--images", data[1], "--out", data[3], "--meta", data[5]])
    main(["t2i-memorized-prompts", "--config", str(cfg), *data[2:], "--out", str(tmp_path / "prompts.json")])
    drawn = []  # the dataset ids whose captions pretraining drew
    draw = CaptionSampler.__call__

    def recording(sampler, step, image_ids):
        drawn.extend(image_ids)
        return draw(sampler, step, image_ids)

    monkeypatch.setattr(CaptionSampler, "__call__", recording)
    out = tmp_path / "pretrained"
    main(["t2i-pretrain", "--config", str(cfg), *data, "--out", str(out), "--state-dir", str(tmp_path / "s")])

    split = np.load(tmp_path / "split.npz")
    outside = population(64, split["member_idx"], split["nonmember_idx"])
    assert drawn and set(drawn) <= set(outside.tolist())
    captions = run_captions_of(load_config(cfg))
    seen = {c for i in outside for c in captions[i]} | {""}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["pretrain"]["unet"]["text_encoder"]["captions_sha256"] == run_hash({"captions": sorted(seen)})
    images = np.load(tmp_path / "images.npz")["images"]
    assert meta["population_sha256"] == tensor_sha256(model_range(images[outside]))
    trained, init = CLIPTextModel.from_pretrained(out / "text_encoder"), tiny_text_encoder(seed=0)
    assert trained.config.vocab_size == init.config.vocab_size
    moved = max(
        (a - b).abs().max().item() for a, b in zip(trained.parameters(), init.parameters(), strict=True)
    )
    assert moved > 1e-5
    # every member's original caption is its own, so every image of D1 can carry a memorized prompt
    selection = json.loads((tmp_path / "prompts.json").read_text())
    for i, prompt in selection["prompts"].items():
        assert prompt == captions[int(i)][0] and set(prompt.split()[-3:]) <= set(TAG_WORDS)
    assert len(set(selection["prompts"].values())) == 4
