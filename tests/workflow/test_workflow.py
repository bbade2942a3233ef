"""The Snakemake workflow: lint, dry runs, a broken config, one tiny end-to-end run, and the rerun plan after each
kind of change, with and without Snakemake's metadata, in a moved copy, and in a clone filled by `dvc pull`.

The end-to-end run uses `.test/config/config.yaml` (64 digits, a (16, 32) UNet, 12 training steps) in a copy of
the project inside a temporary git repository; every later test of this module plans (dry-runs) against it or
against copies of it.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from helpers.projects import (
    README_PULL,
    ROOT,
    TEST_CONFIG,
    TRAINING_RULES,
    assert_pulled_like,
    clone_and_pull,
    copy_project,
    dvc_run,
    edit_config,
    parse_job_stats,
    planned_jobs,
    planned_resources,
    run,
    snakemake,
    touched_run,
    tree_hashes,
)


def test_parse_job_stats_fails_loudly():
    assert (
        parse_job_stats("Building DAG of jobs...\nNothing to be done (all requested files are present).")
        == {}
    )
    table = "Job stats:\njob      count\n-----  -------\nfoo          2\nall          1\ntotal        3\n"
    assert parse_job_stats(table) == {"foo": 2}
    with pytest.raises(AssertionError, match="no job table"):
        parse_job_stats("WorkflowError: something broke")
    with pytest.raises(AssertionError, match="unparsable"):
        parse_job_stats(table.replace("total        3", "total        5"))


def test_lint_and_default_dry_run():
    from dualmd import catalog

    lint = snakemake("--lint", cwd=ROOT, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    jobs = planned_jobs(ROOT, "--forceall")
    assert jobs["train_model"] == 3 and jobs["distill_model"] == 2  # the DistillMD student and the control
    # every target samples, the baseline's checkpoints (@24, @60, @120, @300, @600) too: the FID axis of the curve
    assert jobs["sample_images"] == 6 + 5 and jobs["score_utility"] == 6 + 5
    assert jobs["make_report"] == 1 and jobs["score_heldout_loss"] == 1
    # one scoring job per cheap attack (loss, secmi_stat, pia, pian, sima, gsa), whatever the number of targets;
    # one per model for secmi_nn, which leaves the checkpoints out (catalog.AttackSpec.curve)
    assert jobs["score_model_attack"] == 6 and jobs["score_sample_attack"] == 1
    assert jobs["score_model_attack_each"] == 5
    # recon through every sampler and teacher_max on DualMD's teachers: one job each
    assert jobs["score_sampler_attack"] == 1 and jobs["score_pair_attack"] == 1
    # the tuned variants are attacks-strong features: the default run's cost and numbers stay as they were
    assert "tune_attack" not in jobs and jobs["evaluate_attack"] == 10
    assert jobs["infer_set_membership"] == 1 and jobs["infer_dataset_membership"] == 1
    dry = snakemake("-n", "--forceall", "--cores", "2", "-p", cwd=ROOT).stdout
    samplers = " ".join(f"--targets {s}=results/models/rep0" for s in catalog.samplers())
    assert "--attack recon --images" in dry and samplers in dry
    assert "--attack teacher_max --images" in dry and "--targets dualmd=results/models/rep0 --out-dir" in dry
    # a checkpoint's sampler reads its weights from its model's directory
    assert "--sampler baseline@24 --models baseline@24=results/models/rep0/baseline " in dry
    assert "--targets baseline@600=results/models/rep0 " in dry  # recon through the checkpoint's sampler


def test_replicates_config_multiplies_runs_not_rules():
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/replicates.yaml")
    assert jobs["train_model"] == 3 * 3 and jobs["make_split"] == 3 and jobs["make_report"] == 3
    assert jobs["prepare_data"] == 1, "replicates share the dataset"
    assert jobs["summarize_replicates"] == 1 and jobs["decide_verdicts"] == 1


def test_ablation_config_adds_controls_that_every_stage_reaches():
    """Two overlaps (two teachers and a student each) and two DP-SGD baselines."""
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/ablation.yaml")
    assert jobs["train_model"] == 3 + 2 * 2 + 2 and jobs["distill_model"] == 2 + 2
    assert jobs["sample_images"] == 6 + 5 + 2 * 3 + 2 and jobs["score_model_attack_each"] == 5 + 2 * 3 + 2
    assert jobs["score_model_attack"] == 6 and jobs["score_heldout_loss"] == 1 and jobs["make_report"] == 1
    args = ("-n", "--forceall", "--cores", "2", "--configfile", "config/ablation.yaml")
    dry = snakemake(*args, cwd=ROOT).stdout
    assert "--model student_ov50 --teachers teacher1_ov50=results/models/rep0/teacher1_ov50" in dry
    for name in ("teacher2_ov100", "student_ov100", "dpsgd_eps10", "dpsgd_eps100"):
        assert f"results/models/rep0/{name}" in dry and f"results/utility/rep0/{name}.json" in dry


def test_before_controls_config_drops_the_checkpoints_and_the_added_attacks():
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/before-controls.yaml")
    assert jobs["score_model_attack_each"] == 5  # secmi_nn on the five models, no baseline@<step>
    assert (
        jobs["score_model_attack"] == 4 and jobs["score_sample_attack"] == 1 and jobs["evaluate_attack"] == 6
    )
    assert "score_sampler_attack" not in jobs and "score_pair_attack" not in jobs


def test_strong_attacks_config_trains_reference_models_only_for_lira():
    """LiRA's reference models train only for the LiRA attacks, K = 8 of each: 8 like the baseline outside the split
    (lira and lira_target's baseline), 8 shadow models on halves of the candidates (lira_online and
    lira_online_target's baseline), and DistillMD rebuilt on each reference set (lira_target) and on each shadow set
    (lira_online_target): 2 teachers and 1 student per set; one job per LiRA attack scores every model against
    them, and gsa_shadow's job reuses lira_target's first 4 sets; they are neither sampled nor attacked themselves."""
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/attacks-strong.yaml")
    assert jobs["train_model"] == 3 + 8 + 8 + 2 * 8 + 2 * 8 and jobs["distill_model"] == 2 + 8 + 8
    # the four LiRA attacks, gsa_shadow and secmi_stat_tuned (its own t_sec grid); the other tuned variants reuse
    # scores
    assert jobs["score_model_attack"] == 6 + 4 + 1 + 1 and jobs["tune_attack"] == 3
    assert (
        jobs["sample_images"] == 6 + 5
        and jobs["score_model_attack_each"] == 5
        and jobs["evaluate_attack"] == 14 + 5
    )
    args = ("-n", "--forceall", "--cores", "2", "--configfile", "config/attacks-strong.yaml")
    dry = snakemake(*args, cwd=ROOT).stdout
    refs = " ".join(f"--references reference{k}=results/models/rep0/reference{k}" for k in range(1, 9))
    assert "--attack lira " in dry and refs in dry
    assert dry.count("--references reference1=") == 3  # lira, and lira_target and gsa_shadow for the baseline
    assert dry.count("--references shadow1=") == 2  # lira_online, and lira_online_target for the baseline
    assert (
        dry.count("--references reference1_student=") == 2 and dry.count("--references shadow1_student=") == 1
    )
    roles = ("", "_teacher1", "_teacher2", "_student")

    def references_of(attack):
        line = next(line for line in dry.splitlines() if f"--attack {attack} " in line)
        return sorted(re.findall(r"--references (\S+?)=", line))

    assert references_of("gsa_shadow") == sorted(f"reference{k}{r}" for r in roles for k in range(1, 5))
    assert references_of("lira_online_target") == sorted(f"shadow{k}{r}" for r in roles for k in range(1, 9))
    assert references_of("lira_online") == sorted(f"shadow{k}" for k in range(1, 9))
    assert "--references" not in next(line for line in dry.splitlines() if "--attack gsa " in line)
    assert "--model reference3 --out results/models/rep0/reference3" in dry
    assert "--model shadow3 --out results/models/rep0/shadow3" in dry
    for prefix in ("reference", "shadow"):
        assert f"--model {prefix}8_teacher2 --out results/models/rep0/{prefix}8_teacher2" in dry
        teachers = " ".join(
            f"--teachers {prefix}2_{t}=results/models/rep0/{prefix}2_{t}" for t in ("teacher1", "teacher2")
        )
        assert f"--model {prefix}2_student {teachers} --out" in dry
    # no reference or shadow model is sampled or scored
    assert not re.search(r"results/(samples|scores)/rep0/\S*(reference|shadow)\d", dry)


def test_paper_config_validates_and_dry_runs():
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/paper-cifar10.yaml")
    assert jobs["train_model"] == 3 and jobs["distill_model"] == 2 and jobs["score_model_attack"] == 4


def test_slurm_profile_gives_every_model_job_of_the_paper_config_a_gpu(tmp_path):
    """profiles/slurm on config/paper-cifar10.yaml with every attack job kind (sampler and pair attacks too): the
    jobs that run a model ask for a GPU on the GPU partition; the others (reports, copies, metrics) do not."""
    every_kind = tmp_path / "attacks.yaml"
    every_kind.write_text("attack: {names: [loss, secmi_stat, secmi_nn, nn_distance, recon, teacher_max]}\n")
    planned = planned_resources(
        ROOT,
        "--forceall",
        "--workflow-profile",
        "profiles/slurm",
        "--configfile",
        "config/paper-cifar10.yaml",
        str(every_kind),
    )
    model_jobs = {
        "train_model",
        "distill_model",
        "sample_images",
        "score_model_attack",
        "score_model_attack_each",
        "score_sampler_attack",
        "score_pair_attack",
        "score_heldout_loss",
        "reference_features",
        "score_utility",
    }
    assert model_jobs <= set(planned)
    for rule, jobs in planned.items():
        for job in jobs:
            on_gpu = job.get("slurm_partition") == "gpu"
            assert on_gpu == (int(job.get("gpu", 0)) > 0) == (rule in model_jobs), (rule, job)


def test_text2image_config_plans_the_text2image_experiment_only():
    """Both prompt-diversification variants of every text-to-image model, one scoring job per white-box attack,
    one black-box job per sampler, and none of the unconditional experiment's jobs."""
    jobs = planned_jobs(ROOT, "--forceall", "--configfile", "config/text2image-tiny.yaml")
    assert jobs["prepare_data"] == 1 and jobs["make_split"] == 1 and jobs["pretrain_t2i_pipeline"] == 1
    assert jobs["finetune_t2i_model"] == 2 * 3 and jobs["distill_t2i_model"] == 2
    assert jobs["sample_t2i_images"] == 2 * 3 and jobs["score_t2i_attack"] == 3
    assert jobs["score_t2i_blackbox"] == 2 * 3 and jobs["make_t2i_blackbox_report"] == 1
    assert jobs["evaluate_t2i_attack"] == 3 + 1 and jobs["make_t2i_report"] == 1
    assert jobs["reference_t2i_features"] == 1 and jobs["score_t2i_utility"] == 2 * 3
    assert jobs["make_t2i_utility_report"] == 1
    # memorized prompts: one selection, one scoring job for every model and DualMD pair, one report
    assert jobs["select_memorized_prompts"] == 1 and jobs["score_prompt_memorization"] == 1
    assert jobs["make_t2i_memorization_report"] == 1
    assert jobs["train_t2i_standin_scorers"] == 1  # Table 5's stand-in CLIP and copy descriptor
    assert not set(jobs) & {
        "train_model",
        "distill_model",
        "sample_images",
        "make_report",
        "score_model_attack",
        "score_utility",
    }
    args = ("-n", "--forceall", "--cores", "2", "-p", "--configfile", "config/text2image-tiny.yaml")
    dry = snakemake(*args, cwd=ROOT).stdout
    assert "--model student_pd --pretrained results/t2i_models/rep0/pretrained " in dry
    assert "--teachers teacher1_pd=results/t2i_models/rep0/teacher1_pd" in dry
    assert "--sampler dualmd --models teacher1=results/t2i_models/rep0/teacher1 " in dry
    assert "results/report/rep0/text2image.md" in dry
    models = " ".join(
        f"--targets {m}{pd}=results/t2i_models/rep0/{m}{pd}"
        for pd in ("", "_pd")
        for m in ("baseline", "teacher1", "teacher2", "student")
    )
    assert "--attack secmi_stat --images results/data/images.npz " in dry and models in dry
    assert (
        "--attack pang_wang --images results/data/images.npz --split results/split/rep0/split.npz "
        "--split-meta results/split/rep0/split.json --sampler dualmd_pd --models "
        "teacher1_pd=results/t2i_models/rep0/teacher1_pd --models teacher2_pd=results/t2i_models/rep0/teacher2_pd "
        "--out results/t2i_scores/rep0/pang_wang/dualmd_pd.npz"
    ) in dry
    assert "results/report/rep0/text2image_blackbox.md" in dry
    # every training, sampling and attack job reads the memorized-prompt selection
    memorized = "--memorized results/t2i_memorization/rep0/prompts.json"
    for command in ("t2i-train", "t2i-distill", "t2i-sample", "t2i-attack", "t2i-blackbox"):
        lines = [line for line in dry.splitlines() if f"-m dualmd {command} " in line]
        assert lines and all(memorized in line for line in lines), command
    assert "t2i-memorized-prompts --config results/configs/rep0/t2i_memorized_prompts." in dry
    scoring = next(line for line in dry.splitlines() if "t2i-prompt-memorization" in line)
    assert f"{memorized} " in scoring and "--out-dir results/t2i_memorization/rep0/scores" in scoring
    assert all(
        f"--models {m}{pd}=results/t2i_models/rep0/{m}{pd}" in scoring
        for pd in ("", "_pd")
        for m in ("baseline", "teacher1", "teacher2", "student")
    )
    assert "--noise-plot results/report/rep0/prompt_memorization_noise_magnitude.png" in dry


def rule_edges(*args: str) -> set[tuple[str, str]]:
    """(producer, consumer) rule pairs of Snakemake's rule graph of the project under `args`."""
    dot = snakemake("--forceall", "--rulegraph", *args, cwd=ROOT).stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}


