"""Copies of the project for the workflow and cluster tests: commands run with the test interpreter first on PATH,
dry-run plans read from Snakemake's job table, file hashes, config edits, and a tiny run finished through
`dvc repro` in a fresh git + DVC repository.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).parents[2]
TEST_CONFIG = ROOT / ".test/config/config.yaml"
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
TRAINING_RULES = {"prepare_data", "make_split", "train_model", "distill_model"}
# The README's "Sharing a run with DVC" commands for everyone else, run verbatim by the DVC tests.
README_PULL = ["dvc pull", "snakemake --touch --cores 1 dvc_artifacts"]
# The folders `dvc pull` restores (dvc.yaml's outs).
DVC_OUTS = ("results/split", "results/models", "results/data", "results/configs")


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every command a test runs, with `extra` on top."""
    env = dict(os.environ)
    # rules call `python -m dualmd`: the interpreter running the tests must come first on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1")
    env.update(extra or {})
    return env


def run(
    cmd: list[str], cwd: Path, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd` (environment `command_env(env)`); with `check`, a failure raises with its output's tail."""
    proc = subprocess.run(cmd, cwd=cwd, env=command_env(env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def snakemake(
    *args: str, cwd: Path, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "snakemake", *args], cwd=cwd, check=check, env=env)


def parse_job_stats(out: str) -> dict[str, int]:
    """Rule -> number of jobs from Snakemake's "Job stats" table ({} only for "Nothing to be done").

    Raises AssertionError when the output holds neither, or a table whose counts do not add up to its total.
    """
    if "Nothing to be done" in out:
        return {}
    if "Job stats:" not in out:
        raise AssertionError(f"no job table in the dry run's output:\n{out[-3000:]}")
    table = out.split("Job stats:", 1)[1]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    total = jobs.pop("total", None)
    if total is None or sum(jobs.values()) != total:
        raise AssertionError(f"unparsable job table (total {total}, rows {jobs}):\n{table[:3000]}")
    jobs.pop("all", None)  # target rules are not work
    jobs.pop("dvc_artifacts", None)
    return jobs


def planned_jobs(cwd: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans."""
    return parse_job_stats(snakemake("-n", "--cores", "2", *args, cwd=cwd).stdout)


def planned_resources(cwd: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each job a dry run plans (`name=value` of its "resources:" line, values as
    printed), e.g. with `--workflow-profile profiles/slurm` what each job would ask `sbatch` for."""
    out = snakemake("-n", "--cores", "2", *args, cwd=cwd).stdout
    planned: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"^(?:local)?rule ", out, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        pairs = line.group(1).split(", ") if line else []
        planned.setdefault(rule, []).append(dict(p.split("=", 1) for p in pairs))
    return planned


def copy_project(dest: Path, config: Path) -> Path:
    """The project's workflow, package and profiles copied to `dest`, with `config` as config/config.yaml."""
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    shutil.copy2(config, dest / "config" / "config.yaml")
    return dest


def tree_hashes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `root`, leaving out paths with a part in `skip`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def edit_config(project: Path, old: str, new: str) -> None:
    cfg = project / "config/config.yaml"
    text = cfg.read_text()
    assert old in text, f"{old!r} not in the test config"
    cfg.write_text(text.replace(old, new))


def init_repository(project: Path) -> Path:
    """Make `project` a git + DVC repository (DVC's analytics off)."""
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "ci@example.org"],
        ["git", "config", "user.name", "ci"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        run(cmd, cwd=project)
    return project


def dvc_run(dest: Path, env: Mapping[str, str] | None = None) -> Path:
    """The tiny config run end to end through `dvc repro` in a fresh git + DVC repository at `dest`."""
    project = init_repository(copy_project(dest, TEST_CONFIG))
    run(["dvc", "repro"], cwd=project, env=env)
    return project


def clone_and_pull(project: Path, clone: Path, env: Mapping[str, str] | None = None) -> Path:
    """Commit `project` (its DVC remote configured), `dvc push`, `git clone` it to `clone` and run the README's
    commands for everyone else there."""
    run(["git", "add", "-A"], cwd=project)
    run(["git", "commit", "-qm", "run"], cwd=project)
    run(["dvc", "push"], cwd=project, env=env)
    run(["git", "clone", "-q", str(project), str(clone)], cwd=clone.parent)
    for command in README_PULL:
        program, *args = command.split()
        if program == "snakemake":
            snakemake(*args, cwd=clone, env=env)
        else:
            run([program, *args], cwd=clone, env=env)
    return clone


def assert_pulled_like(clone: Path, project: Path) -> dict[str, int]:
    """Check that `clone` holds `project`'s DVC outputs byte for byte and plans no training; return its plan."""
    for tracked in DVC_OUTS:
        assert tree_hashes(clone / tracked) == tree_hashes(project / tracked), f"{tracked} differs after pull"
    plan = planned_jobs(clone)
    assert plan, "outputs not under DVC (samples, scores) must be recomputed"
    assert not TRAINING_RULES & set(plan), f"a pulled clone must not retrain: {plan}"
    assert "write_stage_config" not in plan, "the pulled stage configs are current"
    return plan


def touched_run(project: Path, *args: str) -> Path:
    """`project` as Snakemake sees a finished run, without computing anything: every output the dry run plans is
    created empty (a name without a suffix as a directory), then `snakemake --touch` orders their times."""
    dry = snakemake("-n", "--forceall", "--cores", "1", *args, cwd=project).stdout
    outputs = {p.strip() for line in re.findall(r"^\s+output: (.*)$", dry, re.M) for p in line.split(",")}
    for name in sorted(outputs):
        path = project / name
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    snakemake("--touch", "--cores", "1", *args, cwd=project)
    assert planned_jobs(project, *args) == {}
    return project
