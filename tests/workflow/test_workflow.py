"""The Snakemake workflow: lint, dry run, a broken config, one tiny end-to-end run, the rerun plan after each kind
of change, and sharing the run through a DVC remote.

The end-to-end run uses `.test/config/config.yaml` (64 digits, a (16, 32) UNet, 12 training steps) in a copy of
the project inside a temporary git repository; every later test of this module plans (dry-runs) against it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROJECT_FILES = [
    "Snakefile",
    "workflow",
    "config",
    "profiles",
    "src",
    "dvc.yaml",
    "pyproject.toml",
    "resources",
]
TRAINING_RULES = {"prepare_data", "make_split", "train_model", "distill_student"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # rules call `python -m dualmd`: the interpreter running the tests must come first on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def snakemake(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "snakemake", *args], cwd=cwd, check=check)


def planned_jobs(cwd: Path) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (parsed from Snakemake's job-stats table)."""
    out = snakemake("-n", "--cores", "2", cwd=cwd).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        jobs[match.group(1)] = int(match.group(2))
    jobs.pop("total", None)
    jobs.pop("all", None)  # the target rule itself is not work
    return jobs


def copy_project(dest: Path, config: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copy2(config, dest / "config" / "config.yaml")
    return dest


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_lint_and_default_dry_run():
    lint = snakemake("--lint", cwd=ROOT, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    jobs = planned_jobs_for_fresh_default()
    assert jobs["train_model"] == 3 and jobs["distill_student"] == 1
    assert jobs["sample_images"] == 5 and jobs["make_report"] == 1
    assert jobs["score_whitebox"] == 5 * 4 and jobs["score_blackbox"] == 5


def test_paper_config_validates_and_dry_runs():
    jobs = planned_jobs_for_fresh_default("--configfile", "config/paper-cifar10.yaml")
    assert jobs["train_model"] == 3 and jobs["distill_student"] == 1 and jobs["score_whitebox"] == 20


def planned_jobs_for_fresh_default(*args: str) -> dict[str, int]:
    """Dry run of the default config (or `args`) as if nothing had been computed yet."""
    out = snakemake("-n", "--forceall", "--cores", "2", *args, cwd=ROOT).stdout
    table = out.split("Job stats:", 1)[1]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
        if m.group(1) != "total"
    }


def test_broken_config_fails_before_any_job(tmp_path):
    project = copy_project(tmp_path / "p", ROOT / ".test/config/config.yaml")
    cfg = project / "config/config.yaml"
    cfg.write_text(
        cfg.read_text().replace("num_train_steps: 12", "num_train_steps: 12\n  learning_rate: 0.1")
    )
    proc = snakemake("--cores", "2", cwd=project, check=False)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stdout + proc.stderr
    assert not (project / "results").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The tiny config run end to end through `dvc repro` in a fresh git + DVC repository."""
    project = copy_project(tmp_path_factory.mktemp("run") / "project", ROOT / ".test/config/config.yaml")
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@example.org"],
        ["git", "config", "user.name", "ci"],
    ):
        run(cmd, cwd=project)
    run(["dvc", "init", "-q"], cwd=project)
    run(["dvc", "config", "core.analytics", "false"], cwd=project)
    run(["dvc", "repro"], cwd=project)
    return project


def test_end_to_end_outputs(finished_run):
    report = finished_run / "results/report"
    for name in (
        "metrics.json",
        "report.md",
        "attacks.csv",
        "utility.csv",
        "memorization.csv",
        "roc.csv",
        "t_error.png",
        "loss_curves.png",
    ):
        assert (report / name).stat().st_size > 0, name
    assert planned_jobs(finished_run) == {}, "a finished run must have nothing left to do"
    text = (report / "report.md").read_text()
    assert "secmi_stat" in text and "dualmd" in text and "student" in text
    snakemake("--report", "report.html", cwd=finished_run)
    html = (finished_run / "report.html").read_text()
    for name in (
        "attacks.csv",
        "utility.csv",
        "memorization.csv",
        "roc_pia.png",
        "t_error.png",
        "grid.png",
        "pairs.png",
        "loss_curves.png",
    ):
        assert name in html, f"{name} missing from the HTML report"


def _edit_config(project: Path, old: str, new: str) -> str:
    cfg = project / "config/config.yaml"
    original = cfg.read_text()
    assert old in original
    cfg.write_text(original.replace(old, new))
    return original


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "sweep_timesteps: [100, 200]",
            "sweep_timesteps: [100, 200]\n  loss:\n    timesteps: [20, 80]",
            {"write_stage_config": 1, "score_whitebox": 4, "evaluate_attack": 1, "make_report": 1},
        ),
        (
            "num_inference_steps: 5",
            "num_inference_steps: 4",
            {
                "write_stage_config": 1,
                "sample_images": 5,
                "score_blackbox": 5,
                "evaluate_attack": 1,
                "detect_copies": 5,
                "score_utility": 5,
                "make_report": 1,
            },
        ),
    ],
    ids=["attack-parameter", "sampling-parameter"],
)
def test_change_reruns_only_what_depends_on_it(finished_run, old, new, expected):
    original = _edit_config(finished_run, old, new)
    try:
        assert planned_jobs(finished_run) == expected
    finally:
        (finished_run / "config/config.yaml").write_text(original)


def test_training_steps_rerun_training_and_everything_downstream(finished_run):
    original = _edit_config(finished_run, "num_train_steps: 12", "num_train_steps: 13")
    try:
        jobs = planned_jobs(finished_run)
    finally:
        (finished_run / "config/config.yaml").write_text(original)
    assert jobs["train_model"] == 3 and jobs["distill_student"] == 1 and jobs["sample_images"] == 5
    assert jobs["score_whitebox"] == 5 * 4 and jobs["make_report"] == 1
    assert not {"prepare_data", "make_split", "reference_features"} & set(jobs)


def test_editing_attack_source_reruns_only_attacks(finished_run):
    source = finished_run / "src/dualmd/attacks/loss.py"
    original = source.read_text()
    source.write_text(original + "\n# edited\n")
    try:
        jobs = planned_jobs(finished_run)
    finally:
        source.write_text(original)
    assert set(jobs) == {
        "score_whitebox",
        "score_blackbox",
        "evaluate_attack",
        "score_t_error",
        "make_report",
    }


def test_dvc_push_pull_round_trip_retrains_nothing(finished_run, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], cwd=finished_run)
    run(["git", "add", "-A"], cwd=finished_run)
    run(["git", "commit", "-qm", "run"], cwd=finished_run)
    run(["dvc", "push"], cwd=finished_run)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(finished_run), str(clone)], cwd=tmp_path)
    run(["dvc", "pull"], cwd=clone)
    for tracked in ("results/split", "results/models", "results/data", "results/configs"):
        assert tree_hashes(clone / tracked) == tree_hashes(finished_run / tracked), (
            f"{tracked} differs after pull"
        )
    snakemake("--touch", "--cores", "1", "results/models/baseline", "results/models/student", cwd=clone)
    jobs = planned_jobs(clone)
    assert jobs, "outputs not under DVC (samples, scores) must be recomputed"
    assert not TRAINING_RULES & set(jobs), f"a pulled clone must not retrain: {jobs}"