def test_text2image_tiny_config_trains_the_standin_scorers_before_scoring_with_them(tmp_path):
    """`standin` scorer keys: the stand-in stage (on the split, outside it) runs before the jobs that compute the
    copy and CLIP scores, which get its outputs; with the keys unset, neither the job nor the options."""
    edges = rule_edges("--configfile", "config/text2image-tiny.yaml")
    assert {("make_split", "train_t2i_standin_scorers")} <= edges
    assert {
        ("train_t2i_standin_scorers", r) for r in ("score_prompt_memorization", "score_t2i_utility")
    } <= edges
    dry = snakemake(
        "-n", "-p", "--forceall", "--cores", "2", "--configfile", "config/text2image-tiny.yaml", cwd=ROOT
    )
    lines = dry.stdout.splitlines()
    standin = "--clip results/t2i_scorers/rep0/clip --descriptor results/t2i_scorers/rep0/copy_descriptor.pt"
    assert any("dualmd t2i-standin-scorers" in line and standin in line for line in lines)
    scoring = next(line for line in lines if "dualmd t2i-prompt-memorization" in line)
    assert "--standin-clip results/t2i_scorers/rep0/clip " in scoring
    assert "--standin-descriptor results/t2i_scorers/rep0/copy_descriptor.pt " in scoring
    utility = [line for line in lines if "dualmd utility " in line]
    assert len(utility) == 6 and all(
        "--standin-clip results/t2i_scorers/rep0/clip " in line for line in utility
    )

    unset = tmp_path / "paths.yaml"
    unset.write_text(
        "memorization:\n  copy_descriptor: null\n  clip_path: null\nutility:\n  clip_path: null\n"
    )
    args = ("--forceall", "--configfile", "config/text2image-tiny.yaml", str(unset), "--")
    assert "train_t2i_standin_scorers" not in planned_jobs(ROOT, *args)
    assert "--standin" not in snakemake("-n", "-p", "--cores", "2", *args, cwd=ROOT).stdout


