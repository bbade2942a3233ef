"""The text-to-image workflow end to end on a tiny config (2 training steps, 24 images, one attack, one memorized
prompt): every stage through Snakemake, both prompt-diversification variants, the Table 3 report and the
memorization-on-prompts report; then nothing left to do, and the HTML report.

Slow (1.5-5 minutes on two cores, most of it the start-up of ~30 processes importing torch and
diffusers): set DUALMD_RUN_SLOW=1. The dry-run tests in test_workflow.py cover the plan on every run.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from helpers.projects import copy_project, planned_jobs, snakemake

CONFIG = {
    "dataset": {"name": "digits", "image_size": 32, "channels": 3, "max_images": 64},
    "split": {"num_images": 24, "member_fraction": 0.5},
    "train": {"num_train_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every_steps": 1},
    "text2image": {
        "enabled": True,
        "prompt_diversification": [False, True],
        "pretrain_vae_steps": 2,
        "pretrain_unet_steps": 2,
        "memorized_prompts": {"num_images": 1, "repeats": 3, "prompt_caption": 2, "num_generations": 1},
    },
    "sample": {"num_images": 4, "num_inference_steps": 2, "batch_size": 4},
    "utility": {"num_images": 4},
    "attack": {"names": ["loss"], "batch_size": 8, "loss": {"timesteps": [100]}},
    "metrics": {"tpr_at_fpr": [0.1], "num_bootstrap": 20},
}


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def t2i_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i_run")
    config = root / "t2i.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    project = copy_project(root / "project", config)
    snakemake("--cores", "2", cwd=project)
    return project


def test_t2i_workflow_writes_table3_for_both_variants(t2i_run):
    table = pd.read_csv(t2i_run / "results/report/rep0/text2image.csv")
    assert set(table["target"]) == {
        f"{name}{suffix}"
        for name in ("baseline", "teacher1", "teacher2", "student")
        for suffix in ("", "_pd")
    }
    assert table["auc"].between(0, 1).all() and (table["num_nonmembers"] == 12).all()
    assert "| Loss | No defense |" in (t2i_run / "results/report/rep0/text2image.md").read_text()
    meta = json.loads((t2i_run / "results/t2i_models/rep0/student_pd/metadata.json").read_text())
    assert meta["model_id"] == "student_pd"
    info = json.loads((t2i_run / "results/t2i_samples/rep0/dualmd_pd/info.json").read_text())
    assert set(info["models"]) == {"teacher1_pd", "teacher2_pd"}
    assert not (t2i_run / "results/models").exists(), "no unconditional model"
    memorization = pd.read_csv(t2i_run / "results/report/rep0/prompt_memorization.csv")
    assert set(memorization["target"]) == set(table["target"]) | {"dualmd", "dualmd_pd"}
    copies = pd.read_csv(t2i_run / "results/report/rep0/prompt_memorization_copies.csv")
    assert (copies["num_generations"] == 1).all() and len(copies) == 2 * 10
    selection = json.loads((t2i_run / "results/t2i_memorization/rep0/prompts.json").read_text())
    teacher1 = json.loads((t2i_run / "results/t2i_models/rep0/teacher1/metadata.json").read_text())
    assert teacher1["memorized_prompts"]["repeated_ids"] == selection["memorized_ids"]
    assert planned_jobs(t2i_run) == {}, "a finished run must have nothing left to do"


def test_t2i_html_report_shows_the_text2image_tables_and_plots(t2i_run):
    snakemake("--report", "report.html", cwd=t2i_run)
    html = (t2i_run / "report.html").read_text()
    assert "Text-to-image" in html and "text-to-image run" in html  # category and landing page
    for name in (
        "text2image.csv",
        "text2image_utility.csv",
        "t2i_roc_loss.png",
        "grid.png",
        "prompt_memorization.csv",
        "prompt_memorization_copies.csv",
        "prompt_memorization_t_error.png",
    ):
        assert name in html, f"{name} missing from the HTML report"
