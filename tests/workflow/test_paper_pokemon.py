"""config/paper-pokemon.yaml: it validates in both layers, plans the text-to-image experiment from a local SD
pipeline folder without pretraining (with Table 5's generations and Fig. 3's detection on two prompt lists), asks
SLURM for a GPU and the memory it states for every job that runs SD (none for its reports), and its split stage
reads the authors' fixed split from the list files of a fake Pokemon folder (tiny images, no weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from helpers.projects import ROOT, planned_jobs, planned_resources, snakemake
from PIL import Image
from snakemake.utils import validate

from dualmd.cli import main
from dualmd.config.experiment import ExperimentConfig
from dualmd.config.stages import stage_config

PAPER = ROOT / "config" / "paper-pokemon.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# The authors' member order is not the folder's sorted order.
MEMBERS = [f"train/{i:04d}.png" for i in (4, 0, 5, 1, 3, 2)]
NONMEMBERS = [f"test/{i:04d}.png" for i in range(5)]


@pytest.fixture
def local_layout(tmp_path):
    """A fake layout of the paper config's folders, and a config file pointing the paper config at it."""
    (tmp_path / "sd").mkdir()
    (tmp_path / "deit").mkdir()
    pokemon = tmp_path / "pokemon"
    rng = np.random.default_rng(0)
    lines = []
    for name in MEMBERS + NONMEMBERS:
        (pokemon / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(pokemon / name)
        lines.append(json.dumps({"file_name": name, "text": [f"a pokemon {name}", "a blip caption"]}))
    (pokemon / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (pokemon / "members.txt").write_text("\n".join(MEMBERS) + "\n")
    (pokemon / "nonmembers.txt").write_text("\n".join(NONMEMBERS) + "\n")
    (tmp_path / "memorized.txt").write_text("a memorized prompt\n")
    (tmp_path / "ordinary.txt").write_text("an ordinary prompt\n")
    override = {
        "dataset": {"root": str(pokemon)},
        "split": {
            "member_list": str(pokemon / "members.txt"),
            "nonmember_list": str(pokemon / "nonmembers.txt"),
        },
        "text2image": {
            "pretrained": str(tmp_path / "sd"),
            # 3 members per half: 1 + 1 prompts of D1 for Table 5
            "memorized_prompts": {"num_images": 1},
            "prompt_detection": {
                "memorized_list": str(tmp_path / "memorized.txt"),
                "ordinary_list": str(tmp_path / "ordinary.txt"),
            },
        },
        "attack": {"pang_wang": {"encoder_path": str(tmp_path / "deit")}},
    }
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(override))
    return path


def _update(base: dict, changes: dict) -> dict:
    """`base` with `changes` merged in key by key, recursively (Snakemake's rule for several config files)."""
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _update(out[key], value) if both else value
    return out


def _merged(*files) -> dict:
    """Config files merged over config/config.yaml, as Snakemake merges them."""
    merged = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for f in files:
        merged = _update(merged, yaml.safe_load(f.read_text()))
    return merged


def test_paper_pokemon_config_holds_the_papers_settings_and_validates():
    raw = _merged(PAPER)
    validate(raw, schema=str(SCHEMA))
    cfg = ExperimentConfig.from_mapping(raw)
    assert cfg.text2image.enabled and cfg.text2image.variants == (False, True)
    assert (cfg.train.num_train_steps, cfg.train.batch_size, cfg.train.lr) == (20000, 16, 1e-5)
    assert cfg.train.mixed_precision == "fp16" and cfg.dataset.image_size == 512
    assert (cfg.split.source, cfg.split.halves) == ("lists", "ordered")
    pw = cfg.attack.pang_wang
    assert (pw.num_generations, pw.num_inference_steps, pw.guidance_scale, pw.encoder) == (3, 50, 7.5, "deit")
    assert "dataset" in stage_config(cfg, "split")  # the lists name files of the image folder
    assert cfg.utility.clip_path == "resources/clip-vit-large-patch14"  # the samplers' CLIP score
    # the authors keep no EMA: samplers and white-box attacks use the raw weights; their SD PIA is guided
    assert (cfg.sample.weights, cfg.attack.weights, cfg.attack.pia.guidance_scale) == ("raw", "raw", 7.5)
    # Table 5: SSCD and CLIP scores of generations from training prompts, Wen et al.'s mitigation as a row
    assert cfg.memorization.copy_descriptor == "resources/sscd_disc_large.torchscript.pt"
    assert cfg.memorization.clip_path == cfg.utility.clip_path and cfg.text2image.mitigation.enabled
    assert cfg.text2image.memorized_prompts.enabled and cfg.text2image.memorized_prompts.repeats == 1
    assert cfg.text2image.prompt_detection.enabled  # Fig. 3: memorized vs ordinary prompts on SD v1.5
    assert "guidance_scale" in stage_config(cfg, "t2i_attack_pia")["attack"]["pia"]
    for line in PAPER.read_text().splitlines():
        if line.strip() and not line.strip().startswith("#") and not line.strip().endswith(":"):
            assert "#" in line, f"uncommented config key: {line!r}"


def test_paper_pokemon_config_dry_runs_from_local_folders(local_layout):
    args = ("--forceall", "--configfile", str(PAPER), str(local_layout), "--")
    jobs = planned_jobs(ROOT, *args)
    assert "pretrain_t2i_pipeline" not in jobs  # SD v1.5 comes from text2image.pretrained
    assert jobs["make_split"] == 1 and jobs["finetune_t2i_model"] == 2 * 3 and jobs["distill_t2i_model"] == 2
    assert jobs["score_t2i_attack"] == 2 and jobs["score_t2i_blackbox"] == 2 * 3
    assert jobs["make_t2i_report"] == 1 and jobs["make_t2i_blackbox_report"] == 1
    assert jobs["score_t2i_utility"] == 2 * 3 and jobs["make_t2i_utility_report"] == 1
    assert jobs["select_memorized_prompts"] == jobs["score_prompt_memorization"] == 1
    assert jobs["make_t2i_memorization_report"] == jobs["detect_memorized_prompts"] == 1
    dry = snakemake("-n", "-p", "--cores", "2", *args, cwd=ROOT).stdout
    assert f"--model teacher1_pd --pretrained {local_layout.parent / 'sd'} " in dry
    sd = local_layout.parent / "sd"
    assert (
        "t2i-prompt-detection --config results/configs/rep0/t2i_prompt_detection." in dry
        and f"--pipeline {sd} --memorized-prompts {local_layout.parent / 'memorized.txt'} " in dry
    )


# Rules of the paper config that run SD v1.5 (text2image.resources kind), and its CPU-only rules.
SD_JOBS = {
    "finetune_t2i_model": "finetune",
    "distill_t2i_model": "distill",
    "sample_t2i_images": "sample",
    "score_t2i_attack": "attack",
    "score_t2i_blackbox": "blackbox",
    "score_t2i_utility": "utility",
    "score_prompt_memorization": "memorization",
    "detect_memorized_prompts": "memorization",
}
CPU_JOBS = (
    "evaluate_t2i_attack",
    "make_t2i_report",
    "make_t2i_blackbox_report",
    "make_t2i_utility_report",
    "select_memorized_prompts",
    "make_t2i_memorization_report",
)


def test_paper_pokemon_jobs_ask_slurm_for_a_gpu_and_the_stated_memory(local_layout):
    args = (
        "--forceall",
        "--workflow-profile",
        "profiles/slurm",
        "--configfile",
        str(PAPER),
        str(local_layout),
    )
    planned = planned_resources(ROOT, *args)
    stated = yaml.safe_load(PAPER.read_text())["text2image"]["resources"]
    for rule, kind in SD_JOBS.items():
        assert planned[rule], rule
        for job in planned[rule]:
            assert (job["gpu"], job["slurm_partition"]) == ("1", "gpu"), rule
            assert int(job["mem_mb"]) == stated[kind]["mem_mb"], rule
            assert int(job["runtime"]) == stated[kind]["runtime"], rule
    # the estimate in the config's comment: fine-tuning state + pipeline on the host ~24 GB, two teachers more
    assert stated["finetune"]["mem_mb"] >= 24000 and stated["distill"]["mem_mb"] >= 31000
    for rule in CPU_JOBS:
        for job in planned[rule]:
            assert job.get("gpu", "0") == "0" and job["slurm_partition"] == "cpu", rule
    # the profile covers every rule: a job is on the GPU partition exactly when it asks for a GPU
    for rule, jobs in planned.items():
        for job in jobs:
            on_gpu = job.get("slurm_partition") == "gpu"
            assert on_gpu == (int(job.get("gpu", 0)) > 0), (rule, job)
    # a training job given its GPU runs under accelerate in the config's precision
    dry = snakemake("-n", "-p", "--cores", "2", *args, "--", cwd=ROOT).stdout
    assert (
        "accelerate launch --num_processes 1 " in dry and "--mixed_precision fp16 -m dualmd t2i-train " in dry
    )


def test_paper_pokemon_split_is_the_authors_ordered_split(local_layout, tmp_path):
    config = tmp_path / "merged.yaml"
    config.write_text(yaml.safe_dump(_merged(PAPER, local_layout)))
    images, split = tmp_path / "images.npz", tmp_path / "split.npz"
    main(["prepare-data", "--config", str(config), "--out", str(images), "--meta", str(tmp_path / "d.json")])
    main(
        ["split", "--config", str(config), "--images", str(images), "--out", str(split)]
        + ["--meta", str(tmp_path / "split.json")]
    )
    # dataset order: the sorted file names (test/... before train/...)
    index = {name: i for i, name in enumerate(sorted(MEMBERS + NONMEMBERS))}
    arrays = np.load(split)
    np.testing.assert_array_equal(arrays["member_idx"], [index[n] for n in MEMBERS])
    np.testing.assert_array_equal(arrays["half1_idx"], [index[n] for n in MEMBERS[:3]])
    np.testing.assert_array_equal(arrays["half2_idx"], [index[n] for n in MEMBERS[3:]])
    np.testing.assert_array_equal(arrays["nonmember_idx"], [index[n] for n in NONMEMBERS])
    assert np.load(images)["images"].shape[1:] == (3, 512, 512)
    assert ExperimentConfig.from_mapping(_merged(PAPER, local_layout)).attack.pang_wang.encoder == "deit"