def test_text2image_without_memorized_prompts_plans_none_of_their_jobs(tmp_path):
    change = tmp_path / "off.yaml"
    change.write_text("text2image:\n  memorized_prompts:\n    num_images: 0\n")
    args = ("--forceall", "--configfile", "config/text2image-tiny.yaml", str(change), "--")
    jobs = planned_jobs(ROOT, *args)
    assert not set(jobs) & {
        "select_memorized_prompts",
        "score_prompt_memorization",
        "make_t2i_memorization_report",
    }
    assert jobs["finetune_t2i_model"] == 6 and jobs["make_t2i_report"] == 1
    dry = snakemake("-n", "-p", "--cores", "2", *args, cwd=ROOT).stdout
    assert "--memorized" not in dry and "t2i_prompt_memorization." not in dry


def test_text2image_with_a_pretrained_pipeline_skips_pretraining(tmp_path):
    pipeline = tmp_path / "sd"
    pipeline.mkdir()
    change = tmp_path / "pretrained.yaml"
    change.write_text(f"text2image:\n  pretrained: {pipeline}\n  prompt_diversification: true\n")
    args = ("--forceall", "--configfile", "config/text2image-tiny.yaml", str(change), "--")
    jobs = planned_jobs(ROOT, *args)
    assert "pretrain_t2i_pipeline" not in jobs and jobs["finetune_t2i_model"] == 3
    dry = snakemake("-n", "-p", "--cores", "2", *args, cwd=ROOT).stdout
    assert f"--model baseline_pd --pretrained {pipeline} " in dry


