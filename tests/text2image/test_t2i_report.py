"""The Table 3 report from synthetic score files, through the evaluate stage (metrics with bootstrap intervals) and
`t2i-report`: a row per attack, method and prompt-diversification variant, the paper's layout in Markdown."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from dualmd.cli import main
from dualmd.scores import AttackResult, save_scores

NUM = 200  # members and non-members of each score file: 1 % FPR is resolvable


def _scores(separation: float, seed: int) -> AttackResult:
    """Members' scores shifted up by `separation` standard deviations (0: a random guess)."""
    rng = np.random.default_rng(seed)
    is_member = np.r_[np.ones(NUM, bool), np.zeros(NUM, bool)]
    return AttackResult(np.arange(2 * NUM), is_member, rng.normal(size=2 * NUM) + separation * is_member)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Score files of two attacks on every Table 3 target, undefended ones separable; returns (csv, md)."""
    root = tmp_path_factory.mktemp("t2i_report")
    cfg = root / "metrics.yaml"
    cfg.write_text(yaml.safe_dump({"metrics": {"tpr_at_fpr": [0.01], "num_bootstrap": 50}}))
    separation = {"baseline": 6.0, "teacher1": 1.0, "teacher2": 1.0, "student": 0.0}
    metric_files = []
    for attack in ("pia", "secmi_stat"):  # not the paper's order: the report sorts
        scores = []
        for i, (name, sep) in enumerate(separation.items()):
            for suffix in ("", "_pd"):
                path = root / attack / f"{name}{suffix}.npz"
                path.parent.mkdir(exist_ok=True)
                save_scores(_scores(sep, seed=i), path)
                scores.append(str(path))
        out = root / f"{attack}.json"
        main(
            ["evaluate", "--config", str(cfg), "--attack", attack, "--scores", *scores, "--out", str(out)]
            + ["--roc", str(root / f"{attack}_roc.csv"), "--plot", str(root / f"{attack}.png")]
        )
        metric_files.append(str(out))
    csv, md = root / "text2image.csv", root / "text2image.md"
    main(
        [
            "t2i-report",
            "--config",
            str(cfg),
            "--attacks",
            *metric_files,
            "--out",
            str(csv),
            "--markdown",
            str(md),
        ]
    )
    return pd.read_csv(csv), md.read_text()


def test_csv_has_every_attack_method_and_variant_with_intervals(report):
    table, _ = report
    assert len(table) == 2 * 4 * 2
    assert list(table["attack"].unique()) == ["secmi_stat", "pia"]  # the paper's order
    assert list(table["method"][:4]) == ["No defense"] * 2 + ["DistillMD"] * 2
    assert list(table["prompt_diversification"][:2]) == [False, True]
    for key in ("auc", "asr", "tpr_at_fpr_0.01"):
        assert (table[f"{key}_low"] <= table[key]).all() and (table[key] <= table[f"{key}_high"]).all()
    undefended = table[table["method"] == "No defense"]
    student = table[table["method"] == "DistillMD"]
    assert (undefended["auc"] > 0.99).all() and (student["auc"].between(0.4, 0.6)).all()
    teachers = table[table["method"].str.startswith("DualMD")]
    assert set(teachers["target"]) == {"teacher1", "teacher2", "teacher1_pd", "teacher2_pd"}


def test_markdown_has_the_paper_layout(report):
    _, md = report
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0].startswith(
        "| Attack | Method | AUC (w/o PD) | ASR (w/o PD) | TPR@1%FPR (w/o PD) | AUC (w/ PD)"
    )
    assert len(lines) == 2 + 2 * 4
    assert lines[2].startswith("| SecMI | No defense | 1.000 [1.000, 1.000]")


def test_utility_table_has_fid_and_kid_with_intervals_per_sampler_and_variant(tmp_path):
    files = []
    for i, sampler in enumerate(["student_pd", "dualmd", "baseline", "student", "baseline_pd", "dualmd_pd"]):
        record = {"sampler": sampler, "fid": 10.0 + i, "fid_low": 9.0 + i, "fid_high": 12.0 + i, "kid": 0.01}
        record |= {"kid_se": 0.002, "inception_score": None, "num_images": 64, "num_reference": 128}
        record |= {"feature_net": "pixels", "scheduler": "ddim", "num_inference_steps": 20}
        record |= {"is_absent_reason": "feature network has no classifier head: 'pixels' has no classes"}
        record |= {"clip_score": None, "clip_absent_reason": "no CLIP model: utility.clip_path is not set"}
        path = tmp_path / f"{sampler}.json"
        path.write_text(json.dumps(record))
        files.append(str(path))
    csv, md = tmp_path / "u.csv", tmp_path / "u.md"
    main(["t2i-utility-report", "--utility", *files, "--out", str(csv), "--markdown", str(md)])
    table = pd.read_csv(csv)
    assert list(table["sampler"]) == [
        "baseline",
        "baseline_pd",
        "dualmd",
        "dualmd_pd",
        "student",
        "student_pd",
    ]
    assert list(table["method"][::2]) == ["No defense", "DualMD", "DistillMD"]
    assert table.loc[0, "kid_low"] == pytest.approx(0.01 - 1.96 * 0.002) and table.loc[0, "fid"] == 12.0
    text = md.read_text()
    assert "| No defense | w/o | 12.000 [11.000, 14.000] | 0.010 [0.006, 0.014] | absent | absent |" in text
    assert "64 images per sampler" in text and "128 reference images" in text
    assert "Inception Score absent: feature network has no classifier head: 'pixels' has no classes." in text
    assert "CLIP score absent: no CLIP model: utility.clip_path is not set." in text
    assert table["clip_absent_reason"].notna().all() and table["clip_score"].isna().all()


def test_utility_table_heads_a_standin_clip_score_as_one(tmp_path):
    from dualmd.config.evaluation import STANDIN_CLIP_LABEL

    record = {
        "sampler": "baseline",
        "fid": 10.0,
        "fid_low": 9.0,
        "fid_high": 12.0,
        "kid": 0.01,
        "kid_se": 0.0,
    }
    record |= {
        "clip_score": 30.0,
        "clip_score_low": 29.0,
        "clip_score_high": 31.5,
        "clip_absent_reason": None,
    }
    record |= {"clip_model": f"{STANDIN_CLIP_LABEL} (32 px, projection 64-d)", "inception_score": None}
    record |= {"num_images": 64, "num_reference": 128, "feature_net": "inception"}
    (tmp_path / "baseline.json").write_text(json.dumps(record))
    md = tmp_path / "u.md"
    out = ["--out", str(tmp_path / "u.csv"), "--markdown", str(md)]
    main(["t2i-utility-report", "--utility", str(tmp_path / "baseline.json"), *out])
    text = md.read_text()
    assert "| Method | PD | FID | KID | IS | CLIP score (stand-in, not OpenAI's CLIP) |" in text
    assert (
        "| 30.000 [29.000, 31.500] |" in text and f"({STANDIN_CLIP_LABEL} (32 px, projection 64-d))" in text
    )
    assert "not comparable with the paper's CLIP ViT-L/14 numbers" in text


def test_utility_table_shows_inception_and_clip_scores_where_computed(tmp_path):
    files = []
    for i, sampler in enumerate(["baseline", "dualmd", "student"]):
        record = {
            "sampler": sampler,
            "fid": 10.0,
            "fid_low": 9.0,
            "fid_high": 12.0,
            "kid": 0.01,
            "kid_se": 0.0,
        }
        record |= {"inception_score": 2.5 + i, "inception_score_std": 0.25, "is_absent_reason": None}
        record |= {"clip_score": 30.0 + i, "clip_score_low": 29.0 + i, "clip_score_high": 31.5 + i}
        record |= {
            "clip_model": "clip-vit-large-patch14 (224 px, projection 768-d)",
            "clip_absent_reason": None,
        }
        record |= {"num_images": 64, "num_reference": 128, "feature_net": "inception"}
        path = tmp_path / f"{sampler}.json"
        path.write_text(json.dumps(record))
        files.append(str(path))
    csv, md = tmp_path / "u.csv", tmp_path / "u.md"
    main(["t2i-utility-report", "--utility", *files, "--out", str(csv), "--markdown", str(md)])
    table = pd.read_csv(csv)
    assert list(table["clip_score"]) == [30.0, 31.0, 32.0] and list(table["inception_score"]) == [
        2.5,
        3.5,
        4.5,
    ]
    text = md.read_text()
    assert "| Method | PD | FID | KID | IS | CLIP score |" in text
    assert (
        "| DualMD | w/o | 10.000 [9.000, 12.000] | 0.010 [0.010, 0.010] | 3.50 ± 0.25 | 31.000 [30.000, 32.500] |"
        in text
    )
    assert "(clip-vit-large-patch14 (224 px, projection 768-d))" in text and "absent" not in text
    assert "stand-in" not in text