def test_rule_files_name_no_target_or_attack():
    from dualmd import catalog

    names = [*catalog.TARGETS, *catalog.ATTACKS]
    offenders = []
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            # `dualmd` is also the package: `python -m dualmd`, `from dualmd import`, `dualmd.catalog`
            code = re.sub(r"(-m|from|import) dualmd\b|\bdualmd\.", "", code)
            offenders += [
                f"{path.name}:{lineno}: {name}"
                for name in names
                if re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", code)
            ]
    assert not offenders, offenders


def test_broken_config_fails_before_any_job(tmp_path):
    project = copy_project(tmp_path / "p", TEST_CONFIG)
    edit_config(project, "num_train_steps: 12", "num_train_steps: 12\n  learning_rate: 0.1")
    proc = snakemake("--cores", "2", cwd=project, check=False)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stdout + proc.stderr
    assert not (project / "results").exists()


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("memorization:\n", "memorization:\n  k_nearest: 1\n", "k_nearest"),
        ("  num_images: 16\n  feature_net", "  num_images: 40\n  feature_net", "utility.num_images"),
        ("    sweep_timesteps: [100, 200]", "    sweep_timesteps: [100, 2000]", "attack.pia.sweep_timesteps"),
        ("\ntrain:\n", "\ntrain:\n  compile: maybe\n", "compile"),
        (
            "\ntrain:\n",
            "\ncontrols:\n  dp_epsilons: [10]\ntrain:\n  compile: true\n",
            "train.compile: cannot combine with DP-SGD",
        ),
    ],
    ids=[
        "k-nearest",
        "more-fid-images-than-samples",
        "timestep-out-of-range",
        "compile-not-a-boolean",
        "compile-with-dp-sgd",
    ],
)
def test_ranges_that_would_fail_in_a_job_fail_at_validation(tmp_path, old, new, key):
    project = copy_project(tmp_path / "p", TEST_CONFIG)
    edit_config(project, old, new)
    proc = snakemake("-n", "--cores", "2", cwd=project, check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The tiny config run end to end through `dvc repro` in a fresh git + DVC repository."""
    return dvc_run(tmp_path_factory.mktemp("run") / "project")


def test_end_to_end_outputs(finished_run):
    report = finished_run / "results/report/rep0"
    for name in (
        "metrics.json",
        "report.md",
        "attacks.csv",
        "utility.csv",
        "memorization.csv",
        "roc.csv",
        "t_error.png",
        "loss_curves.png",
        "frontier.csv",
        "frontier.png",
        "matched_utility.csv",
        "strongest_attacks.csv",
        "set_inference.csv",
        "dataset_inference.csv",
        "../replicates.csv",
    ):
        assert (report / name).stat().st_size > 0, name
    assert planned_jobs(finished_run) == {}, "a finished run must have nothing left to do"
    matched = list(csv.DictReader((report / "matched_utility.csv").open()))
    # every distilled model on both utility axes, DualMD on the FID axis (it has no held-out loss)
    assert {(row["defense"], row["axis"]) for row in matched} == {
        ("student", "heldout"),
        ("student", "fid"),
        ("selfdistill", "heldout"),
        ("selfdistill", "fid"),
        ("dualmd", "fid"),
    }
    assert all(row["verdict"] for row in matched)
    # the black-box attacks are on the curve: DualMD is compared through them
    assert {row["attack"] for row in matched if row["defense"] == "dualmd"} == {"nn_distance", "recon"}
    text = (report / "report.md").read_text()
    assert "secmi_stat" in text and "dualmd" in text and "student" in text
    # the strongest attack against every target, by name, in the report and on the landing page
    strongest = {
        row["target"]: row["attack"] for row in csv.DictReader((report / "strongest_attacks.csv").open())
    }
    assert set(strongest) >= {"baseline", "student", "dualmd", "selfdistill"}
    assert f"- **dualmd**: {strongest['dualmd']} (TPR at 1% FPR" in text
    snakemake("--report", "report.html", cwd=finished_run)
    html = (finished_run / "report.html").read_text()
    # the landing page includes the matched-utility verdicts of every distilled model
    assert "Matched utility, replicate rep0" in html
    assert "Strongest attack against each target, replicate rep0" in html
    assert "Set-level inference, replicate rep0" in html and "set_inference.csv" in html
    sets = list(csv.DictReader((report / "set_inference.csv").open()))
    assert {"baseline", "student", "selfdistill"} <= {row["target"] for row in sets}
    assert all(0 < float(row["median_p"]) <= 1 for row in sets)
    assert "Dataset-level inference, replicate rep0" in html and "dataset_inference.csv" in html
    combined = list(csv.DictReader((report / "dataset_inference.csv").open()))
    assert {"baseline", "student", "selfdistill"} <= {row["target"] for row in combined}
    assert all(0 < float(row["median_p"]) <= 1 for row in combined)
    assert "## Dataset-level inference" in (report / "report.md").read_text()
    for row in matched:
        # the verdict up to its parenthesis: the page stores "≥" escaped; a name is a literal, <tt> or <span>
        assert row["verdict"].split(" (")[0] in html and f">{row['defense']}</" in html
    for name in (
        "attacks.csv",
        "strongest_attacks.csv",
        "utility.csv",
        "memorization.csv",
        "roc_pia.png",
        "roc_recon.png",
        "roc_teacher_max.png",
        "t_error.png",
        "grid.png",
        "pairs.png",
        "loss_curves.png",
    ):
        assert name in html, f"{name} missing from the HTML report"


def reaches_the_curve(spec) -> bool:
    """The attack scores the baseline's checkpoints: a model attack on the curve, every samples and sampler attack
    (a checkpoint is a sampler too)."""
    return spec.access in ("samples", "sampler") or (spec.access == "model" and spec.curve)


def test_end_to_end_numbers_cover_every_attack_target_and_sampler(finished_run):
    """metrics.json holds every attack x target of the catalog, every sampler's FID and KID and every model's
    held-out loss, with the member counts the split implies: teachers are scored on their own half, the other
    targets on all members."""
    from dualmd import catalog
    from dualmd.attacks.base import fraction_count
    from dualmd.config.experiment import load_config
    from dualmd.config.stages import checkpoint_targets

    cfg = load_config(finished_run / "config/config.yaml")
    checkpoints = checkpoint_targets(cfg)
    # 2 % of 12 steps rounds to 0 and 5 % to the step 10 % gives: 10, 25, 50 %
    assert checkpoints == ["baseline@1", "baseline@3", "baseline@6"]
    counts = json.loads((finished_run / "results/split/rep0/split.json").read_text())["counts"]
    metrics = json.loads((finished_run / "results/report/rep0/metrics.json").read_text())
    expected_pairs = {
        (a, t)
        for a in cfg.attack.names
        for t in catalog.attack_targets(a) + (checkpoints if reaches_the_curve(catalog.attack(a)) else [])
    }
    found_pairs = {tuple(k.split("/")[1:3]) for k in metrics if k.startswith("attack/")}
    assert found_pairs == expected_pairs

    # secmi_nn and gsa score the part their classifier did not train on, recon the part it did not choose on
    train_fractions = {
        "secmi_nn": cfg.attack.secmi_nn.train_fraction,
        "gsa": cfg.attack.gsa.train_fraction,
        "recon": cfg.attack.recon.train_fraction,
    }

    def held_out(num: int, attack: str) -> int:
        return num - fraction_count(num, train_fractions[attack]) if attack in train_fractions else num

    table = list(csv.DictReader((finished_run / "results/report/rep0/attacks.csv").open()))
    assert {(row["attack"], row["target"]) for row in table} == expected_pairs
    for row in table:
        attack, name = row["attack"], row["target"]
        subset = catalog.member_subset(name)
        assert int(row["num_members"]) == held_out(counts[subset], attack), (attack, name)
        assert int(row["num_nonmembers"]) == held_out(counts["nonmembers"], attack), (attack, name)
        key = f"attack/{attack}/{name}"
        assert metrics[f"{key}/num_members"] == int(row["num_members"])
        for metric in ("auc", "asr"):
            low, value, high = (metrics[f"{key}/{metric}{s}"] for s in ("_low", "", "_high"))
            assert 0.0 <= value <= 1.0 and 0.0 <= low <= high <= 1.0, (key, metric, low, value, high)
    assert counts["half1"] + counts["half2"] == counts["members"] and counts["half1"] < counts["members"]
    for sampler in catalog.samplers() + checkpoints:
        low, fid, high = (metrics[f"utility/{sampler}/fid{s}"] for s in ("_low", "", "_high"))
        assert all(map(math.isfinite, (low, fid, high))) and low <= high, sampler
        assert metrics[f"utility/{sampler}/kid_se"] > 0, sampler
    for name in [
        *catalog.TARGETS,
        *checkpoints,
    ]:  # every model and checkpoint has a held-out loss, a pair none
        keys = [f"utility/{name}/heldout_loss{s}" for s in ("_low", "", "_high")]
        if catalog.target(name).has_weights:
            low, loss, high = (metrics[k] for k in keys)
            assert 0 < low <= high and 0 < loss, name
        else:
            assert not set(keys) & set(metrics), name


@pytest.fixture(params=["with-metadata", "without-metadata"])
def moved_run(request, finished_run, tmp_path) -> Path:
    """A copy of the finished run in another folder, modification times kept, `.snakemake/` kept or not."""
    dest = tmp_path / "moved"
    keep = request.param == "with-metadata"
    shutil.copytree(
        finished_run,
        dest,
        symlinks=True,
        ignore=None if keep else shutil.ignore_patterns(".snakemake"),
    )
    assert (dest / ".snakemake").exists() == keep
    return dest


def test_moved_run_has_nothing_to_do(moved_run):
    assert planned_jobs(moved_run) == {}


ATTACK_CHANGE = (
    "sweep_timesteps: [100, 200]",
    "sweep_timesteps: [100, 200]\n  loss:\n    timesteps: [20, 80]",
)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            *ATTACK_CHANGE,
            {
                "write_stage_config": 1,
                "score_model_attack": 1,
                "evaluate_attack": 1,
                "infer_set_membership": 1,
                "infer_dataset_membership": 1,
                "make_report": 1,
                "summarize_replicates": 1,
                "decide_verdicts": 1,
            },
        ),
        (
            "num_inference_steps: 5",
            "num_inference_steps: 4",
            {
                "write_stage_config": 1,
                "sample_images": 6 + 3,
                "score_sample_attack": 1,
                "evaluate_attack": 1,
                "infer_set_membership": 1,
                "infer_dataset_membership": 1,
                "detect_copies": 1,
                "score_utility": 6 + 3,
                "make_report": 1,
                "summarize_replicates": 1,
                "decide_verdicts": 1,
            },
        ),
        (
            "num_timesteps: 4",
            "num_timesteps: 5",
            {
                "write_stage_config": 1,
                "score_heldout_loss": 1,
                "make_report": 1,
                "summarize_replicates": 1,
                "decide_verdicts": 1,
            },
        ),
    ],
    ids=["attack-parameter", "sampling-parameter", "heldout-parameter"],
)
def test_change_reruns_only_what_reads_it(moved_run, old, new, expected):
    edit_config(moved_run, old, new)
    assert planned_jobs(moved_run) == expected


def test_training_steps_rerun_training_and_everything_downstream(moved_run):
    edit_config(moved_run, "num_train_steps: 12", "num_train_steps: 13")
    jobs = planned_jobs(moved_run)
    assert jobs["train_model"] == 3 and jobs["distill_model"] == 2 and jobs["sample_images"] == 6 + 3
    assert jobs["score_model_attack"] == 6 and jobs["score_model_attack_each"] == 5
    assert jobs["score_heldout_loss"] == 1
    assert jobs["make_report"] == 1
    # the train and distill stage configs
    assert jobs["write_stage_config"] == 2
    assert not {"prepare_data", "make_split", "reference_features"} & set(jobs)


def test_reverting_a_change_reruns_it_again(moved_run):
    """A config changed, run, and changed back must not leave the changed run's results in place."""
    edit_config(moved_run, *ATTACK_CHANGE)
    snakemake("--cores", "2", cwd=moved_run)
    edit_config(moved_run, ATTACK_CHANGE[1], ATTACK_CHANGE[0])
    assert planned_jobs(moved_run) == {
        "write_stage_config": 1,
        "score_model_attack": 1,
        "evaluate_attack": 1,
        "infer_set_membership": 1,
        "infer_dataset_membership": 1,
        "make_report": 1,
        "summarize_replicates": 1,
        "decide_verdicts": 1,
    }


def test_dry_run_changes_nothing_on_disk(moved_run):
    edit_config(moved_run, "num_train_steps: 12", "num_train_steps: 13")
    before = tree_hashes(moved_run, skip=(".snakemake", "__pycache__"))
    mtimes = {p: p.stat().st_mtime_ns for p in moved_run.rglob("*") if ".snakemake" not in p.parts}
    assert planned_jobs(moved_run)["train_model"] == 3
    assert tree_hashes(moved_run, skip=(".snakemake", "__pycache__")) == before
    assert {p: p.stat().st_mtime_ns for p in moved_run.rglob("*") if ".snakemake" not in p.parts} == mtimes


def test_editing_attack_source_reruns_only_what_imports_it(moved_run):
    """An attack job's code is its attack's own module closure: editing PIA's module reruns PIA's and PIAN's
    scores (one module) and teacher_max's (it may wrap PIA), their evaluations and what reads them; no other
    attack, no copy detection, no t-error."""
    source = moved_run / "src/dualmd/attacks/pia.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert planned_jobs(moved_run) == {
        "score_model_attack": 2,
        "score_pair_attack": 1,
        "evaluate_attack": 3,
        "infer_set_membership": 1,
        "infer_dataset_membership": 1,
        "make_report": 1,
        "summarize_replicates": 1,
        "decide_verdicts": 1,
    }


@pytest.fixture(scope="module")
def touched_t2i_run(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("t2i") / "project", ROOT / "config/text2image-tiny.yaml")
    return touched_run(project)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (
            "text2image/report.py",  # the formatter of Tables 3 and 4 and of the utility table
            {"make_t2i_report": 1, "make_t2i_blackbox_report": 1, "make_t2i_utility_report": 1},
        ),
        ("stages/t2i_report.py", {"make_t2i_report": 1}),
        ("stages/t2i_pretrain.py", None),  # pretraining and everything built on it
    ],
    ids=["report-formatter", "table3-stage", "pretraining-stage"],
)
def test_editing_a_text2image_module_reruns_only_the_stages_that_run_it(
    touched_t2i_run, tmp_path, module, expected
):
    project = shutil.copytree(touched_t2i_run, tmp_path / "project", symlinks=True)
    source = project / "src/dualmd" / module
    source.write_text(source.read_text() + "\n# edited\n")
    jobs = planned_jobs(project)
    if expected is not None:
        assert jobs == expected
    else:
        assert jobs["pretrain_t2i_pipeline"] == 1 and jobs["finetune_t2i_model"] == 6
        assert "prepare_data" not in jobs and "make_split" not in jobs


def test_dvc_pull_then_change_reruns_that_attack_and_no_training(finished_run, tmp_path):
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], cwd=finished_run)
    clone = clone_and_pull(finished_run, tmp_path / "clone")
    unchanged = assert_pulled_like(clone, finished_run)
    edit_config(clone, *ATTACK_CHANGE)
    changed = planned_jobs(clone)
    assert not TRAINING_RULES & set(changed), f"an attack parameter must not retrain: {changed}"
    assert changed["write_stage_config"] == 1, "only the changed attack's config is new"
    assert changed == unchanged | {"write_stage_config": 1}


def test_readme_shows_the_pull_commands_this_module_runs():
    readme = (ROOT / "README.md").read_text()
    for command in README_PULL:
        assert command in readme, command
